"""Events a :class:`~aioice.turn.TurnClient` reports through ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass

from aioice.stun import Address, TransactionError

__all__ = [
    "AllocationFailed",
    "AllocationLost",
    "AllocationSucceeded",
    "Closed",
    "DataReceived",
    "SendFailed",
    "TurnEvent",
]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """Base class of TURN client events."""


@dataclass(frozen=True, slots=True)
class AllocationSucceeded(TurnEvent):
    """The server created the allocation (RFC 8656 §7.3)."""

    relayed_addresses: tuple[Address, ...]
    "The relayed transport addresses: one, or two for a dual allocation (§7.2)."
    mapped_address: Address | None
    "The client's server-reflexive address as the server saw it (XOR-MAPPED-ADDRESS)."
    lifetime: int
    "Seconds until the allocation expires unless refreshed; the client refreshes it."


@dataclass(frozen=True, slots=True)
class AllocationFailed(TurnEvent):
    """The Allocate request failed; the client is now closed."""

    error: TransactionError
    "What failed: ``TransactionFailed`` carries the server's response, else a timeout."
    alternate_server: Address | None = None
    "With a 300 (Try Alternate) response, where the server sends the client (§7.3)."

    @property
    def error_code(self) -> int | None:
        """The server's error code, or ``None`` when there was no error response."""
        response = self.error.response
        return response.error_code if response is not None else None


@dataclass(frozen=True, slots=True)
class AllocationLost(TurnEvent):
    """A refresh failed, so the allocation is gone (RFC 8656 §8); the client is closed."""

    error: TransactionError
    "Why the refresh failed."


@dataclass(frozen=True, slots=True)
class DataReceived(TurnEvent):
    """A peer sent data through the relay (ChannelData or a Data indication)."""

    data: bytes
    "The application data."
    peer: Address
    "The peer that sent it."


@dataclass(frozen=True, slots=True)
class SendFailed(TurnEvent):
    """Data for a peer could not be sent: the permission or channel was refused."""

    peer: Address
    "The peer."
    error: TransactionError
    "The failed CreatePermission or ChannelBind transaction."
    dropped: int
    "How many queued datagrams for this peer were dropped."


@dataclass(frozen=True, slots=True)
class Closed(TurnEvent):
    """The allocation was deleted (or given up) and the client is closed."""
