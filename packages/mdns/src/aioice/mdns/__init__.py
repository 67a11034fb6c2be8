"""aioice.mdns: mDNS names for ICE candidates (RFC 6762, draft-ietf-mmusic-mdns-ice-candidates).

- :class:`MdnsService`: a sans-I/O core that resolves ``<uuid>.local`` names (A and
  AAAA queries, retransmissions, timeout, TTL cache) and answers for names it publishes
  (announcements, goodbye). It reads browsers' answers robustly.
- :func:`create_mdns_hostname`, :func:`is_mdns_hostname`.
- :mod:`aioice.mdns.asyncio` (imported on first use): the shared multicast service.

dnspython is imported on first use, so ``import aioice.mdns`` stays light.
"""

from __future__ import annotations

import logging
from typing import Any

from .__about__ import __version__
from .names import create_mdns_hostname, is_mdns_hostname, normalize_name
from .service import (
    MDNS_ADDRESS,
    MDNS_ADDRESS6,
    MDNS_PORT,
    MdnsConfig,
    MdnsEvent,
    MdnsService,
    MdnsStats,
    Resolved,
    ResolveFailed,
    Transmit,
)

__all__ = [
    "MDNS_ADDRESS",
    "MDNS_ADDRESS6",
    "MDNS_PORT",
    "MdnsConfig",
    "MdnsEvent",
    "MdnsService",
    "MdnsStats",
    "ResolveFailed",
    "Resolved",
    "Transmit",
    "__version__",
    "create_mdns_hostname",
    "is_mdns_hostname",
    "normalize_name",
]


def __getattr__(name: str) -> Any:
    if name == "asyncio":
        import importlib

        return importlib.import_module(".asyncio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logging.getLogger(__name__).addHandler(logging.NullHandler())
