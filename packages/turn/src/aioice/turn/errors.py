"""Exceptions raised by :mod:`aioice.turn`.

The tree::

    TurnError                        base class of the exceptions raised here
    ├── TurnStateError (RuntimeError) an API was called in a state that does not allow it
    └── TurnAllocationError (ConnectionError) the allocation could not be made or was lost

A request that the server rejects raises :class:`aioice.stun.TransactionFailed`,
which carries the server's error response, as aioice 0.x did; one that gets no
answer raises :class:`aioice.stun.TransactionTimeout`.
"""

from __future__ import annotations

__all__ = ["TurnAllocationError", "TurnError", "TurnStateError"]


class TurnError(Exception):
    """Base class of the exceptions raised by :mod:`aioice.turn`."""


class TurnStateError(TurnError, RuntimeError):
    """An API was used in a state that does not allow it (a programming error)."""


class TurnAllocationError(TurnError, ConnectionError):
    """The allocation could not be made, or was lost (its refresh failed)."""
