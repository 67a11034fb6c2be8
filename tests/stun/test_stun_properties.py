"""Property tests: every registered attribute survives encoding and parsing.

``VALUES`` holds a strategy of valid values for every attribute name in
:data:`aioice.stun.ATTRIBUTES`, and :func:`test_every_attribute_has_a_strategy` fails
when an attribute is added to the registry without one.

Values are drawn in the form the parser returns them (addresses as ``inet_ntop``
writes them, tuples rather than lists), since the property is
``parse_message(bytes(m)) == m``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.stun import (
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    Class,
    Message,
    Method,
    StunParseError,
    message_fingerprint,
    parse_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@contextlib.contextmanager
def raises(exc_type: type[Exception], message: str) -> Iterator[None]:
    """Like ``pytest.raises``, for an exact message."""
    with pytest.raises(exc_type) as info:
        yield
    assert str(info.value) == message


U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
IPV4 = st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
IPV6 = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
ADDRESS = st.tuples(st.one_of(IPV4, IPV6), U16)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
OPAQUE = st.binary(max_size=64)
FLAG = st.none()
ERROR_CODE = st.integers(300, 699)
ALGORITHM = st.tuples(U16, st.binary(max_size=12))

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "MAPPED-ADDRESS": ADDRESS,
    "RESPONSE-ADDRESS": ADDRESS,
    "CHANGE-REQUEST": U32,
    "SOURCE-ADDRESS": ADDRESS,
    "CHANGED-ADDRESS": ADDRESS,
    "USERNAME": TEXT,
    "MESSAGE-INTEGRITY": st.binary(min_size=20, max_size=20),
    "ERROR-CODE": st.tuples(ERROR_CODE, TEXT),
    "UNKNOWN-ATTRIBUTES": st.lists(U16, max_size=8).map(tuple),
    "CHANNEL-NUMBER": U16,
    "LIFETIME": U32,
    "XOR-PEER-ADDRESS": ADDRESS,  # a list of them: see test_repeated_xor_addresses
    "DATA": OPAQUE,
    "REALM": TEXT,
    "NONCE": OPAQUE,
    "XOR-RELAYED-ADDRESS": ADDRESS,
    "REQUESTED-ADDRESS-FAMILY": U8,
    "EVEN-PORT": st.booleans(),
    "REQUESTED-TRANSPORT": U32,
    "DONT-FRAGMENT": FLAG,
    "ACCESS-TOKEN": OPAQUE,
    "MESSAGE-INTEGRITY-SHA256": st.sampled_from([16, 20, 24, 28, 32]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
    "PASSWORD-ALGORITHM": ALGORITHM,
    "USERHASH": st.binary(min_size=32, max_size=32),
    "XOR-MAPPED-ADDRESS": ADDRESS,
    "RESERVATION-TOKEN": st.binary(min_size=8, max_size=8),
    "PRIORITY": U32,
    "USE-CANDIDATE": FLAG,
    "PADDING": OPAQUE,
    "RESPONSE-PORT": U16,
    "CONNECTION-ID": U32,
    "ADDITIONAL-ADDRESS-FAMILY": U8,
    "ADDRESS-ERROR-CODE": st.tuples(U8, ERROR_CODE, TEXT),
    "PASSWORD-ALGORITHMS": st.lists(ALGORITHM, max_size=4).map(tuple),
    "ALTERNATE-DOMAIN": TEXT,
    "ICMP": st.tuples(U8, U8, U32),
    "SOFTWARE": TEXT,
    "ALTERNATE-SERVER": ADDRESS,
    "CACHE-TIMEOUT": U32,
    "FINGERPRINT": U32,
    "ICE-CONTROLLED": U64,
    "ICE-CONTROLLING": U64,
    "RESPONSE-ORIGIN": ADDRESS,
    "OTHER-ADDRESS": ADDRESS,
}

#: Attributes with a place in the message: MESSAGE-INTEGRITY(-SHA256) end what the
#: parser reads (§14.5, §14.6) and FINGERPRINT must be last and match (§14.7).
SPECIAL = ("MESSAGE-INTEGRITY", "MESSAGE-INTEGRITY-SHA256", "FINGERPRINT")
ORDINARY = sorted(set(VALUES) - set(SPECIAL))

METHODS = st.sampled_from(list(Method))
CLASSES = st.sampled_from(list(Class))
TRANSACTION_IDS = st.binary(min_size=12, max_size=12)
KEYS = st.binary(min_size=1, max_size=100)


@st.composite
def messages(draw: st.DrawFn, max_attributes: int = 12) -> Message:
    names = draw(st.lists(st.sampled_from(ORDINARY), unique=True, max_size=max_attributes))
    return Message(
        draw(METHODS),
        draw(CLASSES),
        draw(TRANSACTION_IDS),
        {name: draw(VALUES[name]) for name in names},
    )


def test_every_attribute_has_a_strategy() -> None:
    assert set(VALUES) == {spec.name for spec in ATTRIBUTES}
    assert len(ATTRIBUTES) == len(ATTRIBUTES_BY_NAME)


@pytest.mark.parametrize("name", [spec.name for spec in ATTRIBUTES])
@settings(max_examples=60)
@given(data=st.data())
def test_attribute_round_trip(name: str, data: st.DataObject) -> None:
    value = data.draw(VALUES[name], label=name)
    message = Message(
        data.draw(METHODS), data.draw(CLASSES), data.draw(TRANSACTION_IDS), {name: value}
    )
    encoded = bytes(message)
    assert len(encoded) % 4 == 0
    assert struct.unpack_from("!H", encoded, 20)[0] == ATTRIBUTES_BY_NAME[name].type
    if name == "FINGERPRINT":
        # Only the right CRC parses; add_fingerprint() computes it.
        expected = message_fingerprint(encoded[:20])
        if value != expected:
            with raises(StunParseError, "STUN message fingerprint does not match"):
                parse_message(encoded)
        message.add_fingerprint()
        assert message.attributes["FINGERPRINT"] == expected
        encoded = bytes(message)
    parsed = parse_message(encoded)
    assert parsed == message
    assert parsed.attributes[name] == message.attributes[name]
    assert bytes(parsed) == encoded


@settings(max_examples=300)
@given(message=messages())
def test_message_round_trip(message: Message) -> None:
    encoded = bytes(message)
    parsed = parse_message(encoded)
    assert parsed == message
    assert list(parsed.attributes) == list(message.attributes)
    assert parsed.unknown_attributes == ()
    assert parsed.duplicates == ()
    assert bytes(parsed) == encoded
    assert not parsed.check_message_integrity(b"key")


def other_key(key: bytes) -> bytes:
    # Not key + b"\x00": HMAC pads short keys with zeros, so that is the same key.
    return bytes([key[0] ^ 0x01]) + key[1:]


@settings(max_examples=200)
@given(message=messages(), key=KEYS, fingerprint=st.booleans(), bit=st.integers(0, 2**20))
def test_signed_message_round_trip(
    message: Message, key: bytes, fingerprint: bool, bit: int
) -> None:
    message.add_message_integrity(key)
    if fingerprint:
        message.add_fingerprint()
    assert message.check_message_integrity(key)
    encoded = bytes(message)
    parsed = parse_message(encoded)
    assert parsed == message
    assert parsed.check_message_integrity(key)
    assert not parsed.check_message_integrity(other_key(key))
    assert bytes(parsed) == encoded
    # Any flipped bit in what MESSAGE-INTEGRITY covers (all but the header length field)
    # breaks the integrity, or the parse.
    signed = [i for i in range(len(encoded) - 24 - (8 if fingerprint else 0)) if i not in (2, 3)]
    position = signed[(bit >> 3) % len(signed)]
    tampered = bytearray(encoded)
    tampered[position] ^= 1 << (bit & 7)
    if fingerprint:
        # Keep the fingerprint right so that the integrity check is what fails.
        tampered[-4:] = struct.pack("!I", message_fingerprint(bytes(tampered[:-8])))
    with contextlib.suppress(StunParseError):
        assert not parse_message(bytes(tampered)).check_message_integrity(key)


@settings(max_examples=200)
@given(message=messages(), key=KEYS, sha1=st.booleans())
def test_sha256_signed_message_round_trip(message: Message, key: bytes, sha1: bool) -> None:
    if sha1:
        message.add_message_integrity(key)
    message.add_message_integrity_sha256(key)
    message.add_fingerprint()
    parsed = parse_message(bytes(message))
    assert parsed == message
    assert parsed.check_message_integrity(key)
    assert not parsed.check_message_integrity(other_key(key))


@settings(max_examples=100)
@given(message=messages(max_attributes=6), extra=messages(max_attributes=6), key=KEYS)
def test_attributes_after_integrity_are_dropped(
    message: Message, extra: Message, key: bytes
) -> None:
    message.add_message_integrity(key)
    signed = dict(message.attributes)
    for name, value in extra.attributes.items():
        message.attributes.setdefault(name, value)
    message.add_fingerprint()  # over everything, the unsigned tail included
    parsed = parse_message(bytes(message))
    assert parsed.attributes == {**signed, "FINGERPRINT": message.attributes["FINGERPRINT"]}
    assert parsed.check_message_integrity(key)


@settings(max_examples=100)
@given(
    name=st.sampled_from(["XOR-PEER-ADDRESS", "XOR-RELAYED-ADDRESS"]),
    addresses=st.lists(ADDRESS, min_size=1, max_size=6),
    transaction_id=TRANSACTION_IDS,
)
def test_repeated_xor_addresses(
    name: str, addresses: list[tuple[str, int]], transaction_id: bytes
) -> None:
    message = Message(Method.CREATE_PERMISSION, Class.REQUEST, transaction_id, {name: addresses})
    parsed = parse_message(bytes(message))
    assert parsed.get_all(name) == addresses
    assert parsed.attributes[name] == addresses[0]
    assert parsed.duplicates == tuple((name, a) for a in addresses[1:])


@settings(max_examples=100)
@given(
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=U16,
    transaction_id=TRANSACTION_IDS,
)
def test_any_address_spelling(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, transaction_id: bytes
) -> None:
    # Any spelling of an address (exploded, upper case, IPv4-mapped) comes back as the
    # same address, in inet_ntop's spelling.
    spelling = address.exploded.upper()
    message = Message(
        Method.BINDING,
        Class.RESPONSE,
        transaction_id,
        {"XOR-MAPPED-ADDRESS": (spelling, port), "MAPPED-ADDRESS": (spelling, port)},
    )
    parsed = parse_message(bytes(message))
    for name in ("XOR-MAPPED-ADDRESS", "MAPPED-ADDRESS"):
        host, parsed_port = parsed.attributes[name]
        assert ipaddress.ip_address(host) == address
        assert parsed_port == port
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        assert host == socket.inet_ntop(family, address.packed)
