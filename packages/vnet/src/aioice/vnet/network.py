"""The virtual network: a tree of routers (the internet at the root, NATed LANs below),
hosts with ports, links with conditions, and a trace of every hop.

IPv4 only for now. Every delivery goes through the :class:`~aioice.vnet.clock.Scheduler`.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from aioice.stun import Address

from .clock import Scheduler
from .nat import Nat, NatBehavior

__all__ = ["Endpoint", "Host", "Hop", "LinkConditions", "Network", "Router"]


def _is_multicast(ip: str) -> bool:
    return ip.startswith(("224.", "ff02:")) or ipaddress.ip_address(ip).is_multicast


Receiver = Callable[[bytes, Address], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConditions:
    """What the link from a router to its parent does to packets (both directions)."""

    latency: float = 0.0
    "One-way delay in seconds."
    jitter: float = 0.0
    "Extra delay, uniform in [0, jitter) seconds."
    loss: float = 0.0
    "Probability of dropping a packet."
    duplicate: float = 0.0
    "Probability of delivering a packet twice."
    reorder: float = 0.0
    "Probability of delaying a packet by one more latency, so later ones overtake it."


@dataclass(frozen=True, slots=True)
class Hop:
    """One line of the trace."""

    time: float
    "Virtual time."
    where: str
    "The router or host."
    event: str
    "``send``, ``nat-out``, ``nat-in``, ``deliver``, or a drop reason."
    source: Address
    destination: Address
    size: int


class Router:
    """A router: the internet (no NAT) at the root, or a LAN with a NAT below it."""

    def __init__(
        self,
        network: Network,
        name: str,
        cidr: str,
        parent: Router | None,
        nat: Nat | None,
        link: LinkConditions,
    ) -> None:
        self.network = network
        self.name = name
        self.subnet = ipaddress.ip_network(cidr)
        self.parent = parent
        self.nat = nat
        self.link = link
        self.children: list[Router] = []
        self.hosts: dict[str, Host] = {}
        self._next = 1
        # ip -> in the subnet: parsing an address for every packet is most of the cost.
        self._contains: dict[str, bool] = {}

    @property
    def external_ip(self) -> str | None:
        """The NAT's address on the parent network."""
        return self.nat.external_ip if self.nat is not None else None

    def allocate_ip(self) -> str:
        """The next free address of the subnet."""
        address = str(self.subnet.network_address + self._next)
        self._next += 1
        return address

    def contains(self, ip: str) -> bool:
        hit = self._contains.get(ip)
        if hit is None:
            hit = self._contains[ip] = ipaddress.ip_address(ip) in self.subnet
        return hit


class Host:
    """A machine on a router's subnet, with IPv4 addresses and UDP ports."""

    def __init__(self, network: Network, name: str, router: Router, ip: str) -> None:
        self.network = network
        self.name = name
        self.router = router
        self.ips = [ip]
        self.endpoints: dict[Address, Endpoint] = {}
        self._next_port = 49152

    @property
    def ip(self) -> str:
        """The first address."""
        return self.ips[0]

    def add_address(self) -> str:
        """Another address on the same subnet (an RFC 5780 server needs two)."""
        ip = self.router.allocate_ip()
        self.ips.append(ip)
        self.router.hosts[ip] = self
        return ip

    def bind(
        self, port: int = 0, receiver: Receiver | None = None, *, ip: str | None = None
    ) -> Endpoint:
        """A UDP endpoint on ``(ip, port)`` (first address; port 0: the next free one)."""
        ip = ip or self.ip
        if port == 0:
            while (ip, self._next_port) in self.endpoints:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        if (ip, port) in self.endpoints:
            raise OSError(f"{self.name}: {ip}:{port} is in use")
        endpoint = Endpoint(self, ip, port, receiver)
        self.endpoints[(ip, port)] = endpoint
        return endpoint


class Endpoint:
    """A bound UDP port: ``send(data, remote)``, and a receiver for what arrives."""

    def __init__(self, host: Host, ip: str, port: int, receiver: Receiver | None) -> None:
        self.host = host
        self.ip = ip
        self.port = port
        self.receiver = receiver
        self.received: list[tuple[bytes, Address]] = []

    @property
    def address(self) -> Address:
        return (self.ip, self.port)

    def send(self, data: bytes, remote: Address) -> None:
        """Send a datagram now (virtual time)."""
        self.host.network.send(self, bytes(data), remote)

    def deliver(self, data: bytes, remote: Address) -> None:
        if self.receiver is not None:
            self.receiver(data, remote)
        else:
            self.received.append((data, remote))

    def close(self) -> None:
        self.host.endpoints.pop((self.ip, self.port), None)


