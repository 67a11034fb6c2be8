"""The virtual network: a tree of routers (the internet at the root, NATed LANs below),
hosts with UDP ports and TCP-like streams, links with conditions, and a trace of every hop.

IPv4 and IPv6. IPv4 is translated by each LAN's NAT; IPv6 is routed without translation
(hosts have global addresses) through the same behaviour acting as a stateful firewall.
Every delivery goes through the :class:`~aioice.vnet.clock.Scheduler`.
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
from .nat import Firewall, Nat, NatBehavior

__all__ = ["Endpoint", "Host", "Hop", "LinkConditions", "Listener", "Network", "Router", "Stream"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Receiver = Callable[[bytes, Address], None]
StreamReceiver = Callable[[bytes], None]


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
    """``send``, ``nat-out``, ``nat-in``, ``deliver``, a ``tcp-…`` event, or a drop
    reason (``drop-…``)."""
    source: Address
    destination: Address
    size: int


class Router:
    """A router: the internet (no NAT) at the root, or a LAN with a NAT below it.

    A LAN with a NAT behaviour translates IPv4 (:attr:`nat`) and filters IPv6 with the
    same behaviour (:attr:`firewall` for UDP, :attr:`tcp_firewall` for TCP); without one
    it routes both freely.
    """

    def __init__(
        self,
        network: Network,
        name: str,
        cidr: str,
        parent: Router | None,
        nat: Nat | None,
        link: LinkConditions,
        *,
        cidr6: str | None = None,
    ) -> None:
        self.network = network
        self.name = name
        self.subnet = ipaddress.ip_network(cidr)
        #: The IPv6 prefix, or ``None``.
        self.subnet6 = ipaddress.ip_network(cidr6) if cidr6 is not None else None
        self.parent = parent
        self.nat = nat
        #: The NAT's address on the parent network (an attribute: read for every packet).
        self.external_ip: str | None = nat.external_ip if nat is not None else None
        behavior = nat.behavior if nat is not None else None
        #: IPv6 UDP filtering (RFC 6092), with the NAT's behaviour.
        self.firewall = Firewall(behavior) if behavior is not None else None
        #: IPv6 TCP filtering: pinholes from outbound connections.
        self.tcp_firewall = Firewall(behavior, udp=False) if behavior is not None else None
        self.link = link
        self.children: list[Router] = []
        self.hosts: dict[str, Host] = {}
        self._next = {4: 1, 6: 1}
        # Parsing an address for every packet is most of the cost: cache per address.
        self._contains: dict[str, bool] = {}
        self._routes: dict[str, bool] = {}
        self._hops: dict[str, Router | None] = {}

    def allocate_ip(self, version: int = 4) -> str:
        """The next free address of the subnet (``version`` 6: of the IPv6 prefix)."""
        subnet = self.subnet if version == 4 else self.subnet6
        if subnet is None or subnet.version != version:
            raise ValueError(f"{self.name} has no IPv{version} prefix")
        address = str(subnet.network_address + self._next[version])
        self._next[version] += 1
        return address

    def contains(self, ip: str) -> bool:
        """Whether ``ip`` is on this router's own subnet or IPv6 prefix."""
        hit = self._contains.get(ip)
        if hit is None:
            address = ipaddress.ip_address(ip)
            hit = address in self.subnet or (self.subnet6 is not None and address in self.subnet6)
            self._contains[ip] = hit
        return hit

    def routes(self, ip: str) -> bool:
        """Whether a packet for ``ip`` stays below this router (its subnet, or a child's
        reachable prefixes) rather than going up."""
        hit = self._routes.get(ip)
        if hit is None:
            hit = self._routes[ip] = self.contains(ip) or self.next_hop(ip) is not None
        return hit

    def next_hop(self, ip: str) -> Router | None:
        """The child a packet for ``ip`` goes down to: the one whose NAT has that external
        address, or the one below which ``ip`` is reachable (IPv6 prefixes, routed IPv4)."""
        try:
            return self._hops[ip]
        except KeyError:
            pass
        address = ipaddress.ip_address(ip)
        hop = next((c for c in self.children if c.external_ip == ip or c._reachable(address)), None)
        self._hops[ip] = hop
        return hop

    def _reachable(self, address: IPAddress) -> bool:
        """Whether ``address`` can be reached from the parent inside this subtree: IPv6
        always (no NAT66), IPv4 only through routers without NAT."""
        if address.version == 4:
            if self.nat is not None:
                return False
            if address in self.subnet:
                return True
        elif self.subnet6 is not None and address in self.subnet6:
            return True
        return any(child._reachable(address) for child in self.children)

    def _forget_routes(self) -> None:
        self._routes.clear()
        self._hops.clear()


