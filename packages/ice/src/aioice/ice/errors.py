"""Exceptions raised by :mod:`aioice.ice`.

The tree::

    IceError                              base class of every exception raised here
    ├── CandidateParseError (ValueError)  a ``candidate:`` line that cannot be parsed
    ├── IceStateError (RuntimeError)      an API was called in a state that does not allow it
    ├── IceFailedError (ConnectionError)  ICE could not connect
    └── ConnectionClosedError (ConnectionError) the connection is closed

``Connection.connect()`` raises :class:`ConnectionError` (a builtin, as in aioice
0.x) when ICE fails: ``IceFailedError`` is that error with the agent's reason.
"""

from __future__ import annotations

__all__ = ["ConnectionClosedError", "IceError", "IceFailedError", "IceStateError"]


class IceError(Exception):
    """Base class of the exceptions raised by :mod:`aioice.ice`."""


class IceStateError(IceError, RuntimeError):
    """An API was used in a state that does not allow it (a programming error)."""


class IceFailedError(IceError, ConnectionError):
    """ICE could not connect: every candidate pair failed or the time ran out."""


class ConnectionClosedError(IceError, ConnectionError):
    """The connection is closed: nothing more can be sent or received.

    (Not to be confused with the event :class:`aioice.ice.ConnectionClosed`.)
    """
