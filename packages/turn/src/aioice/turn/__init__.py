"""aioice.turn: a TURN client (RFC 8656, RFC 5766, RFC 6156).

- :class:`TurnClient`: one allocation as a sans-I/O core, driven by bytes and ``now``.
- :mod:`aioice.turn.events`: what the core reports.
- :func:`rest_credentials`: ephemeral credentials (the TURN REST API).
- :mod:`aioice.turn.asyncio` (imported on first use): ``create_turn_endpoint``,
  aioice 0.x's way of getting a datagram transport over a relay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from .client import (
    TurnClient,
    TurnClientConfig,
    TurnClientStats,
    TurnState,
    is_channel_data,
)
from .constants import CHANNEL_LIFETIME, PERMISSION_LIFETIME
from .errors import TurnAllocationError, TurnError, TurnStateError
from .events import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Closed,
    DataReceived,
    SendFailed,
    TurnEvent,
)
from .rest import rest_credentials

if TYPE_CHECKING:
    from .asyncio import TurnTransport, create_turn_endpoint

__all__ = [
    "CHANNEL_LIFETIME",
    "PERMISSION_LIFETIME",
    "AllocationFailed",
    "AllocationLost",
    "AllocationSucceeded",
    "Closed",
    "DataReceived",
    "SendFailed",
    "TurnAllocationError",
    "TurnClient",
    "TurnClientConfig",
    "TurnClientStats",
    "TurnError",
    "TurnEvent",
    "TurnState",
    "TurnStateError",
    "TurnTransport",
    "__version__",
    "create_turn_endpoint",
    "is_channel_data",
    "rest_credentials",
]


def __getattr__(name: str) -> Any:
    # The asyncio adapter is imported lazily, as aioice 0.x users import
    # ``aioice.turn.create_turn_endpoint`` from here.
    if name in ("asyncio", "TurnTransport", "create_turn_endpoint"):
        import importlib

        module = importlib.import_module(".asyncio", __name__)
        return module if name == "asyncio" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logging.getLogger(__name__).addHandler(logging.NullHandler())
