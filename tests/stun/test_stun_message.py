"""The STUN message codec: parse errors, attribute semantics, encoding and integrity."""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.stun import (
    COOKIE,
    Class,
    Message,
    Method,
    StunError,
    StunParseError,
    TransactionFailed,
    TransactionTimeout,
    message_fingerprint,
    pack_address,
    pack_xor_address,
    parse_message,
    random_transaction_id,
    unpack_address,
    unpack_error_code,
    unpack_xor_address,
)
from aioice.stun.message import message_integrity_sha256


@contextlib.contextmanager
def raises(exc_type: type[Exception], message: str) -> Iterator[None]:
    """Like ``pytest.raises``, for an exact message."""
    with pytest.raises(exc_type) as info:
        yield
    assert str(info.value) == message


TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def header(length: int, message_type: int = 0x0001, cookie: int = COOKIE) -> bytes:
    return struct.pack("!HHI", message_type, length, cookie) + TID


def tlv(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def message_bytes(*tlvs: bytes, message_type: int = 0x0001) -> bytes:
    body = b"".join(tlvs)
    return header(len(body), message_type) + body


def fix_length(data: bytes, extra: int = 0) -> bytes:
    return data[:2] + struct.pack("!H", len(data) - 20 + extra) + data[4:]


def with_fingerprint(data: bytes) -> bytes:
    """``data`` with its length fixed and a valid FINGERPRINT appended."""
    data = fix_length(data, 8)
    return data + struct.pack("!HHI", 0x8028, 4, zlib.crc32(data) ^ 0x5354554E)


def parse_error(data: bytes) -> str:
    with pytest.raises(StunParseError) as info:
        parse_message(data)
    return str(info.value)


# -- header errors -----------------------------------------------------------------------


def test_parse_error_is_a_value_error() -> None:
    # aioice 0.x raised ValueError; existing ``except ValueError`` clauses keep working.
    assert issubclass(StunParseError, ValueError)
    assert issubclass(StunParseError, StunError)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "STUN message length is less than 20 bytes"),
        (b"123", "STUN message length is less than 20 bytes"),
        (header(0)[:19], "STUN message length is less than 20 bytes"),
        (header(0) + b"123", "STUN message length does not match"),
        (header(4), "STUN message length does not match"),
        (header(4) + bytes(8), "STUN message length does not match"),
        (header(0, message_type=0x4001), "STUN message type has its top two bits set"),
        (header(0, message_type=0x8001), "STUN message type has its top two bits set"),
        (header(0, cookie=0x2112A443), "STUN message has no magic cookie"),
        (bytes(20), "STUN message has no magic cookie"),
        (header(3) + b"abc", "STUN message length is not a multiple of 4"),
        (header(0, message_type=0x0000), "STUN message has unknown method 0x000"),
        (header(0, message_type=0x0005), "STUN message has unknown method 0x005"),
        (header(0, message_type=0x0115), "STUN message has unknown method 0x005"),
        (header(0, message_type=0x000D), "STUN message has unknown method 0x00D"),
        (header(0, message_type=0x0021), "STUN message has unknown method 0x021"),
        (header(0, message_type=0x3EEF), "STUN message has unknown method 0x3EEF"),
    ],
)
def test_header_errors(data: bytes, error: str) -> None:
    assert parse_error(data) == error


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("message_class", list(Class))
def test_every_method_and_class(method: Method, message_class: Class) -> None:
    message = parse_message(header(0, message_type=method | message_class))
    assert message.message_method is method
    assert message.message_class is message_class
    assert message.transaction_id == TID
    assert message.attributes == {}
    assert bytes(message) == header(0, message_type=method | message_class)


def test_parse_accepts_bytes_like_and_rejects_str() -> None:
    data = header(0)
    # Typed ``bytes``, but like aioice 0.x it takes any bytes-like object.
    assert parse_message(bytearray(data)) == parse_message(data)  # type: ignore[arg-type]
    assert parse_message(memoryview(data)) == parse_message(data)  # type: ignore[arg-type]
    assert parse_error("not bytes") == "STUN message must be bytes"  # type: ignore[arg-type]


