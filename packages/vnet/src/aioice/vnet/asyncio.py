"""The asyncio bridge: run asyncio code (``Connection``, the STUN and TURN adapters) on
the virtual network, with the event loop's clock in virtual time.

- :class:`VirtualEventLoop`: a selector event loop whose :meth:`~VirtualEventLoop.time`
  is the network's virtual time. When the loop would wait, it runs the network's
  scheduler up to the loop's next deadline instead, so ``await asyncio.sleep(600)``
  returns at once with ``loop.time()`` 600 s later, and a datagram sent now arrives
  after exactly the link latency.
- :class:`VirtualNet`: one virtual host as the :class:`aioice.stun.asyncio.Net` the
  adapters open sockets on (datagram endpoints and stream connections), plus the
  host's interfaces.
- :func:`run`: ``asyncio.run`` on a :class:`VirtualEventLoop`.

Why not ``looptime`` (PyPI): it fast-forwards a loop's own timers, but here packets in
flight are actions in the network's scheduler; one clock has to order both, so the
loop and the scheduler share it. Executor threads (``run_in_executor``, default
``getaddrinfo``) do not fit virtual time: while a thread works, virtual time may jump.
The virtual network uses addresses only, so nothing here needs them.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import selectors
import ssl as ssl_module
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aioice.stun import Address

from .network import Endpoint, Host, Network

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

    from .network import Stream

__all__ = ["VirtualEventLoop", "VirtualIdleError", "VirtualNet", "run"]

_T = TypeVar("_T")
_DatagramP = TypeVar("_DatagramP", bound=asyncio.DatagramProtocol)
_StreamP = TypeVar("_StreamP", bound=asyncio.Protocol)

#: How long (real seconds) an idle loop waits for another thread before giving up.
IDLE_REAL_TIMEOUT = 30.0


class VirtualIdleError(RuntimeError):
    """The loop has nothing to run, no timer and no packet in flight: it would hang."""


class _VirtualSelector(selectors.BaseSelector):
    """A real selector (for the loop's self-pipe) that, instead of waiting, runs the
    virtual network until the wait is over or something was delivered to the loop."""

    def __init__(self, network: Network) -> None:
        self._real = selectors.DefaultSelector()
        self._network = network
        self.woken = False
        self.max_time = float("inf")

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        scheduler = self._network.scheduler
        now = scheduler.now
        deadline = float("inf") if timeout is None else now + max(timeout, 0.0)
        self.woken = False
        # Packets due now always move, even when the loop has callbacks ready
        # (timeout 0): a busy loop must not starve the network.
        while not self.woken:
            when = scheduler.next_time()
            if when is None or when > deadline:
                break
            scheduler.run_until(max_time=when)
        if self.woken:
            return []
        if deadline == float("inf"):
            # Nothing in virtual time will ever happen: only another thread can help.
            ready = self._real.select(IDLE_REAL_TIMEOUT)
            if not ready:
                raise VirtualIdleError(
                    "the virtual loop is idle: no timer, no packet in flight, no ready callback"
                )
            return ready
        if deadline > self.max_time:
            raise VirtualIdleError(f"virtual time would pass max_time={self.max_time}")
        scheduler.now = max(scheduler.now, deadline)
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An event loop in the virtual time of ``network``.

    :param max_time: virtual time the loop may not pass (a runaway guard);
        :class:`VirtualIdleError` is raised in the loop if it would.
    """

    def __init__(self, network: Network, *, max_time: float = 86_400.0) -> None:
        self._virtual = _VirtualSelector(network)
        self._virtual.max_time = max_time
        super().__init__(self._virtual)
        self.network = network

    def time(self) -> float:
        return self.network.scheduler.now

    def deliver(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` soon; for network actions delivering to asyncio code."""
        self._virtual.woken = True
        self.call_soon(callback, *args)


def run(main: Coroutine[Any, Any, _T], network: Network, *, max_time: float = 86_400.0) -> _T:
    """Run ``main`` to completion on a new :class:`VirtualEventLoop`, like
    :func:`asyncio.run`: tasks left over are cancelled and the loop is closed."""
    loop = VirtualEventLoop(network, max_time=max_time)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _loop() -> VirtualEventLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualEventLoop):
        raise RuntimeError("VirtualNet needs a running VirtualEventLoop (aioice.vnet.asyncio.run)")
    return loop


class _DatagramTransport(asyncio.DatagramTransport):
    def __init__(
        self,
        loop: VirtualEventLoop,
        endpoint: Endpoint,
        protocol: asyncio.DatagramProtocol,
        remote: Address | None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._endpoint = endpoint
        self._protocol = protocol
        self._remote = remote
        self._closing = False

    def received(self, data: bytes, remote: Address) -> None:
        if self._closing or (self._remote is not None and remote != self._remote):
            return  # a connected socket only hears its peer
        self._loop.deliver(self._protocol.datagram_received, data, remote)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if addr is None:
            if self._remote is None:
                raise ValueError("no remote address: the endpoint is not connected")
            addr = self._remote
        self._endpoint.send(bytes(data), (addr[0], addr[1]))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._endpoint.address
        if name == "peername":
            return self._remote if self._remote is not None else default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._endpoint.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class _StreamTransport(asyncio.Transport):
    def __init__(self, loop: VirtualEventLoop, stream: Stream, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = loop
        self._stream = stream
        self._protocol = protocol
        self._closing = False
        stream.receiver = self._received
        stream.on_close = self._peer_closed

    def _received(self, data: bytes) -> None:
        if not self._closing:
            self._loop.deliver(self._protocol.data_received, data)

    def _peer_closed(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.deliver(self._lost)

    def _lost(self) -> None:
        self._protocol.eof_received()
        self._protocol.connection_lost(None)

    def write(self, data: Any) -> None:
        if self._closing:
            return
        self._stream.write(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._stream.local
        if name == "peername":
            return self._stream.remote
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stream.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def is_reading(self) -> bool:
        return not self._closing


def _unspecified(ip: str) -> bool:
    return ip in ("", "0.0.0.0", "::") or ipaddress.ip_address(ip).is_unspecified


class VirtualNet:
    """A host of the virtual network as an :class:`aioice.stun.asyncio.Net`.

    Use it inside a :class:`VirtualEventLoop` of the same network. Binding to an
    unspecified address (``0.0.0.0``, ``::``) picks the host's first address of that
    family; an address the host does not have fails with ``EADDRNOTAVAIL`` as a real
    socket would. TLS is not emulated.
    """

    def __init__(self, host: Host) -> None:
        self.host = host

    def interfaces(self) -> list[tuple[str, list[str]]]:
        """The host's interfaces: ``(name, addresses)``."""
        return [("vnet0", list(self.host.ips))]

    def _local_ip(self, local: Address | None, remote: Address | None) -> str:
        if local is not None and not _unspecified(local[0]):
            if local[0] not in self.host.ips:
                raise OSError(errno.EADDRNOTAVAIL, f"{self.host.name} has no address {local[0]}")
            return local[0]
        hint = remote or local
        version = 6 if hint is not None and ":" in hint[0] else 4
        for ip in self.host.ips:
            if (":" in ip) == (version == 6):
                return ip
        raise OSError(errno.EADDRNOTAVAIL, f"{self.host.name} has no IPv{version} address")

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _DatagramP],
        local_addr: Address | None = None,
        remote_addr: Address | None = None,
    ) -> tuple[asyncio.DatagramTransport, _DatagramP]:
        """A virtual UDP socket (see :meth:`aioice.stun.asyncio.Net.create_datagram_endpoint`)."""
        loop = _loop()
        ip = self._local_ip(local_addr, remote_addr)
        endpoint = self.host.bind(local_addr[1] if local_addr else 0, ip=ip)
        protocol = protocol_factory()
        remote = (remote_addr[0], remote_addr[1]) if remote_addr is not None else None
        transport = _DatagramTransport(loop, endpoint, protocol, remote)
        endpoint.receiver = transport.received
        protocol.connection_made(transport)
        return transport, protocol

    async def create_connection(
        self,
        protocol_factory: Callable[[], _StreamP],
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.Transport, _StreamP]:
        """A virtual TCP connection (see :meth:`aioice.stun.asyncio.Net.create_connection`).

        Fails like a socket would: ``ConnectionRefusedError`` when nothing listens,
        ``TimeoutError`` when a NAT or firewall swallows the attempt.
        """
        del server_hostname
        if ssl is not None:
            raise ValueError("the virtual network does not emulate TLS: connect without ssl")
        loop = _loop()
        connected: asyncio.Future[Stream] = loop.create_future()
        early: list[bytes] = []  # data that arrives before the transport exists

        def on_connected(stream: Stream) -> None:
            stream.receiver = early.append
            if not connected.done():
                loop.deliver(connected.set_result, stream)

        def on_failed(exc: OSError) -> None:
            if not connected.done():
                loop.deliver(connected.set_exception, exc)

        stream = self.host.connect(
            (host, port),
            on_connected=on_connected,
            on_failed=on_failed,
            ip=self._local_ip(None, (host, port)),
        )
        try:
            await connected
        except BaseException:
            stream.close()
            raise
        protocol = protocol_factory()
        transport = _StreamTransport(loop, stream, protocol)
        protocol.connection_made(transport)
        for data in early:
            transport._received(data)
        return transport, protocol