class Host:
    """A machine on a router's subnet, with addresses, UDP ports and TCP-like streams."""

    def __init__(self, network: Network, name: str, router: Router, ip: str) -> None:
        self.network = network
        self.name = name
        self.router = router
        self.ips = [ip]
        self.endpoints: dict[Address, Endpoint] = {}
        #: TCP listeners by address.
        self.listeners: dict[Address, Listener] = {}
        #: Outgoing streams by local address (the port is free again once closed).
        self.streams: dict[Address, Stream] = {}
        self._next_port = 49152

    @property
    def ip(self) -> str:
        """The first address (IPv4)."""
        return self.ips[0]

    @property
    def ip6(self) -> str | None:
        """The first IPv6 address, or ``None``."""
        return next((ip for ip in self.ips if ":" in ip), None)

    def add_address(self, version: int = 4) -> str:
        """Another address on the router's subnet (an RFC 5780 server needs two), or on
        its IPv6 prefix with ``version=6``."""
        ip = self.router.allocate_ip(version)
        self.ips.append(ip)
        self.router.hosts[ip] = self
        return ip

    def bind(
        self, port: int = 0, receiver: Receiver | None = None, *, ip: str | None = None
    ) -> Endpoint:
        """A UDP endpoint on ``(ip, port)`` (first address; port 0: the next free one)."""
        ip = ip or self.ip
        if port == 0:
            port = self._ephemeral(ip)
        if (ip, port) in self.endpoints:
            raise OSError(f"{self.name}: {ip}:{port} is in use")
        endpoint = Endpoint(self, ip, port, receiver)
        self.endpoints[(ip, port)] = endpoint
        return endpoint

    def listen(
        self, port: int, on_accept: Callable[[Stream], None], *, ip: str | None = None
    ) -> Listener:
        """Accept streams on ``(ip, port)`` (first address; port 0: the next free one).

        ``on_accept(stream)`` runs when a connection attempt arrives, with a connected
        server-side :class:`Stream`; set its ``receiver`` there.
        """
        ip = ip or self.ip
        if ip not in self.ips:
            raise OSError(f"{self.name}: {ip} is not one of its addresses")
        if port == 0:
            port = self._ephemeral(ip)
        address = (ip, port)
        if address in self.listeners:
            raise OSError(f"{self.name}: TCP {ip}:{port} is in use")
        listener = self.listeners[address] = Listener(self, address, on_accept)
        return listener

    def connect(
        self,
        remote: Address,
        *,
        on_connected: Callable[[Stream], None] | None = None,
        on_failed: Callable[[OSError], None] | None = None,
        ip: str | None = None,
        timeout: float = 10.0,
    ) -> Stream:
        """Open a stream to ``remote`` from an ephemeral port of ``ip`` (default: the
        first address of ``remote``'s family).

        After a round trip ``on_connected(stream)`` runs, or ``on_failed`` with
        :class:`ConnectionRefusedError` (no listener); a connection attempt that is
        filtered or unroutable fails with :class:`TimeoutError` after ``timeout``.
        Writes before that are buffered.

        :raises OSError: the host has no address of ``remote``'s family, or ``ip`` is of
            the other family.
        """
        v6 = ":" in remote[0]
        if ip is None:
            ip = self.ip6 if v6 else self.ip
            if ip is None:
                raise OSError(f"{self.name} has no IPv6 address")
        elif (":" in ip) != v6:
            raise OSError(f"{self.name}: cannot connect from {ip} to {remote[0]}")
        elif ip not in self.ips:
            raise OSError(f"{self.name}: {ip} is not one of its addresses")
        local = (ip, self._ephemeral(ip))
        stream = self.streams[local] = Stream(self, local, (remote[0], remote[1]))
        stream._on_connected = on_connected
        stream._on_failed = on_failed
        self.network._connect(stream, timeout)
        return stream

    def _ephemeral(self, ip: str) -> int:
        # One port space for UDP and TCP on an address, so that an (ip, port) names one
        # client whatever the transport (the TURN server core keys clients by address).
        for _ in range(16384):
            port = self._next_port
            self._next_port = port + 1 if port < 65535 else 49152
            address = (ip, port)
            if (
                address not in self.endpoints
                and address not in self.streams
                and address not in self.listeners
            ):
                return port
        raise OSError(f"{self.name}: no free port on {ip}")


