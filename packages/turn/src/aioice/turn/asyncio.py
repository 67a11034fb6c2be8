"""asyncio adapter for :class:`~aioice.turn.TurnClient`, compatible with aioice 0.x.

:func:`create_turn_endpoint` allocates a relay and returns a datagram transport
whose ``sendto(data, peer)`` relays to the peer, as aioice's did. The adapter is a
pump around the sans-I/O core: it feeds it what the server socket receives and
the timer deadlines it asks for, sends what it returns, and keeps one timer armed.
No task is created per datagram, nor at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
import struct
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aioice.stun import Address, StreamFramer
from aioice.stun.asyncio import LOOP_NET, Net

from .client import TurnClient, TurnClientConfig, TurnState
from .errors import TurnAllocationError
from .events import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Closed,
    DataReceived,
    SendFailed,
)

__all__ = ["TurnTransport", "create_turn_endpoint"]

logger = logging.getLogger(__name__)

DEFAULT_ALLOCATION_LIFETIME = 600
UDP_SOCKET_BUFFER_SIZE = 262144
MAX_MISMATCH_RETRIES = 3
"Allocate again from a new local port this many times after 437 (RFC 8656 §7.3)."

_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)
_CHANNEL_HEADER = struct.Struct("!HH")


class _ServerLink(asyncio.Protocol, asyncio.DatagramProtocol):
    """The socket to the TURN server: UDP datagrams, or TCP/TLS frames."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.framer = StreamFramer("stun") if stream else None
        self.transport: asyncio.BaseTransport | None = None
        self.on_data: Callable[[bytes], None] = lambda data: None
        self.on_lost: Callable[[Exception | None], None] = lambda exc: None
        #: Sends one datagram (one frame, padded, on streams); set once connected.
        self.send_raw: Callable[[bytes], None] = self.send
        #: Done once the socket is closed.
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.framer is None:
            # The data path sends with the transport's own method, no wrapper.
            self.send_raw = cast(asyncio.DatagramTransport, transport).sendto
        else:
            self.send_raw = self.send

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_data(data)

    def data_received(self, data: bytes) -> None:
        assert self.framer is not None
        for frame in self.framer.feed(data):
            self.on_data(frame)
        if self.framer.broken:
            logger.debug("TURN stream framing lost: closing")
            assert self.transport is not None
            self.transport.close()

    def error_received(self, exc: Exception) -> None:
        logger.debug("TURN server socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost(exc)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.framer is not None:
            cast(asyncio.Transport, transport).write(self.framer.frame(data))
        else:
            cast(asyncio.DatagramTransport, transport).sendto(data)


class TurnTransport(asyncio.DatagramTransport):
    """A datagram transport over a TURN allocation (aioice 0.x's ``TurnTransport``).

    ``sendto(data, peer)`` relays to ``peer``; data from peers reaches the protocol's
    ``datagram_received(data, peer)``. ``get_extra_info("sockname")`` is the relayed
    address and ``get_extra_info("related_address")`` the mapped address.
    """

    def __init__(self, link: _ServerLink, client: TurnClient) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._link = link
        self._client = client
        self._protocol: asyncio.DatagramProtocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closing = False
        self._allocated: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        # Set by _shutdown: what connection_lost() reports once the socket is closed.
        self._shutdown_exc: tuple[Exception | None] | None = None
        link.on_data = self._received
        link.on_lost = self._link_lost
        # The data path reads the core's channel tables (same package) directly.
        self._bound = client._bound
        self._peers = client._peers
        self._deliver: Callable[[bytes, Address], None] | None = None
        if not link.stream:
            # Datagrams from the server come straight here, one call fewer.
            link.datagram_received = self._datagram_received  # type: ignore[method-assign]

    # -- the pump -----------------------------------------------------------------------

    def _datagram_received(self, data: bytes, addr: Any) -> None:
        self._received(data)

    def _received(self, data: bytes) -> None:
        # Fast lane: ChannelData on a known channel goes straight to the protocol.
        if data and (data[0] & 0xC0) == 0x40 and len(data) >= 4:
            number, length = _CHANNEL_HEADER.unpack_from(data)
            peer = self._peers.get(number)
            deliver = self._deliver
            if peer is not None and deliver is not None and len(data) >= 4 + length:
                deliver(data[4 : 4 + length], peer)
                return
        self._client.receive(data, now=self._loop.time())
        self._pump()

    def _fire(self) -> None:
        at = self._timer_at
        self._timer = self._timer_at = None
        assert at is not None
        self._client.handle_timer(now=max(at, self._loop.time()))
        self._pump()

    def _pump(self) -> None:
        client = self._client
        send = self._link.send
        for data in client.datagrams_to_send():
            send(data)
        while (event := client.next_event()) is not None:
            self._dispatch(event)
        at = client.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._fire) if at is not None else None
            self._timer_at = at

    def _dispatch(self, event: object) -> None:
        protocol = self._protocol
        if isinstance(event, DataReceived):
            if protocol is not None and not self._closing:
                protocol.datagram_received(event.data, event.peer)
        elif isinstance(event, AllocationSucceeded):
            if not self._allocated.done():
                self._allocated.set_result(None)
        elif isinstance(event, AllocationFailed):
            if not self._allocated.done():
                self._allocated.set_exception(_AllocationFailedError(event))
            self._shutdown(None)
        elif isinstance(event, SendFailed):
            if protocol is not None:
                protocol.error_received(
                    ConnectionError(f"TURN could not relay to {event.peer}: {event.error}")
                )
        elif isinstance(event, AllocationLost):
            self._shutdown(TurnAllocationError(f"TURN allocation lost: {event.error}"))
        elif isinstance(event, Closed):
            self._shutdown(None)

    def _shutdown(self, exc: Exception | None, *, abort: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._closing = True
        transport = self._link.transport
        if transport is None or self._link.closed.done():
            self._finish(exc)
            return
        # The protocol hears connection_lost(exc) once the socket is closed (_link_lost):
        # a TLS socket stays open until the server answers close_notify.
        if self._shutdown_exc is None:
            self._shutdown_exc = (exc,)
        if abort:
            cast(asyncio.DatagramTransport | asyncio.WriteTransport, transport).abort()
        elif not transport.is_closing():
            transport.close()

    def _link_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if not self._allocated.done():
            self._allocated.set_exception(
                TurnAllocationError(f"TURN server connection lost: {exc}")
            )
        if self._shutdown_exc is not None:
            self._finish(self._shutdown_exc[0])
        else:
            self._finish(exc if exc is not None or self._closing else ConnectionError("closed"))

    def _finish(self, exc: Exception | None) -> None:
        self._deliver = None
        if self._closed.done():
            return
        self._closed.set_result(None)
        self._closing = True
        if self._protocol is not None:
            self._protocol.connection_lost(exc)

    # -- asyncio.DatagramTransport --------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Relay ``data`` to the peer ``addr``.

        Data is dropped once the transport is closing or the allocation is lost.
        A refused permission or channel reaches the protocol's ``error_received()``.
        """
        # Fast lane: ChannelData on a bound channel, no timer to re-arm.
        try:
            number = self._bound.get(addr)
        except TypeError:  # an unhashable address, such as a list
            number = None
        if number is not None and not self._closing and len(data) <= 0xFFFF:
            self._link.send_raw(_CHANNEL_HEADER.pack(number, len(data)) + data)
            return
        if self._closing:
            return
        peer = (addr[0], addr[1])
        number = self._bound.get(peer)
        if number is not None and len(data) <= 0xFFFF:
            self._link.send_raw(_CHANNEL_HEADER.pack(number, len(data)) + data)
            return
        if self._client.state is not TurnState.ALLOCATED:
            return
        self._client.send(bytes(data), peer, now=self._loop.time())
        self._pump()

    def close(self) -> None:
        """Delete the allocation, then close the socket to the server.

        Errors are ignored: the server frees an allocation when it expires. The
        protocol's ``connection_lost(None)`` is called once the socket is closed.
        """
        if self._closing:
            return
        self._closing = True
        self._deliver = None  # nothing more reaches the protocol once it closes us
        self._client.close(now=self._loop.time())
        self._pump()

    def abort(self) -> None:
        """Close the socket at once, without deleting the allocation."""
        self._closing = True
        self._shutdown(None, abort=True)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"sockname"``: the relayed address; ``"related_address"``: the mapped one;
        ``"relayed_addresses"``: all relayed addresses (dual allocation)."""
        if name == "sockname":
            return self._client.relayed_address
        if name == "related_address":
            return self._client.mapped_address
        if name == "relayed_addresses":
            return self._client.relayed_addresses
        return default

    async def wait_closed(self) -> None:
        """Wait until the allocation is deleted and the socket closed."""
        await asyncio.shield(self._closed)


class _AllocationFailedError(Exception):
    def __init__(self, event: AllocationFailed) -> None:
        super().__init__(event)
        self.event = event


async def _open_link(
    server: Address, transport: str, ssl: ssl_module.SSLContext | bool | None, net: Net
) -> _ServerLink:
    if transport == "udp":
        inner, link = await net.create_datagram_endpoint(
            lambda: _ServerLink(stream=False), remote_addr=server
        )
        sock = inner.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
        return link
    if transport != "tcp":
        raise ValueError(f"unknown TURN transport {transport!r}")
    context: ssl_module.SSLContext | None
    context = ssl_module.create_default_context() if ssl is True else (ssl or None)
    _, link = await net.create_connection(
        lambda: _ServerLink(stream=True), server[0], server[1], ssl=context
    )
    return link


async def create_turn_endpoint(
    protocol_factory: Callable[[], _ProtocolT],
    server_addr: Address,
    username: str | None,
    password: str | None,
    lifetime: int = DEFAULT_ALLOCATION_LIFETIME,
    channel_refresh_time: int | None = None,
    ssl: bool | ssl_module.SSLContext | None = None,
    transport: str = "udp",
    *,
    requested_family: int | None = None,
    additional_family: int | None = None,
    software: str | None = None,
    net: Net = LOOP_NET,
) -> tuple[TurnTransport, _ProtocolT]:
    """Allocate a relay on a TURN server and return a datagram transport over it.

    The signature is aioice 0.x's. ``transport`` is ``"udp"`` or ``"tcp"``; with
    ``ssl`` (``True`` for a verifying default context, or an ``SSLContext``) TCP
    runs over TLS. ``channel_refresh_time`` is accepted for compatibility and
    ignored: channels are refreshed a minute before their 600 s expiry. ``net``
    is where the socket is opened (:class:`aioice.stun.asyncio.Net`; default:
    the machine's network).

    A 437 (Allocation Mismatch) makes a new allocation from a new local port, a
    300 (Try Alternate) follows ALTERNATE-SERVER once. A rejected allocation
    raises :class:`aioice.stun.TransactionFailed` carrying the server's error;
    one that gets no answer raises :class:`aioice.stun.TransactionTimeout`. The
    socket is closed on any failure, cancellation included.
    """
    del channel_refresh_time  # refreshes follow RFC 8656 timers
    config = TurnClientConfig(
        username=username,
        password=password,
        lifetime=lifetime,
        requested_family=requested_family,
        additional_family=additional_family,
        reliable=transport == "tcp",
        software=software,
    )
    server = server_addr
    redirected = False
    mismatches = 0
    while True:
        link = await _open_link(server, transport, ssl, net)
        client = TurnClient(server, config)
        turn = TurnTransport(link, client)
        try:
            client.allocate(now=asyncio.get_running_loop().time())
            turn._pump()
            await turn._allocated
        except _AllocationFailedError as exc:
            await link.closed  # the socket is closed before a retry or an exception
            event = exc.event
            code = event.error_code
            if code == 300 and event.alternate_server is not None and not redirected:
                logger.info("TURN %s: redirected to %s", server, event.alternate_server)
                server, redirected = event.alternate_server, True
                continue
            if code == 437 and mismatches < MAX_MISMATCH_RETRIES:
                mismatches += 1
                continue
            raise event.error from None
        except BaseException:
            # Cancellation (a gathering timeout) included: never leak the socket.
            turn.abort()
            await asyncio.shield(link.closed)
            raise
        protocol = protocol_factory()
        turn._protocol = cast(asyncio.DatagramProtocol, protocol)
        turn._deliver = turn._protocol.datagram_received
        protocol.connection_made(turn)
        return turn, protocol
