"""aioice 0.x's module tunables, read from :mod:`aioice.ice` each time they are used,
so that patching ``aioice.ice.CONSENT_INTERVAL`` (as aiortc's tests do) takes effect."""

from __future__ import annotations

import sys

__all__ = ["consent_failures", "consent_interval"]


def consent_interval() -> float:
    """``aioice.ice.CONSENT_INTERVAL``: mean seconds between consent checks."""
    return float(sys.modules["aioice.ice"].CONSENT_INTERVAL)


def consent_failures() -> int:
    """``aioice.ice.CONSENT_FAILURES``: consent is lost after this many intervals."""
    return int(sys.modules["aioice.ice"].CONSENT_FAILURES)
