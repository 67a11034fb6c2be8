"""asyncio adapters for the :mod:`aioice.stun` cores.

Each adapter is a pump: it feeds the core what the socket received and the timer
deadlines it asked for, sends what the core returns, and keeps exactly one
timer armed at the core's next deadline. No task is created per transaction.

- :func:`create_client` / :class:`StunClientProtocol`: STUN requests over UDP.
- :func:`request`: one request over UDP, on a socket of its own.
- :func:`stream_request`: one request over TCP or TLS (RFC 8489 §6.2.2).
- :func:`serve` / :class:`StunServerRunner`: the STUN server on UDP (and TCP).
- :func:`discover_nat_behavior`: RFC 5780 NAT behaviour discovery.
- :class:`Net` / :class:`LoopNet`: the network the adapters open sockets on; tests
  pass a virtual one (``aioice.vnet.asyncio.VirtualNet``).

Retransmissions default to the module tunables ``aioice.stun.RETRY_RTO`` and
``aioice.stun.RETRY_MAX``, read each time a transaction starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar, cast

from . import default_transaction_config
from .errors import StunParseError
from .framing import StreamFramer
from .message import Class, Message, parse_message
from .nat import NatBehavior, NatBehaviorDiscovery
from .server import StunServer
from .transaction import Transaction, TransactionConfig
from .transmit import Address, Transmit

__all__ = [
    "LOOP_NET",
    "CoreTimer",
    "LoopNet",
    "Net",
    "StunClientProtocol",
    "StunServerRunner",
    "create_client",
    "discover_nat_behavior",
    "request",
    "serve",
    "stream_request",
]

logger = logging.getLogger(__name__)


_DatagramP = TypeVar("_DatagramP", bound=asyncio.DatagramProtocol)
_StreamP = TypeVar("_StreamP", bound=asyncio.Protocol)


class Net(Protocol):
    """Where adapters open their sockets (pion's ``transport.Net``).

    :class:`LoopNet` (the default) uses the running loop, that is the machine's
    network; ``aioice.vnet.asyncio.VirtualNet`` puts a host of the virtual
    network behind the same two calls. Both call ``connection_made`` before they
    return, as the loop does.
    """

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _DatagramP],
        local_addr: Address | None = None,
        remote_addr: Address | None = None,
    ) -> tuple[asyncio.DatagramTransport, _DatagramP]:
        """A UDP socket bound to ``local_addr`` (connected to ``remote_addr`` if given)."""
        ...

    async def create_connection(
        self,
        protocol_factory: Callable[[], _StreamP],
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.Transport, _StreamP]:
        """A TCP (or TLS, with ``ssl``) connection to ``(host, port)``."""
        ...


class LoopNet:
    """The machine's network, through the running event loop."""

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _DatagramP],
        local_addr: Address | None = None,
        remote_addr: Address | None = None,
    ) -> tuple[asyncio.DatagramTransport, _DatagramP]:
        return await asyncio.get_running_loop().create_datagram_endpoint(
            protocol_factory, local_addr=local_addr, remote_addr=remote_addr
        )

    async def create_connection(
        self,
        protocol_factory: Callable[[], _StreamP],
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.Transport, _StreamP]:
        return await asyncio.get_running_loop().create_connection(
            protocol_factory,
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname if ssl is not None else None,
        )


LOOP_NET: Net = LoopNet()
"The default :class:`Net`."


def _address(addr: Any) -> Address:
    # IPv6 socket addresses carry flowinfo and scope id; cores use (host, port).
    return (addr[0], addr[1])


class CoreTimer:
    """One ``loop.call_at`` handle, re-armed at a core's deadline (the drain rule's
    "arm one timer"); the callback gets a time never earlier than the deadline."""

    def __init__(self, callback: Callable[[float], None]) -> None:
        self._loop = asyncio.get_running_loop()
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


# -- client over UDP ----------------------------------------------------------------


