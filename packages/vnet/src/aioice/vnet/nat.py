"""NAT behaviour along RFC 4787's axes: mapping, filtering, lifetime, hairpinning."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Final

from aioice.stun import Address

__all__ = [
    "FULL_CONE",
    "PORT_RESTRICTED_CONE",
    "RESTRICTED_CONE",
    "SYMMETRIC",
    "UDP_BLOCKED",
    "Dependency",
    "Nat",
    "NatBehavior",
]


class Dependency(enum.Enum):
    """What a mapping or a filter depends on (RFC 4787 §4.1, §5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


EIM: Final = Dependency.ENDPOINT_INDEPENDENT
ADM: Final = Dependency.ADDRESS_DEPENDENT
APDM: Final = Dependency.ADDRESS_AND_PORT_DEPENDENT


@dataclass(frozen=True, slots=True, kw_only=True)
class NatBehavior:
    """How a NAT maps and filters (RFC 4787)."""

    mapping: Dependency = EIM
    "Mapping behaviour (§4.1)."
    filtering: Dependency = APDM
    "Filtering behaviour (§5)."
    mapping_lifetime: float = 30.0
    "Seconds a mapping survives without outbound traffic (§4.3: at least 120 s recommended)."
    hairpinning: bool = False
    "Whether a host behind the NAT reaches another one through the external address (§6)."
    port_preservation: bool = False
    "Keep the internal port as the external one when it is free (§4.1)."
    blocked_udp: bool = False
    "Drop all UDP: the network of a client that can only use TURN over TCP."


FULL_CONE: Final = NatBehavior(mapping=EIM, filtering=EIM)
RESTRICTED_CONE: Final = NatBehavior(mapping=EIM, filtering=ADM)
PORT_RESTRICTED_CONE: Final = NatBehavior(mapping=EIM, filtering=APDM)
SYMMETRIC: Final = NatBehavior(mapping=APDM, filtering=APDM)
UDP_BLOCKED: Final = NatBehavior(blocked_udp=True)


def _key(dependency: Dependency, remote: Address) -> tuple[str, int] | tuple[str] | tuple[()]:
    if dependency is EIM:
        return ()
    if dependency is ADM:
        return (remote[0],)
    return remote


@dataclass(slots=True)
class _Mapping:
    internal: Address
    external: Address
    expires: float
    # Remotes this mapping sent to, for filtering: remote key -> last time.
    contacted: dict[tuple[str, int] | tuple[str] | tuple[()], float] = field(default_factory=dict)


class Nat:
    """The translation table of one NAT with one external address."""

    def __init__(self, external_ip: str, behavior: NatBehavior, rng: random.Random) -> None:
        self.external_ip = external_ip
        self.behavior = behavior
        self._rng = rng
        self._by_internal: dict[tuple[Address, tuple[object, ...]], _Mapping] = {}
        self._by_external: dict[Address, _Mapping] = {}

    def outbound(self, internal: Address, remote: Address, now: float) -> Address | None:
        """The external source of a packet from ``internal`` to ``remote``; ``None`` drops it."""
        if self.behavior.blocked_udp:
            return None
        key = (internal, _key(self.behavior.mapping, remote))
        mapping = self._by_internal.get(key)
        if mapping is not None and mapping.expires <= now:
            self._forget(key, mapping)
            mapping = None
        if mapping is None:
            mapping = _Mapping(internal, (self.external_ip, self._port(internal[1])), 0.0)
            self._by_internal[key] = mapping
            self._by_external[mapping.external] = mapping
        mapping.expires = now + self.behavior.mapping_lifetime
        mapping.contacted[_key(self.behavior.filtering, remote)] = now
        return mapping.external

    def inbound(self, external: Address, remote: Address, now: float) -> Address | None:
        """Where a packet from ``remote`` to ``external`` goes inside, or ``None`` (filtered)."""
        mapping = self._by_external.get(external)
        if mapping is None or mapping.expires <= now:
            return None
        if _key(self.behavior.filtering, remote) not in mapping.contacted:
            return None
        return mapping.internal

    @property
    def mappings(self) -> int:
        """Live mappings (expired ones are forgotten lazily)."""
        return len(self._by_external)

    def _forget(self, key: tuple[Address, tuple[object, ...]], mapping: _Mapping) -> None:
        self._by_internal.pop(key, None)
        self._by_external.pop(mapping.external, None)

    def _port(self, wanted: int) -> int:
        if self.behavior.port_preservation and (self.external_ip, wanted) not in self._by_external:
            return wanted
        for _ in range(100_000):
            port = self._rng.randrange(1024, 65536)
            if (self.external_ip, port) not in self._by_external:
                return port
        raise RuntimeError("NAT ran out of ports")
