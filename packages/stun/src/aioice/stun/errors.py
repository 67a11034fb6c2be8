"""Exceptions raised by :mod:`aioice.stun`.

The tree::

    StunError                       base class of every exception raised here
    ├── StunParseError (ValueError) bytes from the network are not a valid STUN message
    ├── StunStateError (RuntimeError) an API was called in a state that does not allow it
    ├── NatDiscoveryError           NAT behaviour discovery could not complete
    └── TransactionError            a client transaction ended without a success response
        ├── TransactionFailed       the server answered with an error response
        └── TransactionTimeout      no response came before the retransmission timeout

``TransactionError``, ``TransactionFailed`` and ``TransactionTimeout`` keep the
names they have in aioice 0.x, so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message

__all__ = [
    "NatDiscoveryError",
    "StunError",
    "StunParseError",
    "StunStateError",
    "TransactionError",
    "TransactionFailed",
    "TransactionTimeout",
]


class StunError(Exception):
    """Base class of the exceptions raised by :mod:`aioice.stun`."""


class StunParseError(StunError, ValueError):
    """Raised by :func:`~aioice.stun.parse_message` for malformed input.

    It is the only exception a parser raises on bad bytes; it subclasses
    :class:`ValueError` because aioice 0.x raised plain ``ValueError``.
    """


class StunStateError(StunError, RuntimeError):
    """An API was used in a state that does not allow it (a programming error)."""


class TransactionError(StunError):
    """A STUN client transaction ended without a success response."""

    response: Message | None = None
    "The error response, if the server sent one."


class TransactionFailed(TransactionError):  # noqa: N818 (aioice 0.x name)
    """The server answered the request with an error response."""

    response: Message

    def __init__(self, response: Message) -> None:
        super().__init__(response)
        self.response = response

    def __str__(self) -> str:
        out = "STUN transaction failed"
        error = self.response.attributes.get("ERROR-CODE")
        if error is not None:
            out += f" ({error[0]} - {error[1]})"
        return out


class TransactionTimeout(TransactionError):  # noqa: N818 (aioice 0.x name)
    """No response was received before the retransmission timer expired."""

    def __str__(self) -> str:
        return "STUN transaction timed out"


class NatDiscoveryError(StunError):
    """NAT behaviour discovery could not run to the end (RFC 5780 §4)."""
