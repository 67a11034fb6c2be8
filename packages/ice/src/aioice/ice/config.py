"""The agent's configuration: one frozen dataclass with documented units."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from aioice.stun import TransactionConfig

__all__ = ["IceConfig", "Nomination"]


class Nomination(enum.Enum):
    """How the controlling agent nominates (RFC 8445 §8.1.1; RFC 5245 §8.1.1.2)."""

    REGULAR = "regular"
    "Check first, then repeat the check of the chosen valid pair with USE-CANDIDATE."
    AGGRESSIVE = "aggressive"
    "Every check carries USE-CANDIDATE; the best pair that succeeds is used (RFC 5245)."


@dataclass(frozen=True, slots=True, kw_only=True)
class IceConfig:
    """Timers and policies of an :class:`~aioice.ice.IceAgent`; times in seconds."""

    ta: float = 0.05
    "Pacing of connectivity checks: at most one new check every ``ta`` (RFC 8445 §14.2)."
    check: TransactionConfig = field(
        default_factory=lambda: TransactionConfig(rto=0.5, retransmissions=6, max_rto=1.6, rm=4)
    )
    """Retransmissions of each connectivity check (RFC 8445 §14.3): sends at 0, 0.5,
    1.5, 3.1, 4.7, 6.3 and 7.9 s, failure at 9.9 s (RTO capped at 1.6 s, a final wait of
    four initial RTOs rather than RFC 8489's sixteen)."""
    nomination: Nomination = Nomination.REGULAR
    "Regular or aggressive nomination, when controlling."
    nomination_delay: float = 0.5
    """How long the controlling agent waits, after a pair succeeds, for a pair of higher
    priority before it nominates the best valid pair; a pair that is the best one still
    possible is nominated at once."""
    failure_timeout: float = 10.0
    """Bound on a failed connect: this long after checks start (and the remote
    end-of-candidates arrived), with no pair selected, the agent fails."""
    consent_interval: float = 5.0
    "Mean interval of consent checks on selected pairs (RFC 7675 §5.1: randomized ±20 %)."
    consent_failures: int = 6
    """Consent is lost when this many consent checks in a row fail (each one retransmitted
    as ``check`` says), as in aioice 0.x; a healthy link never loses it."""
    consent_max_age: float = 30.0
    """RFC 7675 §5.1: consent also expires this many seconds after the last success
    response, however few checks have failed."""
    max_pairs: int = 100
    "Limit on candidate pairs (RFC 8445 §6.1.2.5)."

    def __post_init__(self) -> None:
        if self.ta <= 0:
            raise ValueError("ta must be positive")
        if self.failure_timeout <= 0 or self.nomination_delay < 0:
            raise ValueError("failure_timeout must be positive and nomination_delay >= 0")
        if self.consent_interval <= 0 or self.consent_failures < 1 or self.consent_max_age <= 0:
            raise ValueError(
                "consent_interval and consent_max_age must be positive, consent_failures >= 1"
            )
        if self.max_pairs < 1:
            raise ValueError("max_pairs must be at least 1")