# -- attribute errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # A TLV whose value runs past the end: an inline kind, a decoded kind, an unknown one.
        (
            header(8) + struct.pack("!HH", 0x0006, 8) + b"abcd",
            "STUN attribute length exceeds the message",
        ),
        (
            header(8) + struct.pack("!HH", 0x0020, 8) + b"\x00\x01\x00\x00",
            "STUN attribute length exceeds the message",
        ),
        (
            header(4) + struct.pack("!HH", 0x0024, 4),
            "STUN attribute length exceeds the message",
        ),
        (
            header(8) + struct.pack("!HH", 0x7FFF, 5) + b"abcd",
            "STUN attribute length exceeds the message",
        ),
        (
            header(4) + struct.pack("!HH", 0x0013, 1),
            "STUN attribute length exceeds the message",
        ),
    ],
)
def test_attribute_exceeds_the_message(data: bytes, error: str) -> None:
    assert parse_error(data) == error


@pytest.mark.parametrize(
    ("attr_type", "value", "error"),
    [
        (0x0020, b"\x00\x01", "STUN address length is less than 4 bytes"),
        (0x0020, bytes.fromhex("0001a147e112a6"), "STUN address has invalid length for IPv4"),
        (0x0001, bytes.fromhex("0001a147e112a64300"), "STUN address has invalid length for IPv4"),
        (0x0001, bytes.fromhex("0001a147") + bytes(16), "STUN address has invalid length for IPv4"),
        (0x0020, bytes.fromhex("0002a147") + bytes(15), "STUN address has invalid length for IPv6"),
        (0x0020, bytes.fromhex("0002a147") + bytes(17), "STUN address has invalid length for IPv6"),
        (0x0001, bytes.fromhex("0003a147e112a643"), "STUN address has unknown protocol"),
        (0x0001, bytes.fromhex("0000a147e112a643"), "STUN address has unknown protocol"),
        (0x0024, b"\x00\x01\x02", "STUN 32-bit attribute must be 4 bytes, got 3"),
        (0x000D, bytes(8), "STUN 32-bit attribute must be 4 bytes, got 8"),
        (0x8029, bytes(4), "STUN 64-bit attribute must be 8 bytes, got 4"),
        (0x000C, bytes(2), "STUN 32-bit attribute must be 4 bytes, got 2"),
        (0x0017, bytes(8), "STUN 32-bit attribute must be 4 bytes, got 8"),
        (0x0006, b"\xff\xfe", "STUN string attribute is not valid UTF-8"),
        (0x0014, b"\xed\xa0\x80", "STUN string attribute is not valid UTF-8"),  # a surrogate
        (0x0018, b"", "STUN EVEN-PORT must be 1 byte"),
        (0x0018, b"\x80\x00", "STUN EVEN-PORT must be 1 byte"),
        (0x0009, b"\x00\x00\x04", "STUN error code is less than 4 bytes"),
        (0x0009, b"\x00\x00\x02\x00", "STUN error code class must be 3-6 and number 0-99"),
        (0x0009, b"\x00\x00\x07\x00", "STUN error code class must be 3-6 and number 0-99"),
        (0x0009, b"\x00\x00\x04\x64", "STUN error code class must be 3-6 and number 0-99"),
        (0x8001, b"\x01\x00\x04", "STUN address error code is less than 4 bytes"),
        (
            0x8001,
            b"\x01\x00\x01\x00",
            "STUN address error code class must be 3-6 and number 0-99",
        ),
        (0x000A, b"\x00\x01\x00", "STUN UNKNOWN-ATTRIBUTES has an odd length"),
        (0x001D, b"\x00\x02", "STUN password algorithm is truncated"),
        (0x001D, b"\x00\x02\x00\x04\x00", "STUN password algorithm parameters are truncated"),
        (0x001D, b"", "STUN PASSWORD-ALGORITHM must hold exactly one algorithm"),
        (
            0x001D,
            bytes.fromhex("0001000000020000"),
            "STUN PASSWORD-ALGORITHM must hold exactly one algorithm",
        ),
        (0x8002, b"\x00\x01\x00\x00\x00", "STUN password algorithm is truncated"),
        (0x8004, bytes(4), "STUN 64-bit attribute must be 8 bytes, got 4"),
        (0x0008, bytes(16), "STUN MESSAGE-INTEGRITY has invalid length 16"),
        (0x0008, bytes(32), "STUN MESSAGE-INTEGRITY has invalid length 32"),
        (0x001C, bytes(12), "STUN MESSAGE-INTEGRITY-SHA256 has invalid length 12"),
        (0x001C, bytes(18), "STUN MESSAGE-INTEGRITY-SHA256 has invalid length 18"),
        (0x001C, bytes(36), "STUN MESSAGE-INTEGRITY-SHA256 has invalid length 36"),
        (0x001E, bytes(31), "STUN USERHASH must be 32 bytes, got 31"),
        (0x0022, bytes(4), "STUN RESERVATION-TOKEN must be 8 bytes, got 4"),
    ],
)
def test_attribute_errors(attr_type: int, value: bytes, error: str) -> None:
    assert parse_error(message_bytes(tlv(attr_type, value))) == error