class StunClientProtocol(asyncio.DatagramProtocol):
    """A datagram protocol that runs STUN client transactions on one socket.

    Responses are routed to their transaction by transaction ID. Other STUN
    messages (requests, indications) go to ``on_message`` if set; datagrams
    that are not STUN go to ``on_data`` if set, or are dropped.
    """

    def __init__(
        self,
        *,
        on_message: Callable[[Message, Address], None] | None = None,
        on_data: Callable[[bytes, Address], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_data = on_data
        self.transport: asyncio.DatagramTransport | None = None
        self._transactions: dict[bytes, tuple[Transaction, asyncio.Future[None]]] = {}
        self._timer: CoreTimer | None = None
        self._closed: asyncio.Future[None] | None = None
        #: Datagrams dropped: malformed STUN, or responses to no transaction.
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (3.11's selector transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._timer = CoreTimer(self._handle_timer)
        self._closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for transaction, future in self._transactions.values():
            transaction.cancel()
            if not future.done():
                future.set_exception(ConnectionError("STUN transport closed"))
        self._transactions.clear()
        self.transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        remote = _address(addr)
        if not data or data[0] > 3:
            # RFC 7983: not STUN.
            if self.on_data is not None:
                self.on_data(data, remote)
            else:
                self.dropped += 1
            return
        try:
            message = parse_message(data)
        except StunParseError as exc:
            self.dropped += 1
            logger.debug("dropped datagram from %s: %s", remote, exc)
            return
        if message.message_class in (Class.RESPONSE, Class.ERROR):
            entry = self._transactions.get(message.transaction_id)
            if entry is None:
                self.dropped += 1
                return
            transaction, future = entry
            now = asyncio.get_running_loop().time()
            if transaction.receive_response(message, remote, now=now):
                self._finish(transaction, future)
        elif self.on_message is not None:
            self.on_message(message, remote)

    def error_received(self, exc: Exception) -> None:
        logger.debug("socket error: %s", exc)

    def _flush(self, transaction: Transaction) -> None:
        assert self.transport is not None
        for transmit in transaction.datagrams_to_send():
            self.transport.sendto(transmit.data, transmit.remote)

    def _finish(self, transaction: Transaction, future: asyncio.Future[None]) -> None:
        self._transactions.pop(transaction.transaction_id, None)
        if not future.done():
            future.set_result(None)
        self._rearm()

    def _rearm(self) -> None:
        assert self._timer is not None
        deadlines = [t.get_timer() for t, _ in self._transactions.values()]
        self._timer.arm(min((d for d in deadlines if d is not None), default=None))

    def _handle_timer(self, now: float) -> None:
        for transaction, future in list(self._transactions.values()):
            transaction.handle_timer(now=now)
            self._flush(transaction)
            if transaction.done:
                self._finish(transaction, future)
        self._rearm()

    async def request(
        self,
        message: Message,
        addr: Address,
        *,
        integrity_key: bytes | None = None,
        long_term_credential: bool = False,
        config: TransactionConfig | None = None,
    ) -> tuple[Message, Address]:
        """Send ``message`` to ``addr`` and wait for the response.

        :returns: the success response and the address it came from.
        :raises TransactionFailed: on an error response.
        :raises TransactionTimeout: when no response arrives in time.
        :raises ConnectionError: if the socket is closed meanwhile.
        """
        if self.transport is None or self._timer is None:
            raise ConnectionError("STUN transport is not open")
        tid = message.transaction_id
        if tid in self._transactions:
            raise ValueError("a transaction with this ID is already running")
        transaction = Transaction(
            message,
            addr,
            config=config or default_transaction_config(),
            integrity_key=integrity_key,
            long_term_credential=long_term_credential,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._transactions[tid] = (transaction, future)
        transaction.start(now=loop.time())
        self._flush(transaction)
        self._rearm()
        try:
            await future
        finally:
            if self._transactions.get(tid, (None,))[0] is transaction:
                transaction.cancel()
                self._transactions.pop(tid)
                self._rearm()
        return transaction.result()

    def send(self, message: Message, addr: Address) -> None:
        """Send a message that expects no answer (an indication or a response)."""
        if self.transport is None:
            raise ConnectionError("STUN transport is not open")
        self.transport.sendto(bytes(message), addr)

    def close(self) -> None:
        """Close the socket; running transactions fail with :class:`ConnectionError`."""
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed."""
        if self._closed is not None:
            await self._closed


async def create_client(
    local_addr: Address = ("0.0.0.0", 0),
    *,
    net: Net = LOOP_NET,
    **kwargs: Any,
) -> StunClientProtocol:
    """Open a UDP socket bound to ``local_addr`` (on ``net``) and return its client
    protocol.

    Other keyword arguments go to :class:`StunClientProtocol`.
    """
    _, protocol = await net.create_datagram_endpoint(
        lambda: StunClientProtocol(**kwargs), local_addr=local_addr
    )
    return protocol


async def request(
    message: Message,
    addr: Address,
    *,
    local_addr: Address | None = None,
    integrity_key: bytes | None = None,
    config: TransactionConfig | None = None,
    net: Net = LOOP_NET,
) -> tuple[Message, Address]:
    """Send one request over UDP from a socket of its own, and return the response.

    The socket is closed before this returns, whatever the outcome.
    """
    if local_addr is None:
        local_addr = ("::", 0) if ":" in addr[0] else ("0.0.0.0", 0)
    client = await create_client(local_addr, net=net)
    try:
        return await client.request(message, addr, integrity_key=integrity_key, config=config)
    finally:
        client.close()
        await client.wait_closed()


# -- client over TCP / TLS ------------------------------------------------------------


async def stream_request(
    message: Message,
    addr: Address,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    framing: Literal["stun", "rfc4571"] = "stun",
    integrity_key: bytes | None = None,
    timeout: float | None = None,
) -> tuple[Message, Address]:
    """Send one request over a new TCP (or TLS, with ``ssl``) connection.

    Over a reliable transport the request is sent once and times out after Ti
    (39.5 s, RFC 8489 §6.2.2) unless ``timeout`` is given. ``ssl=True`` uses a
    default context that verifies the server's certificate. The connection is
    closed before this returns.
    """
    loop = asyncio.get_running_loop()
    config = TransactionConfig(reliable=True)
    if timeout is not None:
        config = TransactionConfig(reliable=True, reliable_timeout=timeout)
    context: ssl_module.SSLContext | None
    context = ssl_module.create_default_context() if ssl is True else (ssl or None)
    reader, writer = await asyncio.open_connection(
        addr[0],
        addr[1],
        ssl=context,
        server_hostname=server_hostname if context is not None else None,
    )
    try:
        remote = _address(writer.get_extra_info("peername"))
        framer = StreamFramer(framing)
        transaction = Transaction(message, remote, config=config, integrity_key=integrity_key)
        transaction.start(now=loop.time())
        for transmit in transaction.datagrams_to_send():
            writer.write(framer.frame(transmit.data))
        await writer.drain()
        while not transaction.done:
            deadline = transaction.get_timer()
            assert deadline is not None
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                transaction.handle_timer(now=max(deadline, loop.time()))
                continue
            if not chunk:
                raise ConnectionError("STUN server closed the connection")
            for frame in framer.feed(chunk):
                try:
                    response = parse_message(frame)
                except StunParseError as exc:
                    logger.debug("dropped frame from %s: %s", remote, exc)
                    continue
                transaction.receive_response(response, remote, now=loop.time())
            if framer.broken:
                raise ConnectionError("STUN stream framing lost")
        return transaction.result()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl_module.SSLError):
            await writer.wait_closed()


# -- server -----------------------------------------------------------------------------


class _ServerDatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, runner: StunServerRunner, local: Address) -> None:
        self.runner = runner
        self.local = local

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.runner._received(data, self.local, _address(addr))

    def error_received(self, exc: Exception) -> None:
        logger.debug("server socket %s error: %s", self.local, exc)


class StunServerRunner:
    """The :class:`~aioice.stun.StunServer` core on real sockets; see :func:`serve`."""

    def __init__(self, server: StunServer) -> None:
        self.server = server
        self._udp: dict[Address, asyncio.DatagramTransport] = {}
        self._tcp: list[asyncio.Server] = []
        self._streams: dict[tuple[Address, Address], asyncio.StreamWriter] = {}
        self._stream_tasks: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> list[Address]:
        """The UDP addresses the server listens on."""
        return self.server.addresses

    def _received(self, data: bytes, local: Address, remote: Address, stream: bool = False) -> None:
        self.server.receive_datagram(
            data, local=local, remote=remote, now=asyncio.get_running_loop().time(), stream=stream
        )
        self._flush()

    def _flush(self) -> None:
        for transmit in self.server.datagrams_to_send():
            self._send(transmit)

    def _send(self, transmit: Transmit) -> None:
        local = transmit.local or self.server.primary
        writer = self._streams.get((local, transmit.remote))
        if writer is not None:
            writer.write(transmit.data)
            return
        transport = self._udp.get(local)
        if transport is None or transport.is_closing():
            logger.debug("no socket for %s, response dropped", local)
            return
        transport.sendto(transmit.data, transmit.remote)

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._stream_tasks.add(task)
        local = _address(writer.get_extra_info("sockname"))
        remote = _address(writer.get_extra_info("peername"))
        if local not in self.server.addresses:
            # Listening on a wildcard address: the core answers from its primary
            # address, so the stream must be found under that one.
            local = self.server.primary
        self._streams[(local, remote)] = writer
        framer = StreamFramer("stun")
        try:
            while not framer.broken:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                for frame in framer.feed(chunk):
                    self._received(frame, local, remote, stream=True)
        except (ConnectionError, OSError) as exc:
            logger.debug("stream from %s ended: %s", remote, exc)
        finally:
            self._streams.pop((local, remote), None)
            self._stream_tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        """Close every socket and connection."""
        for transport in self._udp.values():
            transport.close()
        self._udp.clear()
        for tcp in self._tcp:
            tcp.close()
        for writer in list(self._streams.values()):
            # The stream task then reads EOF and ends. (Cancelling it instead makes
            # Python 3.11's StreamReaderProtocol log a spurious CancelledError.)
            writer.transport.abort()
        if self._stream_tasks:
            await asyncio.gather(*self._stream_tasks, return_exceptions=True)
        for tcp in self._tcp:
            await tcp.wait_closed()
        self._tcp.clear()

    async def __aenter__(self) -> StunServerRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _bind_udp(runner: StunServerRunner, addr: Address) -> Address:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ServerDatagramProtocol(runner, addr), local_addr=addr
    )
    bound = _address(transport.get_extra_info("sockname"))
    protocol = transport.get_protocol()
    cast(_ServerDatagramProtocol, protocol).local = bound
    runner._udp[bound] = transport
    return bound


async def serve(
    primary: Address = ("127.0.0.1", 3478),
    alternate: Address | None = None,
    *,
    tcp: bool = False,
    software: str | None = None,
) -> StunServerRunner:
    """Start a STUN server; port 0 picks free ports.

    :param primary: address (A1, P1).
    :param alternate: address (A2, P2) for RFC 5780; the server then binds the
        four combinations of A1/A2 and P1/P2.
    :param tcp: also accept STUN over TCP on the primary address (RFC 8489 §6.2.2).
    """
    if alternate is not None and (
        alternate[0] == primary[0] or (alternate[1] == primary[1] and primary[1] != 0)
    ):
        raise ValueError("the alternate address needs another IP address and another port")
    # Ports are chosen before the core is built, so that it knows its addresses.
    runner = StunServerRunner(StunServer(primary, software=software))
    try:
        p1 = primary
        if alternate is None:
            p1 = await _bind_udp(runner, primary)
            runner.server = StunServer(p1, software=software)
        else:
            await _bind_four(runner, primary, alternate, software)
        if tcp:
            addr = runner.server.primary
            runner._tcp.append(await asyncio.start_server(runner._serve_stream, addr[0], addr[1]))
    except BaseException:
        await runner.close()
        raise
    return runner


async def _bind_four(
    runner: StunServerRunner, primary: Address, alternate: Address, software: str | None
) -> None:
    (a1, p1), (a2, p2) = primary, alternate
    for _ in range(20):
        try:
            b1 = await _bind_udp(runner, (a1, p1))
            b2 = await _bind_udp(runner, (a1, p2))
            await _bind_udp(runner, (a2, b1[1]))
            await _bind_udp(runner, (a2, b2[1]))
        except OSError as exc:
            # A free port on A1 may be taken on A2: retry when the port was picked for us.
            for transport in runner._udp.values():
                transport.close()
            runner._udp.clear()
            if exc.errno != errno.EADDRINUSE or (p1 and p2):
                raise
            continue
        runner.server = StunServer(b1, (a2, b2[1]), software=software)
        return
    raise OSError(errno.EADDRINUSE, "could not bind the four RFC 5780 addresses")


# -- NAT behaviour discovery ------------------------------------------------------------


class _DiscoveryProtocol(asyncio.DatagramProtocol):
    def __init__(self, core: NatBehaviorDiscovery) -> None:
        self.core = core
        self.transport: asyncio.DatagramTransport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timer = CoreTimer(self._handle_timer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (3.11's selector transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        if not self.done.done():
            self.done.set_exception(ConnectionError("socket closed during NAT discovery"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = asyncio.get_running_loop().time()
        self.core.receive_datagram(data, remote=_address(addr), now=now)
        self.pump()

    def _handle_timer(self, now: float) -> None:
        self.core.handle_timer(now=now)
        self.pump()

    def pump(self) -> None:
        assert self.transport is not None
        for transmit in self.core.datagrams_to_send():
            self.transport.sendto(transmit.data, transmit.remote)
        if self.core.done:
            self.timer.cancel()
            if not self.done.done():
                self.done.set_result(None)
        else:
            self.timer.arm(self.core.get_timer())


def _local_addresses(sockname: Address, server: Address) -> list[Address]:
    if sockname[0] not in ("0.0.0.0", "::"):
        return [sockname]
    # Which source address the kernel picks towards the server (no packet is sent).
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(server)
        return [(probe.getsockname()[0], sockname[1])]


async def discover_nat_behavior(
    server: Address,
    *,
    local_addr: Address | None = None,
    config: TransactionConfig | None = None,
) -> NatBehavior:
    """Discover the NAT mapping and filtering behaviour towards ``server`` (RFC 5780).

    :raises NatDiscoveryError: when the server does not answer or lacks RFC 5780.
    """
    loop = asyncio.get_running_loop()
    if local_addr is None:
        local_addr = ("::", 0) if ":" in server[0] else ("0.0.0.0", 0)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _DiscoveryProtocol(NatBehaviorDiscovery(server, config=config)),
        local_addr=local_addr,
    )
    try:
        sockname = _address(transport.get_extra_info("sockname"))
        protocol.core.local_addresses = _local_addresses(sockname, server)
        protocol.core.start(now=loop.time())
        protocol.pump()
        await protocol.done
        return protocol.core.result()
    finally:
        transport.close()
