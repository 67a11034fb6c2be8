"""Cached message layouts: the parser's fast path.

ICE and TURN traffic repeats a few message shapes: the checks of one peer all
carry the same attributes with the same lengths, only the values change. Once
:func:`~aioice.stun.parse_message` has parsed a message the slow way, it records
its shape here: which attribute headers stand where. A later message whose
header and first attribute header match is checked against the whole recorded
shape with one ``struct`` call and then decoded with a second one, instead of a
Python loop per attribute. Any difference sends it down the slow path, so the
result is always the same as the slow path's; only the speed differs.

The cache holds at most :data:`MAX_LAYOUTS` shapes and stops learning when full,
so random input cannot make the parser do unbounded extra work.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from .attributes import (
    DECODERS,
    KIND_BYTES,
    KIND_FLAG,
    KIND_UNSIGNED,
    KIND_UNSIGNED_64,
    LENGTH_CHECKED_BYTES,
)
from .errors import StunParseError

__all__ = ["MAX_LAYOUTS", "Layout", "find", "learn"]

MAX_LAYOUTS: Final = 256
_MAX_ATTRIBUTES: Final = 24
_TYPE_MI: Final = 0x0008
_TYPE_MI256: Final = 0x001C
_TYPE_FP: Final = 0x8028

Post = Callable[[Any, bytes], Any]


class Layout:
    """The shape of one message: its attribute headers and how to decode the values."""

    __slots__ = (
        "check",
        "expected",
        "fingerprint",
        "flags",
        "integrity_end",
        "names",
        "post",
        "sha256_end",
        "values",
    )

    def __init__(self, tlvs: list[tuple[int, int]]) -> None:
        check = ["!20x"]
        values = ["!20x"]
        expected: list[int] = []
        names: list[str] = []
        post: list[tuple[int, Post]] = []
        flags: list[str] = []
        #: Where MESSAGE-INTEGRITY(-SHA256) starts, 0 for none; whether FINGERPRINT is last.
        self.integrity_end = 0
        self.sha256_end = 0
        self.fingerprint = False
        pos = 20
        for attr_type, attr_len in tlvs:
            name, kind, decode = DECODERS[attr_type]
            padded = attr_len + (-attr_len & 3)
            check.append(f"HH{padded}x")
            expected += (attr_type, attr_len)
            if attr_type == _TYPE_MI:
                self.integrity_end = pos
            elif attr_type == _TYPE_MI256:
                self.sha256_end = pos
            elif attr_type == _TYPE_FP:
                self.fingerprint = True
            if (kind == KIND_UNSIGNED and attr_len == 4) or attr_type == _TYPE_FP:
                values.append(f"4xI{padded - 4}x")
            elif kind == KIND_UNSIGNED_64 and attr_len == 8:
                values.append("4xQ")
            else:
                values.append(f"4x{attr_len}s{padded - attr_len}x")
                if kind == KIND_FLAG:
                    flags.append(name)
                elif kind != KIND_BYTES and name not in LENGTH_CHECKED_BYTES:
                    post.append((len(names), decode))
            names.append(name)
            pos += 4 + padded
        self.check = struct.Struct("".join(check)).unpack_from
        self.expected = tuple(expected)
        self.values = struct.Struct("".join(values)).unpack_from
        self.names = tuple(names)
        self.post = tuple(post)
        self.flags = tuple(flags)

    def parse(self, data: bytes, tid: bytes) -> dict[str, Any] | None:
        """The attributes of ``data`` if it has this shape, else ``None``.

        Raises :class:`StunParseError` for a value the slow path would reject too.
        """
        if self.check(data) != self.expected:
            return None
        values = self.values(data)
        if self.post:
            values = list(values)  # type: ignore[assignment]
            for index, decode in self.post:
                try:
                    values[index] = decode(values[index], tid)  # type: ignore[index]
                except StunParseError:
                    raise
                except (ValueError, IndexError, OverflowError, struct.error) as exc:
                    name = self.names[index]
                    raise StunParseError(f"STUN attribute {name} is malformed") from exc
        attributes = dict(zip(self.names, values, strict=False))  # equal lengths by construction
        for name in self.flags:
            attributes[name] = None  # keeps the attribute's place in the order
        return attributes


_LAYOUTS: dict[bytes, Layout] = {}


def key(data: bytes) -> bytes:
    """The cache key of a message: its type, its length and its first attribute header."""
    return data[:4] + data[20:24]


def find(data: bytes) -> Layout | None:
    """The layout recorded for messages that start like ``data``, if any."""
    return _LAYOUTS.get(data[:4] + data[20:24])


def learn(data: bytes, parsed_attributes: int) -> None:
    """Record the shape of ``data``, a message the slow path parsed into
    ``parsed_attributes`` attributes without unknown, repeated or ignored ones."""
    k = key(data)
    if k in _LAYOUTS or len(_LAYOUTS) >= MAX_LAYOUTS:
        return
    tlvs = []
    pos = 20
    size = len(data)
    while pos < size:
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        tlvs.append((attr_type, attr_len))
        pos += 4 + attr_len + (-attr_len & 3)
    if len(tlvs) != parsed_attributes or len(tlvs) > _MAX_ATTRIBUTES:
        return
    _LAYOUTS[k] = Layout(tlvs)


def clear() -> None:
    """Forget every recorded layout."""
    _LAYOUTS.clear()
