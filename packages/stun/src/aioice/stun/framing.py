"""Framing of STUN over streams (TCP, TLS): sans-I/O, never raises on input.

Two framings exist:

- ``"stun"`` (RFC 8489 §6.2.2, RFC 8656 §11.5): messages follow each other; a
  STUN message's length is in its header, and a TURN ChannelData message (first
  two bits ``01``) is padded to a multiple of 4 bytes on streams.
- ``"rfc4571"`` (RFC 4571, used by ICE-TCP, RFC 6544): each frame is preceded by
  a 16-bit length.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

__all__ = ["MAX_FRAME", "StreamFramer"]

logger = logging.getLogger(__name__)

MAX_FRAME: Final = 0xFFFF + 20
"The largest frame the ``stun`` framing can carry, in bytes (``rfc4571``: 0xFFFF)."


class StreamFramer:
    """Split a byte stream into STUN / ChannelData frames, and frame outgoing ones.

    :meth:`feed` never raises: once the stream cannot be framed (a first byte that
    is neither STUN nor ChannelData), :attr:`broken` is set, the rest is
    discarded, and the adapter should close the connection.
    """

    __slots__ = ("_buffer", "broken", "framing")

    def __init__(self, framing: Literal["stun", "rfc4571"] = "stun") -> None:
        if framing not in ("stun", "rfc4571"):
            raise ValueError(f"unknown framing {framing!r}")
        self.framing = framing
        self._buffer = bytearray()
        #: The stream lost its framing; nothing more will be returned.
        self.broken = False

    def frame(self, data: bytes) -> bytes:
        """Return ``data`` framed for the stream."""
        # RFC 4571's 16-bit length prefix cannot carry more than 0xFFFF bytes.
        if len(data) > (0xFFFF if self.framing == "rfc4571" else MAX_FRAME):
            raise ValueError(f"frame of {len(data)} bytes is too large")
        if self.framing == "rfc4571":
            return len(data).to_bytes(2, "big") + data
        if data and 0x40 <= data[0] <= 0x7F and len(data) % 4:
            # RFC 8656 §12.5: ChannelData is padded to 4 bytes over streams.
            return data + bytes(-len(data) % 4)
        return data

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the stream; return the complete frames, in order."""
        if self.broken:
            return []
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        size = len(buffer)
        while True:
            if self.framing == "rfc4571":
                if size - pos < 2:
                    break
                length = (buffer[pos] << 8) | buffer[pos + 1]
                start, end, advance = pos + 2, pos + 2 + length, 2 + length
            else:
                if size - pos < 4:
                    break
                first = buffer[pos]
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                if first < 0x40:  # STUN message
                    start, end = pos, pos + 20 + length
                    advance = 20 + length
                elif first < 0x80:  # TURN ChannelData, padded on streams
                    start, end = pos, pos + 4 + length
                    advance = 4 + length + (-length % 4)
                else:
                    self.broken = True
                    buffer.clear()
                    logger.debug("stream framing lost: first byte 0x%02x", first)
                    return frames
            if size - pos < advance:
                break
            frames.append(bytes(buffer[start:end]))
            pos += advance
        del buffer[:pos]
        return frames
