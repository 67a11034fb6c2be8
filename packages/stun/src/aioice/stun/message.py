"""STUN messages: the header, encoding, parsing and integrity (RFC 8489 §5, §14)."""

from __future__ import annotations

import enum
import hmac
import secrets
import struct
import zlib
from typing import Any, Final

from . import layout
from .attributes import (
    COOKIE,
    DECODERS,
    ENCODE_TABLE,
    KIND_BYTES,
    KIND_FLAG,
    KIND_STRING,
    KIND_UNSIGNED,
    KIND_UNSIGNED_64,
)
from .digest import hmac_sha1, hmac_sha256
from .errors import StunParseError

__all__ = [
    "COOKIE",
    "FINGERPRINT_LENGTH",
    "HEADER_LENGTH",
    "INTEGRITY_LENGTH",
    "Class",
    "Method",
    "Message",
    "message_fingerprint",
    "message_integrity",
    "parse_message",
    "random_transaction_id",
]

HEADER_LENGTH: Final = 20
FINGERPRINT_LENGTH: Final = 8
INTEGRITY_LENGTH: Final = 24
FINGERPRINT_XOR: Final = 0x5354554E

_HEADER = struct.Struct("!HHI12s")
_HEADER3 = struct.Struct("!HHI")
_TL = struct.Struct("!HH")
_TLI = struct.Struct("!HHI")
_TLQ = struct.Struct("!HHQ")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_SIGNATURES: Final = frozenset({"MESSAGE-INTEGRITY", "MESSAGE-INTEGRITY-SHA256", "FINGERPRINT"})
_new_message = object.__new__
_U16 = struct.Struct("!H")
_MI_TL: Final = _TL.pack(0x0008, 20)
_MI256_TL: Final = _TL.pack(0x001C, 32)

_TYPE_MI: Final = 0x0008
_TYPE_MI256: Final = 0x001C
_TYPE_FP: Final = 0x8028


class Class(enum.IntEnum):
    """STUN message class, as the bits it sets in the message type (RFC 8489 §5)."""

    REQUEST = 0x000
    INDICATION = 0x010
    RESPONSE = 0x100
    ERROR = 0x110


class Method(enum.IntEnum):
    """STUN methods (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1)."""

    BINDING = 0x1
    SHARED_SECRET = 0x2
    ALLOCATE = 0x3
    REFRESH = 0x4
    SEND = 0x6
    DATA = 0x7
    CREATE_PERMISSION = 0x8
    CHANNEL_BIND = 0x9
    CONNECT = 0xA
    CONNECTION_BIND = 0xB
    CONNECTION_ATTEMPT = 0xC


# All method numbers fit in M0-M3, so the type is method | class (RFC 8489 §5).
_METHODS: Final = {int(m): m for m in Method}
_CLASSES: Final = {int(c): c for c in Class}


def random_transaction_id() -> bytes:
    """Return a new 96-bit transaction ID from a cryptographic source (RFC 8489 §5)."""
    return secrets.token_bytes(12)


def _with_length(data: bytes, length: int) -> bytes:
    return data[:2] + _U16.pack(length) + data[4:]


def message_integrity(data: bytes, key: bytes) -> bytes:
    """HMAC-SHA1 over ``data`` with the length field covering MESSAGE-INTEGRITY (§14.5)."""
    check = _with_length(data, len(data) - HEADER_LENGTH + INTEGRITY_LENGTH)
    return hmac_sha1(key, check)


def message_integrity_sha256(data: bytes, key: bytes, length: int = 32) -> bytes:
    """HMAC-SHA256 for MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), truncated to ``length``."""
    check = _with_length(data, len(data) - HEADER_LENGTH + 4 + length)
    return hmac_sha256(key, check)[:length]


def message_fingerprint(data: bytes) -> int:
    """CRC-32 of ``data`` XOR 0x5354554E, length covering FINGERPRINT (§14.7)."""
    check = _with_length(data, len(data) - HEADER_LENGTH + FINGERPRINT_LENGTH)
    return zlib.crc32(check) ^ FINGERPRINT_XOR


