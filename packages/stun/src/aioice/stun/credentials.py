"""Long-term credentials (RFC 8489 §9.2): keys, string preparation, USERHASH, nonce cookie.

Short-term credentials (ICE) use the password's UTF-8 bytes as the key
(RFC 8489 §9.1.1) and need nothing from here.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import stringprep
import unicodedata
from typing import Final

__all__ = [
    "NONCE_COOKIE",
    "PasswordAlgorithm",
    "SecurityFeature",
    "long_term_key",
    "make_nonce",
    "nonce_security_features",
    "opaque_string",
    "saslprep",
    "userhash",
]

NONCE_COOKIE: Final = b"obMatJos2"


class PasswordAlgorithm(enum.IntEnum):
    """PASSWORD-ALGORITHM numbers (RFC 8489 §18.5)."""

    MD5 = 0x0001
    SHA256 = 0x0002


class SecurityFeature(enum.IntFlag):
    """STUN Security Feature bits of a nonce cookie (RFC 8489 §18.1, erratum 6290).

    Bit 0 is the least significant bit of the 24-bit set.
    """

    PASSWORD_ALGORITHMS = 0x000001
    USERNAME_ANONYMITY = 0x000002


# -- string preparation -------------------------------------------------------------


def saslprep(value: str, *, allow_unassigned: bool = True) -> str:
    """Prepare ``value`` with SASLprep (RFC 4013), as RFC 5389 required for passwords.

    :raises ValueError: if the prepared string contains a prohibited character or
        breaks the bidirectional rules of RFC 3454 §6.
    """
    # §2.1 mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in value if not stringprep.in_table_b1(c)
    )
    # §2.2 normalization: NFKC.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared:
        return prepared
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for c in prepared:
        if any(check(c) for check in prohibited):
            raise ValueError(f"SASLprep: prohibited character U+{ord(c):04X}")
        if not allow_unassigned and stringprep.in_table_a1(c):
            raise ValueError(f"SASLprep: unassigned code point U+{ord(c):04X}")
    # §2.4 bidirectional characters (RFC 3454 §6).
    rand_al = [stringprep.in_table_d1(c) for c in prepared]
    if any(rand_al):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError("SASLprep: mixes right-to-left and left-to-right characters")
        if not (rand_al[0] and rand_al[-1]):
            raise ValueError("SASLprep: right-to-left string must start and end with RandALCat")
    return prepared


def opaque_string(value: str) -> str:
    """Prepare ``value`` with the PRECIS OpaqueString profile (RFC 8265 §4.2).

    Non-ASCII spaces become SPACE, the result is NFC-normalized, and control,
    unassigned and surrogate code points are rejected (FreeformClass, RFC 8264).

    :raises ValueError: for an empty result or a disallowed code point.
    """
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in value)
    prepared = unicodedata.normalize("NFC", mapped)
    if not prepared:
        raise ValueError("OpaqueString: empty string")
    for c in prepared:
        if unicodedata.category(c) in ("Cc", "Cn", "Cs"):
            raise ValueError(f"OpaqueString: disallowed code point U+{ord(c):04X}")
    return prepared


# -- keys ---------------------------------------------------------------------------


def long_term_key(
    username: str,
    realm: str,
    password: str,
    *,
    algorithm: PasswordAlgorithm = PasswordAlgorithm.MD5,
    profile: str = "saslprep",
) -> bytes:
    """The long-term credential key (RFC 8489 §9.2.2).

    ``key = H(username ":" realm ":" password)`` with H = MD5 or SHA-256.

    :param profile: how realm and password are prepared: ``"saslprep"`` (RFC 5389,
        and the RFC 5769 test vector), ``"opaquestring"`` (RFC 8489) or ``"none"``.
    """
    if profile == "saslprep":
        realm, password = saslprep(realm), saslprep(password)
    elif profile == "opaquestring":
        realm, password = opaque_string(realm), opaque_string(password)
    elif profile != "none":
        raise ValueError(f"unknown string preparation profile {profile!r}")
    material = f"{username}:{realm}:{password}".encode()
    if algorithm == PasswordAlgorithm.MD5:
        return hashlib.md5(material, usedforsecurity=False).digest()
    if algorithm == PasswordAlgorithm.SHA256:
        return hashlib.sha256(material).digest()
    raise ValueError(f"unsupported password algorithm {algorithm!r}")


def userhash(username: str, realm: str) -> bytes:
    """USERHASH = SHA-256(OpaqueString(username) ":" OpaqueString(realm)) (§14.4)."""
    return hashlib.sha256(f"{opaque_string(username)}:{opaque_string(realm)}".encode()).digest()


# -- nonce cookie (RFC 8489 §9.2) -----------------------------------------------------


def make_nonce(features: SecurityFeature, opaque: bytes) -> bytes:
    """Build a NONCE that starts with the nonce cookie announcing ``features``."""
    bits = int(features).to_bytes(3, "big")
    return NONCE_COOKIE + base64.b64encode(bits) + opaque


def nonce_security_features(nonce: bytes) -> SecurityFeature | None:
    """The security features a NONCE announces, or ``None`` without a nonce cookie."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return None
    try:
        bits = base64.b64decode(nonce[len(NONCE_COOKIE) : len(NONCE_COOKIE) + 4], validate=True)
    except ValueError:
        return None
    return SecurityFeature(int.from_bytes(bits, "big") & 0x000003)
