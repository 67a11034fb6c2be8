"""Seeded random and mutated packets: neither the parser nor the service ever raises."""

from __future__ import annotations

import ipaddress
import random
import struct
import time

from aioice.mdns import MDNS_PORT, MdnsService, Resolved, ResolveFailed, wire
from aioice.mdns.wire import TYPE_A, TYPE_AAAA, TYPE_ANY, Record

NAME = "1f0e4a8b-7c3d-4e2f-9a1b-0c2d3e4f5a6b.local"
OTHER = "other-host.local"
PEER = ("192.168.1.20", MDNS_PORT)
PEER6 = ("fe80::20", MDNS_PORT)
COUNT = 20_000


def seeds() -> list[bytes]:
    """Valid packets to mutate: queries, responses and a browser-style one."""
    question = wire.query([NAME], (TYPE_A,))[12:]
    browser = struct.pack("!HHHHHH", 0, 0x8400, 1, 3, 0, 1) + question
    browser += b"\xc0\x0c" + struct.pack("!HHIH", 16, 0x8001, 4500, 4) + b"\x10abc"
    rdata_offset = len(browser) + 12
    browser += b"\xc0\x0c" + struct.pack("!HHIH", 0xFF00, 1, 120, 13) + b"\x05other\x05local\x00"
    browser += struct.pack("!HHHIH", 0xC000 | rdata_offset, TYPE_A, 0x8001, 120, 4)
    browser += b"\xc0\xa8\x01\x07"
    browser += b"\xc0\x0c" + struct.pack("!HHIH", TYPE_AAAA, 0x8001, 120, 16) + bytes(15) + b"\x01"
    return [
        wire.query([NAME]),
        wire.query([NAME, OTHER], (TYPE_ANY,)),
        wire.response([Record(NAME, "10.0.0.1", 120), Record(NAME, "fe80::1", 120)]),
        wire.response([Record(OTHER, "192.168.1.7", 0)]),
        browser,
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if choice == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # replace a byte, often with a pointer or length byte
            buf[rng.randrange(len(buf))] = rng.choice(
                [0x00, 0x3F, 0x40, 0xC0, 0xFF, rng.randrange(256)]
            )
        elif choice == 2:  # truncate
            del buf[rng.randrange(len(buf) + 1) :]
        elif choice == 3:  # insert random bytes
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and len(buf) >= 12:  # new section counts
            struct.pack_into("!HHHH", buf, 4, *(rng.choice([0, 1, 2, 5, 0xFFFF]) for _ in range(4)))
        elif choice == 5 and len(buf) >= 14:  # a compression pointer anywhere
            i = rng.randrange(12, len(buf) - 1)
            struct.pack_into("!H", buf, i, 0xC000 | rng.randrange(len(buf) + 16))
        elif choice == 6:  # splice in a part of another seed
            other = rng.choice(seeds())
            start = rng.randrange(len(other))
            buf[rng.randrange(len(buf) + 1) :] = other[start : start + rng.randint(1, 40)]
    return bytes(buf)


def packets(rng: random.Random, bases: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for i in range(COUNT):
        if i % 4 == 0:  # random bytes behind a plausible header, or none at all
            body = rng.randbytes(rng.randint(0, 120))
            if rng.random() < 0.5:
                counts = [rng.randint(0, 3) for _ in range(4)]
                flags = rng.choice([0, 0x8400, rng.randrange(0x10000)])
                body = struct.pack("!HHHHHH", 0, flags, *counts) + body
            out.append(body)
        else:
            out.append(mutate(rng, rng.choice(bases)))
    return out


def check_packet(packet: wire.Packet | None) -> None:
    if packet is None:
        return
    assert isinstance(packet.is_response, bool)
    for name, rdtype in packet.questions:
        assert isinstance(name, str)
        assert 0 <= rdtype <= 0xFFFF
    for record in packet.records:
        assert record.name == record.name.lower()
        assert not record.name.endswith(".")
        ipaddress.ip_address(record.address)
        assert 0 <= record.ttl <= 0xFFFFFFFF


def test_fuzz_parse_and_service() -> None:
    rng = random.Random(20240601)
    bases = seeds()
    for base in bases:
        assert wire.parse(base) is not None
    browser = wire.parse(bases[-1])
    assert browser is not None
    assert not browser.strict
    assert [r.address for r in browser.records] == ["192.168.1.7", "::1"]
    data = packets(rng, bases)
    assert len(data) == COUNT

    service = MdnsService()
    service.publish(NAME, "10.0.0.5", now=0.0)
    service.resolve(OTHER, now=0.0)
    start = time.perf_counter()
    parsed = strict = 0
    now = 0.0
    for i, packet in enumerate(data):
        result = wire.parse(packet)
        check_packet(result)
        parsed += result is not None
        strict += result is not None and result.strict
        now += 0.001
        service.receive_datagram(packet, remote=PEER6 if i % 2 else PEER, now=now)
        for transmit in service.datagrams_to_send():
            assert wire.parse(transmit.data) is not None  # what we send is always readable
        while (event := service.next_event()) is not None:
            assert isinstance(event, (Resolved, ResolveFailed))
        if i % 100 == 0:
            timer = service.get_timer()
            if timer is not None and timer <= now:
                service.handle_timer(now=now)
            service.resolve(rng.choice([NAME, OTHER, f"h{i}.local"]), now=now)
    elapsed = time.perf_counter() - start
    print(f"{COUNT} packets: {COUNT - parsed} dropped, {strict} strict, {parsed - strict} salvaged")
    assert service.stats.dropped == COUNT - parsed
    # The corpus reaches every path: unreadable, strict and salvaged packets.
    assert service.stats.salvaged == parsed - strict
    assert COUNT - parsed > 1000
    assert strict > 1000
    assert parsed - strict > 1000
    assert elapsed < 15.0, f"{COUNT} packets took {elapsed:.1f} s"