def test_unpack_address_errors() -> None:
    # The same checks as functions, as in aioice 0.x (which raised ValueError).
    with raises(ValueError, "STUN address length is less than 4 bytes"):
        unpack_xor_address(bytes.fromhex("0001"), TID)
    with raises(ValueError, "STUN address has invalid length for IPv4"):
        # 21 bytes: the IPv4 check comes before any XOR against the 16-byte pad.
        unpack_xor_address(bytes.fromhex("0001a147e112a643") + bytes(15), TID)
    with raises(ValueError, "STUN address has invalid length for IPv6"):
        unpack_xor_address(bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b900000000"), TID)
    with raises(ValueError, "STUN address has unknown protocol"):
        unpack_address(bytes.fromhex("0003a147e112a643"))
    with raises(ValueError, "STUN error code is less than 4 bytes"):
        unpack_error_code(bytes.fromhex("000004"))
    assert unpack_error_code(bytes.fromhex("00000457526f6c6520436f6e666c696374")) == (
        487,
        "Role Conflict",
    )
    # Reserved bits above the class are ignored (RFC 8489 §14.8).
    assert unpack_error_code(bytes.fromhex("fffffc1e")) == (430, "")
    # An invalid UTF-8 reason phrase is not fatal.
    assert unpack_error_code(bytes.fromhex("00000401ff")) == (401, "\ufffd")
    assert pack_address(("192.0.2.1", 32853)) == bytes.fromhex("00018055c0000201")
    assert unpack_address(bytes.fromhex("00018055c0000201")) == ("192.0.2.1", 32853)


# -- FINGERPRINT ------------------------------------------------------------------------------


def test_fingerprint_is_checked() -> None:
    data = with_fingerprint(message_bytes(tlv(0x0006, b"user")))
    assert parse_message(data).attributes["FINGERPRINT"] == struct.unpack("!I", data[-4:])[0]
    assert parse_error(data[:-1] + bytes([data[-1] ^ 1])) == (
        "STUN message fingerprint does not match"
    )
    # A change anywhere before it is detected too.
    assert data[24:28] == b"user"
    assert parse_error(data[:24] + b"X" + data[25:]) == "STUN message fingerprint does not match"


def test_fingerprint_must_be_last_and_4_bytes() -> None:
    fingerprinted = with_fingerprint(message_bytes(tlv(0x0006, b"user")))
    not_last = fix_length(fingerprinted + tlv(0x0025, b""))
    assert parse_error(not_last) == "STUN FINGERPRINT is malformed or not last"
    assert parse_error(message_bytes(tlv(0x8028, bytes(8)))) == (
        "STUN FINGERPRINT is malformed or not last"
    )
    assert parse_error(message_bytes(tlv(0x8028, b""))) == (
        "STUN FINGERPRINT is malformed or not last"
    )


def test_fingerprint_covers_attributes_after_message_integrity() -> None:
    # From aioice 0.13: an attribute appended after MESSAGE-INTEGRITY, with a FINGERPRINT
    # computed over everything, parses; the extra attribute is ignored.
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "foo:bar"})
    message.add_message_integrity(b"some-key")
    del message.attributes["FINGERPRINT"]  # added by add_message_integrity, as in aioice
    message.attributes["USE-CANDIDATE"] = None
    message.attributes["FINGERPRINT"] = message_fingerprint(bytes(message))
    parsed = parse_message(bytes(message))
    assert parsed.check_message_integrity(b"some-key")
    assert "USE-CANDIDATE" not in parsed.attributes
    assert "FINGERPRINT" in parsed.attributes


