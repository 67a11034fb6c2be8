"""Candidate pairs and their states (RFC 8445 §6.1.2), with the state transition table."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aioice.stun import Address

if TYPE_CHECKING:
    from aioice.stun import Transaction

    from .candidate import Candidate

__all__ = ["PAIR_TRANSITIONS", "CandidatePair", "PairState", "PairStats"]


class PairState(enum.Enum):
    """The state of a candidate pair (RFC 8445 §6.1.2.6)."""

    FROZEN = 0
    WAITING = 1
    IN_PROGRESS = 2
    SUCCEEDED = 3
    FAILED = 4


_S = PairState

PAIR_TRANSITIONS: Final[dict[PairState, frozenset[PairState]]] = {
    # §6.1.2.6 unfreezing, §6.1.4.2 a check is sent, §7.2.5.3.3 unfreezing on success.
    _S.FROZEN: frozenset({_S.WAITING}),
    # A triggered check cancelled the one in flight (§7.3.1.4), whose response still
    # counts: Waiting -> Succeeded.
    _S.WAITING: frozenset({_S.IN_PROGRESS, _S.SUCCEEDED}),
    # §7.2.5.3, §7.2.5.2 outcomes; §7.3.1.4 a triggered check cancels the one in flight
    # and §7.2.5.1 a role conflict (487) retries: both back to Waiting.
    _S.IN_PROGRESS: frozenset({_S.SUCCEEDED, _S.FAILED, _S.WAITING}),
    _S.SUCCEEDED: frozenset(),
    # §7.3.1.4: a check received on a failed pair triggers a new check. A check
    # cancelled by a triggered check is still heard: its success response may come
    # after the triggered check failed (an error or a non-symmetric response).
    _S.FAILED: frozenset({_S.WAITING, _S.SUCCEEDED}),
}
"Allowed pair state changes; :meth:`CandidatePair.set_state` enforces them."


@dataclass(slots=True)
class PairStats:
    """Counters of one candidate pair."""

    requests_sent: int = 0
    "Connectivity and consent checks sent, retransmissions included."
    requests_received: int = 0
    "Authenticated checks received from the remote candidate."
    responses_sent: int = 0
    responses_received: int = 0
    "Success responses received."
    packets_sent: int = 0
    "Application datagrams sent (counted by the adapter)."
    packets_received: int = 0
    "Application datagrams received (counted by the adapter)."
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt: float | None = None
    "Round-trip time of the last successful check, in seconds."
    last_received: float | None = None
    "When a check or response last arrived on this pair (agent time)."
    consent_at: float | None = None
    "When consent was last granted (a success response), RFC 7675."


class CandidatePair:
    """A local and a remote candidate of one component, checked together.

    ``base`` is the local transport address the checks go out from (the host
    address for host and server-reflexive candidates, the relayed address for
    relayed ones): the adapter sends from the socket or relay bound to it.
    """

    __slots__ = (
        "base",
        "checked_at",
        "component",
        "foundation",
        "local",
        "nominated",
        "nominating",
        "priority",
        "remote",
        "remote_address",
        "remote_nominated",
        "state",
        "stats",
        "transaction",
    )

    def __init__(self, local: Candidate, base: Address, remote: Candidate, priority: int) -> None:
        self.local = local
        self.base = base
        self.remote = remote
        self.remote_address: Address = (remote.network_host, remote.port)
        self.component = local.component
        self.foundation = f"{local.foundation}:{remote.foundation}"
        self.priority = priority
        self.state = PairState.FROZEN
        #: Nominated: the pair carries this component's data (RFC 8445 §8.1.1).
        self.nominated = False
        #: A USE-CANDIDATE check of ours is in flight (controlling, regular nomination).
        self.nominating = False
        #: The controlling peer sent USE-CANDIDATE on this pair (we are controlled).
        self.remote_nominated = False
        self.transaction: Transaction | None = None
        #: When the latest ordinary check of this pair was sent.
        self.checked_at: float | None = None
        self.stats = PairStats()

    @property
    def key(self) -> tuple[int, Address, Address]:
        """``(component, base, remote address)``: what identifies a pair on the wire."""
        return (self.component, self.base, self.remote_address)

    # aioice 0.x names
    @property
    def local_candidate(self) -> Candidate:
        return self.local

    @property
    def remote_candidate(self) -> Candidate:
        return self.remote

    @property
    def remote_addr(self) -> Address:
        return self.remote_address

    def set_state(self, state: PairState) -> None:
        """Change state, as :data:`PAIR_TRANSITIONS` allows.

        :raises ValueError: for a transition the table does not allow (a bug).
        """
        if state is not self.state:
            if state not in PAIR_TRANSITIONS[self.state]:
                raise ValueError(f"pair {self}: {self.state.name} -> {state.name} not allowed")
            self.state = state

    def __repr__(self) -> str:
        return (
            f"CandidatePair({self.component} {self.local.type} {self.base[0]}:{self.base[1]}"
            f" -> {self.remote.type} {self.remote_address[0]}:{self.remote_address[1]}"
            f" {self.state.name}{' nominated' if self.nominated else ''})"
        )
