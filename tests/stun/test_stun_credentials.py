"""Credentials: SASLprep, OpaqueString, long-term keys, USERHASH, nonce cookie, HMAC cache."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator
from typing import cast

import pytest
from aioice.stun import (
    PasswordAlgorithm,
    SecurityFeature,
    long_term_key,
    make_nonce,
    nonce_security_features,
    opaque_string,
    saslprep,
    userhash,
)
from aioice.stun.credentials import NONCE_COOKIE
from aioice.stun.digest import hmac_sha1, hmac_sha256


@contextlib.contextmanager
def raises(exc_type: type[Exception], message: str) -> Iterator[None]:
    """Like ``pytest.raises``, for an exact message."""
    with pytest.raises(exc_type) as info:
        yield
    assert str(info.value) == message


# -- SASLprep (RFC 4013) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prepared"),
    [
        # RFC 4013 §3 examples.
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),  # no transformation
        ("USER", "USER"),  # case preserved, will not match #2
        ("\u00aa", "a"),  # output is NFKC, input in ISO 8859-1
        ("\u2168", "IX"),  # output is NFKC, will match #1
        # More of the mapping: non-ASCII spaces become SPACE, zero-width ones vanish.
        ("a\u00a0b\u3000c", "a b c"),
        ("a\u200bb\ufeffc", "abc"),
        ("The\u00adM\u00aatr\u2168", "TheMatrIX"),  # the RFC 5769 §2.4 password
        ("", ""),
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),  # RandALCat at both ends is fine
    ],
)
def test_saslprep(value: str, prepared: str) -> None:
    assert saslprep(value) == prepared


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("\u0007", "SASLprep: prohibited character U+0007"),  # RFC 4013 §3 example 6
        ("a\u0000", "SASLprep: prohibited character U+0000"),
        ("\ue000", "SASLprep: prohibited character U+E000"),  # private use
        ("\ud800", "SASLprep: prohibited character U+D800"),  # surrogate
        ("\U000e0001", "SASLprep: prohibited character U+E0001"),  # tagging character
        # RFC 4013 §3 example 7: a RandALCat string must start and end with one.
        ("\u0627\u0031", "SASLprep: right-to-left string must start and end with RandALCat"),
        ("a\u0627b", "SASLprep: mixes right-to-left and left-to-right characters"),
    ],
)
def test_saslprep_errors(value: str, error: str) -> None:
    with raises(ValueError, error):
        saslprep(value)


def test_saslprep_unassigned_code_points() -> None:
    # U+0221 was unassigned in Unicode 3.2 (RFC 3454 table A.1). Queries allow it
    # (the default), stored strings do not (RFC 4013 §2.5).
    assert saslprep("\u0221") == "\u0221"
    with raises(ValueError, "SASLprep: unassigned code point U+0221"):
        saslprep("\u0221", allow_unassigned=False)
    assert saslprep("user", allow_unassigned=False) == "user"


# -- OpaqueString (RFC 8265 §4.2) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prepared"),
    [
        ("correct horse battery staple", "correct horse battery staple"),
        ("Correct Horse", "Correct Horse"),  # case preserved
        ("a\u00a0b\u2003c", "a b c"),  # non-ASCII spaces map to SPACE
        ("e\u0301", "\u00e9"),  # NFC, not NFKC
        ("\u2168", "\u2168"),  # compatibility characters are kept
        ("\u00aa", "\u00aa"),
        ("\u03c0\u00df\u5bc6\u7801", "\u03c0\u00df\u5bc6\u7801"),
        ("TheMatrIX", "TheMatrIX"),
    ],
)
def test_opaque_string(value: str, prepared: str) -> None:
    assert opaque_string(value) == prepared


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", "OpaqueString: empty string"),
        ("a\u0007", "OpaqueString: disallowed code point U+0007"),
        ("\u0000", "OpaqueString: disallowed code point U+0000"),
        ("\u0378", "OpaqueString: disallowed code point U+0378"),  # unassigned
        ("\udfff", "OpaqueString: disallowed code point U+DFFF"),  # surrogate
    ],
)
def test_opaque_string_errors(value: str, error: str) -> None:
    with raises(ValueError, error):
        opaque_string(value)


# -- long-term keys and USERHASH -------------------------------------------------------------


def md5(text: str) -> bytes:
    return hashlib.md5(text.encode(), usedforsecurity=False).digest()


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def test_long_term_key_profiles_and_algorithms() -> None:
    # The default: MD5 and SASLprep of realm and password (RFC 5389 §15.4).
    assert long_term_key("user", "realm", "pass") == md5("user:realm:pass")
    assert long_term_key("user", "re\u00adalm", "I\u00adX") == md5("user:realm:IX")
    # The username is used as given.
    assert long_term_key("\u2168", "realm", "pass") == md5("\u2168:realm:pass")
    # RFC 8489: OpaqueString and SHA-256.
    assert long_term_key(
        "user", "realm", "pass", algorithm=PasswordAlgorithm.SHA256, profile="opaquestring"
    ) == sha256("user:realm:pass")
    assert long_term_key(
        "user", "realm", "\u2168", algorithm=PasswordAlgorithm.SHA256, profile="opaquestring"
    ) == sha256("user:realm:\u2168")
    assert long_term_key(
        "user", "r", "a\u00a0b", algorithm=PasswordAlgorithm.MD5, profile="opaquestring"
    ) == md5("user:r:a b")
    assert long_term_key("user", "realm", "\u2168", profile="none") == md5("user:realm:\u2168")
    assert long_term_key(
        "user", "realm", "\u2168", algorithm=PasswordAlgorithm.SHA256, profile="none"
    ) == sha256("user:realm:\u2168")
    assert len(long_term_key("u", "r", "p")) == 16
    assert len(long_term_key("u", "r", "p", algorithm=PasswordAlgorithm.SHA256)) == 32


def test_long_term_key_errors() -> None:
    with raises(ValueError, "unknown string preparation profile 'precis'"):
        long_term_key("user", "realm", "pass", profile="precis")
    with raises(ValueError, "unsupported password algorithm 3"):
        long_term_key("user", "realm", "pass", algorithm=cast(PasswordAlgorithm, 3))
    with raises(ValueError, "SASLprep: prohibited character U+0007"):
        long_term_key("user", "realm", "pa\u0007ss")
    with raises(ValueError, "OpaqueString: empty string"):
        long_term_key("user", "realm", "", profile="opaquestring")


def test_password_algorithm_numbers() -> None:
    # RFC 8489 §18.5.
    assert int(PasswordAlgorithm.MD5) == 0x0001
    assert int(PasswordAlgorithm.SHA256) == 0x0002


def test_userhash() -> None:
    # RFC 8489 §14.4: SHA-256(OpaqueString(username) ":" OpaqueString(realm)).
    assert userhash("user", "realm") == sha256("user:realm")
    assert userhash("e\u0301", "r\u00a0s") == sha256("\u00e9:r s")
    assert len(userhash("u", "r")) == 32
    with raises(ValueError, "OpaqueString: empty string"):
        userhash("", "realm")


# -- nonce cookie (RFC 8489 §9.2) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "encoded"),
    [
        (SecurityFeature(0), b"AAAA"),
        (SecurityFeature.PASSWORD_ALGORITHMS, b"AAAB"),
        (SecurityFeature.USERNAME_ANONYMITY, b"AAAC"),
        (SecurityFeature.PASSWORD_ALGORITHMS | SecurityFeature.USERNAME_ANONYMITY, b"AAAD"),
    ],
)
def test_nonce_cookie_round_trip(features: SecurityFeature, encoded: bytes) -> None:
    nonce = make_nonce(features, b"f//499k954d6OL34oL9FSTvy64sA")
    assert nonce == b"obMatJos2" + encoded + b"f//499k954d6OL34oL9FSTvy64sA"
    assert nonce_security_features(nonce) == features
    assert nonce_security_features(make_nonce(features, b"")) == features


@pytest.mark.parametrize(
    "nonce",
    [
        b"",
        b"f//499k954d6OL34oL9FSTvy64sA",  # RFC 5769: no cookie
        b"obMatJos2",
        b"obMatJos2AAA",  # too short for the 24 feature bits
        b"obMatJos2A!AB",  # not base64
        b"obMatJos2AA=Bxyz",  # padding in the middle
        b"obMatJos3AAAB",
        b"OBMATJOS2AAAB",
    ],
)
def test_nonce_without_cookie(nonce: bytes) -> None:
    assert nonce_security_features(nonce) is None


def test_nonce_unknown_feature_bits_are_dropped() -> None:
    assert NONCE_COOKIE == b"obMatJos2"
    assert nonce_security_features(b"obMatJos2////") == (
        SecurityFeature.PASSWORD_ALGORITHMS | SecurityFeature.USERNAME_ANONYMITY
    )
    assert nonce_security_features(b"obMatJos2gAAA") == SecurityFeature(0)


# -- the HMAC cache -----------------------------------------------------------------------


@pytest.mark.parametrize("key_length", [0, 1, 16, 20, 32, 63, 64, 65, 100, 200])
def test_hmac_matches_the_standard_library(key_length: int) -> None:
    key = bytes((i * 7 + key_length) & 0xFF for i in range(key_length))
    for data in (b"", b"a", b"STUN message" * 10, bytes(range(256)) * 3):
        assert hmac_sha1(key, data) == hmac.digest(key, data, "sha1")
        assert hmac_sha256(key, data) == hmac.digest(key, data, "sha256")
        # Again, now from the cached key state.
        assert hmac_sha1(key, data) == hmac.digest(key, data, "sha1")
        assert hmac_sha256(key, data) == hmac.digest(key, data, "sha256")


def test_hmac_cache_past_its_size() -> None:
    # The cache holds 256 keys and then starts over: results stay right throughout, for
    # keys used before, during and after it fills, shorter and longer than a block.
    keys = [i.to_bytes(2, "big") * (1 + i % 50) for i in range(700)]
    data = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
    for _ in range(2):
        for key in keys:
            assert hmac_sha1(key, data) == hmac.digest(key, data, "sha1")
            assert hmac_sha256(key, data) == hmac.digest(key, data, "sha256")
    for key in reversed(keys):
        assert hmac_sha1(key, data + key) == hmac.digest(key, data + key, "sha1")
