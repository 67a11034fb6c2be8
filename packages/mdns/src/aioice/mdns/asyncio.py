"""The asyncio adapter: one shared, reference-counted mDNS service per event loop.

Replaces aioice 0.x's ``threading.local`` singleton::

    async with mdns_service() as client:          # or: client = await acquire() ...
        await client.publish("<uuid>.local", "192.0.2.1")
        address = await client.resolve("<other>.local", timeout=3.0)
                                                  # ... await client.release()

The first :func:`acquire` on a loop opens the sockets; the last
:meth:`MdnsClient.release` sends the goodbyes of what was published and closes them.
Later acquirers share the first one's options (asking for different ones raises
:class:`ValueError`).

Sockets (standard loop APIs only, ``create_datagram_endpoint(sock=...)``, so uvloop works):

- IPv4: bound to ``0.0.0.0:5353`` with ``SO_REUSEADDR`` / ``SO_REUSEPORT``, joined to
  224.0.0.251 on every interface index of :func:`socket.if_nameindex` (``ip_mreqn``, no
  ioctl); if no per-interface join succeeds, one ``INADDR_ANY`` join. Each packet is sent
  once per joined interface, selecting it with ``IP_MULTICAST_IF`` (``ip_mreqn``) just
  before ``sendto`` (an interface that is down only logs an error at debug level).
  ``IP_MULTICAST_LOOP`` is on, so two services on one host see each other; TTL 255.
- IPv6: bound to ``[::]:5353``, ``IPV6_V6ONLY``, joined to ff02::fb per interface index
  (``IPV6_JOIN_GROUP``), sent once per joined interface with the scope ID in the address,
  ``(group, 5353, 0, ifindex)``.

A family whose socket or joins fail is skipped (logged at debug level); with no family
left, resolution fails at once (:meth:`MdnsClient.resolve` returns ``None``) and
publication is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from .names import normalize_name
from .service import (
    MDNS_ADDRESS,
    MDNS_ADDRESS6,
    MDNS_PORT,
    MdnsConfig,
    MdnsService,
    Resolved,
    ResolveFailed,
)

__all__ = ["MdnsClient", "acquire", "mdns_service"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Options:
    interfaces: tuple[str, ...] | None
    config: MdnsConfig


class _Timer:
    """One ``loop.call_at`` handle, re-armed at the core's deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, at: float | None) -> None:
        if at == self._at:
            return
        self.cancel()
        if at is not None:
            self._at = at
            self._handle = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        at = self._at
        self._handle = None
        self._at = None
        assert at is not None
        # Never hand the core a time earlier than the deadline it asked for.
        self._callback(max(at, self._loop.time()))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, shared: _SharedService) -> None:
        self._shared = shared
        self.closed: asyncio.Future[None] = shared.loop.create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._shared.receive(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        logger.debug("mDNS socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(slots=True)
class _Endpoint:
    family: int
    sock: socket.socket
    ifindexes: list[int]  # empty: the INADDR_ANY fallback, sent without choosing
    transport: asyncio.DatagramTransport | None = None
    protocol: _Protocol | None = None


def _interfaces(names: Sequence[str] | None) -> list[tuple[int, str]]:
    try:
        available = socket.if_nameindex()
    except OSError as exc:
        logger.debug("mDNS: cannot list interfaces: %s", exc)
        return []
    if names is None:
        return available
    return [(index, name) for index, name in available if name in names]


def _mreqn(ifindex: int, group: str = "0.0.0.0") -> bytes:
    return struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"), ifindex)


def _reusable(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _open_ipv4(interfaces: list[tuple[int, str]], fallback: bool) -> _Endpoint | None:
    try:
        sock = _reusable(socket.AF_INET)
    except OSError as exc:
        logger.debug("mDNS: no IPv4 socket: %s", exc)
        return None
    try:
        sock.bind(("0.0.0.0", MDNS_PORT))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        joined = []
        for ifindex, name in interfaces:
            try:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, _mreqn(ifindex, MDNS_ADDRESS)
                )
            except OSError as exc:
                logger.debug("mDNS: cannot join %s on %s: %s", MDNS_ADDRESS, name, exc)
            else:
                joined.append(ifindex)
        if not joined:
            if not fallback:
                raise OSError("no interface joined")
            mreq = socket.inet_aton(MDNS_ADDRESS) + socket.inet_aton("0.0.0.0")
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        logger.debug("mDNS: IPv4 multicast unavailable: %s", exc)
        sock.close()
        return None
    return _Endpoint(socket.AF_INET, sock, joined)


def _open_ipv6(interfaces: list[tuple[int, str]]) -> _Endpoint | None:
    if not socket.has_ipv6:
        return None
    try:
        sock = _reusable(socket.AF_INET6)
    except OSError as exc:
        logger.debug("mDNS: no IPv6 socket: %s", exc)
        return None
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", MDNS_PORT))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        group = socket.inet_pton(socket.AF_INET6, MDNS_ADDRESS6)
        joined = []
        for ifindex, name in interfaces:
            try:
                mreq = group + struct.pack("@I", ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                logger.debug("mDNS: cannot join %s on %s: %s", MDNS_ADDRESS6, name, exc)
            else:
                joined.append(ifindex)
        if not joined:
            # Link-local multicast needs an interface: no fallback.
            raise OSError("no interface joined")
    except OSError as exc:
        logger.debug("mDNS: IPv6 multicast unavailable: %s", exc)
        sock.close()
        return None
    return _Endpoint(socket.AF_INET6, sock, joined)


class _SharedService:
    """The sockets and the core shared by every :class:`MdnsClient` of one loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, options: _Options) -> None:
        self.loop = loop
        self.options = options
        self.users = 0
        self.endpoints: list[_Endpoint] = []
        self.core = MdnsService(options.config)
        self._timer = _Timer(loop, self._handle_timer)
        self._waiters: dict[str, list[asyncio.Future[tuple[str, ...]]]] = {}
        self._published: dict[str, MdnsClient] = {}
        self.started: asyncio.Future[None] = loop.create_future()
        self.closing = False

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(4 if e.family == socket.AF_INET else 6 for e in self.endpoints)

    async def start(self) -> None:
        try:
            interfaces = _interfaces(self.options.interfaces)
            families = self.options.config.families
            opened: list[_Endpoint | None] = [
                _open_ipv4(interfaces, self.options.interfaces is None) if 4 in families else None,
                _open_ipv6(interfaces) if 6 in families else None,
            ]
            for endpoint in opened:
                if endpoint is None:
                    continue
                self.endpoints.append(endpoint)
                transport, protocol = await self.loop.create_datagram_endpoint(
                    lambda: _Protocol(self), sock=endpoint.sock
                )
                endpoint.transport = transport
                endpoint.protocol = protocol
            self.core = MdnsService(replace(self.options.config, families=self.families))
            if not self.endpoints:
                logger.debug("mDNS: no multicast family available; resolution will fail")
        except BaseException as exc:
            await self.close()
            if isinstance(exc, Exception):
                self.started.set_exception(exc)
                self.started.exception()  # retrieved: the acquirer raises it
            else:
                self.started.cancel()
            raise
        self.started.set_result(None)

    async def close(self) -> None:
        self.closing = True
        self._timer.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(())
        self._waiters.clear()
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
            else:
                endpoint.sock.close()
        for endpoint in self.endpoints:
            if endpoint.protocol is not None:
                await endpoint.protocol.closed
        self.endpoints.clear()

    # -- core driving -----------------------------------------------------------------

    def receive(self, data: bytes, remote: tuple[str, int]) -> None:
        if self.closing:
            return
        self.core.receive_datagram(data, remote=remote, now=self.loop.time())
        self.drain()

    def _handle_timer(self, now: float) -> None:
        self.core.handle_timer(now=now)
        self.drain()

    def drain(self) -> None:
        """The drain rule: send, dispatch the events, arm the one timer."""
        for transmit in self.core.datagrams_to_send():
            self._send(transmit.data, transmit.remote)
        while (event := self.core.next_event()) is not None:
            if isinstance(event, Resolved):
                self._wake(event.name, event.addresses)
            elif isinstance(event, ResolveFailed):
                self._wake(event.name, ())
        self._timer.arm(None if self.closing else self.core.get_timer())

    def _send(self, data: bytes, remote: tuple[str, int]) -> None:
        family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
        for endpoint in self.endpoints:
            if endpoint.family != family or endpoint.transport is None:
                continue
            if endpoint.transport.is_closing():
                continue
            if family == socket.AF_INET6:
                for ifindex in endpoint.ifindexes:
                    endpoint.transport.sendto(data, (remote[0], remote[1], 0, ifindex))
            elif not endpoint.ifindexes:
                endpoint.transport.sendto(data, remote)
            else:
                for ifindex in endpoint.ifindexes:
                    try:
                        endpoint.sock.setsockopt(
                            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, _mreqn(ifindex)
                        )
                    except OSError as exc:
                        logger.debug("mDNS: cannot send on interface %d: %s", ifindex, exc)
                        continue
                    # The transport sends at once when its buffer is empty, as it is
                    # here (mDNS packets are few and small).
                    endpoint.transport.sendto(data, remote)

    def _wake(self, name: str, addresses: tuple[str, ...]) -> None:
        for waiter in self._waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(addresses)

    # -- API --------------------------------------------------------------------------

    async def resolve_all(self, name: str, timeout: float | None) -> tuple[str, ...]:
        if not self.endpoints or self.closing:
            return ()
        key = normalize_name(name)
        deadline = None if timeout is None else self.loop.time() + timeout
        while True:
            self.core.resolve(key, now=self.loop.time())  # raises first on a bad name
            waiter: asyncio.Future[tuple[str, ...]] = self.loop.create_future()
            self._waiters.setdefault(key, []).append(waiter)
            self.drain()
            remaining = None if deadline is None else deadline - self.loop.time()
            try:
                addresses = await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                return ()
            finally:
                waiters = self._waiters.get(key, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[key]
            # The core gave up after its own timeout: ask again while the caller waits.
            if addresses or deadline is None or self.closing:
                return addresses
            if deadline - self.loop.time() <= 0:
                return ()

    def publish(self, client: MdnsClient, name: str, address: str) -> None:
        key = normalize_name(name)
        if self.endpoints:
            self.core.publish(key, address, now=self.loop.time())  # raises first if bad
            self.drain()
        self._published[key] = client

    def unpublish(self, client: MdnsClient, name: str) -> None:
        key = normalize_name(name)
        if self._published.get(key) is not client:
            return
        del self._published[key]
        if self.endpoints:
            self.core.unpublish(key, now=self.loop.time())
            self.drain()

    def published_by(self, client: MdnsClient) -> list[str]:
        return [name for name, owner in self._published.items() if owner is client]


_services: dict[asyncio.AbstractEventLoop, _SharedService] = {}


class MdnsClient:
    """One user's handle on its loop's shared mDNS service; get one with :func:`acquire`."""

    def __init__(self, shared: _SharedService) -> None:
        self._shared: _SharedService | None = shared

    def _service(self) -> _SharedService:
        if self._shared is None:
            raise RuntimeError("this MdnsClient was released")
        return self._shared

    @property
    def families(self) -> tuple[int, ...]:
        """The families that work: 4 for 224.0.0.251, 6 for ff02::fb (maybe none)."""
        return self._service().families

    @property
    def service(self) -> MdnsService:
        """The sans-I/O core (for its ``stats`` and ``lookup``)."""
        return self._service().core

    async def resolve_all(self, name: str, timeout: float | None = None) -> tuple[str, ...]:
        """Every address of ``name`` in the first answer, or ``()``.

        The core's :attr:`MdnsConfig.timeout` ends one query; a longer ``timeout`` asks
        again until it passes, a shorter one stops waiting earlier.
        """
        return await self._service().resolve_all(name, timeout)

    async def resolve(self, name: str, timeout: float | None = None) -> str | None:
        """The first address of ``name``, or ``None`` when no answer came in time."""
        addresses = await self.resolve_all(name, timeout)
        return addresses[0] if addresses else None

    async def publish(self, name: str, address: str) -> None:
        """Answer for ``name`` with ``address`` until :meth:`unpublish` or :meth:`release`."""
        self._service().publish(self, name, address)

    async def unpublish(self, name: str) -> None:
        """Stop answering for ``name`` (sends a goodbye) if this client published it."""
        self._service().unpublish(self, name)

    async def release(self) -> None:
        """Unpublish this client's names; the last release closes the sockets. Idempotent."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        for name in shared.published_by(self):
            shared.unpublish(self, name)
        shared.users -= 1
        if shared.users == 0:
            if _services.get(shared.loop) is shared:
                del _services[shared.loop]
            with contextlib.suppress(Exception):
                await asyncio.shield(shared.started)
            await shared.close()

    async def __aenter__(self) -> MdnsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


async def acquire(
    *, config: MdnsConfig | None = None, interfaces: Sequence[str] | None = None
) -> MdnsClient:
    """A handle on the running loop's mDNS service, which starts if it is not running.

    :param config: timings and families (4 and/or 6) of the service.
    :param interfaces: names of the interfaces to join and send on (default: all).

    Options apply when the service starts; a later :func:`acquire` on the same loop
    with different ones raises :class:`ValueError`. Release the client with
    :meth:`MdnsClient.release` (or use it as an async context manager).
    """
    loop = asyncio.get_running_loop()
    options = _Options(None if interfaces is None else tuple(interfaces), config or MdnsConfig())
    shared = _services.get(loop)
    explicit = config is not None or interfaces is not None
    if shared is not None and explicit and shared.options != options:
        raise ValueError(f"this loop's mDNS service runs with other options: {shared.options}")
    if shared is None:
        shared = _SharedService(loop, options)
        _services[loop] = shared
        shared.users += 1
        try:
            await shared.start()
        except BaseException:
            shared.users -= 1
            if _services.get(loop) is shared:
                del _services[loop]
            raise
    else:
        shared.users += 1
        try:
            await asyncio.shield(shared.started)
        except BaseException:
            shared.users -= 1
            raise
    return MdnsClient(shared)


@contextlib.asynccontextmanager
async def mdns_service(
    *, config: MdnsConfig | None = None, interfaces: Sequence[str] | None = None
) -> AsyncIterator[MdnsClient]:
    """``async with mdns_service() as client:``: :func:`acquire`, then release."""
    client = await acquire(config=config, interfaces=interfaces)
    try:
        yield client
    finally:
        await client.release()
