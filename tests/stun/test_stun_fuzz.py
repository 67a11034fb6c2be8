"""Deterministic fuzzing of :func:`aioice.stun.parse_message`.

The parser must raise nothing but :class:`~aioice.stun.StunParseError` on any input, and
what it accepts must be usable: ``bytes(message)`` re-encodes it and
``check_message_integrity`` answers with a bool.

Inputs are mutated valid messages (RFC 5769 / RFC 8489 vectors, real captures and
messages carrying every registered attribute) and random messages with a valid header,
so that most inputs get past the header checks into the attribute decoders. Most
mutations fix up the header length, and often the FINGERPRINT, afterwards so that
the parser goes deep instead of stopping at the first check.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aioice.stun import (
    ATTRIBUTES,
    COOKIE,
    Class,
    Message,
    Method,
    StunParseError,
    parse_message,
)

SEED = 0x5354554E
#: The acceptance criterion is at least 100,000 inputs.
N_INPUTS = 120_000
#: A generous bound: this runs in about 5 s on a 2-core machine.
TIME_BUDGET = 30.0
DATA = Path(__file__).parent / "data"

KNOWN_TYPES = [spec.type for spec in ATTRIBUTES]
# Unknown comprehension-required and -optional types, and the integrity trio again.
OTHER_TYPES = [0x0000, 0x0007, 0x0021, 0x7FFF, 0x8005, 0xC057, 0xFFFF, 0x0008, 0x001C, 0x8028]
MESSAGE_TYPES = [int(m) | int(c) for m in Method for c in Class]
INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x04, 0x7F, 0x80, 0xFF]

Mutator = Callable[[random.Random, bytearray, list[bytes]], bytearray]


# -- structure helpers ----------------------------------------------------------------


def tlv_offsets(data: bytes | bytearray) -> list[int]:
    """Offsets of the attribute headers that fit in ``data``, walking from the header."""
    offsets = []
    pos = 20
    while pos + 4 <= len(data):
        offsets.append(pos)
        length = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + length + (-length % 4)
    return offsets


def fix_length(buf: bytearray) -> bytearray:
    if 20 <= len(buf) <= 0xFFFF + 20:
        buf[2:4] = struct.pack("!H", len(buf) - 20)
    return buf


def refresh_fingerprint(buf: bytearray) -> bytearray:
    """Recompute a trailing FINGERPRINT so that the mutation gets past its check."""
    if len(buf) >= 28 and buf[-8:-4] == b"\x80\x28\x00\x04":
        buf[-4:] = struct.pack("!I", zlib.crc32(bytes(buf[:-8])) ^ 0x5354554E)
    return buf


def random_value(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 2, 3, 4, 4, 8, 8, 12, 16, 20, 20, 24, 32, rng.randrange(64)])
    return rng.randbytes(n)


def random_tlv(rng: random.Random) -> bytes:
    attr_type = rng.choice(KNOWN_TYPES) if rng.random() < 0.8 else rng.choice(OTHER_TYPES)
    value = random_value(rng)
    if attr_type in (0x0001, 0x0020, 0x0012, 0x0016, 0x8023) and rng.random() < 0.5:
        # A plausible address: family 1 or 2 with the right or a nearly right length.
        family = rng.choice([1, 2, 3])
        size = {1: 4, 2: 16, 3: 4}[family] + rng.choice([0, 0, 0, -1, 1, 4])
        value = bytes((0, family)) + rng.randbytes(2) + rng.randbytes(max(size, 0))
    pad = -len(value) % 4
    padding = bytes(pad) if rng.random() < 0.8 else rng.randbytes(pad)
    return struct.pack("!HH", attr_type, len(value)) + value + padding


def random_message(rng: random.Random) -> bytearray:
    """A message with a valid header and cookie and random attributes."""
    body = b"".join(random_tlv(rng) for _ in range(rng.randrange(8)))
    if rng.random() < 0.3:
        body += struct.pack("!HH", 0x0008, 20) + rng.randbytes(20)
    header = struct.pack("!HHI", rng.choice(MESSAGE_TYPES), len(body), COOKIE)
    buf = bytearray(header + rng.randbytes(12) + body)
    if rng.random() < 0.4:
        buf += struct.pack("!HHI", 0x8028, 4, 0)
        fix_length(buf)
        refresh_fingerprint(buf)
    return buf


def every_attribute_message(rng: random.Random) -> bytes:
    """A signed message carrying every registered attribute (valid values)."""
    values: dict[str, Any] = {
        "address": ("192.0.2.1", 32853),
        "xor-address": ("2001:db8::1", 3478),
        "unsigned": 0x12345678,
        "unsigned-64": 0x0123456789ABCDEF,
        "unsigned-short": 0x4000,
        "family": 0x02,
        "bytes": b"opaque bytes",
        "string": "caf\u00e9 \u30de\u30c8",
        "none": None,
        "even-port": True,
        "error-code": (438, "Stale Nonce"),
        "address-error-code": (1, 440, "Address Family not Supported"),
        "unknown-attributes": (0x0007, 0x7FFF, 0x0021),
        "password-algorithm": (2, b""),
        "password-algorithms": ((2, b""), (1, b""), (0x7FFF, b"abc")),
        "icmp": (3, 13, 0xDEADBEEF),
        "userhash": rng.randbytes(32),
        "reservation-token": rng.randbytes(8),
    }
    kinds = {
        "MAPPED-ADDRESS": "address",
        "RESPONSE-ADDRESS": "address",
        "SOURCE-ADDRESS": "address",
        "CHANGED-ADDRESS": "address",
        "ALTERNATE-SERVER": "address",
        "RESPONSE-ORIGIN": "address",
        "OTHER-ADDRESS": "address",
        "XOR-MAPPED-ADDRESS": "xor-address",
        "XOR-PEER-ADDRESS": "xor-address",
        "XOR-RELAYED-ADDRESS": "xor-address",
        "CHANGE-REQUEST": "unsigned",
        "LIFETIME": "unsigned",
        "REQUESTED-TRANSPORT": "unsigned",
        "PRIORITY": "unsigned",
        "CONNECTION-ID": "unsigned",
        "CACHE-TIMEOUT": "unsigned",
        "ICE-CONTROLLED": "unsigned-64",
        "ICE-CONTROLLING": "unsigned-64",
        "CHANNEL-NUMBER": "unsigned-short",
        "RESPONSE-PORT": "unsigned-short",
        "REQUESTED-ADDRESS-FAMILY": "family",
        "ADDITIONAL-ADDRESS-FAMILY": "family",
        "DATA": "bytes",
        "NONCE": "bytes",
        "ACCESS-TOKEN": "bytes",
        "PADDING": "bytes",
        "USERNAME": "string",
        "REALM": "string",
        "ALTERNATE-DOMAIN": "string",
        "SOFTWARE": "string",
        "DONT-FRAGMENT": "none",
        "USE-CANDIDATE": "none",
        "EVEN-PORT": "even-port",
        "ERROR-CODE": "error-code",
        "ADDRESS-ERROR-CODE": "address-error-code",
        "UNKNOWN-ATTRIBUTES": "unknown-attributes",
        "PASSWORD-ALGORITHM": "password-algorithm",
        "PASSWORD-ALGORITHMS": "password-algorithms",
        "ICMP": "icmp",
        "USERHASH": "userhash",
        "RESERVATION-TOKEN": "reservation-token",
    }
    names = list(kinds)
    rng.shuffle(names)
    message = Message(
        rng.choice(list(Method)),
        rng.choice(list(Class)),
        rng.randbytes(12),
        {name: values[kinds[name]] for name in names[: rng.randrange(4, len(names) + 1)]},
    )
    if rng.random() < 0.7:
        message.add_message_integrity(b"key")
    if rng.random() < 0.3:
        message.add_message_integrity_sha256(b"key")
    message.add_fingerprint()
    return bytes(message)


# -- mutators ---------------------------------------------------------------------------


def flip_bits(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(buf) * 8)
        buf[i // 8] ^= 1 << (i % 8)
    return buf


def change_bytes(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        buf[rng.randrange(len(buf))] = (
            rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        )
    return buf


def truncate(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    cut = rng.randrange(len(buf))
    if rng.random() < 0.5:
        cut &= ~3
    del buf[cut:]
    return fix_length(buf) if rng.random() < 0.7 else buf


def extend(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    n = rng.randrange(1, 24)
    buf += rng.randbytes(n + (-n % 4 if rng.random() < 0.8 else 0))
    return fix_length(buf) if rng.random() < 0.8 else buf


def edit_length_field(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    if len(buf) >= 4:
        current = (buf[2] << 8) | buf[3]
        new = rng.choice(
            [0, 4, rng.randrange(0x10000), current + 4, current - 4, current + 1, current - 1]
        )
        buf[2:4] = struct.pack("!H", new & 0xFFFF)
    return buf


def edit_attribute_length(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    offsets = tlv_offsets(buf)
    if offsets:
        pos = rng.choice(offsets)
        current = (buf[pos + 2] << 8) | buf[pos + 3]
        near = [current - 1, current + 1, current - 4, current + 4]
        new = rng.choice([0, 1, 2, 3, 4, 5, 8, 16, 20, 32, *near, rng.randrange(0x10000)])
        buf[pos + 2 : pos + 4] = struct.pack("!H", new & 0xFFFF)
    return buf


def edit_attribute_type(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    # Feed an attribute's value to another decoder: the most effective deep mutation.
    offsets = tlv_offsets(buf)
    if offsets:
        pos = rng.choice(offsets)
        new = rng.choice(KNOWN_TYPES) if rng.random() < 0.85 else rng.choice(OTHER_TYPES)
        buf[pos : pos + 2] = struct.pack("!H", new)
    return buf


def insert_tlv(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    offsets = [*tlv_offsets(buf), len(buf)]
    pos = rng.choice(offsets)
    buf[pos:pos] = random_tlv(rng)
    return fix_length(buf)


def delete_tlv(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    offsets = tlv_offsets(buf)
    if offsets:
        i = rng.randrange(len(offsets))
        end = offsets[i + 1] if i + 1 < len(offsets) else len(buf)
        del buf[offsets[i] : end]
    return fix_length(buf)


def splice(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    # Attributes of this message up to some point, then those of another one.
    other = rng.choice(seeds)
    mine = [*tlv_offsets(buf), len(buf)]
    theirs = [*tlv_offsets(other), len(other)]
    out = buf[: rng.choice(mine)] + other[rng.choice(theirs) :]
    return fix_length(out)


def edit_header(rng: random.Random, buf: bytearray, seeds: list[bytes]) -> bytearray:
    if len(buf) >= 8:
        field = rng.randrange(3)
        if field == 0:
            buf[0:2] = struct.pack("!H", rng.randrange(0x10000) if rng.random() < 0.5 else 0)
        elif field == 1:
            buf[0:2] = struct.pack("!H", rng.choice(MESSAGE_TYPES) ^ (1 << rng.randrange(16)))
        else:
            buf[4 + rng.randrange(4)] ^= 1 << rng.randrange(8)
    return buf


MUTATORS: list[Mutator] = [
    flip_bits,
    change_bytes,
    truncate,
    extend,
    edit_length_field,
    edit_attribute_length,
    edit_attribute_type,
    edit_attribute_type,
    insert_tlv,
    delete_tlv,
    splice,
    edit_header,
]


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        if not buf:
            break
        buf = rng.choice(MUTATORS)(rng, buf, seeds)
    if rng.random() < 0.5:
        refresh_fingerprint(buf)
    return bytes(buf)


def generate(rng: random.Random, seeds: list[bytes]) -> bytes:
    r = rng.random()
    if r < 0.65:
        return mutate(rng, rng.choice(seeds), seeds)
    if r < 0.92:
        data = bytes(random_message(rng))
        return mutate(rng, data, seeds) if rng.random() < 0.3 else data
    if r < 0.97:
        return rng.randbytes(rng.randrange(48))
    # Random bytes after a valid header and cookie.
    n = rng.randrange(0, 64, 4)
    return (
        struct.pack("!HHI", rng.choice(MESSAGE_TYPES), n, COOKIE)
        + rng.randbytes(12)
        + rng.randbytes(n)
    )


def build_seeds(rng: random.Random) -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted(DATA.glob("*.bin"))]
    assert len(seeds) >= 9, "the sample messages in tests/stun/data are missing"
    seeds += [every_attribute_message(rng) for _ in range(40)]
    return seeds


# -- the test ---------------------------------------------------------------------------


def test_parse_message_raises_only_stun_parse_error() -> None:
    rng = random.Random(SEED)
    seeds = build_seeds(rng)
    for seed in seeds:
        parse_message(seed)  # every seed is valid

    parsed = failed = signed = 0
    errors: Counter[str] = Counter()
    attributes_seen: Counter[str] = Counter()
    start = time.process_time()
    for _ in range(N_INPUTS):
        data = generate(rng, seeds)
        try:
            message = parse_message(data)
        except StunParseError as exc:
            failed += 1
            errors[str(exc)] += 1
            continue
        except Exception as exc:  # pragma: no cover - this is the failure being hunted
            pytest.fail(f"parse_message({data.hex()!r}) raised {exc!r}")
        parsed += 1
        attributes_seen.update(message.attributes.keys())
        try:
            assert message.check_message_integrity(b"key") in (True, False)
            if message.check_message_integrity(b"key"):
                signed += 1
            encoded = bytes(message)
            # What the parser accepted re-encodes into a message it reads back the same
            # (without FINGERPRINT, which no longer matches if a value was normalized:
            # zero padding, a flag's ignored value...).
            message.attributes.pop("FINGERPRINT", None)
            again = parse_message(bytes(message))
        except Exception as exc:  # pragma: no cover - this is the failure being hunted
            pytest.fail(f"parsed {data.hex()!r} but re-encoding raised {exc!r}")
        assert again == message, data.hex()
        assert encoded[:20] == data[:2] + encoded[2:4] + data[4:20]
    elapsed = time.process_time() - start

    total = parsed + failed
    print(
        f"\nfuzz: {total} inputs, {parsed} parsed ({signed} with valid integrity for b'key'), "
        f"{failed} StunParseError ({len(errors)} distinct messages), {elapsed:.1f} s CPU"
    )
    assert total >= 100_000
    assert parsed > 0
    assert failed > 0
    assert signed > 0
    # The inputs reach the attribute decoders, not only the header checks.
    deep = {
        "STUN attribute length exceeds the message",
        "STUN message fingerprint does not match",
        "STUN FINGERPRINT is malformed or not last",
        "STUN address has invalid length for IPv4",
        "STUN address has invalid length for IPv6",
        "STUN address has unknown protocol",
        "STUN string attribute is not valid UTF-8",
        "STUN error code is less than 4 bytes",
        "STUN UNKNOWN-ATTRIBUTES has an odd length",
        "STUN EVEN-PORT must be 1 byte",
        "STUN MESSAGE-INTEGRITY has invalid length 16",
        "STUN 32-bit attribute must be 4 bytes, got 8",
        "STUN 64-bit attribute must be 8 bytes, got 4",
        "STUN USERHASH must be 32 bytes, got 20",
    }
    assert deep <= set(errors), sorted(deep - set(errors))
    # And most registered attributes were decoded successfully at least once.
    assert len(attributes_seen) >= len(ATTRIBUTES) - 2, sorted(
        {spec.name for spec in ATTRIBUTES} - set(attributes_seen)
    )
    assert elapsed < TIME_BUDGET