# -- unknown, ignored and repeated attributes ---------------------------------------------


def test_unknown_comprehension_required_attributes_are_listed() -> None:
    data = message_bytes(
        tlv(0x0007, b"old PASSWORD"),
        tlv(0x0006, b"user"),
        tlv(0x7FFF, b""),
        tlv(0x0007, b"again"),
    )
    message = parse_message(data)
    assert message.unknown_attributes == (0x0007, 0x7FFF, 0x0007)
    assert message.attributes == {"USERNAME": "user"}


def test_unknown_comprehension_optional_attributes_are_ignored() -> None:
    data = message_bytes(tlv(0xFFFF, b"x"), tlv(0xC057, b"\x00\x01\x00\x0a"))
    message = parse_message(data)
    assert message.unknown_attributes == ()
    assert message.attributes == {}


def test_attributes_after_message_integrity_are_ignored() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "user"})
    signed = message.encode(b"key", fingerprint=False)
    message.add_message_integrity(b"key")
    extra = tlv(0x0024, b"\x00\x00\x00\x01") + tlv(0x7FFF, b"") + tlv(0x0008, bytes(20))
    parsed = parse_message(with_fingerprint(signed + extra))
    # PRIORITY, the unknown 0x7FFF and a second MESSAGE-INTEGRITY are all skipped, and
    # the unknown one is not reported since it is not authenticated.
    assert parsed.attributes == {
        "USERNAME": "user",
        "MESSAGE-INTEGRITY": message.attributes["MESSAGE-INTEGRITY"],
        "FINGERPRINT": parsed.attributes["FINGERPRINT"],
    }
    assert parsed.unknown_attributes == ()
    assert parsed.duplicates == ()
    assert parsed.check_message_integrity(b"key")


def test_message_integrity_sha256_may_follow_message_integrity() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "user"})
    message.add_message_integrity(b"key")
    message.add_message_integrity_sha256(b"key")
    message.add_fingerprint()
    assert list(message.attributes) == [
        "USERNAME",
        "MESSAGE-INTEGRITY",
        "MESSAGE-INTEGRITY-SHA256",
        "FINGERPRINT",
    ]
    parsed = parse_message(bytes(message))
    assert parsed == message
    assert parsed.check_message_integrity(b"key")  # checks the SHA-256 one
    assert not parsed.check_message_integrity(b"other")

    # A second MESSAGE-INTEGRITY-SHA256 is not authenticated and is ignored.
    parsed = parse_message(with_fingerprint(bytes(message)[:-8] + tlv(0x001C, bytes(32))))
    assert (
        parsed.attributes["MESSAGE-INTEGRITY-SHA256"]
        == message.attributes["MESSAGE-INTEGRITY-SHA256"]
    )
    assert parsed.duplicates == ()


def test_sha256_integrity_is_checked_when_present() -> None:
    # When both are present, MESSAGE-INTEGRITY-SHA256 decides (RFC 8489 §9.1.4).
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "user"})
    message.add_message_integrity(b"sha1-key")
    message.add_message_integrity_sha256(b"sha256-key")
    parsed = parse_message(bytes(message))
    assert parsed.check_message_integrity(b"sha256-key")
    assert not parsed.check_message_integrity(b"sha1-key")


def test_truncated_message_integrity_sha256() -> None:
    # RFC 8489 §14.6: the HMAC may be truncated to 16..32 bytes, a multiple of 4; the
    # header length then counts the truncated attribute.
    for length in (16, 20, 24, 28, 32):
        body = tlv(0x0006, b"user")
        data = header(len(body)) + body
        mac = message_integrity_sha256(data, b"key", length)
        assert len(mac) == length
        signed = data + tlv(0x001C, mac)
        signed = signed[:2] + struct.pack("!H", len(signed) - 20) + signed[4:]
        parsed = parse_message(signed)
        assert parsed.attributes["MESSAGE-INTEGRITY-SHA256"] == mac
        assert parsed.check_message_integrity(b"key")
        assert not parsed.check_message_integrity(b"kez")


