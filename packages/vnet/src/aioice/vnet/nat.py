"""NAT behaviour along RFC 4787's axes: mapping, filtering, lifetime, hairpinning; TCP
mappings (RFC 5382); and the same filtering as an IPv6 firewall without translation
(RFC 6092)."""

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
    "Firewall",
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
    "Drop all UDP, IPv4 and IPv6 (not TCP): a network where only TURN over TCP works."


FULL_CONE: Final = NatBehavior(mapping=EIM, filtering=EIM)
RESTRICTED_CONE: Final = NatBehavior(mapping=EIM, filtering=ADM)
PORT_RESTRICTED_CONE: Final = NatBehavior(mapping=EIM, filtering=APDM)
SYMMETRIC: Final = NatBehavior(mapping=APDM, filtering=APDM)
UDP_BLOCKED: Final = NatBehavior(blocked_udp=True)


FilterKey = tuple[str, int] | tuple[str] | tuple[()]


def _key(dependency: Dependency, remote: Address) -> FilterKey:
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
    contacted: dict[FilterKey, float] = field(default_factory=dict)

    def touch(self, behavior: NatBehavior, remote: Address, now: float) -> None:
        """An outbound packet to ``remote``: the mapping lives on (RFC 4787 §4.3) and
        ``remote`` may answer (§5)."""
        self.expires = now + behavior.mapping_lifetime
        self.contacted[_key(behavior.filtering, remote)] = now

    def admits(self, behavior: NatBehavior, remote: Address, now: float) -> bool:
        """Whether an inbound packet from ``remote`` passes the filter (RFC 4787 §5)."""
        return self.expires > now and _key(behavior.filtering, remote) in self.contacted


@dataclass(slots=True)
class _TcpMapping:
    external: Address
    connections: int = 0


class Nat:
    """The translation tables (UDP and TCP) of one NAT with one external address.

    UDP and TCP mappings share the external port space: an external address names one
    internal endpoint whatever the transport.
    """

    def __init__(self, external_ip: str, behavior: NatBehavior, rng: random.Random) -> None:
        self.external_ip = external_ip
        self.behavior = behavior
        self._rng = rng
        self._by_internal: dict[tuple[Address, tuple[object, ...]], _Mapping] = {}
        self._by_external: dict[Address, _Mapping] = {}
        self._tcp: dict[Address, _TcpMapping] = {}
        self._tcp_by_external: dict[Address, _TcpMapping] = {}

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
        mapping.touch(self.behavior, remote, now)
        return mapping.external

    def inbound(self, external: Address, remote: Address, now: float) -> Address | None:
        """Where a packet from ``remote`` to ``external`` goes inside, or ``None`` (filtered)."""
        mapping = self._by_external.get(external)
        if mapping is None or not mapping.admits(self.behavior, remote, now):
            return None
        return mapping.internal

    def tcp_outbound(self, internal: Address) -> Address:
        """The external address of a TCP connection from ``internal``.

        RFC 5382: the mapping is endpoint-independent (REQ-1) whatever
        :attr:`NatBehavior.mapping` says, ``blocked_udp`` does not apply, and it lives
        while a connection uses it (:meth:`tcp_release`); the connection itself never
        idles out (REQ-5 asks for at least 2 hours 4 minutes). No inbound connection is
        ever accepted on it: there is no port forwarding.
        """
        mapping = self._tcp.get(internal)
        if mapping is None:
            mapping = _TcpMapping((self.external_ip, self._port(internal[1])))
            self._tcp[internal] = mapping
            self._tcp_by_external[mapping.external] = mapping
        mapping.connections += 1
        return mapping.external

    def tcp_release(self, internal: Address) -> None:
        """A TCP connection from ``internal`` closed; the last one frees the mapping."""
        mapping = self._tcp.get(internal)
        if mapping is None:
            return
        mapping.connections -= 1
        if mapping.connections <= 0:
            del self._tcp[internal]
            del self._tcp_by_external[mapping.external]

    @property
    def mappings(self) -> int:
        """Live UDP mappings (expired ones are forgotten lazily)."""
        return len(self._by_external)

    @property
    def tcp_mappings(self) -> int:
        """TCP mappings in use by connections."""
        return len(self._tcp)

    def _forget(self, key: tuple[Address, tuple[object, ...]], mapping: _Mapping) -> None:
        self._by_internal.pop(key, None)
        self._by_external.pop(mapping.external, None)

    def _taken(self, port: int) -> bool:
        address = (self.external_ip, port)
        return address in self._by_external or address in self._tcp_by_external

    def _port(self, wanted: int) -> int:
        if self.behavior.port_preservation and not self._taken(wanted):
            return wanted
        for _ in range(100_000):
            port = self._rng.randrange(1024, 65536)
            if not self._taken(port):
                return port
        raise RuntimeError("NAT ran out of ports")


class Firewall:
    """Stateful filtering of IPv6 without translation (RFC 6092), for one transport.

    Hosts behind it have global addresses; an outbound packet opens a pinhole for its
    internal address, which admits inbound packets by the same rules as a NAT mapping of
    the same :class:`NatBehavior`: the filtering dependency (RFC 6092 REC-11, with RFC
    4787 §5's keys) and the mapping lifetime. ``blocked_udp`` blocks a UDP firewall
    both ways (``udp=False`` for TCP's).
    """

    def __init__(self, behavior: NatBehavior, *, udp: bool = True) -> None:
        self.behavior = behavior
        self.blocked = udp and behavior.blocked_udp
        self._pinholes: dict[Address, _Mapping] = {}

    def outbound(self, internal: Address, remote: Address, now: float) -> bool:
        """Record a packet from ``internal`` to ``remote``; ``False`` drops it (blocked)."""
        if self.blocked:
            return False
        pinhole = self._pinholes.get(internal)
        if pinhole is None or pinhole.expires <= now:
            pinhole = self._pinholes[internal] = _Mapping(internal, internal, 0.0)
        pinhole.touch(self.behavior, remote, now)
        return True

    def inbound(self, internal: Address, remote: Address, now: float) -> bool:
        """Whether a packet from ``remote`` to ``internal`` passes."""
        pinhole = self._pinholes.get(internal)
        if pinhole is None:
            return False
        if pinhole.expires <= now:
            del self._pinholes[internal]
            return False
        return pinhole.admits(self.behavior, remote, now)

    @property
    def pinholes(self) -> int:
        """Pinholes recorded (expired ones are forgotten lazily)."""
        return len(self._pinholes)
