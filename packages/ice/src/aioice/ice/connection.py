"""The asyncio ``Connection``: aioice 0.x's API as a thin pump around :class:`IceAgent`.

The adapter gathers (host sockets, STUN server-reflexive queries, TURN relays) on a
:class:`~aioice.ice.gather.HostNet`, feeds every candidate to the agent as soon as it
exists, moves datagrams between sockets and the agent, and keeps one timer armed at
the earliest deadline of the agent and of the gathering transactions. No task runs
per check; the only tasks are the gathering of TURN relays and mDNS resolutions,
all tracked and cancelled by :meth:`Connection.close`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, cast

from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    StunParseError,
    Transaction,
    TransactionConfig,
    default_transaction_config,
    parse_message,
)
from aioice.stun.asyncio import CoreTimer
from aioice.turn.asyncio import TurnTransport, create_turn_endpoint

from . import tunables
from .agent import IceAgent
from .candidate import Candidate, candidate_foundation, candidate_priority, local_preference
from .config import IceConfig
from .errors import ConnectionClosedError, IceFailedError, IceStateError
from .events import (
    ConsentExpired,
    IceState,
    IceStateChanged,
    LocalCandidateDiscovered,
    SelectedPairChanged,
)
from .gather import AddressFilter, HostNet, SystemNet, host_addresses
from .pair import CandidatePair, PairStats

__all__ = ["Connection", "ConnectionClosed", "ConnectionEvent", "TransportPolicy"]

logger = logging.getLogger(__name__)

#: Seconds ``close()`` waits for a TURN server to confirm a deallocation.
TURN_CLOSE_TIMEOUT = 2.0


class TransportPolicy(enum.Enum):
    """Which local candidates to gather (aioice 0.x)."""

    ALL = 0
    "Host, server-reflexive and relayed candidates."
    RELAY = 1
    """Relayed candidates only (RFC 9429 §3.5.3): nothing is gathered without a TURN
    server, the related address of relayed candidates is hidden, and remote mDNS
    candidates are ignored."""


class ConnectionEvent:
    """Base class of the events of :meth:`Connection.get_event` (aioice 0.x)."""


class ConnectionClosed(ConnectionEvent):
    """The connection was closed (by :meth:`Connection.close` or a consent loss)."""


class _Inbox:
    """Received datagrams and their component, for ``recv()``: a deque and waiters
    (cheaper per datagram than :class:`asyncio.Queue`). Once closed, what is left is
    still received, then ``recv()`` raises."""

    __slots__ = ("closed", "items", "waiters")

    def __init__(self) -> None:
        self.items: deque[tuple[bytes, int]] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def put(self, item: tuple[bytes, int]) -> None:
        self.items.append(item)
        if self.waiters:
            self._wake()

    def close(self) -> None:
        self.closed = True
        while self.waiters:
            self._wake()

    def _wake(self) -> None:
        waiter = self.waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)

    async def get(self) -> tuple[bytes, int]:
        while not self.items:
            if self.closed:
                raise ConnectionError("Connection lost while receiving data")
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
        return self.items.popleft()


class _Socket(asyncio.DatagramProtocol):
    """A host socket or a TURN relay: one base of the agent."""

    def __init__(self, connection: Connection, component: int) -> None:
        self.connection = connection
        self.component = component
        self.transport: asyncio.DatagramTransport | None = None
        self.base: Address = ("", 0)
        self.relay = False
        self.inbox = connection._inbox
        #: The statistics of the selected pair on this socket, once there is one.
        self.stats: PairStats | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data and data[0] > 3:  # RFC 7983: not STUN, application data
            self.inbox.put((data, self.component))
            stats = self.stats
            if stats is not None:
                stats.packets_received += 1
                stats.bytes_received += len(data)
            return
        self.connection._received_stun(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("socket %s: %s", self.base, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection._socket_lost(self)


def _server_list(single: Address | None, several: Iterable[Address] | None) -> list[Address]:
    servers = [single] if single is not None else []
    servers += list(several or ())
    return list(dict.fromkeys(servers))


class Connection:
    """An ICE connection for one media stream (aioice 0.x's API).

    :param ice_controlling: whether the local peer has the controlling role.
    :param components: the number of components.
    :param stun_server: a STUN server ``(host, port)``, or ``None``.
    :param turn_server: a TURN server ``(host, port)``, or ``None``.
    :param turn_username: the TURN username.
    :param turn_password: the TURN password.
    :param turn_ssl: TURN over TLS.
    :param turn_transport: ``"udp"`` or ``"tcp"``.
    :param use_ipv4: gather IPv4 host candidates.
    :param use_ipv6: gather IPv6 host candidates.
    :param transport_policy: :class:`TransportPolicy`.
    :param local_username: the local ``ice-ufrag`` (random when omitted).
    :param local_password: the local ``ice-pwd`` (random when omitted).

    New keyword-only parameters:

    :param stun_servers: more STUN servers (queried in parallel).
    :param turn_servers: more TURN servers, with the same credentials and transport.
    :param host_addresses: use exactly these local addresses (loopback included)
        instead of enumerating interfaces.
    :param address_filter: ``(address, interface name) -> bool`` to choose among
        enumerated addresses.
    :param port_range: ``(low, high)`` local UDP ports to bind host sockets in.
    :param gather_timeout: seconds gathering waits for STUN and TURN servers; the
        candidates of fast servers are used as soon as they arrive.
    :param config: the agent's :class:`IceConfig`; by default built from the module
        tunables (``aioice.ice.CONSENT_INTERVAL``, ``CONSENT_FAILURES`` and
        ``aioice.stun.RETRY_RTO``, ``RETRY_MAX``), read when they are used.
    :param net: where sockets are opened (a virtual network in tests).
    :param mdns_resolver: ``async (name) -> address | None`` for remote ``.local``
        candidates; aioice.mdns by default.
    :param rng: all randomness of the agent (credentials, tie-breaker, IDs).
    """

    def __init__(
        self,
        ice_controlling: bool,
        components: int = 1,
        stun_server: Address | None = None,
        turn_server: Address | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        turn_ssl: bool = False,
        turn_transport: str = "udp",
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        transport_policy: TransportPolicy = TransportPolicy.ALL,
        local_username: str | None = None,
        local_password: str | None = None,
        *,
        stun_servers: Iterable[Address] | None = None,
        turn_servers: Iterable[Address] | None = None,
        host_addresses: Iterable[str] | None = None,
        address_filter: AddressFilter | None = None,
        port_range: tuple[int, int] | None = None,
        gather_timeout: float = 5.0,
        config: IceConfig | None = None,
        net: HostNet | None = None,
        mdns_resolver: Callable[[str], Awaitable[str | None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if local_username is not None:
            _validate("username", local_username, 4, 256)
        if local_password is not None:
            _validate("password", local_password, 22, 256)
        if turn_transport not in ("udp", "tcp"):
            raise ValueError(f"turn_transport must be 'udp' or 'tcp', not {turn_transport!r}")
        if port_range is not None and not 1 <= port_range[0] <= port_range[1] <= 65535:
            raise ValueError(f"invalid port range {port_range!r}")
        self._config = config
        self._agent = IceAgent(
            controlling=ice_controlling,
            components=components,
            config=config or self._tunable_config(),
            local_username=local_username,
            local_password=local_password,
            rng=rng,
        )
        self._rng = rng if rng is not None else secrets.SystemRandom()
        #: Whether the remote party is an ICE Lite implementation.
        self.remote_is_lite = False
        #: Remote username, which you need to set.
        self.remote_username: str | None = None
        #: Remote password, which you need to set.
        self.remote_password: str | None = None
        self.stun_servers = _server_list(stun_server, stun_servers)
        self.turn_servers = _server_list(turn_server, turn_servers)
        self.stun_server = stun_server
        self.turn_server = turn_server
        self.turn_username = turn_username
        self.turn_password = turn_password
        self.turn_ssl = turn_ssl
        self.turn_transport = turn_transport
        self.transport_policy = transport_policy
        self._use_ipv4 = use_ipv4
        self._use_ipv6 = use_ipv6
        self._host_addresses = list(host_addresses) if host_addresses is not None else None
        self._address_filter = address_filter
        self._port_range = port_range
        self.gather_timeout = gather_timeout
        self._net: HostNet = net if net is not None else SystemNet()
        self._mdns_resolver = mdns_resolver
        self._components = components
        self._sockets: dict[Address, _Socket] = {}
        self._gather_task: asyncio.Task[None] | None = None
        self._gathered = asyncio.Event()
        self._local_candidates: list[Candidate] = []
        self._candidate_added = asyncio.Event()
        self._remote_end = False
        self._resolving: set[asyncio.Task[None]] = set()
        self._srflx: dict[bytes, tuple[Transaction, _Socket, asyncio.Future[None]]] = {}
        self._timer: CoreTimer | None = None
        self._connected: asyncio.Future[None] | None = None
        # component -> (socket, remote address, pair statistics, what send() returns: a
        # completed future)
        self._selected: dict[
            int, tuple[asyncio.DatagramTransport, Address, PairStats, asyncio.Future[None]]
        ] = {}
        self._inbox = _Inbox()
        self._events: asyncio.Queue[ConnectionEvent] = asyncio.Queue()
        self._closing = False
        self._closed = False
        self._mdns_client: Any = None
        self._close_task: asyncio.Task[None] | None = None  # after a consent loss

    # -- aioice 0.x attributes ------------------------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether we have the controlling role (a role conflict may change it)."""
        return self._agent.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        self._agent.set_controlling(value)

    @property
    def local_username(self) -> str:
        return self._agent.local_username

    @property
    def local_password(self) -> str:
        return self._agent.local_password

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates gathered so far (peer-reflexive ones are not signalled)."""
        return self._local_candidates[:]

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, including peer-reflexive ones learnt from checks."""
        return self._agent.remote_candidates

    @property
    def agent(self) -> IceAgent:
        """The sans-I/O agent (its pairs, state and counters)."""
        return self._agent

    @property
    def state(self) -> IceState:
        return self._agent.state

    @property
    def selected_pair(self) -> CandidatePair | None:
        """Component 1's selected pair, with its statistics (``pair.stats``)."""
        return self._agent.selected_pair(1)

    def get_selected_pair(self, component: int = 1) -> CandidatePair | None:
        """The selected pair of ``component``, once there is one."""
        return self._agent.selected_pair(component)

    # -- gathering ------------------------------------------------------------------------

    async def gather_candidates(self) -> None:
        """Gather local candidates; returns once gathering is complete.

        Candidates are available from :attr:`local_candidates` (and
        :meth:`trickle_candidates`) as soon as each is found.
        """
        self._start_gathering()
        assert self._gather_task is not None
        await asyncio.shield(self._gather_task)

    async def trickle_candidates(self) -> AsyncIterator[Candidate]:
        """Local candidates as they are found (gathering starts if needed); the
        iteration ends when gathering is complete (send end-of-candidates then)."""
        self._start_gathering()
        sent = 0
        while True:
            while sent < len(self._local_candidates):
                sent += 1
                yield self._local_candidates[sent - 1]
            if self._gathered.is_set() or self._closing:
                return
            self._candidate_added.clear()
            waiter = asyncio.ensure_future(self._candidate_added.wait())
            gathered = asyncio.ensure_future(self._gathered.wait())
            try:
                await asyncio.wait((waiter, gathered), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                gathered.cancel()

    def get_default_candidate(self, component: int) -> Candidate | None:
        """The default candidate of ``component``: the lowest priority one (aioice 0.x)."""
        for candidate in sorted(self._local_candidates, key=lambda c: c.priority):
            if candidate.component == component:
                return candidate
        return None

    def _start_gathering(self) -> None:
        if self._closing:
            raise ConnectionClosedError("the connection is closed")
        if self._gather_task is None:
            self._gather_task = asyncio.get_running_loop().create_task(self._gather())

    async def _gather(self) -> None:
        try:
            addresses: list[str] = []
            if self.transport_policy is TransportPolicy.ALL:
                addresses = host_addresses(
                    self._net,
                    use_ipv4=self._use_ipv4,
                    use_ipv6=self._use_ipv6,
                    explicit=self._host_addresses,
                    address_filter=self._address_filter,
                )
            elif not self.turn_servers:
                logger.info("relay transport policy without a TURN server: no candidates")
            waits: list[Awaitable[Any]] = []
            for component in range(1, self._components + 1):
                for index, address in enumerate(addresses):
                    sock = await self._bind(component, address)
                    if sock is None:
                        continue
                    ip, port = sock.base
                    self._add_local(
                        Candidate(
                            foundation=candidate_foundation("host", "udp", ip),
                            component=component,
                            transport="udp",
                            priority=candidate_priority(
                                component, "host", local_preference(ip, index=index)
                            ),
                            host=ip,
                            port=port,
                            type="host",
                        ),
                        sock.base,
                    )
                    for server in self.stun_servers:
                        if (":" in server[0]) == (":" in ip):
                            waits.append(self._query_srflx(sock, server, index))
                for server in self.turn_servers:
                    waits.append(self._allocate(component, server))
            if waits:
                tasks = [asyncio.ensure_future(w) for w in waits]
                _, pending = await asyncio.wait(tasks, timeout=self.gather_timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    logger.info("gathering: %d server(s) did not answer in time", len(pending))
                    await asyncio.gather(*pending, return_exceptions=True)
                for task in tasks:
                    if not task.cancelled() and task.exception() is not None:
                        logger.info("gathering: %s", task.exception())
        finally:
            for transaction, _, future in self._srflx.values():
                transaction.cancel()
                future.cancel()
            self._srflx.clear()
        self._gathered.set()
        self._candidate_added.set()
        if not self._closing:
            self._agent.add_local_candidate(None, now=self._now())
            self._pump()

    async def _bind(self, component: int, address: str) -> _Socket | None:
        ports = [0]
        if self._port_range is not None:
            low, high = self._port_range
            count = high - low + 1
            start = self._rng.randrange(count)
            ports = [low + (start + i) % count for i in range(count)]
        last: OSError | None = None
        for port in ports:
            try:
                _, sock = await self._net.create_datagram_endpoint(
                    lambda: _Socket(self, component), local_addr=(address, port)
                )
            except OSError as exc:
                last = exc
                continue
            assert sock.transport is not None
            name = sock.transport.get_extra_info("sockname")
            sock.base = (str(ipaddress.ip_address(name[0])), name[1])
            self._sockets[sock.base] = sock
            return sock
        logger.info("could not bind to %s: %s", address, last)
        return None

    def _add_local(self, candidate: Candidate, base: Address) -> None:
        if self._closing:
            return
        self._local_candidates.append(candidate)
        self._candidate_added.set()
        self._agent.add_local_candidate(candidate, base=base, now=self._now())
        self._pump()

    async def _query_srflx(self, sock: _Socket, server: Address, index: int) -> None:
        server = await _resolve(server)
        request = Message(Method.BINDING, Class.REQUEST)
        transaction = Transaction(request, server, config=self._check_config())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._srflx[request.transaction_id] = (transaction, sock, future)
        transaction.start(now=self._now())
        self._pump()
        try:
            await future
            response, _ = transaction.result()
        finally:
            self._srflx.pop(request.transaction_id, None)
        mapped = response.attributes["XOR-MAPPED-ADDRESS"]
        ip, port = sock.base
        self._add_local(
            Candidate(
                foundation=candidate_foundation("srflx", "udp", ip, server=server[0]),
                component=sock.component,
                transport="udp",
                priority=candidate_priority(
                    sock.component, "srflx", local_preference(ip, index=index)
                ),
                host=mapped[0],
                port=mapped[1],
                type="srflx",
                related_address=ip,
                related_port=port,
            ),
            sock.base,
        )

    async def _allocate(self, component: int, server: Address) -> None:
        server = await _resolve(server)
        transport, sock = await create_turn_endpoint(
            lambda: _Socket(self, component),
            server,
            self.turn_username,
            self.turn_password,
            ssl=self.turn_ssl,
            transport=self.turn_transport,
            net=self._net,
        )
        relayed = transport.get_extra_info("sockname")
        related = transport.get_extra_info("related_address")
        sock.relay = True
        sock.base = (str(ipaddress.ip_address(relayed[0])), relayed[1])
        if self._closing:
            transport.close()
            return
        self._sockets[sock.base] = sock
        if self.transport_policy is TransportPolicy.RELAY or related is None:
            # RFC 9429 §3.5.3: hide the disallowed address (RFC 8839 §5.1 format).
            related = ("::", 9) if ":" in sock.base[0] else ("0.0.0.0", 9)
        self._add_local(
            Candidate(
                foundation=candidate_foundation("relay", "udp", sock.base[0], server=server[0]),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "relay"),
                host=sock.base[0],
                port=sock.base[1],
                type="relay",
                related_address=related[0],
                related_port=related[1],
            ),
            sock.base,
        )

    # -- remote candidates ----------------------------------------------------------------

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate, or ``None`` for end-of-candidates.

        Until end-of-candidates, :meth:`connect` does not report a failure. The
        candidate is copied. ``.local`` (mDNS) candidates are resolved first; one
        that does not resolve is dropped, and the connection can still succeed
        through the peer-reflexive candidate its checks reveal.

        :raises ValueError: after end-of-candidates.
        """
        if self._remote_end:
            raise ValueError("Cannot add remote candidate after end-of-candidates.")
        if self._closing:
            return
        if remote_candidate is None:
            self._remote_end = True
            if not self._resolving:
                self._agent.add_remote_candidate(None, now=self._now())
                self._pump()
            return
        candidate = Candidate.from_sdp(remote_candidate.to_sdp())
        if candidate.host.lower().endswith(".local"):
            if self.transport_policy is TransportPolicy.RELAY:
                logger.info("remote mDNS candidate %s ignored (relay policy)", candidate.host)
                return
            task = asyncio.get_running_loop().create_task(self._resolve_mdns(candidate))
            self._resolving.add(task)
            task.add_done_callback(self._resolved)
            return
        self._agent.add_remote_candidate(candidate, now=self._now())
        self._pump()

    async def _resolve_mdns(self, candidate: Candidate) -> None:
        address: str | None = None
        try:
            if self._mdns_resolver is not None:
                address = await self._mdns_resolver(candidate.host)
            else:
                from aioice.mdns.asyncio import acquire

                if self._mdns_client is None:
                    self._mdns_client = await acquire()
                address = await self._mdns_client.resolve(candidate.host)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.info("mDNS %s: %s", candidate.host, exc)
        if address is None:
            logger.info("remote candidate %s could not be resolved", candidate.host)
            return
        if not self._closing:
            candidate.network_host = address
            self._agent.add_remote_candidate(candidate, now=self._now())
            self._pump()

    def _resolved(self, task: asyncio.Task[None]) -> None:
        self._resolving.discard(task)
        if self._remote_end and not self._resolving and not self._closing:
            self._agent.add_remote_candidate(None, now=self._now())
            self._pump()

    # -- connect and close ----------------------------------------------------------------

    async def connect(self) -> None:
        """Perform the ICE checks; return once every component has a selected pair.

        Failure is only reported after end-of-candidates (and then within the
        configured bound, 10 s by default).

        :raises ConnectionError: (an :class:`IceFailedError`) when ICE fails, or when
            gathering was not started or the remote credentials are missing.
        """
        if self._gather_task is None:
            raise ConnectionError("Local candidates gathering was not performed")
        if self.remote_username is None or self.remote_password is None:
            raise ConnectionError("Remote username or password is missing")
        if self._closing:
            raise ConnectionClosedError("the connection is closed")
        agent = self._agent
        if self._config is None:
            agent.config = self._tunable_config()
        agent.set_remote_credentials(
            self.remote_username, self.remote_password, lite=self.remote_is_lite
        )
        self._connected = asyncio.get_running_loop().create_future()
        try:
            agent.start(now=self._now())
        except IceStateError as exc:
            raise ConnectionError(str(exc)) from None
        self._pump()
        await asyncio.shield(self._connected)

    async def close(self) -> None:
        """Close: stop checks, release every socket, TURN allocation, task, timer and
        mDNS reference; wake a pending :meth:`recv`."""
        if self._closing:
            return
        self._closing = True
        self._agent.close(now=self._now())
        if self._timer is not None:
            self._timer.cancel()
        current = asyncio.current_task()
        tasks = [
            t for t in (self._gather_task, *self._resolving) if t is not None and t is not current
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(ConnectionClosedError("the connection was closed"))
            self._connected.exception()  # retrieved: nobody may be waiting
        sockets = list(self._sockets.values())
        self._sockets.clear()
        self._selected.clear()
        for sock in sockets:
            if sock.transport is not None:
                sock.transport.close()
        for sock in sockets:
            if isinstance(sock.transport, TurnTransport):
                try:
                    await asyncio.wait_for(sock.transport.wait_closed(), TURN_CLOSE_TIMEOUT)
                except asyncio.TimeoutError:
                    sock.transport.abort()
        if self._mdns_client is not None:
            await self._mdns_client.release()
            self._mdns_client = None
        self._inbox.close()
        if not self._closed:
            self._closed = True
            self._events.put_nowait(ConnectionClosed())

    async def get_event(self) -> ConnectionEvent | None:
        """The next :class:`ConnectionEvent`, or ``None`` once closed and drained."""
        if self._closed and self._events.empty():
            return None
        return await self._events.get()

    # -- data -----------------------------------------------------------------------------

    async def recv(self) -> bytes:
        """The next datagram (of any component).

        :raises ConnectionError: when not connected, or when the connection is lost.
        """
        items = self._inbox.items
        if items:
            return items.popleft()[0]
        return (await self._receive())[0]

    async def recvfrom(self) -> tuple[bytes, int]:
        """The next datagram and its component.

        :raises ConnectionError: when not connected, or when the connection is lost.
        """
        items = self._inbox.items
        if items:
            return items.popleft()
        return await self._receive()

    async def _receive(self) -> tuple[bytes, int]:
        if not self._selected and not self._inbox.closed:
            raise ConnectionError("Cannot receive data, not connected")
        return await self._inbox.get()

    def send(self, data: bytes) -> Awaitable[None]:
        """Send a datagram on component 1: ``await connection.send(data)``.

        The datagram is handed to the socket at once; what is returned is an already
        completed future (no coroutine per datagram, as on a raw datagram endpoint).

        :raises ConnectionError: when not connected.
        """
        return self.sendto(data, 1)

    def sendto(self, data: bytes, component: int) -> Awaitable[None]:
        """Send a datagram on ``component``'s selected pair: ``await
        connection.sendto(data, component)`` (sent at once, like :meth:`send`).

        :raises ConnectionError: when that component is not connected.
        """
        selected = self._selected.get(component)
        if selected is None:
            raise ConnectionError("Cannot send data, not connected")
        transport, remote, stats, sent = selected
        transport.sendto(data, remote)
        stats.packets_sent += 1
        stats.bytes_sent += len(data)
        return sent

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        """Use the pair of these foundations without checks (for a peer without ICE).

        :raises ValueError: when no such pair exists.
        """
        for pair in self._agent.pairs:
            if (
                pair.component == component
                and pair.local.foundation == local_foundation
                and pair.remote.foundation == remote_foundation
            ):
                self._agent.select_pair(pair, now=self._now())
                self._pump()
                return
        raise ValueError(
            f"no pair for component {component} with foundations "
            f"{local_foundation!r} and {remote_foundation!r}"
        )

    # -- the pump -------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def _check_config() -> TransactionConfig:
        return default_transaction_config()

    @staticmethod
    def _tunable_config() -> IceConfig:
        base = default_transaction_config()
        return IceConfig(
            check=replace(IceConfig().check, rto=base.rto, retransmissions=base.retransmissions),
            consent_interval=float(tunables.consent_interval()),
            consent_failures=int(tunables.consent_failures()),
        )

    def _received_stun(self, sock: _Socket, data: bytes, addr: Any) -> None:
        remote = (addr[0], addr[1])
        srflx = self._srflx.get(data[8:20])
        if srflx is not None:
            self._srflx_response(srflx, data, remote)
            return
        self._agent.receive_datagram(data, local=sock.base, remote=remote, now=self._now())
        self._pump()

    def _srflx_response(
        self,
        srflx: tuple[Transaction, _Socket, asyncio.Future[None]],
        data: bytes,
        remote: Address,
    ) -> None:
        transaction, _, future = srflx
        try:
            message = parse_message(data)
        except StunParseError as exc:
            logger.debug("STUN response from %s dropped: %s", remote, exc)
            return
        if transaction.receive_response(message, remote, now=self._now()):
            if not future.done():
                future.set_result(None)
            self._pump()

    def _socket_lost(self, sock: _Socket) -> None:
        if self._sockets.get(sock.base) is sock:
            del self._sockets[sock.base]
        for component in list(self._selected):
            pair = self._agent.selected_pair(component)
            if pair is not None and pair.base == sock.base:
                del self._selected[component]
                self._inbox.close()

    def _pump(self) -> None:
        if self._closing and self._agent.state is IceState.CLOSED:
            return
        agent = self._agent
        sockets = self._sockets
        for transmit in agent.datagrams_to_send():
            sock = sockets.get(transmit.local) if transmit.local is not None else None
            if sock is not None and sock.transport is not None:
                sock.transport.sendto(transmit.data, transmit.remote)
        for transaction, sock, _ in self._srflx.values():
            for transmit in transaction.datagrams_to_send():
                if sock.transport is not None:
                    sock.transport.sendto(transmit.data, transmit.remote)
        while (event := agent.next_event()) is not None:
            if isinstance(event, SelectedPairChanged):
                sock = sockets.get(event.pair.base)
                if sock is not None and sock.transport is not None:
                    sent = asyncio.get_running_loop().create_future()
                    sent.set_result(None)
                    stats = event.pair.stats
                    self._selected[event.component] = (
                        sock.transport,
                        event.pair.remote_address,
                        stats,
                        sent,
                    )
                    for other in sockets.values():
                        if other.component == event.component:
                            other.stats = stats if other is sock else None
            elif isinstance(event, IceStateChanged):
                self._state_changed(event)
            elif isinstance(event, LocalCandidateDiscovered):
                logger.debug("peer-reflexive local candidate %s", event.candidate)
            elif isinstance(event, ConsentExpired):
                logger.info("consent expired on %s", event.pair)
        self._arm()

    def _state_changed(self, event: IceStateChanged) -> None:
        connected = self._connected
        if event.state in (IceState.CONNECTED, IceState.COMPLETED):
            if connected is not None and not connected.done():
                connected.set_result(None)
        elif event.state is IceState.FAILED:
            if connected is not None and not connected.done():
                connected.set_exception(IceFailedError(f"ICE negotiation failed: {event.reason}"))
            elif self._selected:
                # Consent lost (RFC 7675): close as aioice 0.x did.
                asyncio.get_running_loop().call_soon(self._close_soon)

    def _close_soon(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self.close())

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = CoreTimer(self._handle_timer)
        times = [t for t in (self._agent.get_timer(),) if t is not None]
        for transaction, _, _ in self._srflx.values():
            at = transaction.get_timer()
            if at is not None:
                times.append(at)
        self._timer.arm(min(times) if times else None)

    def _handle_timer(self, now: float) -> None:
        if self._config is None:
            config = self._agent.config
            interval = float(tunables.consent_interval())
            failures = int(tunables.consent_failures())
            if (config.consent_interval, config.consent_failures) != (interval, failures):
                self._agent.config = replace(
                    config, consent_interval=interval, consent_failures=failures
                )
        for transaction, _, future in list(self._srflx.values()):
            at = transaction.get_timer()
            if at is not None and now >= at:
                transaction.handle_timer(now=now)
                if transaction.done and not future.done():
                    future.set_result(None)
        self._agent.handle_timer(now=now)
        self._pump()

    def __repr__(self) -> str:
        return f"Connection({self._agent.local_username}, {self._agent.state.value})"


async def _resolve(server: Address) -> Address:
    host, port = server
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        return (str(infos[0][4][0]), port)
    return server


def _validate(what: str, value: str, low: int, high: int) -> None:
    # RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"
    if not low <= len(value) <= high or not all(c.isalnum() or c in "+/" for c in value):
        raise ValueError(f"{what} must be {low}-{high} ice-chars (ALPHA / DIGIT / + /)")
    if not value.isascii():
        raise ValueError(f"{what} must be ASCII")