class Network:
    """The whole network, its routers and hosts, and its scheduler.

    :param seed: seeds every random choice (NAT ports, link conditions).
    :param cidr: the internet's address range.
    """

    def __init__(self, *, seed: int = 0, cidr: str = "198.51.100.0/24") -> None:
        self.scheduler = Scheduler()
        self.rng = random.Random(seed)
        self.internet = Router(self, "internet", cidr, None, None, LinkConditions())
        self.routers = [self.internet]
        self.trace: list[Hop] = []
        #: Counters by event: ``deliver``, ``drop-loss``, ``drop-filtered``, …
        self.counters: Counter[str] = Counter()
        self.tracing = True

    @property
    def now(self) -> float:
        return self.scheduler.now

    def add_lan(
        self,
        name: str,
        cidr: str,
        behavior: NatBehavior | None,
        *,
        parent: Router | None = None,
        link: LinkConditions | None = None,
    ) -> Router:
        """A LAN behind a NAT (``behavior``), or a routed subnet without one (``None``)."""
        parent = parent or self.internet
        nat = None
        if behavior is not None:
            nat = Nat(parent.allocate_ip(), behavior, random.Random(self.rng.getrandbits(64)))
        router = Router(self, name, cidr, parent, nat, link or LinkConditions())
        parent.children.append(router)
        self.routers.append(router)
        return router

    def add_host(self, name: str, router: Router | None = None, ip: str | None = None) -> Host:
        """A host on ``router`` (default: the internet)."""
        router = router or self.internet
        host = Host(self, name, router, ip or router.allocate_ip())
        router.hosts[host.ip] = host
        return host

    # -- forwarding ---------------------------------------------------------------------

    def _log(self, where: str, event: str, src: Address, dst: Address, size: int) -> None:
        self.counters[event] += 1
        if self.tracing:
            self.trace.append(Hop(self.now, where, event, src, dst, size))

    def send(self, endpoint: Endpoint, data: bytes, remote: Address) -> None:
        source = endpoint.address
        self._log(endpoint.host.name, "send", source, remote, len(data))
        if _is_multicast(remote[0]):
            self._multicast(endpoint, data, remote)
            return
        self._up(endpoint.host.router, data, source, remote, first=True)

    def _multicast(self, sender: Endpoint, data: bytes, group: Address) -> None:
        """Link-local multicast (mDNS): every other endpoint bound to the group's port on
        the sender's LAN gets a copy; routers do not forward it (RFC 6762 §11)."""
        source = sender.address
        router = sender.host.router
        receivers = [
            endpoint
            for host in dict.fromkeys(router.hosts.values())
            for (ip, port), endpoint in host.endpoints.items()
            if port == group[1] and endpoint is not sender and ip == host.ip
        ]
        for endpoint in receivers:

            def deliver(endpoint: Endpoint = endpoint) -> None:
                if endpoint.host.endpoints.get(endpoint.address) is endpoint:
                    self._log(endpoint.host.name, "deliver", source, group, len(data))
                    endpoint.deliver(data, source)

            self.scheduler.call_later(0.0, deliver)
        if not receivers:
            self._log(router.name, "drop-no-listener", source, group, len(data))

    def _up(
        self, router: Router, data: bytes, src: Address, dst: Address, first: bool = False
    ) -> None:
        """At ``router``, a packet from inside it: deliver inside, or go up through the NAT.

        ``first``: straight from :meth:`send`, so a delivery that crosses no link (same
        subnet, hairpinning) is scheduled rather than made inside the sender's call.
        """
        if router.contains(dst[0]) or (router.nat is not None and dst[0] == router.external_ip):
            if dst[0] == router.external_ip:
                # Hairpinning (RFC 4787 §6): back in through our own external address.
                assert router.nat is not None
                if not router.nat.behavior.hairpinning:
                    self._log(router.name, "drop-hairpin", src, dst, len(data))
                    return
                external = router.nat.outbound(src, dst, self.now)
                if external is None:
                    self._log(router.name, "drop-blocked", src, dst, len(data))
                    return
                self._local(router, data, external, dst, first)
                return
            self._local(router, data, src, dst, first)
            return
        parent = router.parent
        if parent is None:
            self._log(router.name, "drop-unroutable", src, dst, len(data))
            return
        if router.nat is not None:
            external = router.nat.outbound(src, dst, self.now)
            if external is None:
                self._log(router.name, "drop-blocked", src, dst, len(data))
                return
            self._log(router.name, "nat-out", external, dst, len(data))
            src = external
        self._over_link(router.link, partial(self._up, parent, data, src, dst), router)

    def _local(self, router: Router, data: bytes, src: Address, dst: Address, first: bool) -> None:
        if first:
            self.scheduler.call_later(0.0, partial(self._down, router, data, src, dst))
        else:
            self._down(router, data, src, dst)

    def _down(self, router: Router, data: bytes, src: Address, dst: Address) -> None:
        """At ``router``, a packet for an address on its subnet (or its own external one)."""
        if router.nat is not None and dst[0] == router.external_ip:
            internal = router.nat.inbound(dst, src, self.now)
            if internal is None:
                self._log(router.name, "drop-filtered", src, dst, len(data))
                return
            self._log(router.name, "nat-in", src, internal, len(data))
            dst = internal
        host = router.hosts.get(dst[0])
        if host is not None:
            endpoint = host.endpoints.get(dst)
            if endpoint is None:
                self._log(host.name, "drop-port-closed", src, dst, len(data))
                return
            self._log(host.name, "deliver", src, dst, len(data))
            endpoint.deliver(data, src)
            return
        for child in router.children:
            if child.external_ip == dst[0]:
                self._over_link(child.link, partial(self._down, child, data, src, dst), child)
                return
        self._log(router.name, "drop-no-host", src, dst, len(data))

    def _over_link(self, link: LinkConditions, action: Callable[[], None], router: Router) -> None:
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            self.counters["drop-loss"] += 1
            return
        copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.latency + (rng.random() * link.jitter if link.jitter else 0.0)
            if link.reorder and rng.random() < link.reorder:
                delay += link.latency
            # Even without delay the hop is scheduled: no reentrant delivery into a sender.
            self.scheduler.call_later(max(delay, 0.0), action)
