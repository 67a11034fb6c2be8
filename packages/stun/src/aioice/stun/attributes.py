"""STUN attribute registry: one row per attribute, with its wire codec.

Each attribute is declared once, as aioice always did, by its type code, its
name and how its value is packed and unpacked. Values are plain Python objects so
that ``message.attributes["XOR-MAPPED-ADDRESS"]`` keeps meaning what it meant in
aioice 0.x:

============================  ===============================================
kind                          Python value
============================  ===============================================
address / XOR address         ``(host: str, port: int)``
unsigned, 64-bit unsigned     ``int``
string (USERNAME, REALM, …)   ``str``
opaque (DATA, NONCE, …)       ``bytes``
flag (USE-CANDIDATE, …)       ``None``
ERROR-CODE                    ``(code: int, reason: str)``
UNKNOWN-ATTRIBUTES            ``tuple[int, ...]``
PASSWORD-ALGORITHM            ``(algorithm: int, parameters: bytes)``
PASSWORD-ALGORITHMS           ``tuple[(algorithm, parameters), ...]``
ADDRESS-ERROR-CODE            ``(family: int, code: int, reason: str)``
ICMP                          ``(type: int, code: int, data: int)``
============================  ===============================================

Encoders take ``(value, transaction_id)`` and return the whole TLV, padding
included (RFC 8489 §14); decoders take ``(value_bytes, transaction_id)``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any, Final

from .errors import StunParseError

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTES_BY_NAME",
    "ATTRIBUTES_BY_TYPE",
    "COOKIE",
    "AttributeSpec",
    "pack_address",
    "pack_xor_address",
    "unpack_address",
    "unpack_error_code",
    "unpack_xor_address",
]

COOKIE: Final = 0x2112A442
IPV4_PROTOCOL: Final = 1
IPV6_PROTOCOL: Final = 2

_TL = struct.Struct("!HH")
_TLI = struct.Struct("!HHI")
_TLQ = struct.Struct("!HHQ")
_TLH2 = struct.Struct("!HHH2x")
_ADDR_HEAD = struct.Struct("!HHxBH")  # type, length, reserved, family, port
_XOR_V4 = struct.Struct("!HHxBHI")  # the same, then an IPv4 address
_ERROR_HEAD = struct.Struct("!HH2xBB")  # type, length, reserved, class, number
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_U16 = struct.Struct("!H")
_COOKIE_BYTES: Final = _U32.pack(COOKIE)
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")

Encoder = Callable[[Any, bytes], bytes]
Decoder = Callable[[bytes, bytes], Any]


def padding_length(length: int) -> int:
    """Return how many bytes pad an attribute value of ``length`` to 4 bytes."""
    return -length % 4


def _tlv(attr_type: int, value: bytes) -> bytes:
    return _TL.pack(attr_type, len(value)) + value + _PAD[len(value) & 3]


# -- addresses (RFC 8489 §14.1, §14.2) ------------------------------------------


def _ip_bytes(host: str) -> tuple[int, bytes]:
    try:
        if ":" in host:
            # A link-local address from recvfrom() carries its scope: "fe80::1%eth0".
            return IPV6_PROTOCOL, socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        return IPV4_PROTOCOL, socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IP address: {host!r}") from exc


def pack_address(value: tuple[str, int]) -> bytes:
    """Pack an ``(host, port)`` address value (without the TLV header)."""
    family, ip = _ip_bytes(value[0])
    return struct.pack("!xBH", family, _check_port(value[1])) + ip


def _xor(data: bytes, transaction_id: bytes) -> bytes:
    # RFC 8489 §14.2: the port is XOR'd with the top of the cookie, an IPv4
    # address with the cookie, an IPv6 address with the cookie + transaction ID.
    pad = _COOKIE_BYTES + transaction_id
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad[:n], "big")).to_bytes(n, "big")


def pack_xor_address(value: tuple[str, int], transaction_id: bytes) -> bytes:
    """Pack an ``(host, port)`` value as an XOR address (without the TLV header)."""
    family, ip = _ip_bytes(value[0])
    port = _check_port(value[1]) ^ (COOKIE >> 16)
    return struct.pack("!xBH", family, port) + _xor(ip, transaction_id)


def _check_port(port: object) -> int:
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"not a port number: {port!r}")
    return port


def _enc_address(attr_type: int) -> Encoder:
    def encode(value: tuple[str, int], transaction_id: bytes) -> bytes:
        family, ip = _ip_bytes(value[0])
        return _ADDR_HEAD.pack(attr_type, 4 + len(ip), family, _check_port(value[1])) + ip

    return encode


# An IPv4 XOR address depends on the cookie only, not on the transaction ID, so its
# encoding can be kept: peers, servers and relays repeat the same few addresses
# (consent checks, TURN Send and Data indications). Bounded; cleared when full.
_V4_CACHE_SIZE: Final = 4096
_XOR_V4_DECODED: dict[bytes, tuple[str, int]] = {}


def _enc_xor_address(attr_type: int) -> Encoder:
    pack_v4 = _XOR_V4.pack
    encoded: dict[tuple[str, int], bytes] = {}

    def encode(value: tuple[str, int], transaction_id: bytes) -> bytes:
        if type(value) is tuple:
            tlv = encoded.get(value)
            if tlv is not None:
                return tlv
        host, port = value
        if type(port) is int and 0 <= port <= 0xFFFF and type(host) is str and ":" not in host:
            # IPv4 fast path: one XOR on the address as an integer.
            try:
                ip = int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
            except (OSError, TypeError) as exc:
                raise ValueError(f"not an IP address: {host!r}") from exc
            tlv = pack_v4(attr_type, 8, IPV4_PROTOCOL, port ^ 0x2112, ip ^ COOKIE)
            if len(encoded) >= _V4_CACHE_SIZE:
                encoded.clear()
            encoded[(host, port)] = tlv
            return tlv
        family, raw = _ip_bytes(host)
        port = _check_port(port) ^ 0x2112
        return _ADDR_HEAD.pack(attr_type, 4 + len(raw), family, port) + _xor(raw, transaction_id)

    return encode


def _enc_xor_address_list(attr_type: int) -> Encoder:
    # Attributes that may repeat (XOR-PEER-ADDRESS in CreatePermission,
    # XOR-RELAYED-ADDRESS in a dual allocation) also accept a list of addresses.
    single = _enc_xor_address(attr_type)

    def encode(value: Any, transaction_id: bytes) -> bytes:
        if isinstance(value, list):
            return b"".join(single(v, transaction_id) for v in value)
        return single(value, transaction_id)

    return encode


def _address(data: bytes) -> tuple[int, int, bytes]:
    if len(data) < 4:
        raise StunParseError("STUN address length is less than 4 bytes")
    family = data[1]
    port = (data[2] << 8) | data[3]
    if family == IPV4_PROTOCOL:
        if len(data) != 8:
            raise StunParseError("STUN address has invalid length for IPv4")
    elif family == IPV6_PROTOCOL:
        if len(data) != 20:
            raise StunParseError("STUN address has invalid length for IPv6")
    else:
        raise StunParseError("STUN address has unknown protocol")
    return family, port, data[4:]


def unpack_address(data: bytes, transaction_id: bytes = b"") -> tuple[str, int]:
    """Unpack a MAPPED-ADDRESS style value into ``(host, port)``."""
    family, port, ip = _address(data)
    return socket.inet_ntop(socket.AF_INET if family == 1 else socket.AF_INET6, ip), port


def unpack_xor_address(data: bytes, transaction_id: bytes) -> tuple[str, int]:
    """Unpack an XOR-MAPPED-ADDRESS style value into ``(host, port)``."""
    if len(data) == 8 and data[1] == IPV4_PROTOCOL:
        # IPv4 fast path: kept, or one XOR on the address as an integer.
        value = _XOR_V4_DECODED.get(data)
        if value is None:
            ip = (int.from_bytes(data[4:], "big") ^ COOKIE).to_bytes(4, "big")
            value = socket.inet_ntop(socket.AF_INET, ip), ((data[2] << 8) | data[3]) ^ 0x2112
            if len(_XOR_V4_DECODED) >= _V4_CACHE_SIZE:
                _XOR_V4_DECODED.clear()
            _XOR_V4_DECODED[data] = value
        return value
    family, port, ip = _address(data)
    ip = _xor(ip, transaction_id)
    af = socket.AF_INET if family == 1 else socket.AF_INET6
    return socket.inet_ntop(af, ip), port ^ 0x2112


# -- numbers, strings, flags ------------------------------------------------------


def _enc_unsigned(attr_type: int) -> Encoder:
    pack = _TLI.pack
    return lambda value, tid: pack(attr_type, 4, value)


def _enc_unsigned_64(attr_type: int) -> Encoder:
    pack = _TLQ.pack
    return lambda value, tid: pack(attr_type, 8, value)


def _enc_unsigned_short(attr_type: int) -> Encoder:
    # A 16-bit value followed by 16 reserved bits (CHANNEL-NUMBER, RESPONSE-PORT).
    pack = _TLH2.pack
    return lambda value, tid: pack(attr_type, 4, value)


def _enc_family(attr_type: int) -> Encoder:
    # REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY: family + 24 reserved bits.
    return lambda value, tid: _TL.pack(attr_type, 4) + bytes((value, 0, 0, 0))


def _enc_bytes(attr_type: int) -> Encoder:
    pack = _TL.pack

    def encode(value: bytes, tid: bytes) -> bytes:
        n = len(value)
        return pack(attr_type, n) + value + _PAD[n & 3]

    return encode


def _enc_string(attr_type: int) -> Encoder:
    pack = _TL.pack

    def encode(value: str, tid: bytes) -> bytes:
        data = value.encode()
        n = len(data)
        return pack(attr_type, n) + data + _PAD[n & 3]

    return encode


def _enc_none(attr_type: int) -> Encoder:
    header = _TL.pack(attr_type, 0)
    return lambda value, tid: header


def _enc_bool_flag(attr_type: int) -> Encoder:
    # EVEN-PORT: the R bit asks the server to reserve the next port as well.
    return lambda value, tid: _TL.pack(attr_type, 1) + bytes((0x80 if value else 0,)) + _PAD[1]


def _enc_error_code(attr_type: int) -> Encoder:
    def encode(value: tuple[int, str], tid: bytes) -> bytes:
        code, reason = value
        if not 300 <= code <= 699:
            raise ValueError(f"STUN error code must be in 300-699: {code}")
        body = struct.pack("!2xBB", code // 100, code % 100) + reason.encode("utf8")
        return _tlv(attr_type, body)

    return encode


def _enc_address_error_code(attr_type: int) -> Encoder:
    def encode(value: tuple[int, int, str], tid: bytes) -> bytes:
        family, code, reason = value
        if not 300 <= code <= 699:
            raise ValueError(f"STUN address error code must be in 300-699: {code}")
        body = struct.pack("!BxBB", family, code // 100, code % 100) + reason.encode("utf8")
        return _tlv(attr_type, body)

    return encode


def _enc_unknown_attributes(attr_type: int) -> Encoder:
    def encode(value: tuple[int, ...], tid: bytes) -> bytes:
        return _tlv(attr_type, b"".join(_U16.pack(t) for t in value))

    return encode


def _pack_algorithm(algorithm: tuple[int, bytes]) -> bytes:
    number, params = algorithm
    return _TL.pack(number, len(params)) + params + _PAD[len(params) & 3]


def _enc_password_algorithm(attr_type: int) -> Encoder:
    return lambda value, tid: _tlv(attr_type, _pack_algorithm(value))


def _enc_password_algorithms(attr_type: int) -> Encoder:
    return lambda value, tid: _tlv(attr_type, b"".join(_pack_algorithm(a) for a in value))


def _enc_icmp(attr_type: int) -> Encoder:
    def encode(value: tuple[int, int, int], tid: bytes) -> bytes:
        return _tlv(attr_type, struct.pack("!2xBBI", value[0], value[1], value[2]))

    return encode


def _exact(n: int, what: str) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        if len(data) != n:
            raise StunParseError(f"STUN {what} must be {n} bytes, got {len(data)}")

    return check


_check4 = _exact(4, "32-bit attribute")
_check8 = _exact(8, "64-bit attribute")


def _dec_unsigned(data: bytes, tid: bytes) -> int:
    if len(data) != 4:
        raise StunParseError(f"STUN 32-bit attribute must be 4 bytes, got {len(data)}")
    return int.from_bytes(data, "big")


def _dec_unsigned_64(data: bytes, tid: bytes) -> int:
    if len(data) != 8:
        raise StunParseError(f"STUN 64-bit attribute must be 8 bytes, got {len(data)}")
    return int.from_bytes(data, "big")


def _dec_unsigned_short(data: bytes, tid: bytes) -> int:
    _check4(data)
    return (data[0] << 8) | data[1]


def _dec_family(data: bytes, tid: bytes) -> int:
    _check4(data)
    return data[0]


def _dec_bytes(data: bytes, tid: bytes) -> bytes:
    return data


def _dec_string(data: bytes, tid: bytes) -> str:
    try:
        return data.decode("utf8")
    except UnicodeDecodeError as exc:
        raise StunParseError("STUN string attribute is not valid UTF-8") from exc


def _dec_none(data: bytes, tid: bytes) -> None:
    return None


def _dec_bool_flag(data: bytes, tid: bytes) -> bool:
    if len(data) != 1:
        raise StunParseError("STUN EVEN-PORT must be 1 byte")
    return bool(data[0] & 0x80)


def _error_class_number(data: bytes, what: str) -> int:
    # RFC 8489 §14.8: the class MUST be 3-6 and the number 0-99. Anything else has
    # no code that the encoder could write back (it would raise or change the value).
    error_class = data[2] & 0x07
    number = data[3]
    if not 3 <= error_class <= 6 or number > 99:
        raise StunParseError(f"STUN {what} class must be 3-6 and number 0-99")
    return error_class * 100 + number


def unpack_error_code(data: bytes, tid: bytes = b"") -> tuple[int, str]:
    """Unpack an ERROR-CODE value into ``(code, reason)`` (RFC 8489 §14.8)."""
    if len(data) < 4:
        raise StunParseError("STUN error code is less than 4 bytes")
    code = _error_class_number(data, "error code")
    return code, data[4:].decode("utf8", errors="replace")


def _dec_address_error_code(data: bytes, tid: bytes) -> tuple[int, int, str]:
    if len(data) < 4:
        raise StunParseError("STUN address error code is less than 4 bytes")
    code = _error_class_number(data, "address error code")
    return data[0], code, data[4:].decode("utf8", errors="replace")


def _dec_unknown_attributes(data: bytes, tid: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise StunParseError("STUN UNKNOWN-ATTRIBUTES has an odd length")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _unpack_algorithms(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise StunParseError("STUN password algorithm is truncated")
        number, length = _TL.unpack_from(data, pos)
        end = pos + 4 + length
        if end > len(data):
            raise StunParseError("STUN password algorithm parameters are truncated")
        out.append((number, data[pos + 4 : end]))
        pos = end + padding_length(length)
    return out


def _dec_password_algorithm(data: bytes, tid: bytes) -> tuple[int, bytes]:
    algorithms = _unpack_algorithms(data)
    if len(algorithms) != 1:
        raise StunParseError("STUN PASSWORD-ALGORITHM must hold exactly one algorithm")
    return algorithms[0]


def _dec_password_algorithms(data: bytes, tid: bytes) -> tuple[tuple[int, bytes], ...]:
    return tuple(_unpack_algorithms(data))


def _dec_icmp(data: bytes, tid: bytes) -> tuple[int, int, int]:
    _check8(data)
    return data[2], data[3], int.from_bytes(data[4:8], "big")


def _dec_integrity(n_min: int, n_max: int, what: str) -> Decoder:
    def decode(data: bytes, tid: bytes) -> bytes:
        if not n_min <= len(data) <= n_max or len(data) % 4:
            raise StunParseError(f"STUN {what} has invalid length {len(data)}")
        return data

    return decode


def _dec_fixed_bytes(n: int, what: str) -> Decoder:
    check = _exact(n, what)

    def decode(data: bytes, tid: bytes) -> bytes:
        check(data)
        return data

    return decode


class AttributeSpec:
    """One registry row: type code, name, and the codec of its value."""

    __slots__ = ("decode", "encode", "name", "type")

    def __init__(self, attr_type: int, name: str, encode: Encoder, decode: Decoder) -> None:
        self.type = attr_type
        self.name = name
        self.encode = encode
        self.decode = decode

    def __repr__(self) -> str:
        return f"AttributeSpec(0x{self.type:04X}, {self.name!r})"


_KINDS: dict[str, tuple[Callable[[int], Encoder], Decoder]] = {
    "address": (_enc_address, unpack_address),
    "xor-address": (_enc_xor_address, unpack_xor_address),
    "xor-address-list": (_enc_xor_address_list, unpack_xor_address),
    "unsigned": (_enc_unsigned, _dec_unsigned),
    "unsigned-64": (_enc_unsigned_64, _dec_unsigned_64),
    "unsigned-short": (_enc_unsigned_short, _dec_unsigned_short),
    "family": (_enc_family, _dec_family),
    "bytes": (_enc_bytes, _dec_bytes),
    "string": (_enc_string, _dec_string),
    "none": (_enc_none, _dec_none),
    "even-port": (_enc_bool_flag, _dec_bool_flag),
    "error-code": (_enc_error_code, unpack_error_code),
    "address-error-code": (_enc_address_error_code, _dec_address_error_code),
    "unknown-attributes": (_enc_unknown_attributes, _dec_unknown_attributes),
    "password-algorithm": (_enc_password_algorithm, _dec_password_algorithm),
    "password-algorithms": (_enc_password_algorithms, _dec_password_algorithms),
    "icmp": (_enc_icmp, _dec_icmp),
    "message-integrity": (_enc_bytes, _dec_integrity(20, 20, "MESSAGE-INTEGRITY")),
    # RFC 8489 §14.6: truncated to no less than 16 bytes, a multiple of 4.
    "message-integrity-sha256": (
        _enc_bytes,
        _dec_integrity(16, 32, "MESSAGE-INTEGRITY-SHA256"),
    ),
    "userhash": (_enc_bytes, _dec_fixed_bytes(32, "USERHASH")),
    "reservation-token": (_enc_bytes, _dec_fixed_bytes(8, "RESERVATION-TOKEN")),
}

# fmt: off
_TABLE: list[tuple[int, str, str]] = [
    # RFC 8489 (STUN) and RFC 3489 (classic STUN, comprehension-required range)
    (0x0001, "MAPPED-ADDRESS", "address"),
    (0x0002, "RESPONSE-ADDRESS", "address"),              # RFC 3489
    (0x0003, "CHANGE-REQUEST", "unsigned"),               # RFC 5780 §7.2
    (0x0004, "SOURCE-ADDRESS", "address"),                # RFC 3489
    (0x0005, "CHANGED-ADDRESS", "address"),               # RFC 3489
    (0x0006, "USERNAME", "string"),
    (0x0008, "MESSAGE-INTEGRITY", "message-integrity"),
    (0x0009, "ERROR-CODE", "error-code"),
    (0x000A, "UNKNOWN-ATTRIBUTES", "unknown-attributes"),
    (0x000C, "CHANNEL-NUMBER", "unsigned-short"),         # RFC 8656 §18.1
    (0x000D, "LIFETIME", "unsigned"),                     # RFC 8656 §18.2
    (0x0012, "XOR-PEER-ADDRESS", "xor-address-list"),     # RFC 8656 §18.3
    (0x0013, "DATA", "bytes"),                            # RFC 8656 §18.4
    (0x0014, "REALM", "string"),
    (0x0015, "NONCE", "bytes"),
    (0x0016, "XOR-RELAYED-ADDRESS", "xor-address-list"),  # RFC 8656 §18.5
    (0x0017, "REQUESTED-ADDRESS-FAMILY", "family"),       # RFC 8656 §18.6
    (0x0018, "EVEN-PORT", "even-port"),                   # RFC 8656 §18.7
    (0x0019, "REQUESTED-TRANSPORT", "unsigned"),          # RFC 8656 §18.8
    (0x001A, "DONT-FRAGMENT", "none"),                    # RFC 8656 §18.9
    (0x001B, "ACCESS-TOKEN", "bytes"),                    # RFC 7635
    (0x001C, "MESSAGE-INTEGRITY-SHA256", "message-integrity-sha256"),
    (0x001D, "PASSWORD-ALGORITHM", "password-algorithm"),
    (0x001E, "USERHASH", "userhash"),
    (0x0020, "XOR-MAPPED-ADDRESS", "xor-address"),
    (0x0022, "RESERVATION-TOKEN", "reservation-token"),   # RFC 8656 §18.10
    (0x0024, "PRIORITY", "unsigned"),                     # RFC 8445 §16.1
    (0x0025, "USE-CANDIDATE", "none"),                    # RFC 8445 §16.1
    (0x0026, "PADDING", "bytes"),                         # RFC 5780 §7.6
    (0x0027, "RESPONSE-PORT", "unsigned-short"),          # RFC 5780 §7.5
    (0x002A, "CONNECTION-ID", "unsigned"),                # RFC 6062 §6.2.1
    # comprehension-optional range
    (0x8000, "ADDITIONAL-ADDRESS-FAMILY", "family"),      # RFC 8656 §18.11
    (0x8001, "ADDRESS-ERROR-CODE", "address-error-code"),  # RFC 8656 §18.12
    (0x8002, "PASSWORD-ALGORITHMS", "password-algorithms"),
    (0x8003, "ALTERNATE-DOMAIN", "string"),
    (0x8004, "ICMP", "icmp"),                             # RFC 8656 §18.13
    (0x8022, "SOFTWARE", "string"),
    (0x8023, "ALTERNATE-SERVER", "address"),
    (0x8027, "CACHE-TIMEOUT", "unsigned"),                # RFC 5780 §7.7
    (0x8028, "FINGERPRINT", "unsigned"),
    (0x8029, "ICE-CONTROLLED", "unsigned-64"),            # RFC 8445 §16.1
    (0x802A, "ICE-CONTROLLING", "unsigned-64"),           # RFC 8445 §16.1
    (0x802B, "RESPONSE-ORIGIN", "address"),               # RFC 5780 §7.3
    (0x802C, "OTHER-ADDRESS", "address"),                 # RFC 5780 §7.4
]
# fmt: on

ATTRIBUTES: Final[list[AttributeSpec]] = [
    AttributeSpec(code, name, _KINDS[kind][0](code), _KINDS[kind][1]) for code, name, kind in _TABLE
]
ATTRIBUTES_BY_TYPE: Final[dict[int, AttributeSpec]] = {a.type: a for a in ATTRIBUTES}
ATTRIBUTES_BY_NAME: Final[dict[str, AttributeSpec]] = {a.name: a for a in ATTRIBUTES}
ENCODERS: Final[dict[str, Encoder]] = {a.name: a.encode for a in ATTRIBUTES}
# Value kinds the parser decodes inline, without a call (see message.parse_message).
KIND_CALL: Final = 0
KIND_BYTES: Final = 1
KIND_UNSIGNED: Final = 2
KIND_UNSIGNED_64: Final = 3
KIND_STRING: Final = 4
KIND_FLAG: Final = 5
_INLINE = {
    "bytes": KIND_BYTES,
    "unsigned": KIND_UNSIGNED,
    "unsigned-64": KIND_UNSIGNED_64,
    "string": KIND_STRING,
    "none": KIND_FLAG,
}

#: Attributes whose decoder only checks the value's length: a learned layout, which
#: fixes every length, can take their bytes as they are.
LENGTH_CHECKED_BYTES: Final = frozenset(
    {"MESSAGE-INTEGRITY", "MESSAGE-INTEGRITY-SHA256", "USERHASH", "RESERVATION-TOKEN"}
)

#: name -> (type, inline kind, encoder), for the encoder's inner loop.
ENCODE_TABLE: Final[dict[str, tuple[int, int, Encoder]]] = {
    name: (code, _INLINE.get(kind, KIND_CALL), ENCODERS[name]) for code, name, kind in _TABLE
}
#: type -> (name, inline kind, decoder), for the parser's inner loop.
DECODERS: Final[dict[int, tuple[str, int, Decoder]]] = {
    code: (name, _INLINE.get(kind, KIND_CALL), _KINDS[kind][1]) for code, name, kind in _TABLE
}

#: Attributes that may legitimately appear more than once in one message.
REPEATABLE: Final = frozenset({"XOR-PEER-ADDRESS", "XOR-RELAYED-ADDRESS"})
