"""HMAC for message integrity, with the keyed hash state cached per key.

``hmac.digest`` sets the key up again on every call, which costs as much as the
hashing of a small STUN message. ICE and TURN sign every message with one of a
few keys, so the inner and outer states (RFC 2104) are kept per key and copied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

__all__ = ["hmac_sha1", "hmac_sha256"]

_BLOCK: Final = 64  # SHA-1 and SHA-256 block size
_MAX_KEYS: Final = 256
_IPAD: Final = bytes.maketrans(bytes(range(256)), bytes(b ^ 0x36 for b in range(256)))
_OPAD: Final = bytes.maketrans(bytes(range(256)), bytes(b ^ 0x5C for b in range(256)))


def _factory(new: Callable[..., Any]) -> Callable[[bytes, bytes], bytes]:
    states: dict[bytes, tuple[Any, Any]] = {}

    def digest(key: bytes, data: bytes) -> bytes:
        state = states.get(key)
        if state is None:
            block = new(key).digest() if len(key) > _BLOCK else key
            block = block.ljust(_BLOCK, b"\0")
            state = (new(block.translate(_IPAD)), new(block.translate(_OPAD)))
            if len(states) >= _MAX_KEYS:
                states.clear()
            states[key] = state
        inner = state[0].copy()
        inner.update(data)
        outer = state[1].copy()
        outer.update(inner.digest())
        result: bytes = outer.digest()
        return result

    return digest


hmac_sha1: Final = _factory(hashlib.sha1)
"HMAC-SHA1(key, data), as ``hmac.digest(key, data, 'sha1')``."
hmac_sha256: Final = _factory(hashlib.sha256)
"HMAC-SHA256(key, data), as ``hmac.digest(key, data, 'sha256')``."
