"""TURN protocol constants shared by the client and the test server (RFC 8656)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHANNEL_LIFETIME",
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "FAMILY_IPV4",
    "FAMILY_IPV6",
    "PERMISSION_LIFETIME",
    "UDP_TRANSPORT",
]

UDP_TRANSPORT: Final = 17 << 24
"REQUESTED-TRANSPORT for UDP relaying: protocol 17 in the top byte (RFC 8656 §18.8)."
FAMILY_IPV4: Final = 0x01
"REQUESTED-ADDRESS-FAMILY value for IPv4 (RFC 8656 §18.6)."
FAMILY_IPV6: Final = 0x02
"REQUESTED-ADDRESS-FAMILY value for IPv6 (RFC 8656 §18.6)."
CHANNEL_MIN: Final = 0x4000
"The first channel number (RFC 8656 §12)."
CHANNEL_MAX: Final = 0x4FFF
"The last channel number (RFC 8656 §12)."
PERMISSION_LIFETIME: Final = 300.0
"A permission lasts 300 s (RFC 8656 §9)."
CHANNEL_LIFETIME: Final = 600.0
"A channel binding lasts 600 s (RFC 8656 §12)."
