"""Published test vectors: RFC 5769 (all four) and RFC 8489 Appendix B.1, plus real captures.

The hex below is copied from the RFC text. ``tests/stun/data/rfc*.bin`` hold the same
bytes for the fuzz test, and :func:`test_data_files_hold_the_vectors` keeps them equal.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice.stun import (
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    SecurityFeature,
    StunParseError,
    long_term_key,
    message_fingerprint,
    message_integrity,
    nonce_security_features,
    opaque_string,
    pack_xor_address,
    parse_message,
    unpack_xor_address,
    userhash,
)
from aioice.stun.digest import hmac_sha256


@contextlib.contextmanager
def raises(exc_type: type[Exception], message: str) -> Iterator[None]:
    """Like ``pytest.raises``, for an exact message."""
    with pytest.raises(exc_type) as info:
        yield
    assert str(info.value) == message


DATA = Path(__file__).parent / "data"


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- RFC 5769 -------------------------------------------------------------------------

SHORT_TERM_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
TRANSACTION_ID = unhex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")

# §2.1 Sample Request. Note the USERNAME "evtj:h6vY" (9 bytes) is padded with three
# SPACEs (0x20), which RFC 5389 allowed; our encoder pads with zeros (RFC 8489 §14).
RFC5769_REQUEST = unhex(
    """
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf
    """
)
# §2.2 Sample IPv4 Response: SOFTWARE "test vector" (11 bytes) is padded with one SPACE.
RFC5769_IPV4_RESPONSE = unhex(
    """
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96
    """
)
# §2.3 Sample IPv6 Response: the same SOFTWARE with one SPACE of padding.
RFC5769_IPV6_RESPONSE = unhex(
    """
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c
    """
)
# §2.4 Sample Request with Long-Term Authentication: zero padding, no FINGERPRINT.
RFC5769_LONG_TERM_REQUEST = unhex(
    """
    00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
    00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46
                 53 54 76 79  36 34 73 41
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66
    """
)
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
LONG_TERM_PASSWORD = "The\u00adM\u00aatr\u2168"  # SASLprep: "TheMatrIX"
LONG_TERM_REALM = "example.org"
LONG_TERM_NONCE = b"f//499k954d6OL34oL9FSTvy64sA"

# (vector, attributes, offset and length of the SPACE padding the RFC uses)
SHORT_TERM_VECTORS: dict[str, tuple[bytes, dict[str, Any], int, int]] = {
    "2.1 request": (
        RFC5769_REQUEST,
        {
            "SOFTWARE": "STUN test client",
            "PRIORITY": 0x6E0001FF,
            "ICE-CONTROLLED": 0x932FF9B151263B36,
            "USERNAME": "evtj:h6vY",
            "MESSAGE-INTEGRITY": unhex("9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"),
            "FINGERPRINT": 0xE57A3BCF,
        },
        73,
        3,
    ),
    "2.2 IPv4 response": (
        RFC5769_IPV4_RESPONSE,
        {
            "SOFTWARE": "test vector",
            "XOR-MAPPED-ADDRESS": ("192.0.2.1", 32853),
            "MESSAGE-INTEGRITY": unhex("2b91f599fd9e90c38c7489f92af9ba53f06be7d7"),
            "FINGERPRINT": 0xC07D4C96,
        },
        35,
        1,
    ),
    "2.3 IPv6 response": (
        RFC5769_IPV6_RESPONSE,
        {
            "SOFTWARE": "test vector",
            "XOR-MAPPED-ADDRESS": ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
            "MESSAGE-INTEGRITY": unhex("a382954e4be67bf11784c97c8292c275bfe3ed41"),
            "FINGERPRINT": 0xC8FB0B4C,
        },
        35,
        1,
    ),
}


@pytest.mark.parametrize("name", list(SHORT_TERM_VECTORS))
def test_rfc5769_short_term_vector_parses(name: str) -> None:
    data, attributes, _, _ = SHORT_TERM_VECTORS[name]
    message = parse_message(data)
    assert message.message_method == Method.BINDING
    assert message.message_class == (Class.REQUEST if name.endswith("request") else Class.RESPONSE)
    assert message.transaction_id == TRANSACTION_ID
    assert message.attributes == attributes
    assert list(message.attributes) == list(attributes)  # in message order
    assert message.unknown_attributes == ()
    assert message.duplicates == ()
    # Short-term credentials: the key is the password itself (RFC 8489 §9.1.1).
    assert message.check_message_integrity(SHORT_TERM_PASSWORD.encode())
    assert not message.check_message_integrity(b"VOkJxbRl1RmTxUk/WvJxBu")
    assert not message.check_message_integrity(b"")


@pytest.mark.parametrize("name", list(SHORT_TERM_VECTORS))
def test_rfc5769_short_term_vector_integrity_primitives(name: str) -> None:
    # The MESSAGE-INTEGRITY and FINGERPRINT functions, given the RFC's own bytes up to
    # each attribute (SPACE padding included), compute exactly the RFC's values.
    data, attributes, _, _ = SHORT_TERM_VECTORS[name]
    mi_at, fp_at = len(data) - 32, len(data) - 8
    assert data[mi_at : mi_at + 4] == b"\x00\x08\x00\x14"
    assert data[fp_at : fp_at + 4] == b"\x80\x28\x00\x04"
    key = SHORT_TERM_PASSWORD.encode()
    assert message_integrity(data[:mi_at], key) == attributes["MESSAGE-INTEGRITY"]
    assert message_fingerprint(data[:fp_at]) == attributes["FINGERPRINT"]


@pytest.mark.parametrize("name", list(SHORT_TERM_VECTORS))
def test_rfc5769_short_term_vector_reencodes(name: str) -> None:
    data, attributes, pad_at, pad_len = SHORT_TERM_VECTORS[name]
    # These vectors pad one attribute with SPACEs; RFC 8489 §14 has senders pad with
    # zeros, as our encoder does. So the re-encoding is the RFC's bytes with that padding
    # zeroed, and nothing else differs.
    assert data[pad_at : pad_at + pad_len] == b" " * pad_len
    zero_padded = data[:pad_at] + bytes(pad_len) + data[pad_at + pad_len :]

    # 1. bytes() of the parsed message keeps the parsed MESSAGE-INTEGRITY and FINGERPRINT.
    assert bytes(parse_message(data)) == zero_padded

    # 2. Signing the parsed attributes again: the padding is covered by both the HMAC and
    #    the CRC, so their values differ from the RFC's, everything before them is equal,
    #    and the new values are valid.
    message = parse_message(data)
    del message.attributes["MESSAGE-INTEGRITY"], message.attributes["FINGERPRINT"]
    key = SHORT_TERM_PASSWORD.encode()
    message.add_message_integrity(key)
    message.add_fingerprint()
    encoded = bytes(message)
    assert len(encoded) == len(data)
    assert encoded[:-28] == zero_padded[:-28]  # up to the MESSAGE-INTEGRITY value
    assert encoded[-8:-4] == data[-8:-4]  # FINGERPRINT header
    assert encoded[-28:-8] != data[-28:-8]
    parsed = parse_message(encoded)  # raises if the new FINGERPRINT were wrong
    assert parsed.check_message_integrity(key)
    assert not parsed.check_message_integrity(b"wrong")
    unsigned = {"MESSAGE-INTEGRITY", "FINGERPRINT"}
    assert {k: v for k, v in parsed.attributes.items() if k not in unsigned} == {
        k: v for k, v in attributes.items() if k not in unsigned
    }

    # 3. With the RFC's SPACE padding instead, the same HMAC and CRC give the RFC's bytes.
    body = data[20 : len(data) - 32]
    mac = message_integrity(data[:20] + body, key)
    signed = data[:20] + body + b"\x00\x08\x00\x14" + mac
    fingerprint = message_fingerprint(signed)
    assert signed + b"\x80\x28\x00\x04" + struct.pack("!I", fingerprint) == data


def test_rfc5769_xor_address_values() -> None:
    ipv4 = unhex("0001a147e112a643")
    ipv6 = unhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
    assert unpack_xor_address(ipv4, TRANSACTION_ID) == ("192.0.2.1", 32853)
    assert pack_xor_address(("192.0.2.1", 32853), TRANSACTION_ID) == ipv4
    address = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert unpack_xor_address(ipv6, TRANSACTION_ID) == address
    assert pack_xor_address(address, TRANSACTION_ID) == ipv6


def test_rfc5769_long_term_key() -> None:
    # key = MD5(username ":" realm ":" SASLprep(password)), RFC 5389 §15.4.
    expected = hashlib.md5(
        f"{LONG_TERM_USERNAME}:example.org:TheMatrIX".encode(), usedforsecurity=False
    ).digest()
    assert long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD) == expected
    assert long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrIX") == expected
    # Without SASLprep, the soft hyphen, the feminine ordinal and the Roman numeral stay.
    assert (
        long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD, profile="none")
        != expected
    )


def test_rfc5769_long_term_request() -> None:
    message = parse_message(RFC5769_LONG_TERM_REQUEST)
    assert message.message_method == Method.BINDING
    assert message.message_class == Class.REQUEST
    assert message.transaction_id == unhex("78ad3433c6ad72c029da412e")
    assert message.attributes == {
        "USERNAME": LONG_TERM_USERNAME,
        "NONCE": LONG_TERM_NONCE,
        "REALM": LONG_TERM_REALM,
        "MESSAGE-INTEGRITY": unhex("f67024656dd64a3e02b8e0712e85c9a28ca89666"),
    }
    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD)
    assert message.check_message_integrity(key)
    assert not message.check_message_integrity(
        long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrix")
    )
    # The short-term interpretation (the password's bytes as the key) is wrong here.
    assert not message.check_message_integrity(LONG_TERM_PASSWORD.encode())
    # The RFC 5769 nonce has no RFC 8489 nonce cookie.
    assert nonce_security_features(message.attributes["NONCE"]) is None


def test_rfc5769_long_term_request_reencodes_exactly() -> None:
    # This vector pads with zeros, so signing the same attributes gives the RFC's bytes.
    parsed = parse_message(RFC5769_LONG_TERM_REQUEST)
    attributes = dict(parsed.attributes)
    del attributes["MESSAGE-INTEGRITY"]
    message = Message(Method.BINDING, Class.REQUEST, parsed.transaction_id, attributes)
    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD)
    message.add_message_integrity(key, fingerprint=False)  # the vector has no FINGERPRINT
    assert bytes(message) == RFC5769_LONG_TERM_REQUEST
    assert message.check_message_integrity(key)
    assert bytes(parsed) == RFC5769_LONG_TERM_REQUEST

    # The vector has no FINGERPRINT; adding one appends it and changes nothing else.
    message.add_fingerprint()
    encoded = bytes(message)
    assert len(encoded) == len(RFC5769_LONG_TERM_REQUEST) + 8
    assert encoded[4 : len(RFC5769_LONG_TERM_REQUEST)] == RFC5769_LONG_TERM_REQUEST[4:]
    assert parse_message(encoded).check_message_integrity(key)


# -- RFC 8489 Appendix B.1 ------------------------------------------------------------

# B.1 as published. It does not hold together: the header says 0x9c (156) bytes of
# attributes but the listed ones take 136 (0x88); and the HMAC-SHA256 was computed with
# that 0x9c in the header, whereas §14.6 has the length cover up to and including
# MESSAGE-INTEGRITY-SHA256 (0x88). It also says OpaqueString turns the password into
# "TheMatrIX", which is SASLprep's result: OpaqueString keeps U+00AA and U+2168 and
# disallows U+00AD. So only the USERHASH and the key derivation can be checked as printed.
RFC8489_B1_PUBLISHED = unhex(
    """
    00 01 00 9c  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1c 00 20  e4 68 6c 8f  0e de b5 90  13 e0 70 90  01 0a 93 ef
                 cc bc cc 54  4c 0a 45 d9  f8 30 aa 6d  6f 73 5a 01
    """
)
# The corrected B.1 that other STUN implementations test against (they attribute it to
# the RFC 8489 errata; it is not in the RFC text): it adds PASSWORD-ALGORITHM SHA-256,
# so that the SHA-256 key is the negotiated one, and has a consistent length (0x90).
# This is not taken on trust: its HMAC-SHA256 is checked with a key derived here.
RFC8489_B1_CORRECTED = unhex(
    """
    00 01 00 90  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1d 00 04  00 02 00 00
    00 1c 00 20  b5 c7 bf 00  5b 6c 52 a2  1c 51 c5 e8  92 f8 19 24
                 13 62 96 cb  92 7c 43 14  93 09 27 8c  c6 51 8e 65
    """
)
B1_NONCE = b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
B1_USERHASH = unhex("4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704")


def b1_key() -> bytes:
    return long_term_key(
        LONG_TERM_USERNAME,
        LONG_TERM_REALM,
        "TheMatrIX",  # the password "after OpaqueString processing", as B.1 states it
        algorithm=PasswordAlgorithm.SHA256,
        profile="opaquestring",
    )


def test_rfc8489_b1_key_userhash_and_nonce() -> None:
    material = f"{LONG_TERM_USERNAME}:example.org:TheMatrIX".encode()
    assert b1_key() == hashlib.sha256(material).digest()
    assert userhash(LONG_TERM_USERNAME, LONG_TERM_REALM) == B1_USERHASH
    assert RFC8489_B1_PUBLISHED[24:56] == B1_USERHASH
    # "AAAC" is the base64 of the 24 feature bits 0x000002: username anonymity, which
    # is why the request carries USERHASH instead of USERNAME.
    assert nonce_security_features(B1_NONCE) == SecurityFeature.USERNAME_ANONYMITY
    # The RFC's claim that OpaqueString yields "TheMatrIX" does not hold (see above);
    # a complete PRECIS implementation would even reject the soft hyphen.
    with contextlib.suppress(ValueError):
        assert opaque_string(LONG_TERM_PASSWORD) != "TheMatrIX"


def test_rfc8489_b1_published_bytes_do_not_verify() -> None:
    with raises(StunParseError, "STUN message length does not match"):
        parse_message(RFC8489_B1_PUBLISHED)
    key = b1_key()
    mac = RFC8489_B1_PUBLISHED[-32:]
    # The printed MAC is HMAC-SHA256 over the printed bytes, header length 0x9c included.
    assert hmac_sha256(key, RFC8489_B1_PUBLISHED[:-36]) == mac
    # With the length fixed to the attributes actually present, §14.6 verification fails.
    fixed = RFC8489_B1_PUBLISHED[:2] + b"\x00\x88" + RFC8489_B1_PUBLISHED[4:]
    message = parse_message(fixed)
    assert message.attributes["USERHASH"] == B1_USERHASH
    assert message.attributes["NONCE"] == B1_NONCE
    assert message.attributes["MESSAGE-INTEGRITY-SHA256"] == mac
    assert not message.check_message_integrity(key)


def test_rfc8489_b1_corrected_vector() -> None:
    message = parse_message(RFC8489_B1_CORRECTED)
    assert message.message_method == Method.BINDING
    assert message.message_class == Class.REQUEST
    assert message.transaction_id == unhex("78ad3433c6ad72c029da412e")
    attributes = {
        "USERHASH": B1_USERHASH,
        "NONCE": B1_NONCE,
        "REALM": LONG_TERM_REALM,
        "PASSWORD-ALGORITHM": (PasswordAlgorithm.SHA256, b""),
    }
    assert message.attributes == {
        **attributes,
        "MESSAGE-INTEGRITY-SHA256": RFC8489_B1_CORRECTED[-32:],
    }
    key = b1_key()
    assert message.check_message_integrity(key)
    md5_key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrIX")
    assert not message.check_message_integrity(md5_key)

    # Signing the same attributes reproduces it byte for byte.
    rebuilt = Message(Method.BINDING, Class.REQUEST, message.transaction_id, attributes)
    rebuilt.attributes["USERHASH"] = userhash(LONG_TERM_USERNAME, LONG_TERM_REALM)
    rebuilt.add_message_integrity_sha256(key, fingerprint=False)  # no FINGERPRINT in B.1
    assert bytes(rebuilt) == RFC8489_B1_CORRECTED


# -- the data files --------------------------------------------------------------------


def test_data_files_hold_the_vectors() -> None:
    assert (DATA / "rfc5769_2_1_request.bin").read_bytes() == RFC5769_REQUEST
    assert (DATA / "rfc5769_2_2_ipv4_response.bin").read_bytes() == RFC5769_IPV4_RESPONSE
    assert (DATA / "rfc5769_2_3_ipv6_response.bin").read_bytes() == RFC5769_IPV6_RESPONSE
    assert (DATA / "rfc5769_2_4_long_term_request.bin").read_bytes() == RFC5769_LONG_TERM_REQUEST
    assert (DATA / "rfc8489_b1_corrected_request.bin").read_bytes() == RFC8489_B1_CORRECTED


# -- real captures (from aioice 0.13's tests) -------------------------------------------


def test_capture_binding_request() -> None:
    data = (DATA / "binding_request.bin").read_bytes()
    message = parse_message(data)
    assert message.message_method == Method.BINDING
    assert message.message_class == Class.REQUEST
    assert message.transaction_id == b"Nvfx3lU7FUBF"
    assert message.attributes == {}
    assert bytes(message) == data


def test_capture_binding_request_ice_controlled() -> None:
    data = (DATA / "binding_request_ice_controlled.bin").read_bytes()
    message = parse_message(data)
    assert message.transaction_id == b"wxaNbAdXjwG3"
    assert message.attributes == {
        "USERNAME": "AYeZ:sw7YvCSbcVex3bhi",
        "PRIORITY": 1685987071,
        "SOFTWARE": "FreeSWITCH (-37-987c9b9 64bit)",
        "ICE-CONTROLLED": 5491930053772927353,
        "MESSAGE-INTEGRITY": unhex("1963108a4f764015a66b3fea0b1883dfde1436c8"),
        "FINGERPRINT": 3230414530,
    }
    assert bytes(message) == data


def test_capture_binding_request_ice_controlling() -> None:
    data = (DATA / "binding_request_ice_controlling.bin").read_bytes()
    message = parse_message(data)
    assert message.transaction_id == b"JEwwUxjLWaa2"
    assert message.attributes == {
        "USERNAME": "sw7YvCSbcVex3bhi:AYeZ",
        "ICE-CONTROLLING": 5943294521425135761,
        "USE-CANDIDATE": None,
        "PRIORITY": 1853759231,
        "MESSAGE-INTEGRITY": unhex("c87b58eccbacdbc075d497ad0c965a82937ab587"),
        "FINGERPRINT": 1347006354,
    }
    # 0xC057 (GOOG-NETWORK-INFO) is comprehension-optional and unknown: ignored.
    assert message.unknown_attributes == ()


def test_capture_binding_response() -> None:
    data = (DATA / "binding_response.bin").read_bytes()
    message = parse_message(data)
    assert message.message_class == Class.RESPONSE
    assert message.transaction_id == b"Nvfx3lU7FUBF"
    assert message.attributes == {
        "XOR-MAPPED-ADDRESS": ("80.200.136.90", 53054),
        "MAPPED-ADDRESS": ("80.200.136.90", 53054),
        "RESPONSE-ORIGIN": ("52.17.36.97", 3478),
        "OTHER-ADDRESS": ("52.17.36.97", 3479),
        "SOFTWARE": "Citrix-3.2.4.5 'Marshal West'",
    }
    assert bytes(message) == data