class Message:
    """A STUN message.

    :param message_method: the :class:`Method`.
    :param message_class: the :class:`Class`.
    :param transaction_id: 12 bytes; a random one is drawn when omitted.
    :param attributes: attribute values keyed by name (see :mod:`aioice.stun.attributes`).

    ``bytes(message)`` encodes it. :meth:`add_message_integrity` and
    :meth:`add_fingerprint` must be the last changes before sending.
    """

    __slots__ = (
        "_cache",
        "_integrity_data",
        "_integrity_sha256_data",
        "attributes",
        "duplicates",
        "message_class",
        "message_method",
        "transaction_id",
        "unknown_attributes",
    )

    def __init__(
        self,
        message_method: Method,
        message_class: Class,
        transaction_id: bytes | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.message_method = message_method
        self.message_class = message_class
        self.transaction_id = transaction_id or secrets.token_bytes(12)
        self.attributes: dict[str, Any] = attributes if attributes is not None else {}
        #: Comprehension-required attribute types this codec does not know (RFC 8489 §6.3.1).
        self.unknown_attributes: tuple[int, ...] = ()
        #: Later occurrences of attributes that appeared more than once, as ``(name, value)``.
        self.duplicates: tuple[tuple[str, Any], ...] = ()
        # The bytes covered by MESSAGE-INTEGRITY(-SHA256), header length not yet patched.
        self._integrity_data: bytes | None = None
        self._integrity_sha256_data: bytes | None = None
        # (copy of the attributes, the encoded message), so that integrity,
        # fingerprint and bytes() do not encode the same attributes again.
        self._cache: tuple[dict[str, Any], bytes] | None = None

    # -- encoding ---------------------------------------------------------------

    def _encode_attributes(self) -> bytes:
        attributes = self.attributes
        tid = self.transaction_id
        parts: list[bytes] = []
        append = parts.append
        name = ""
        try:
            # The common kinds are encoded inline: this loop is the encoder's hot path.
            for name, value in attributes.items():
                attr_type, kind, encode = ENCODE_TABLE[name]
                if kind == KIND_UNSIGNED:
                    append(_TLI.pack(attr_type, 4, value))
                elif kind == KIND_STRING:
                    raw = value.encode()
                    n = len(raw)
                    append(_TL.pack(attr_type, n) + raw + _PAD[n & 3])
                elif kind == KIND_FLAG:
                    append(_TL.pack(attr_type, 0))
                elif kind == KIND_UNSIGNED_64:
                    append(_TLQ.pack(attr_type, 8, value))
                else:
                    append(encode(value, tid))
        except KeyError:
            if name in ENCODE_TABLE:
                raise
            raise ValueError(f"unknown STUN attribute {name!r}") from None
        except (struct.error, AttributeError, TypeError, OverflowError) as exc:
            raise ValueError(f"invalid value for STUN attribute {name}: {exc}") from exc
        return b"".join(parts)

    def _header(self, length: int) -> bytes:
        return _HEADER.pack(
            self.message_method | self.message_class, length, COOKIE, self.transaction_id
        )

    def encode(self, integrity_key: bytes | None = None, *, fingerprint: bool = True) -> bytes:
        """Return the message signed with MESSAGE-INTEGRITY and ending with FINGERPRINT.

        With both, the same bytes as :meth:`add_message_integrity` then ``bytes()``,
        in one step and without changing the message: use it on hot paths. Either
        can be left out. Any MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT among the
        attributes is an error.
        """
        if not _SIGNATURES.isdisjoint(self.attributes):
            raise ValueError("encode() signs the message itself: remove the signature attributes")
        body = self._encode_attributes()
        n = len(body)
        message_type = self.message_method | self.message_class
        tid = self.transaction_id
        if integrity_key is not None:
            mac = hmac_sha1(integrity_key, _HEADER.pack(message_type, n + 24, COOKIE, tid) + body)
            body += _MI_TL + mac
            n += 24
        if not fingerprint:
            return _HEADER.pack(message_type, n, COOKIE, tid) + body
        data = _HEADER.pack(message_type, n + 8, COOKIE, tid) + body
        return data + _TLI.pack(_TYPE_FP, 4, zlib.crc32(data) ^ FINGERPRINT_XOR)

    def __bytes__(self) -> bytes:
        cache = self._cache
        if cache is not None and cache[0] == self.attributes:
            return cache[1]
        body = self._encode_attributes()
        return self._header(len(body)) + body

    def add_fingerprint(self) -> None:
        """Add the FINGERPRINT attribute (RFC 8489 §14.7).

        This must be the last step before sending out the message.
        """
        attributes = self.attributes
        attributes.pop("FINGERPRINT", None)
        cache = self._cache
        if cache is not None and cache[0] == attributes:
            snapshot, data = cache
        else:
            snapshot, data = attributes.copy(), bytes(self)
        # The length field must already count the FINGERPRINT attribute.
        data = data[:2] + _U16.pack(len(data) - HEADER_LENGTH + FINGERPRINT_LENGTH) + data[4:]
        value = zlib.crc32(data) ^ FINGERPRINT_XOR
        attributes["FINGERPRINT"] = snapshot["FINGERPRINT"] = value
        self._cache = (snapshot, data + _TLI.pack(_TYPE_FP, 4, value))

    def add_message_integrity(self, key: bytes, *, fingerprint: bool = True) -> None:
        """Add MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and FINGERPRINT (§14.7).

        As in aioice 0.x, FINGERPRINT comes along unless ``fingerprint`` is false.
        This must be the last step before sending out the message.
        """
        attributes = self.attributes
        if not _SIGNATURES.isdisjoint(attributes):
            for name in _SIGNATURES:
                attributes.pop(name, None)
        body = self._encode_attributes()
        n = len(body)
        message_type = self.message_method | self.message_class
        tid = self.transaction_id
        data = _HEADER.pack(message_type, n + INTEGRITY_LENGTH, COOKIE, tid) + body
        mac = hmac_sha1(key, data)
        attributes["MESSAGE-INTEGRITY"] = mac
        self._integrity_data = data
        self._integrity_sha256_data = None  # it was popped above: re-signing drops it
        if not fingerprint:
            self._cache = (attributes.copy(), data + _MI_TL + mac)
            return
        signed = _HEADER.pack(message_type, n + 32, COOKIE, tid) + body + _MI_TL + mac
        value = zlib.crc32(signed) ^ FINGERPRINT_XOR
        attributes["FINGERPRINT"] = value
        self._cache = (attributes.copy(), signed + _TLI.pack(_TYPE_FP, 4, value))

    def add_message_integrity_sha256(self, key: bytes, *, fingerprint: bool = True) -> None:
        """Add MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), after any MESSAGE-INTEGRITY,
        and FINGERPRINT unless ``fingerprint`` is false, as :meth:`add_message_integrity`."""
        attributes = self.attributes
        attributes.pop("MESSAGE-INTEGRITY-SHA256", None)
        attributes.pop("FINGERPRINT", None)
        data = bytes(self)  # from the cache, after MESSAGE-INTEGRITY
        data = data[:2] + _U16.pack(len(data) - HEADER_LENGTH + 36) + data[4:]
        mac = hmac_sha256(key, data)
        attributes["MESSAGE-INTEGRITY-SHA256"] = mac
        self._integrity_sha256_data = data
        self._cache = (attributes.copy(), data + _MI256_TL + mac)
        if fingerprint:
            self.add_fingerprint()

    # -- checking ---------------------------------------------------------------

    def check_message_integrity(self, key: bytes) -> bool:
        """Check the message's integrity against ``key``.

        MESSAGE-INTEGRITY-SHA256 is checked when present (RFC 8489 §9.1.4), otherwise
        MESSAGE-INTEGRITY. A message with neither fails the check. The comparison
        is constant-time.
        """
        data = self._integrity_sha256_data
        if data is not None:
            mac = self.attributes["MESSAGE-INTEGRITY-SHA256"]
            length = len(mac)
            expected = message_integrity_sha256(data, key, length)
            return hmac.compare_digest(mac, expected)
        data = self._integrity_data
        if data is None:
            return False
        return hmac.compare_digest(
            self.attributes["MESSAGE-INTEGRITY"], message_integrity(data, key)
        )

    @property
    def error_code(self) -> int | None:
        """The code of the ERROR-CODE attribute, or ``None`` if it is absent."""
        error = self.attributes.get("ERROR-CODE")
        return error[0] if error is not None else None

    def get_all(self, name: str) -> list[Any]:
        """Every value of attribute ``name``, in message order (for repeatable attributes)."""
        values = [self.attributes[name]] if name in self.attributes else []
        values.extend(v for n, v in self.duplicates if n == name)
        return values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.message_method == other.message_method
            and self.message_class == other.message_class
            and self.transaction_id == other.transaction_id
            and self.attributes == other.attributes
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Message(message_method=Method.{self.message_method.name}, "
            f"message_class=Class.{self.message_class.name}, "
            f"transaction_id={self.transaction_id.hex()}, "
            f"attributes={self.attributes})"
        )


def parse_message(data: bytes) -> Message:
    """Parse a STUN message (RFC 8489 §6.3).

    Raises :class:`~aioice.stun.StunParseError` (a :class:`ValueError`) and
    nothing else on malformed input. FINGERPRINT is verified here;
    MESSAGE-INTEGRITY is verified separately with
    :meth:`Message.check_message_integrity`. Attributes after MESSAGE-INTEGRITY,
    other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, are ignored because they
    are not authenticated (§14.5). Unknown comprehension-required attributes are
    listed in :attr:`Message.unknown_attributes` so that a server can answer 420.
    """
    if type(data) is not bytes:
        try:
            data = bytes(data)
        except TypeError as exc:
            raise StunParseError("STUN message must be bytes") from exc
    size = len(data)
    if size < HEADER_LENGTH:
        raise StunParseError("STUN message length is less than 20 bytes")
    message_type, length, cookie = _HEADER3.unpack_from(data)
    method = _METHODS.get(message_type & 0x3EEF)
    if size != HEADER_LENGTH + length or cookie != COOKIE or message_type & 0xC000 or length & 3:
        if size != HEADER_LENGTH + length:
            raise StunParseError("STUN message length does not match")
        if message_type & 0xC000:
            raise StunParseError("STUN message type has its top two bits set")
        if cookie != COOKIE:
            raise StunParseError("STUN message has no magic cookie")
        raise StunParseError("STUN message length is not a multiple of 4")
    if method is None:
        raise StunParseError(f"STUN message has unknown method 0x{message_type & 0x3EEF:03X}")
    tid = data[8:20]
    message_class = _CLASSES[message_type & 0x0110]

    if size > HEADER_LENGTH:
        shape = layout.find(data)
        if shape is not None:
            fast = shape.parse(data, tid)
            if fast is not None:
                if shape.fingerprint and fast["FINGERPRINT"] != (
                    zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR
                ):
                    raise StunParseError("STUN message fingerprint does not match")
                end, end256 = shape.integrity_end, shape.sha256_end
                return _message(
                    method,
                    message_class,
                    tid,
                    fast,
                    (),
                    (),
                    data[:end] if end else None,
                    data[:end256] if end256 else None,
                )

    attributes: dict[str, Any] = {}
    unknown: list[int] = []
    duplicates: list[tuple[str, Any]] = []
    integrity_data = None
    integrity_sha256_data = None
    signed = False
    pos = HEADER_LENGTH
    unpack_tl = _TL.unpack_from
    decoders = DECODERS
    # pos and size are multiples of 4 past the header, so a TLV header always fits;
    # a TLV that runs past the end leaves pos > size, which is checked after the loop.
    while pos < size:
        attr_type, attr_len = unpack_tl(data, pos)
        start = pos + 4
        end = start + attr_len
        if attr_type == _TYPE_FP:
            # RFC 8489 §14.7: FINGERPRINT is last, so the length field already covers it.
            if attr_len != 4 or end != size:
                raise StunParseError("STUN FINGERPRINT is malformed or not last")
            fingerprint = int.from_bytes(data[start:end], "big")
            if fingerprint != zlib.crc32(data[:pos]) ^ FINGERPRINT_XOR:
                raise StunParseError("STUN message fingerprint does not match")
            attributes["FINGERPRINT"] = fingerprint
            break
        pos = (end + 3) & -4
        if signed and (attr_type != _TYPE_MI256 or integrity_sha256_data is not None):
            continue  # §14.5, §14.6: attributes after the integrity are not authenticated
        try:
            name, kind, decode = decoders[attr_type]
        except KeyError:
            if attr_type < 0x8000:
                unknown.append(attr_type)
            continue
        # The common kinds are decoded inline: this loop is the parser's hot path.
        value: Any
        if kind == KIND_BYTES:
            value = data[start:end]
        elif (kind == KIND_UNSIGNED and attr_len == 4) or (
            kind == KIND_UNSIGNED_64 and attr_len == 8
        ):
            value = int.from_bytes(data[start:end], "big")
        elif kind == KIND_FLAG:
            value = None
        else:
            if end > size:
                break
            try:
                value = decode(data[start:end], tid)
            except StunParseError:
                raise
            except (ValueError, IndexError, OverflowError, struct.error) as exc:
                raise StunParseError(f"STUN attribute {name} is malformed") from exc
            if attr_type == _TYPE_MI:
                integrity_data = data[: start - 4]
                signed = True
            elif attr_type == _TYPE_MI256:
                integrity_sha256_data = data[: start - 4]
                signed = True
        if name in attributes:
            duplicates.append((name, value))
        else:
            attributes[name] = value
    if pos > size:
        raise StunParseError("STUN attribute length exceeds the message")

    if size > HEADER_LENGTH:
        layout.learn(data, len(attributes))
    return _message(
        method,
        message_class,
        tid,
        attributes,
        tuple(unknown),
        tuple(duplicates),
        integrity_data,
        integrity_sha256_data,
    )


def _message(
    method: Method,
    message_class: Class,
    tid: bytes,
    attributes: dict[str, Any],
    unknown: tuple[int, ...],
    duplicates: tuple[tuple[str, Any], ...],
    integrity_data: bytes | None,
    integrity_sha256_data: bytes | None,
) -> Message:
    message = _new_message(Message)
    message.message_method = method
    message.message_class = message_class
    message.transaction_id = tid
    message.attributes = attributes
    message.unknown_attributes = unknown
    message.duplicates = duplicates
    message._integrity_data = integrity_data
    message._integrity_sha256_data = integrity_sha256_data
    message._cache = None
    return message
