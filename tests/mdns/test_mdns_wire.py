"""Reading and writing mDNS packets, including the odd ones browsers send."""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from aioice.mdns import MDNS_PORT, MdnsService, Resolved, wire
from aioice.mdns.wire import TYPE_A, TYPE_AAAA, TYPE_ANY, Packet, Record

NAME = "1f0e4a8b-7c3d-4e2f-9a1b-0c2d3e4f5a6b.local"
OTHER = "other-host.local"
PEER = ("192.168.1.20", MDNS_PORT)
FLUSH = 0x8000
TYPE_TXT = 16
TYPE_NSEC = 47


def parse(data: bytes) -> Packet:
    packet = wire.parse(data)
    assert packet is not None
    return packet


def labels(name: str) -> bytes:
    data = dns.name.from_text(name).to_wire()
    assert data is not None
    return data


def header(flags: int, qd: int, an: int, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)


def rr(owner: bytes, rdtype: int, rdclass: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rdtype, rdclass, ttl, len(rdata)) + rdata


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


# -- dnspython-built messages -------------------------------------------------------------


def test_parse_a_dnspython_query() -> None:
    message = dns.message.make_query(NAME + ".", "AAAA")
    message.id = 0
    packet = parse(message.to_wire())
    assert packet == Packet(False, ((NAME, TYPE_AAAA),), (), True)


def test_parse_a_dnspython_response() -> None:
    query = dns.message.make_query(NAME.upper() + ".", "A")
    message = dns.message.make_response(query)
    message.answer.append(dns.rrset.from_text(NAME + ".", 120, "IN", "A", "10.0.0.1", "10.0.0.2"))
    message.answer.append(dns.rrset.from_text(NAME + ".", 120, "IN", "TXT", '"hello"'))
    message.authority.append(dns.rrset.from_text(OTHER + ".", 60, "IN", "AAAA", "fe80::1"))
    message.additional.append(
        dns.rrset.from_text("_x._tcp.local.", 60, "IN", "PTR", NAME.upper() + ".")
    )
    message.additional.append(dns.rrset.from_text(OTHER + ".", 10, "HS", "A", r"\# 4 0a000003"))
    packet = parse(message.to_wire())
    assert packet.is_response
    assert packet.strict
    assert packet.questions == ((NAME, TYPE_A),)
    # Only IN A and AAAA, names lower-cased and without the final dot (an rdataset is
    # a set: dnspython may write its records in any order).
    assert len(packet.records) == 3
    assert set(packet.records) == {
        Record(NAME, "10.0.0.1", 120),
        Record(NAME, "10.0.0.2", 120),
        Record(OTHER, "fe80::1", 60),
    }


def test_query_round_trip() -> None:
    data = wire.query([NAME, OTHER])
    assert data[:4] == b"\x00\x00\x00\x00"  # id 0, a query
    packet = parse(data)
    assert packet == Packet(
        False,
        ((NAME, TYPE_A), (NAME, TYPE_AAAA), (OTHER, TYPE_A), (OTHER, TYPE_AAAA)),
        (),
        True,
    )
    assert parse(wire.query([NAME], (TYPE_ANY,))).questions == ((NAME, TYPE_ANY),)
    message = dns.message.from_wire(data)
    assert [q.rdclass for q in message.question] == [dns.rdataclass.IN] * 4


def test_response_round_trip() -> None:
    records = [
        Record(NAME, "10.0.0.1", 120),
        Record(NAME, "fe80::1:2", 120),
        Record(OTHER, "192.168.0.1", 0),
    ]
    data = wire.response(records)
    packet = parse(data)
    assert packet == Packet(True, (), tuple(records), True)
    message = dns.message.from_wire(data)
    assert message.flags & 0x8400 == 0x8400  # QR and AA
    assert message.id == 0
    # Every record carries the cache-flush bit (RFC 6762 §10.2).
    assert [int(rrset.rdclass) for rrset in message.answer] == [FLUSH | 1] * 3


def test_cache_flush_class_is_accepted() -> None:
    question = labels(NAME) + struct.pack("!HH", TYPE_A, 1)
    for rdclass in (1, FLUSH | 1):
        data = header(0x8400, 1, 1) + question + rr(pointer(12), TYPE_A, rdclass, 120, b"\n\0\0\1")
        assert parse(data) == Packet(
            True, ((NAME, TYPE_A),), (Record(NAME, "10.0.0.1", 120),), True
        )
    # Other classes are not IN, with or without the bit.
    for rdclass in (3, FLUSH | 3, 255):
        data = header(0x8400, 0, 1) + rr(labels(NAME), TYPE_A, rdclass, 120, b"\n\0\0\1")
        assert parse(data).records == ()


def test_question_with_unicast_response_bit() -> None:
    data = header(0, 1, 0) + labels(NAME) + struct.pack("!HH", TYPE_ANY, FLUSH | 1)
    assert parse(data).questions == ((NAME, TYPE_ANY),)