def test_duplicates() -> None:
    data = message_bytes(
        tlv(0x0006, b"first"),
        tlv(0x0024, b"\x00\x00\x00\x01"),
        tlv(0x0006, b"second"),
        tlv(0x0006, b"third"),
    )
    message = parse_message(data)
    assert message.attributes == {"USERNAME": "first", "PRIORITY": 1}
    assert message.duplicates == (("USERNAME", "second"), ("USERNAME", "third"))
    assert message.get_all("USERNAME") == ["first", "second", "third"]
    assert message.get_all("PRIORITY") == [1]
    assert message.get_all("SOFTWARE") == []


def test_repeated_xor_peer_address_from_a_list() -> None:
    peers = [("192.0.2.1", 1), ("2001:db8::1", 2), ("198.51.100.7", 65535)]
    message = Message(Method.CREATE_PERMISSION, Class.REQUEST, TID, {"XOR-PEER-ADDRESS": peers})
    data = bytes(message)
    # Three TLVs of type 0x0012, each XOR'd on its own.
    assert data[20:32] == tlv(0x0012, pack_xor_address(peers[0], TID))
    assert data.count(b"\x00\x12\x00") == 3
    parsed = parse_message(data)
    assert parsed.attributes == {"XOR-PEER-ADDRESS": peers[0]}
    assert parsed.duplicates == (("XOR-PEER-ADDRESS", peers[1]), ("XOR-PEER-ADDRESS", peers[2]))
    assert parsed.get_all("XOR-PEER-ADDRESS") == peers
    # XOR-RELAYED-ADDRESS repeats the same way (a dual allocation), and one address works.
    relayed = [("192.0.2.15", 50000), ("2001:db8::15", 50000)]
    message = Message(Method.ALLOCATE, Class.RESPONSE, TID, {"XOR-RELAYED-ADDRESS": relayed})
    assert parse_message(bytes(message)).get_all("XOR-RELAYED-ADDRESS") == relayed
    single = Message(Method.SEND, Class.INDICATION, TID, {"XOR-PEER-ADDRESS": peers[0]})
    assert parse_message(bytes(single)).get_all("XOR-PEER-ADDRESS") == [peers[0]]


def test_flag_values_are_ignored() -> None:
    # USE-CANDIDATE and DONT-FRAGMENT have no value; one sent anyway is skipped.
    message = parse_message(message_bytes(tlv(0x0025, b"junk"), tlv(0x001A, b"")))
    assert message.attributes == {"USE-CANDIDATE": None, "DONT-FRAGMENT": None}
    assert bytes(message) == message_bytes(tlv(0x0025, b""), tlv(0x001A, b""))


def test_padding_bytes_are_not_checked() -> None:
    message = parse_message(header(8) + struct.pack("!HH", 0x0006, 1) + b"a\xff\xff\xff")
    assert message.attributes == {"USERNAME": "a"}
    assert bytes(message) == message_bytes(tlv(0x0006, b"a"))


# -- encoding ------------------------------------------------------------------------------


def test_encode_every_value_kind() -> None:
    attributes: dict[str, Any] = {
        "MAPPED-ADDRESS": ("192.0.2.1", 32853),
        "CHANNEL-NUMBER": 0x4001,
        "REQUESTED-ADDRESS-FAMILY": 0x02,
        "EVEN-PORT": True,
        "ERROR-CODE": (420, "Unknown Attribute"),
        "UNKNOWN-ATTRIBUTES": (0x0007, 0x7FFF),
        "PASSWORD-ALGORITHMS": ((2, b""), (1, b"abc")),
        "ICMP": (3, 13, 7),
        "ADDRESS-ERROR-CODE": (2, 440, "Address Family not Supported"),
    }
    data = bytes(Message(Method.ALLOCATE, Class.ERROR, TID, attributes))
    assert data[20:] == b"".join(
        [
            tlv(0x0001, bytes.fromhex("00018055c0000201")),
            tlv(0x000C, bytes.fromhex("40010000")),
            tlv(0x0017, bytes.fromhex("02000000")),
            tlv(0x0018, b"\x80"),
            tlv(0x0009, b"\x00\x00\x04\x14Unknown Attribute"),
            tlv(0x000A, bytes.fromhex("00077fff")),
            tlv(0x8002, bytes.fromhex("00020000") + bytes.fromhex("0001000361626300")),
            tlv(0x8004, bytes.fromhex("0000030d00000007")),
            tlv(0x8001, b"\x02\x00\x04\x28Address Family not Supported"),
        ]
    )
    assert parse_message(data).attributes == attributes


