"""Events of the :class:`~aioice.ice.IceAgent`, drained with ``next_event()``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from .candidate import Candidate
    from .pair import CandidatePair, PairState

__all__ = [
    "ConsentExpired",
    "IceEvent",
    "IceState",
    "IceStateChanged",
    "LocalCandidateDiscovered",
    "PairStateChanged",
    "RemoteCandidateDiscovered",
    "RoleChanged",
    "SelectedPairChanged",
]


class IceState(enum.Enum):
    """The agent's state (the ``RTCIceTransportState`` names, which aiortc uses)."""

    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    "Every component has a selected (nominated) pair; checks may still be running."
    COMPLETED = "completed"
    "Every component has a selected pair and the check list is done."
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class IceStateChanged:
    """The agent moved to ``state``."""

    state: IceState
    reason: str = ""
    "Why, for ``FAILED`` (and ``CLOSED`` after a consent loss)."


@dataclass(frozen=True, slots=True)
class PairStateChanged:
    """A pair changed state (a trace of the checks)."""

    pair: CandidatePair
    state: PairState


@dataclass(frozen=True, slots=True)
class SelectedPairChanged:
    """``pair`` now carries ``component``'s data: send from ``pair.base`` to
    ``pair.remote_address``."""

    component: int
    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class LocalCandidateDiscovered:
    """A check response revealed a peer-reflexive local candidate (RFC 8445 §7.2.5.3.1)."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class RemoteCandidateDiscovered:
    """A check came from an unknown address: a peer-reflexive remote candidate
    (RFC 8445 §7.3.1.3)."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """A role conflict (RFC 8445 §7.3.1.1, §7.2.5.1) switched our role."""

    controlling: bool


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    """No consent response on ``component``'s selected pair for the consent timeout
    (RFC 7675 §5.1): the agent stops sending there and fails."""

    component: int
    pair: CandidatePair


IceEvent: TypeAlias = (
    "IceStateChanged | PairStateChanged | SelectedPairChanged | LocalCandidateDiscovered"
    " | RemoteCandidateDiscovered | RoleChanged | ConsentExpired"
)
