"""What sans-I/O cores hand to their adapter: addresses and datagrams to send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Address", "Transmit", "parse_address"]

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


def parse_address(value: str, default_port: int = 3478) -> Address:
    """Parse ``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port