def test_encode_errors() -> None:
    def encode(attributes: dict[str, Any]) -> bytes:
        return bytes(Message(Method.BINDING, Class.REQUEST, TID, attributes))

    with raises(ValueError, "unknown STUN attribute 'FOO'"):
        encode({"USERNAME": "u", "FOO": 1})
    with raises(ValueError, "not an IP address: 'foo'"):
        encode({"XOR-MAPPED-ADDRESS": ("foo", 1)})
    with raises(ValueError, "not an IP address: '1.2.3'"):
        encode({"MAPPED-ADDRESS": ("1.2.3", 1)})
    with raises(ValueError, "not an IP address: '::g'"):
        encode({"XOR-PEER-ADDRESS": [("192.0.2.1", 1), ("::g", 2)]})
    for name in ("MAPPED-ADDRESS", "XOR-MAPPED-ADDRESS", "XOR-PEER-ADDRESS"):
        # Not a string at all: a ValueError too (whose wording depends on the encoder path).
        for host in (12, None, b"192.0.2.1"):
            with pytest.raises(ValueError, match=r"^(not an IP address|invalid value for STUN)"):
                encode({name: (host, 1)})
        with raises(ValueError, "not an IP address: '192.0.2.256'"):
            encode({name: ("192.0.2.256", 1)})
        with raises(ValueError, "not an IP address: ''"):
            encode({name: ("", 1)})
    with raises(ValueError, "not a port number: 65536"):
        encode({"MAPPED-ADDRESS": ("192.0.2.1", 65536)})
    with raises(ValueError, "not a port number: -1"):
        encode({"XOR-MAPPED-ADDRESS": ("192.0.2.1", -1)})
    with raises(ValueError, "STUN error code must be in 300-699: 200"):
        encode({"ERROR-CODE": (200, "OK")})
    with raises(ValueError, "STUN error code must be in 300-699: 700"):
        encode({"ERROR-CODE": (700, "")})
    with raises(ValueError, "STUN address error code must be in 300-699: 99"):
        encode({"ADDRESS-ERROR-CODE": (1, 99, "")})
    with raises(ValueError, "not an IP address: 'foo'"):
        pack_xor_address(("foo", 32853), TID)


def test_encoding_is_cached_but_follows_changes() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "a"})
    message.add_fingerprint()
    first = bytes(message)
    assert bytes(message) == first
    message.attributes["USERNAME"] = "b"
    assert b"b" in bytes(message)[20:28]
    assert parse_error(bytes(message)) == "STUN message fingerprint does not match"
    message.add_fingerprint()
    assert parse_message(bytes(message)).attributes["USERNAME"] == "b"


def test_transaction_ids() -> None:
    assert len(random_transaction_id()) == 12
    assert random_transaction_id() != random_transaction_id()
    a = Message(Method.BINDING, Class.REQUEST)
    b = Message(Method.BINDING, Class.REQUEST)
    assert len(a.transaction_id) == 12
    assert a.transaction_id != b.transaction_id
    assert a != b


# -- integrity --------------------------------------------------------------------------------


def test_check_message_integrity() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "foo:bar"})
    # Without MESSAGE-INTEGRITY the check fails, before and after the wire.
    assert not message.check_message_integrity(b"some-key")
    assert not parse_message(bytes(message)).check_message_integrity(b"some-key")
    message.add_message_integrity(b"some-key")
    assert message.check_message_integrity(b"some-key")
    assert not message.check_message_integrity(b"other-key")
    message.add_fingerprint()
    assert message.check_message_integrity(b"some-key")
    parsed = parse_message(bytes(message))
    assert parsed.check_message_integrity(b"some-key")
    assert not parsed.check_message_integrity(b"other-key")
    # A tampered-with attribute (FINGERPRINT recomputed) fails the check.
    data = bytes(message)
    assert data[24:25] == b"f"
    tampered = parse_message(with_fingerprint(data[:24] + b"g" + data[25:-8]))
    assert tampered.attributes["USERNAME"] == "goo:bar"
    assert not tampered.check_message_integrity(b"some-key")