class Endpoint:
    """A bound UDP port: ``send(data, remote)``, and a receiver for what arrives."""

    def __init__(self, host: Host, ip: str, port: int, receiver: Receiver | None) -> None:
        self.host = host
        self.ip = ip
        self.port = port
        self.receiver = receiver
        self.received: list[tuple[bytes, Address]] = []
        #: Whether the endpoint is bound to an IPv6 address.
        self.v6 = ":" in ip

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


class Listener:
    """A TCP-like listening port (:meth:`Host.listen`)."""

    def __init__(self, host: Host, address: Address, on_accept: Callable[[Stream], None]) -> None:
        self.host = host
        self.address = address
        self.on_accept = on_accept

    def close(self) -> None:
        """Stop accepting: later connection attempts are refused. Accepted streams stay."""
        if self.host.listeners.get(self.address) is self:
            del self.host.listeners[self.address]


class Stream:
    """One side of a TCP-like connection: a reliable, ordered byte stream.

    Each :meth:`write` reaches the peer as one chunk after the path's one-way latency
    (the sum of the latencies of the links crossed), in order; there is no loss (TCP
    retransmits) and no jitter (it would reorder). Chunks go to :attr:`receiver`, or
    to :attr:`received` while it is ``None``.
    """

    def __init__(self, host: Host, local: Address, remote: Address) -> None:
        self.host = host
        #: This side's address as bound on the host.
        self.local = local
        #: The other side as this side sees it (a server sees the client's NAT mapping).
        self.remote = remote
        #: Called with each chunk, in order, inside a scheduler action.
        self.receiver: StreamReceiver | None = None
        #: Called once when the peer closes (or resets a connection it gave up on).
        self.on_close: Callable[[], None] | None = None
        self.connected = False
        self.closed = False
        #: Chunks that arrived while :attr:`receiver` was ``None``.
        self.received: list[bytes] = []
        self._peer: Stream | None = None
        self._latency = 0.0
        self._pending: list[bytes] = []
        self._on_connected: Callable[[Stream], None] | None = None
        self._on_failed: Callable[[OSError], None] | None = None
        # NAT mappings the connection holds: (NAT, internal address).
        self._mappings: list[tuple[Nat, Address]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (buffered until connected).

        :raises OSError: the stream is closed (or its connection failed).
        """
        if self.closed:
            raise OSError(f"stream {self.local} -> {self.remote} is closed")
        if not data:
            return
        if self.connected:
            self._send(bytes(data))
        else:
            self._pending.append(bytes(data))

    def close(self) -> None:
        """Close both directions: the peer's ``on_close`` runs after the one-way latency,
        after the data written before. Idempotent."""
        if self.closed:
            return
        self._shut()
        if self.connected:
            assert self._peer is not None
            network = self.host.network
            network._log(self.host.name, "tcp-close", self.local, self.remote, 0)
            network.scheduler.call_later(self._latency, self._peer._peer_closed)

    # -- the connection's life, in scheduler actions ----------------------------------------

    def _send(self, data: bytes) -> None:
        assert self._peer is not None
        network = self.host.network
        network._log(self.host.name, "tcp-send", self.local, self.remote, len(data))
        network.scheduler.call_later(self._latency, partial(self._peer._deliver, data))

    def _deliver(self, data: bytes) -> None:
        network = self.host.network
        if self.closed:
            network._log(self.host.name, "drop-closed", self.remote, self.local, len(data))
            return
        network._log(self.host.name, "tcp-deliver", self.remote, self.local, len(data))
        if self.receiver is not None:
            self.receiver(data)
        else:
            self.received.append(data)

    def _established(self) -> None:
        """The answer to the connection attempt reached the client."""
        if self.closed:
            # Timed out or closed meanwhile: the answer gets a reset.
            assert self._peer is not None
            self.host.network.scheduler.call_later(self._latency, self._peer._peer_closed)
            return
        self.connected = True
        pending, self._pending = self._pending, []
        for data in pending:
            self._send(data)
        if self._on_connected is not None:
            self._on_connected(self)

    def _fail(self, error: OSError) -> None:
        if self.closed or self.connected:
            return
        self._shut()
        if isinstance(error, TimeoutError):
            self.host.network._log(self.host.name, "tcp-timeout", self.local, self.remote, 0)
        if self._on_failed is not None:
            self._on_failed(error)

    def _peer_closed(self) -> None:
        if self.closed:
            return
        self._shut()
        if self.on_close is not None:
            self.on_close()

    def _shut(self) -> None:
        self.closed = True
        self._pending.clear()
        if self.host.streams.get(self.local) is self:
            del self.host.streams[self.local]
        for nat, internal in self._mappings:
            nat.tcp_release(internal)
        self._mappings.clear()


@dataclass(slots=True)
class _Path:
    """Where a connection attempt goes: a host, or a drop."""

    latency: float
    "One-way, to the host or to where the attempt is dropped."
    source: Address
    "The client as seen at the far end (after NATs)."
    host: Host | None
    where: str = ""
    reason: str = ""


class Network:
    """The whole network, its routers and hosts, and its scheduler.

    :param seed: seeds every random choice (NAT ports, link conditions).
    :param cidr: the internet's IPv4 address range.
    :param cidr6: the internet's IPv6 prefix, or ``None``.
    """

    def __init__(
        self, *, seed: int = 0, cidr: str = "198.51.100.0/24", cidr6: str | None = "2001:db8::/64"
    ) -> None:
        self.scheduler = Scheduler()
        self.rng = random.Random(seed)
        self.internet = Router(self, "internet", cidr, None, None, LinkConditions(), cidr6=cidr6)
        self.routers = [self.internet]
        self.trace: list[Hop] = []
        #: Counters by event: ``deliver``, ``drop-loss``, ``drop-filtered``, …
        self.counters: Counter[str] = Counter()
        self.tracing = True
        # Address -> (is IPv6, is multicast), for every destination: parsed once.
        self._kinds: dict[str, tuple[bool, bool]] = {}

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
        cidr6: str | None = None,
    ) -> Router:
        """A LAN behind a NAT (``behavior``), or a routed subnet without one (``None``).

        With ``cidr6`` the LAN also has an IPv6 prefix (it must not overlap another):
        IPv6 is routed without translation, through ``behavior`` as a stateful firewall.
        """
        parent = parent or self.internet
        if cidr6 is not None:
            prefix = ipaddress.ip_network(cidr6)
            if prefix.version != 6:
                raise ValueError(f"not an IPv6 prefix: {cidr6}")
            for other in self.routers:
                if other.subnet6 is not None and prefix.overlaps(other.subnet6):
                    raise ValueError(f"{cidr6} overlaps {other.name}'s {other.subnet6}")
        nat = None
        if behavior is not None:
            nat = Nat(parent.allocate_ip(), behavior, random.Random(self.rng.getrandbits(64)))
        router = Router(self, name, cidr, parent, nat, link or LinkConditions(), cidr6=cidr6)
        parent.children.append(router)
        self.routers.append(router)
        for other in self.routers:
            other._forget_routes()
        return router

    def add_host(
        self, name: str, router: Router | None = None, ip: str | None = None, *, ipv6: bool = True
    ) -> Host:
        """A host on ``router`` (default: the internet), with an IPv4 address, then an
        IPv6 one if the router has a prefix (and ``ipv6``)."""
        router = router or self.internet
        host = Host(self, name, router, ip or router.allocate_ip())
        router.hosts[host.ip] = host
        if ipv6 and router.subnet6 is not None:
            host.add_address(6)
        return host

    # -- forwarding ---------------------------------------------------------------------

    def _log(self, where: str, event: str, src: Address, dst: Address, size: int) -> None:
        self.counters[event] += 1
        if self.tracing:
            self.trace.append(Hop(self.now, where, event, src, dst, size))

    def _kind(self, ip: str) -> tuple[bool, bool]:
        address = ipaddress.ip_address(ip)
        kind = self._kinds[ip] = (address.version == 6, address.is_multicast)
        return kind

    def send(self, endpoint: Endpoint, data: bytes, remote: Address) -> None:
        source = endpoint.address
        self._log(endpoint.host.name, "send", source, remote, len(data))
        v6, multicast = self._kinds.get(remote[0]) or self._kind(remote[0])
        if v6 is not endpoint.v6:
            self._log(endpoint.host.name, "drop-family", source, remote, len(data))
            return
        if multicast:
            self._multicast(endpoint, data, remote)
            return
        self._up(endpoint.host.router, data, source, remote, first=True)

    def _multicast(self, sender: Endpoint, data: bytes, group: Address) -> None:
        """Link-local multicast (mDNS): every other endpoint bound to the group's port, on
        its host's first address of the group's family, on the sender's LAN gets a copy;
        routers do not forward it (RFC 6762 §11)."""
        source = sender.address
        router = sender.host.router
        receivers = [
            endpoint
            for host in dict.fromkeys(router.hosts.values())
            for (ip, port), endpoint in host.endpoints.items()
            if port == group[1]
            and endpoint is not sender
            and ip == (host.ip6 if sender.v6 else host.ip)
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
        """At ``router``, a packet from inside it: deliver inside, or go up through the NAT
        (IPv4) or the firewall (IPv6).

        ``first``: straight from :meth:`send`, so a delivery that crosses no link (same
        subnet, hairpinning) is scheduled rather than made inside the sender's call.
        """
        if router.routes(dst[0]) or (router.nat is not None and dst[0] == router.external_ip):
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
            if ":" in src[0]:
                # IPv6: no translation; the firewall records the contact (RFC 6092).
                assert router.firewall is not None
                if not router.firewall.outbound(src, dst, self.now):
                    self._log(router.name, "drop-blocked", src, dst, len(data))
                    return
            else:
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

    def _down(
        self, router: Router, data: bytes, src: Address, dst: Address, inbound: bool = False
    ) -> None:
        """At ``router``, a packet for an address below it (or its own external one);
        ``inbound``: it just came from the parent."""
        if router.nat is not None:
            if dst[0] == router.external_ip:
                internal = router.nat.inbound(dst, src, self.now)
                if internal is None:
                    self._log(router.name, "drop-filtered", src, dst, len(data))
                    return
                self._log(router.name, "nat-in", src, internal, len(data))
                dst = internal
            elif inbound and ":" in dst[0]:
                # IPv6 from outside: only what an outbound contact admits (RFC 6092).
                assert router.firewall is not None
                if not router.firewall.inbound(dst, src, self.now):
                    self._log(router.name, "drop-filtered", src, dst, len(data))
                    return
        host = router.hosts.get(dst[0])
        if host is not None:
            endpoint = host.endpoints.get(dst)
            if endpoint is None:
                self._log(host.name, "drop-port-closed", src, dst, len(data))
                return
            self._log(host.name, "deliver", src, dst, len(data))
            endpoint.deliver(data, src)
            return
        child = router.next_hop(dst[0])
        if child is not None:
            action = partial(self._down, child, data, src, dst, True)
            self._over_link(child.link, action, child)
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

    # -- streams ------------------------------------------------------------------------

    def _connect(self, stream: Stream, timeout: float) -> None:
        """Send a connection attempt: it is accepted or refused at the far host after the
        one-way latency and answered after the round trip, or it is dropped on the way
        and the client gives up after ``timeout``."""
        self._log(stream.host.name, "tcp-connect", stream.local, stream.remote, 0)
        path = self._path(stream)
        call_later = self.scheduler.call_later
        if path.host is None:
            call_later(
                path.latency,
                partial(self._log, path.where, path.reason, path.source, stream.remote, 0),
            )
        else:
            stream._latency = path.latency
            call_later(path.latency, partial(self._arrive, stream, path.host, path.source))
        if path.host is None or 2 * path.latency >= timeout:
            error = TimeoutError(f"connection to {stream.remote} timed out")
            call_later(timeout, partial(stream._fail, error))

    def _path(self, stream: Stream) -> _Path:
        """Resolve a connection's path now: up through NATs (a TCP mapping each, RFC 5382)
        and firewalls (a pinhole each), then down to the host. An attempt to enter a NAT
        from outside (no port forwarding) or a firewall without a pinhole is filtered."""
        now = self.now
        src, dst = stream.local, stream.remote
        ip = dst[0]
        v6 = ":" in ip
        router = stream.host.router
        latency = 0.0
        while not router.routes(ip):
            if ip == router.external_ip:
                return _Path(latency, src, None, router.name, "drop-filtered")
            parent = router.parent
            if parent is None:
                return _Path(latency, src, None, router.name, "drop-unroutable")
            if v6:
                if router.tcp_firewall is not None:
                    router.tcp_firewall.outbound(src, dst, now)
            elif router.nat is not None:
                internal, src = src, router.nat.tcp_outbound(src)
                stream._mappings.append((router.nat, internal))
            latency += router.link.latency
            router = parent
        while (host := router.hosts.get(ip)) is None:
            child = router.next_hop(ip)
            if child is None:
                return _Path(latency, src, None, router.name, "drop-no-host")
            latency += child.link.latency
            if ip == child.external_ip or (
                v6
                and child.tcp_firewall is not None
                and not child.tcp_firewall.inbound(dst, src, now)
            ):
                return _Path(latency, src, None, child.name, "drop-filtered")
            router = child
        return _Path(latency, src, host)

    def _arrive(self, client: Stream, host: Host, source: Address) -> None:
        """The connection attempt reaches ``host``: accept, or refuse (no listener)."""
        latency = client._latency
        listener = host.listeners.get(client.remote)
        if listener is None:
            self._log(host.name, "tcp-refused", source, client.remote, 0)
            error = ConnectionRefusedError(f"connection to {client.remote} refused")
            self.scheduler.call_later(latency, partial(client._fail, error))
            return
        server = Stream(host, client.remote, source)
        server._latency = latency
        server._peer, client._peer = client, server
        server.connected = True
        self._log(host.name, "tcp-accept", source, client.remote, 0)
        # Scheduled before on_accept runs: the client is connected before the server's
        # first bytes reach it.
        self.scheduler.call_later(latency, client._established)
        listener.on_accept(server)
