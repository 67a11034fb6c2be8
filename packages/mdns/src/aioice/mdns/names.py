"""mDNS host names for ICE candidates (draft-ietf-mmusic-mdns-ice-candidates §3.1)."""

from __future__ import annotations

import re
import uuid
from random import Random
from typing import Final

__all__ = ["create_mdns_hostname", "is_mdns_hostname", "normalize_name"]

_HOSTNAME: Final = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local\.?$")


def create_mdns_hostname(rng: Random | None = None) -> str:
    """A new random ``<uuid4>.local`` name; ``rng`` makes it reproducible in tests."""
    value = uuid.UUID(int=rng.getrandbits(128), version=4) if rng is not None else uuid.uuid4()
    return f"{value}.local"


def is_mdns_hostname(name: str) -> bool:
    """Whether ``name`` is a single label under ``.local``, as ICE candidates use."""
    return _HOSTNAME.fullmatch(name) is not None  # match() lets a final newline through


def normalize_name(name: str) -> str:
    """The form names are kept in: lower case, without the final dot (DNS is case-blind)."""
    return name.rstrip(".").lower()