def test_add_message_integrity_replaces_previous_integrity() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "u"})
    message.add_message_integrity(b"a")
    message.add_message_integrity_sha256(b"a")
    message.add_fingerprint()
    # Signing again (a new nonce, another key) starts over: one MESSAGE-INTEGRITY and
    # no stale MESSAGE-INTEGRITY-SHA256 or FINGERPRINT.
    message.add_message_integrity(b"b")
    assert list(message.attributes) == ["USERNAME", "MESSAGE-INTEGRITY", "FINGERPRINT"]
    assert message.check_message_integrity(b"b")
    assert not message.check_message_integrity(b"a")
    parsed = parse_message(bytes(message))
    assert parsed.check_message_integrity(b"b")
    # The same on a parsed message.
    parsed.add_message_integrity(b"c")
    assert parsed.check_message_integrity(b"c")
    assert parse_message(bytes(parsed)).check_message_integrity(b"c")


def test_add_message_integrity_sha256_keeps_message_integrity() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "u"})
    message.add_message_integrity(b"a")
    message.add_fingerprint()
    message.add_message_integrity_sha256(b"b")
    assert list(message.attributes) == [
        "USERNAME",
        "MESSAGE-INTEGRITY",
        "MESSAGE-INTEGRITY-SHA256",
        "FINGERPRINT",
    ]
    assert len(message.attributes["MESSAGE-INTEGRITY-SHA256"]) == 32
    assert message.check_message_integrity(b"b")


# -- repr, error_code, exceptions ---------------------------------------------------------


def test_repr() -> None:
    message = Message(Method.BINDING, Class.REQUEST, b"Nvfx3lU7FUBF")
    assert repr(message) == (
        "Message(message_method=Method.BINDING, message_class=Class.REQUEST, "
        "transaction_id=4e766678336c553746554246, attributes={})"
    )
    message = Message(
        Method.CREATE_PERMISSION,
        Class.ERROR,
        b"Nvfx3lU7FUBF",
        {"ERROR-CODE": (403, "Forbidden"), "PRIORITY": 1},
    )
    assert repr(message) == (
        "Message(message_method=Method.CREATE_PERMISSION, message_class=Class.ERROR, "
        "transaction_id=4e766678336c553746554246, "
        "attributes={'ERROR-CODE': (403, 'Forbidden'), 'PRIORITY': 1})"
    )


def test_error_code() -> None:
    assert Message(Method.BINDING, Class.ERROR, TID).error_code is None
    message = Message(Method.BINDING, Class.ERROR, TID, {"ERROR-CODE": (487, "Role Conflict")})
    assert message.error_code == 487
    assert parse_message(bytes(message)).error_code == 487


def test_message_equality() -> None:
    a = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "u"})
    assert a == Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "u"})
    assert a != Message(Method.BINDING, Class.RESPONSE, TID, {"USERNAME": "u"})
    assert a != Message(Method.ALLOCATE, Class.REQUEST, TID, {"USERNAME": "u"})
    assert a != Message(Method.BINDING, Class.REQUEST, bytes(12), {"USERNAME": "u"})
    assert a != Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "v"})
    assert a != "a message"
    with pytest.raises(TypeError):
        hash(a)


def test_transaction_failed_str() -> None:
    response = Message(Method.BINDING, Class.ERROR, TID, {"ERROR-CODE": (487, "Role Conflict")})
    error = TransactionFailed(response)
    assert str(error) == "STUN transaction failed (487 - Role Conflict)"
    assert error.response is response
    assert str(TransactionFailed(Message(Method.BINDING, Class.ERROR, TID))) == (
        "STUN transaction failed"
    )
    assert str(TransactionTimeout()) == "STUN transaction timed out"
    assert TransactionTimeout().response is None
