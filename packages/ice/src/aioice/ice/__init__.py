"""aioice.ice: the ICE agent (RFC 8445).

- :class:`IceAgent`: the sans-I/O agent (pairing, pacing, checks, nomination,
  consent freshness), with :class:`IceConfig` and its events.
- :class:`Connection`: aioice 0.x's asyncio API around it.
- :class:`Candidate`: ``candidate:`` lines (RFC 8839), priorities and foundations.

``CONSENT_INTERVAL`` and ``CONSENT_FAILURES`` are aioice 0.x's tunables: the
``Connection`` reads them when it uses them, so patching them takes effect.
"""

import logging

from .__about__ import __version__
from .agent import IceAgent
from .candidate import (
    Candidate,
    CandidateParseError,
    candidate_foundation,
    candidate_pair_priority,
    candidate_priority,
)
from .config import IceConfig, Nomination
from .connection import Connection, ConnectionClosed, ConnectionEvent, TransportPolicy
from .errors import ConnectionClosedError, IceError, IceFailedError, IceStateError
from .events import (
    ConsentExpired,
    IceEvent,
    IceState,
    IceStateChanged,
    LocalCandidateDiscovered,
    PairStateChanged,
    RemoteCandidateDiscovered,
    RoleChanged,
    SelectedPairChanged,
)
from .gather import HostNet, SystemNet
from .pair import CandidatePair, PairState, PairStats

CONSENT_FAILURES = 6
"Consent is lost after ``CONSENT_INTERVAL * CONSENT_FAILURES`` seconds without a response."
CONSENT_INTERVAL = 5
"Mean seconds between consent checks (RFC 7675)."

__all__ = [
    "CONSENT_FAILURES",
    "CONSENT_INTERVAL",
    "Candidate",
    "CandidatePair",
    "CandidateParseError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionEvent",
    "ConsentExpired",
    "HostNet",
    "IceAgent",
    "IceConfig",
    "IceError",
    "IceEvent",
    "IceFailedError",
    "IceState",
    "IceStateChanged",
    "IceStateError",
    "LocalCandidateDiscovered",
    "Nomination",
    "PairState",
    "PairStateChanged",
    "PairStats",
    "RemoteCandidateDiscovered",
    "RoleChanged",
    "SelectedPairChanged",
    "SystemNet",
    "TransportPolicy",
    "__version__",
    "candidate_foundation",
    "candidate_pair_priority",
    "candidate_priority",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
