"""Exceptions raised by :mod:`aioice.ice`.

The tree::

    IceError                              base class of every exception raised here
    ├── CandidateParseError (ValueError)  a ``candidate:`` line that cannot be parsed
    ├── IceStateError (RuntimeError)      an API was called in a state that does not allow it
    ├── IceFailedError (ConnectionError)  ICE could not connect
    └── ConnectionClosed (ConnectionError) the connection is closed (aioice 0.x name)

``Connection.connect()`` raises :class:`ConnectionError` (a builtin, as in aioice
0.x) when ICE fails: ``IceFailedError`` is that error with the agent's reason.
"""

from __future__ import annotations

__all__ = ["ConnectionClosed", "IceError", "IceFailedError", "IceStateError"]


class IceError(Exception):
    """Base class of the exceptions raised by :mod:`aioice.ice`."""


class IceStateError(IceError, RuntimeError):
    """An API was used in a state that does not allow it (a programming error)."""


class IceFailedError(IceError, ConnectionError):
    """ICE could not connect: every candidate pair failed or the time ran out."""


class ConnectionClosed(IceError, ConnectionError):  # noqa: N818 (aioice 0.x name)
    """The connection is closed: nothing more can be sent or received."""