def test_too_short_packets() -> None:
    for size in range(12):
        assert wire.parse(bytes(size)) is None
        assert wire.parse(b"\xff" * size) is None
    assert parse(bytes(12)) == Packet(False, (), (), True)


def test_wrong_address_lengths_are_skipped() -> None:
    data = (
        header(0x8400, 0, 3)
        + rr(labels(NAME), TYPE_A, 1, 120, b"\1\2\3")
        + rr(pointer(12), TYPE_AAAA, 1, 120, b"\1\2\3\4")
        + rr(pointer(12), TYPE_A, 1, 120, b"\1\2\3\4")
    )
    packet = parse(data)
    assert not packet.strict  # dnspython refuses a 3-byte A
    assert packet.records == (Record(NAME, "1.2.3.4", 120),)


# -- browsers' answers ----------------------------------------------------------------------


def browser_response() -> bytes:
    """A response in the style of a browser's, which dnspython refuses.

    - the answers' owners are compression pointers to the question name;
    - a TXT record with a broken string length (dnspython raises FormError);
    - an unknown type whose RDATA holds a name, and an A record whose owner
      points into that RDATA;
    - an NSEC in the additional section, then the AAAA.
    """
    data = header(0x8400, 1, 3, 0, 2)
    data += labels(NAME) + struct.pack("!HH", TYPE_A, FLUSH | 1)  # QU question
    data += rr(pointer(12), TYPE_TXT, FLUSH | 1, 4500, b"\x10abc")
    rdata_offset = len(data) + 2 + 10
    data += rr(pointer(12), 0xFF00, 1, 120, labels(OTHER))
    data += rr(pointer(rdata_offset), TYPE_A, FLUSH | 1, 120, bytes([192, 168, 1, 7]))
    data += rr(pointer(12), TYPE_NSEC, FLUSH | 1, 120, pointer(12) + b"\x00\x04\x40\x00\x00\x08")
    data += rr(pointer(12), TYPE_AAAA, FLUSH | 1, 120, bytes(15) + b"\x01")
    return data


def test_dnspython_refuses_the_browser_response() -> None:
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(browser_response())


def test_browser_response_records_are_salvaged() -> None:
    packet = parse(browser_response())
    assert not packet.strict
    assert packet.is_response
    assert packet.questions == ((NAME, TYPE_A),)
    assert packet.records == (
        Record(OTHER, "192.168.1.7", 120),
        Record(NAME, "::1", 120),
    )


def test_service_resolves_from_a_salvaged_response() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    service.resolve(OTHER, now=0.0)
    service.datagrams_to_send()
    service.receive_datagram(browser_response(), remote=PEER, now=0.1)
    assert service.stats.salvaged == 1
    assert service.stats.dropped == 0
    events = [service.next_event(), service.next_event(), service.next_event()]
    assert events == [Resolved(OTHER, ("192.168.1.7",)), Resolved(NAME, ("::1",)), None]


def test_records_before_a_truncation_are_kept() -> None:
    data = browser_response()
    # Cut inside the AAAA's RDATA, then inside its fixed fields, then its owner.
    for cut in (3, 10, 16 + 10 + 1):
        packet = parse(data[:-cut])
        assert not packet.strict
        assert packet.records == (Record(OTHER, "192.168.1.7", 120),)


def test_answers_after_a_bad_record_in_a_strict_looking_packet() -> None:
    # An A record with a 5-byte RDATA, then a good one whose owner points to the question.
    data = header(0x8400, 1, 2)
    data += labels(NAME) + struct.pack("!HH", TYPE_A, 1)
    data += rr(pointer(12), TYPE_A, FLUSH | 1, 120, b"\1\2\3\4\5")
    data += rr(pointer(12), TYPE_A, FLUSH | 1, 120, b"\1\2\3\4")
    packet = parse(data)
    assert packet.records == (Record(NAME, "1.2.3.4", 120),)


def test_compression_into_rdata_parses_strictly() -> None:
    # dnspython follows a pointer to a name inside an earlier record's RDATA (here a
    # CNAME's) and to the question name: such packets parse strictly.
    data = header(0x8400, 1, 3)
    data += labels(NAME) + struct.pack("!HH", TYPE_A, 1)
    rdata_offset = len(data) + 2 + 10
    data += rr(pointer(12), int(dns.rdatatype.CNAME), 1, 120, labels(OTHER))
    data += rr(pointer(rdata_offset), TYPE_A, FLUSH | 1, 120, b"\x0a\x00\x00\x02")
    data += rr(pointer(12), TYPE_A, FLUSH | 1, 120, b"\x0a\x00\x00\x01")
    packet = parse(data)
    assert packet.strict
    assert packet.records == (Record(OTHER, "10.0.0.2", 120), Record(NAME, "10.0.0.1", 120))


def test_unreadable_question_drops_the_packet() -> None:
    data = header(0x8400, 1, 1) + b"\x40bad" + rr(pointer(12), TYPE_A, 1, 120, b"\1\2\3\4")
    assert wire.parse(data) is None
