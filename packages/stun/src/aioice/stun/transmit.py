"""What sans-I/O cores hand to their adapter: addresses and datagrams to send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Address", "Transmit"]

Address: TypeAlias = tuple[str, int]
"An ``(host, port)`` pair; the host is an IP address literal."


@dataclass(frozen=True, slots=True)
class Transmit:
    """One datagram a core asks its adapter to send."""

    data: bytes
    "The bytes to send."
    remote: Address
    "Where to send them."
    local: Address | None = None
    "Which local socket to send from, when the core owns several; ``None`` for the only one."
