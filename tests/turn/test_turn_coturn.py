"""Our TURN client against a real TURN server: coturn on loopback (see ``conftest.py``).

Two ways in:

- :func:`aioice.turn.asyncio.create_turn_endpoint`, the aioice 0.x API, over UDP, TCP and
  TLS, to 127.0.0.1 and ::1 (an IPv6 relay is asked for with ``requested_family=2``);
- the sans-I/O :class:`~aioice.turn.TurnClient` pumped by :class:`CoreLink` over a UDP
  socket, on a clock that can jump ahead (refreshes without waiting minutes), and with
  options ``create_turn_endpoint`` does not have (``use_channels=False``).

Peers are plain asyncio UDP endpoints on loopback. :class:`Tap` records what crosses the
adapter's socket to coturn (STUN messages and ChannelData, before stream framing).

coturn facts these tests rely on (4.6): it grants at least 600 s (a smaller LIFETIME is
raised to 600) and at most 3600 s; after a Refresh with LIFETIME 0 it frees a UDP relay
port on its next one-second tick (at once for TCP and TLS, whose connection closes);
with ``--stale-nonce=1`` a nonce gets 438 one to two seconds after it was issued (it
counts whole seconds).

Network rule: every packet stays on loopback. The non-loopback addresses here
(192.0.2.1 and 2001:db8::1, documentation ranges) are only named in a ChannelBind or
CreatePermission, which coturn refuses with 403 (``--denied-peer-ip``), so nothing is
ever sent to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import aioice.stun
import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    TransactionFailed,
    TransactionTimeout,
    parse_message,
)
from aioice.turn import (
    AllocationSucceeded,
    Closed,
    DataReceived,
    SendFailed,
    TurnClient,
    TurnClientConfig,
    TurnEvent,
    TurnState,
    is_channel_data,
    rest_credentials,
)
from aioice.turn.asyncio import TurnTransport, create_turn_endpoint

if TYPE_CHECKING:
    from tests.conftest import Coturn, CoturnFactory

T = TypeVar("T")
E = TypeVar("E", bound=TurnEvent)
Kind = Literal["udp", "tcp", "tls"]
Family = Literal[4, 6]

GUARD = 20.0
"Seconds any test's event loop may run (the leak test has its own)."
REPLY_TIMEOUT = 3.0
"Seconds to wait for something that must arrive on loopback."
IPV6 = 2
"REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY: IPv6 (RFC 8656 §18.6)."
COTURN_MIN_LIFETIME = 600
"coturn raises a smaller requested LIFETIME to this."
FORBIDDEN_PEER: Address = ("192.0.2.1", 9)
"TEST-NET-1: coturn refuses it (403), so no packet is ever sent there."

ENDPOINTS = [
    pytest.param("udp", 4, id="udp"),
    pytest.param("tcp", 4, id="tcp"),
    pytest.param("tls", 4, id="tls"),
    pytest.param("udp", 6, id="udp6"),
    pytest.param("tcp", 6, id="tcp6"),
    pytest.param("tls", 6, id="tls6"),
]
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def run(main: Callable[[], Coroutine[Any, Any, T]], guard: float = GUARD) -> T:
    """Run ``main()`` on a new event loop, failing if it takes longer than ``guard``."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), guard)

    return asyncio.run(guarded())


def loopback(family: Family) -> str:
    return "::1" if family == 6 else "127.0.0.1"


def pair(address: Any) -> Address:
    """``(host, port)`` of a socket address (IPv6 ones have four fields)."""
    return (address[0], address[1])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the client's protocol -----------------------------------------------------------------


class Recorder(asyncio.DatagramProtocol):
    """The protocol create_turn_endpoint gives the relay to: records every callback."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.made = 0
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.made += 1

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, pair(addr)))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


# -- the server, as the client reaches it --------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One way to reach coturn: the address, and create_turn_endpoint's arguments."""

    kind: Kind
    family: Family
    address: Address
    server: Coturn

    @property
    def host(self) -> str:
        return loopback(self.family)

    async def open(
        self,
        protocol_factory: Callable[[], Recorder] = Recorder,
        *,
        password: str | None = None,
        **kwargs: Any,
    ) -> tuple[TurnTransport, Recorder]:
        """``create_turn_endpoint`` to this address; an IPv6 relay over ::1."""
        if self.family == 6:
            kwargs.setdefault("requested_family", IPV6)
        return await create_turn_endpoint(
            protocol_factory,
            self.address,
            self.server.username,
            self.server.password if password is None else password,
            ssl=self.server.ssl_context() if self.kind == "tls" else None,
            transport="udp" if self.kind == "udp" else "tcp",
            **kwargs,
        )


def endpoint(server: Coturn, kind: Kind, family: Family) -> Endpoint:
    name = kind if family == 4 else f"{kind}6"
    address: Address | None = getattr(server, name)
    if address is None:
        pytest.skip("::1 is not usable here")
    return Endpoint(kind, family, address, server)


# -- peers, and a tap on the adapter's socket ----------------------------------------------


class Peer(asyncio.DatagramProtocol):
    """A UDP peer on loopback: records what reaches it, and can answer."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, pair(addr)))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        return pair(self.transport.get_extra_info("sockname"))

    def send(self, data: bytes, addr: Address | None = None) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


@contextlib.asynccontextmanager
async def peer_on(host: str, remote: Address | None = None) -> AsyncIterator[Peer]:
    """A :class:`Peer` bound to ``host`` (connected to ``remote`` if given)."""
    loop = asyncio.get_running_loop()
    if remote is None:
        transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    else:
        transport, peer = await loop.create_datagram_endpoint(Peer, remote_addr=remote)
    try:
        yield peer
    finally:
        transport.close()


async def get(queue: asyncio.Queue[T], timeout: float = REPLY_TIMEOUT) -> T:
    return await asyncio.wait_for(queue.get(), timeout)


def assert_empty(queue: asyncio.Queue[Any]) -> None:
    assert queue.empty(), f"unexpected {queue.get_nowait()!r}"


def stun_messages(frames: list[bytes]) -> list[Message]:
    return [parse_message(frame) for frame in frames if not is_channel_data(frame)]


def kinds(frames: list[bytes]) -> list[tuple[Method, Class]]:
    """``(method, class)`` of the STUN messages among ``frames``."""
    return [(m.message_method, m.message_class) for m in stun_messages(frames)]


def channel_frames(frames: list[bytes]) -> list[bytes]:
    return [frame for frame in frames if is_channel_data(frame)]


class Tap:
    """Records what a :class:`TurnTransport` sends to and receives from coturn.

    Frames as the client core sees them: one STUN message or ChannelData each (stream
    framing is added below this, on TCP and TLS).
    """

    def __init__(self, turn: TurnTransport, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        link = turn._link
        # The slow path sends with link.send, the data path with link.send_raw; frames
        # come in through link.on_data (streams) or turn._received (datagrams).
        send, send_raw, on_data = link.send, link.send_raw, link.on_data

        def tapped_send(data: bytes) -> None:
            self.sent.append(data)
            send(data)

        def tapped_send_raw(data: bytes) -> None:
            self.sent.append(data)
            send_raw(data)

        def tapped_data(data: bytes) -> None:
            self.received.append(data)
            on_data(data)

        monkeypatch.setattr(link, "send", tapped_send)
        monkeypatch.setattr(link, "send_raw", tapped_send_raw)
        monkeypatch.setattr(turn, "_received", tapped_data)
        link.on_data = tapped_data

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()


# -- the sans-I/O core over a UDP socket ---------------------------------------------------


class CoreLink(asyncio.DatagramProtocol):
    """Pumps a :class:`TurnClient` over one UDP socket, as the drain rule says.

    The client's clock is ``loop.time() + offset``: :meth:`jump` moves it ahead, so
    refreshes due in minutes happen now, against the real server.
    """

    def __init__(self, client: TurnClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.offset = 0.0
        self.transport: asyncio.DatagramTransport | None = None
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def now(self) -> float:
        return self.loop.time() + self.offset

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        self.client.receive(data, now=self.now())
        self.pump()

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error: retransmissions go on

    def pump(self) -> None:
        """Send what the client has to send, queue its events, arm its timer."""
        assert self.transport is not None
        for data in self.client.datagrams_to_send():
            self.sent.append(data)
            self.transport.sendto(data)
        while (event := self.client.next_event()) is not None:
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
        at = self._timer_at = self.client.get_timer()
        self._timer = None if at is None else self.loop.call_at(at - self.offset, self._fire)

    def _fire(self) -> None:
        at = self._timer_at
        assert at is not None
        self._timer = self._timer_at = None
        self.client.handle_timer(now=max(at, self.now()))
        self.pump()

    def jump(self, seconds: float) -> None:
        """Move the client's clock ``seconds`` ahead, and let it act on that.

        Only with no request in flight: a request's retransmissions would be over too.
        """
        self.offset += seconds
        self.client.handle_timer(now=self.now())
        self.pump()

    async def event(self, kind: type[E], timeout: float = REPLY_TIMEOUT) -> E:
        """The next event, which must be a ``kind``."""
        event = await get(self.events, timeout)
        assert isinstance(event, kind), event
        return event

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


@contextlib.asynccontextmanager
async def core_client(address: Address, config: TurnClientConfig) -> AsyncIterator[CoreLink]:
    """A TurnClient on its own UDP socket to ``address``, allocated.

    On exit the allocation is deleted (a Refresh with LIFETIME 0) and the socket closed.
    """
    loop = asyncio.get_running_loop()
    client = TurnClient(address, config)
    _, core = await loop.create_datagram_endpoint(lambda: CoreLink(client), remote_addr=address)
    try:
        client.allocate(now=core.now())
        core.pump()
        await core.event(AllocationSucceeded)
        yield core
    finally:
        if client.state is TurnState.ALLOCATED:
            client.close(now=core.now())
            core.pump()
            with contextlib.suppress(asyncio.TimeoutError):
                event: TurnEvent | None = None
                while not isinstance(event, Closed):
                    event = await get(core.events, 1.0)
        core.stop()


def credentials(server: Coturn, **options: Any) -> TurnClientConfig:
    return TurnClientConfig(username=server.username, password=server.password, **options)


def assert_relayed(server: Coturn, relayed: Address | None, family: Family) -> Address:
    assert relayed is not None
    low, high = server.relay_ports
    assert relayed[0] == loopback(family), relayed
    assert low <= relayed[1] <= high, (relayed, server.relay_ports)
    return relayed


def port_bound(address: Address) -> bool:
    """Whether a UDP socket is bound to ``address`` (it cannot be bound again).

    No SO_REUSEADDR here: a bind fails whenever coturn still holds the port.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def forbidden_peer(family: Family) -> Address:
    """A documentation address of ``family`` that coturn refuses (never sent to)."""
    return FORBIDDEN_PEER if family == 4 else ("2001:db8::1", 9)


# -- 1. allocation -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "family"), ENDPOINTS)
def test_allocate(coturn: Coturn, kind: Kind, family: Family) -> None:
    """A relayed address in coturn's range, our own address as the mapped one."""
    target = endpoint(coturn, kind, family)

    async def main() -> None:
        turn, protocol = await target.open()
        try:
            assert protocol.transport is turn
            assert protocol.made == 1
            relayed = assert_relayed(coturn, turn.get_extra_info("sockname"), family)
            assert turn.get_extra_info("relayed_addresses") == (relayed,)
            assert turn._link.transport is not None
            local = pair(turn._link.transport.get_extra_info("sockname"))
            assert local[0] == target.host
            assert turn.get_extra_info("related_address") == local
            assert turn._client.state is TurnState.ALLOCATED
            assert turn._client.lifetime == COTURN_MIN_LIFETIME
            # The 401 challenge, then the signed Allocate: one retry with credentials.
            assert turn._client.stats.auth_retries == 1
            assert port_bound(relayed)  # coturn holds the relayed port
            assert not turn.is_closing()
            assert protocol.lost == []
        finally:
            turn.close()
            await turn.wait_closed()
        assert protocol.lost == [None]

    run(main)


# -- 2. data through the relay -------------------------------------------------------------


@pytest.mark.parametrize(("kind", "family"), ENDPOINTS)
def test_data_both_ways_through_a_channel(
    coturn: Coturn, kind: Kind, family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first datagram binds a channel (which installs the permission); the ones
    sent meanwhile wait for it; all of them, and all later ones, go as ChannelData.
    The peer sees them from the relayed address, in order; its answers come back as
    ChannelData, with the peer's address."""
    target = endpoint(coturn, kind, family)
    count = 5

    async def main() -> None:
        async with peer_on(target.host) as peer:
            turn, protocol = await target.open()
            tap = Tap(turn, monkeypatch)
            try:
                relayed = assert_relayed(coturn, turn.get_extra_info("sockname"), family)
                outgoing = [f"to peer {i}".encode() * (i + 1) for i in range(count)]
                for data in outgoing:
                    turn.sendto(data, peer.address)
                assert [await get(peer.received) for _ in outgoing] == [
                    (data, relayed) for data in outgoing
                ]
                # One ChannelBind, answered; the queued datagrams left as ChannelData.
                assert kinds(tap.sent) == [(Method.CHANNEL_BIND, Class.REQUEST)]
                assert kinds(tap.received) == [(Method.CHANNEL_BIND, Class.RESPONSE)]
                assert len(channel_frames(tap.sent)) == count
                channel = turn._client._channels[peer.address]
                assert channel.bound
                assert all(
                    int.from_bytes(frame[:2], "big") == channel.number
                    for frame in channel_frames(tap.sent)
                )
                # A channel binding installs the permission: the peer can answer.
                incoming = [f"to client {i}".encode() for i in range(count)]
                for data in incoming:
                    peer.send(data, relayed)
                assert [await get(protocol.received) for _ in incoming] == [
                    (data, peer.address) for data in incoming
                ]
                assert kinds(tap.received) == [(Method.CHANNEL_BIND, Class.RESPONSE)]
                assert len(channel_frames(tap.received)) == count
                if family == 4:
                    # The permission is the peer's IP's: coturn drops what another
                    # loopback address sends to the relay (the friend, sent after, is
                    # relayed: the stranger's datagram was not delayed but dropped).
                    async with peer_on("127.0.0.2") as stranger:
                        stranger.send(b"stranger", relayed)
                        peer.send(b"friend", relayed)
                        assert await get(protocol.received) == (b"friend", peer.address)
                        assert_empty(protocol.received)
                # After the exchange: ChannelData only, no more requests.
                tap.clear()
                turn.sendto(b"again", peer.address)
                assert await get(peer.received) == (b"again", relayed)
                assert kinds(tap.sent) == []
                assert channel_frames(tap.sent) == [
                    channel.number.to_bytes(2, "big") + (5).to_bytes(2, "big") + b"again"
                ]
                assert_empty(protocol.errors)
            finally:
                turn.close()
                await turn.wait_closed()

    run(main)


@pytest.mark.parametrize("family", FAMILIES)
def test_send_indications_without_channels(coturn: Coturn, family: Family) -> None:
    """``use_channels=False``, on the sans-I/O core: a CreatePermission, then Send
    indications out and Data indications in; a permission covers every port of an IP."""
    target = endpoint(coturn, "udp", family)

    async def main() -> None:
        config = credentials(
            coturn, use_channels=False, requested_family=IPV6 if family == 6 else None
        )
        async with (
            peer_on(target.host) as peer,
            peer_on(target.host) as other_port,
            core_client(target.address, config) as core,
        ):
            client = core.client
            relayed = assert_relayed(coturn, client.relayed_address, family)
            core.sent.clear()
            core.received.clear()
            outgoing = [b"one", b"two", b"three"]
            for data in outgoing:  # before the permission is answered: queued
                client.send(data, peer.address, now=core.now())
                core.pump()
            assert [await get(peer.received) for _ in outgoing] == [
                (data, relayed) for data in outgoing
            ]
            assert kinds(core.sent) == [(Method.CREATE_PERMISSION, Class.REQUEST)] + [
                (Method.SEND, Class.INDICATION)
            ] * len(outgoing)
            assert kinds(core.received) == [(Method.CREATE_PERMISSION, Class.RESPONSE)]
            assert channel_frames(core.sent) == []
            assert client._channels == {}
            # Another port of the same IP: the permission is there, data goes at once.
            core.sent.clear()
            client.send(b"other port", other_port.address, now=core.now())
            core.pump()
            assert kinds(core.sent) == [(Method.SEND, Class.INDICATION)]
            assert await get(other_port.received) == (b"other port", relayed)
            # Back from both peers: Data indications, with each peer's address.
            peer.send(b"back", relayed)
            event = await core.event(DataReceived)
            assert (event.data, event.peer) == (b"back", peer.address)
            other_port.send(b"back too", relayed)
            event = await core.event(DataReceived)
            assert (event.data, event.peer) == (b"back too", other_port.address)
            assert kinds(core.received)[-2:] == [(Method.DATA, Class.INDICATION)] * 2
            assert channel_frames(core.received) == []
            assert client.stats.dropped == 0

    run(main)


# -- 3. refresh ----------------------------------------------------------------------------


def test_refresh_on_a_jumped_clock(coturn: Coturn) -> None:
    """coturn raises a 10 s LIFETIME to 600 s; the refresh due a minute before expiry is
    sent when the client's clock jumps there, coturn grants it, and the next is planned
    from its LIFETIME. Twice; the relay works after. No real waiting."""

    async def main() -> None:
        config = credentials(coturn, lifetime=10)
        async with peer_on("127.0.0.1") as peer, core_client(coturn.udp, config) as core:
            client = core.client
            assert client.lifetime == COTURN_MIN_LIFETIME  # what coturn granted
            allocated_at = core.now()
            due = client.get_timer()
            assert due is not None
            assert due == pytest.approx(allocated_at + COTURN_MIN_LIFETIME - 60, abs=0.5)
            for _ in range(2):
                core.sent.clear()
                core.received.clear()
                core.jump(due - core.now() - 1)
                await asyncio.sleep(0.05)
                assert core.sent == [], "refreshed early"
                core.jump(2)  # one second past due
                refreshed_at = core.now()
                for _ in range(100):
                    if core.received:
                        break
                    await asyncio.sleep(0.01)
                [request] = stun_messages(core.sent)
                assert (request.message_method, request.message_class) == (
                    Method.REFRESH,
                    Class.REQUEST,
                )
                assert request.attributes["LIFETIME"] == 10
                [response] = stun_messages(core.received)
                assert response.transaction_id == request.transaction_id
                assert response.message_class == Class.RESPONSE, response
                assert response.attributes["LIFETIME"] == COTURN_MIN_LIFETIME
                assert client.state is TurnState.ALLOCATED
                assert client.lifetime == COTURN_MIN_LIFETIME
                due = client.get_timer()
                assert due is not None
                assert due == pytest.approx(refreshed_at + COTURN_MIN_LIFETIME - 60, abs=0.5)
            assert core.events.empty()
            relayed = client.relayed_address
            client.send(b"after refreshes", peer.address, now=core.now())
            core.pump()
            assert await get(peer.received) == (b"after refreshes", relayed)

    run(main)


def test_refresh_in_real_time(
    coturn_factory: CoturnFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--max-allocate-lifetime=4`` coturn grants 4 s; create_turn_endpoint's own
    timer refreshes halfway, at 2 s, and coturn grants it again."""
    server = coturn_factory(extra_args=["--max-allocate-lifetime=4"])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with peer_on("127.0.0.1") as peer:
            turn, _ = await create_turn_endpoint(
                Recorder, server.udp, server.username, server.password
            )
            allocated_at = loop.time()
            tap = Tap(turn, monkeypatch)
            try:
                assert turn._client.lifetime == 4
                assert turn._client.get_timer() == pytest.approx(allocated_at + 2, abs=0.2)
                while not tap.received:
                    assert loop.time() - allocated_at < 2.8, "no refresh within 2.8 s"
                    await asyncio.sleep(0.02)
                assert loop.time() - allocated_at >= 1.9
                [request] = stun_messages(tap.sent)
                [response] = stun_messages(tap.received)
                assert (request.message_method, request.message_class) == (
                    Method.REFRESH,
                    Class.REQUEST,
                )
                assert response.transaction_id == request.transaction_id
                assert response.message_class == Class.RESPONSE, response
                assert response.attributes["LIFETIME"] == 4
                assert turn._client.state is TurnState.ALLOCATED
                next_refresh = turn._client.get_timer()
                assert next_refresh is not None
                assert next_refresh > allocated_at + 3.5
                relayed = turn.get_extra_info("sockname")
                turn.sendto(b"still allocated", peer.address)
                assert await get(peer.received) == (b"still allocated", relayed)
            finally:
                turn.close()
                await turn.wait_closed()

    run(main)


# -- 4. 438 Stale Nonce --------------------------------------------------------------------


def test_stale_nonce_is_retried(
    coturn_factory: CoturnFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--stale-nonce=1``: once the nonce is stale, a Refresh (the core, on a jumped
    clock) and a ChannelBind (UDP, TCP, TLS through create_turn_endpoint) get 438 with
    a new nonce, are sent again with it, and succeed.

    coturn counts whole seconds: a nonce was seen going stale 1.3 to 2.0 s after it was
    issued. So the core allocates last, and refreshes every 0.1 s until it gets its 438
    (earlier refreshes succeed with the nonce still fresh); the older nonces of the
    other three are stale by then.
    """
    server = coturn_factory(stale_nonce=1)

    async def refresh_now(core: CoreLink) -> tuple[list[Message], list[Message]]:
        """Jump to the refresh and wait for its success: (requests, responses)."""
        core.sent.clear()
        core.received.clear()
        due = core.client.get_timer()
        assert due is not None
        core.jump(due - core.now())
        for _ in range(300):
            responses = stun_messages(core.received)
            if responses and responses[-1].message_class == Class.RESPONSE:
                break
            await asyncio.sleep(0.01)
        assert core.events.empty(), core.events.get_nowait()
        return stun_messages(core.sent), stun_messages(core.received)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            peer = await stack.enter_async_context(peer_on("127.0.0.1"))
            turns: dict[Kind, tuple[TurnTransport, Tap]] = {}
            for kind in ("udp", "tcp", "tls"):
                turn, _ = await endpoint(server, kind, 4).open()
                stack.push_async_callback(turn.wait_closed)
                stack.callback(turn.close)
                turns[kind] = (turn, Tap(turn, monkeypatch))
            core = await stack.enter_async_context(core_client(server.udp, credentials(server)))
            allocated_at = loop.time()

            while True:
                retries = core.client.stats.auth_retries
                requests, responses = await refresh_now(core)
                if core.client.stats.auth_retries > retries:
                    break
                assert [(r.message_class, r.error_code) for r in responses] == [
                    (Class.RESPONSE, None)
                ]
                assert loop.time() - allocated_at < 4, "no 438 within 4 s"
                await asyncio.sleep(0.1)
            assert loop.time() - allocated_at >= 0.9
            assert core.client.stats.auth_retries == retries + 1
            assert [(m.message_method, m.message_class) for m in requests] == [
                (Method.REFRESH, Class.REQUEST)
            ] * 2
            assert [(r.message_class, r.error_code) for r in responses] == [
                (Class.ERROR, 438),
                (Class.RESPONSE, None),
            ]
            fresh = responses[0].attributes["NONCE"]
            assert requests[0].attributes["NONCE"] != fresh
            assert requests[1].attributes["NONCE"] == fresh
            assert core.client.state is TurnState.ALLOCATED

            for kind, (turn, tap) in turns.items():
                retries = turn._client.stats.auth_retries
                assert retries == 1, kind  # the 401
                turn.sendto(kind.encode(), peer.address)
                assert await get(peer.received) == (kind.encode(), turn.get_extra_info("sockname"))
                assert turn._client.stats.auth_retries == retries + 1, kind
                requests = stun_messages(tap.sent)
                responses = stun_messages(tap.received)
                assert [(m.message_method, m.message_class) for m in requests] == [
                    (Method.CHANNEL_BIND, Class.REQUEST)
                ] * 2, kind
                assert [(r.message_class, r.error_code) for r in responses] == [
                    (Class.ERROR, 438),
                    (Class.RESPONSE, None),
                ], kind
                fresh = responses[0].attributes["NONCE"]
                assert requests[0].attributes["NONCE"] != fresh
                assert requests[1].attributes["NONCE"] == fresh
                assert turn._client._channels[peer.address].bound

    run(main)


# -- 5. deallocation -----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "family"), ENDPOINTS)
def test_close_deletes_the_allocation(
    coturn: Coturn, kind: Kind, family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close(): a Refresh with LIFETIME 0 that coturn grants, then ``connection_lost(None)``
    once; coturn then lets go of the relayed port (bindable again; a peer sending there
    gets ICMP port unreachable) within its one-second tick."""
    target = endpoint(coturn, kind, family)

    async def main() -> None:
        before = open_fds()
        turn, protocol = await target.open()
        tap = Tap(turn, monkeypatch)
        relayed = assert_relayed(coturn, turn.get_extra_info("sockname"), family)
        async with peer_on(target.host, remote=relayed) as peer:
            # Before: the relay works both ways, and its port is coturn's.
            turn.sendto(b"hello", peer.address)
            assert await get(peer.received) == (b"hello", relayed)
            peer.send(b"hi")
            assert await get(protocol.received) == (b"hi", peer.address)
            assert port_bound(relayed)
            tap.clear()

            turn.close()
            assert turn.is_closing()
            turn.close()  # once is enough
            await turn.wait_closed()
            assert protocol.lost == [None]
            assert open_fds() == before + 1  # the socket to coturn is closed; the peer's is not
            [request] = stun_messages(tap.sent)
            assert (request.message_method, request.message_class) == (
                Method.REFRESH,
                Class.REQUEST,
            )
            assert request.attributes["LIFETIME"] == 0
            [response] = stun_messages(tap.received)
            assert response.transaction_id == request.transaction_id
            assert response.message_class == Class.RESPONSE, response
            assert turn._client.state is TurnState.CLOSED

            # Ignored once closed: nothing is sent, nothing raised.
            tap.clear()
            turn.sendto(b"too late", peer.address)
            assert tap.sent == []

            loop = asyncio.get_running_loop()
            closed_at = loop.time()
            while port_bound(relayed):
                assert loop.time() - closed_at < 3, "coturn kept the relayed port 3 s"
                await asyncio.sleep(0.02)
            peer.send(b"anyone there?")
            refused = await get(peer.errors)
            assert isinstance(refused, ConnectionRefusedError), refused
            assert_empty(protocol.received)
            assert protocol.lost == [None]

    run(main)


# -- 6. errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "family"), ENDPOINTS)
def test_wrong_password_is_401(coturn: Coturn, kind: Kind, family: Family) -> None:
    """TransactionFailed carrying coturn's 401; no protocol made, no socket left open."""
    target = endpoint(coturn, kind, family)

    def refuse() -> Recorder:
        pytest.fail("no protocol is made when the allocation fails")

    async def main() -> None:
        before = open_fds()
        with pytest.raises(TransactionFailed) as failed:
            await target.open(refuse, password=coturn.password + "x")
        response = failed.value.response
        assert response.message_method == Method.ALLOCATE
        assert response.error_code == 401
        assert response.attributes["REALM"] == coturn.realm
        assert open_fds() == before  # closed before the exception

    run(main)


def test_unreachable_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed UDP port on 127.0.0.1 (ICMP port unreachable, then silence): with the
    aioice 0.x tunables patched, TransactionTimeout after the few retransmissions."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        address = pair(closed.getsockname())
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.02)
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = open_fds()
        started = loop.time()
        with pytest.raises(TransactionTimeout):
            await create_turn_endpoint(Recorder, address, "user", "password")
        # Sends at 0, 0.02 and 0.06 s, then Rm x RTO (16 x 0.02 s): 0.38 s in all; the
        # defaults (0.5 s, 6) would take 39.5 s.
        assert 0.3 <= loop.time() - started < 2.0
        assert open_fds() == before  # closed before the exception

    run(main)


@pytest.mark.parametrize(("kind", "family"), ENDPOINTS)
def test_forbidden_peer_reaches_error_received(
    coturn: Coturn, kind: Kind, family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """coturn refuses the ChannelBind to a peer outside loopback with 403: the protocol's
    ``error_received`` gets a ConnectionError and the allocation goes on working."""
    target = endpoint(coturn, kind, family)
    forbidden = forbidden_peer(family)

    async def main() -> None:
        async with peer_on(target.host) as peer:
            turn, protocol = await target.open()
            tap = Tap(turn, monkeypatch)
            try:
                turn.sendto(b"not for you", forbidden)
                error = await get(protocol.errors)
                assert isinstance(error, ConnectionError)
                assert str(forbidden) in str(error)
                assert "403" in str(error)
                [response] = stun_messages(tap.received)
                assert (response.message_method, response.error_code) == (
                    Method.CHANNEL_BIND,
                    403,
                )
                assert forbidden not in turn._client._channels
                assert not turn.is_closing()
                turn.sendto(b"for you", peer.address)
                assert await get(peer.received) == (b"for you", turn.get_extra_info("sockname"))
                assert_empty(protocol.errors)
                assert protocol.lost == []
            finally:
                turn.close()
                await turn.wait_closed()

    run(main)


@pytest.mark.parametrize("family", FAMILIES)
def test_forbidden_permission_on_the_core(coturn: Coturn, family: Family) -> None:
    """The same refusal for a CreatePermission (``use_channels=False``): SendFailed with
    coturn's 403 and the datagram that waited for it counted as dropped."""
    target = endpoint(coturn, "udp", family)
    forbidden = forbidden_peer(family)

    async def main() -> None:
        config = credentials(
            coturn, use_channels=False, requested_family=IPV6 if family == 6 else None
        )
        async with core_client(target.address, config) as core:
            core.client.send(b"not for you", forbidden, now=core.now())
            core.pump()
            failed = await core.event(SendFailed)
            assert failed.peer == forbidden
            assert failed.dropped == 1
            assert failed.error.response is not None
            assert failed.error.response.error_code == 403
            assert kinds(core.sent)[-1:] == [(Method.CREATE_PERMISSION, Class.REQUEST)]
            assert core.client.state is TurnState.ALLOCATED

    run(main)


# -- 7. no leak ----------------------------------------------------------------------------


async def cycles(target: Endpoint, count: int) -> tuple[float, int, int]:
    """``count`` allocate / close cycles; returns (seconds, fds added, tasks added)."""
    loop = asyncio.get_running_loop()
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    started = loop.time()
    for _ in range(count):
        turn, protocol = await target.open()
        turn.close()
        await turn.wait_closed()
        assert protocol.lost == [None]
    elapsed = loop.time() - started
    # No settling: wait_closed() returns once the socket to coturn is closed.
    return elapsed, open_fds() - fds, len(asyncio.all_tasks()) - tasks


def test_no_leak_over_udp(coturn_factory: CoturnFactory) -> None:
    """1,000 allocate / close cycles over UDP leave no descriptor and no task behind.

    coturn frees a UDP relay port only on its next one-second tick after the Refresh
    with LIFETIME 0: with the fixture's 32 relay ports, allocations got 508 after ~32
    fast cycles. A server of its own with 1,024 relay ports has room for a second of
    them.
    """
    server = coturn_factory(relay_port_count=1024)
    target = endpoint(server, "udp", 4)

    async def main() -> None:
        elapsed, fds, tasks = await cycles(target, 1000)
        print(f"1000 UDP allocate/close cycles: {elapsed:.2f} s")
        assert (fds, tasks) == (0, 0)
        assert elapsed < 60

    run(main, 90)


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_no_leak_over_streams(coturn: Coturn, kind: Kind) -> None:
    """100 allocate / close cycles over TCP and TLS (coturn frees those ports at once)."""
    target = endpoint(coturn, kind, 4)

    async def main() -> None:
        elapsed, fds, tasks = await cycles(target, 100)
        print(f"100 {kind.upper()} allocate/close cycles: {elapsed:.2f} s")
        assert (fds, tasks) == (0, 0)

    run(main, 60)


# -- and one thing coturn does its own way -------------------------------------------------


def test_dual_allocation_request(coturn: Coturn) -> None:
    """ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.1): coturn 4.6 here answers with the IPv4
    relay only, and no ADDRESS-ERROR-CODE. The client takes what is granted: its
    relayed addresses are those of the response, and the IPv4 one relays."""

    async def main() -> None:
        async with peer_on("127.0.0.1") as peer:
            turn, _ = await endpoint(coturn, "udp", 4).open(additional_family=IPV6)
            try:
                relayed = turn.get_extra_info("relayed_addresses")
                assert relayed[0] == turn.get_extra_info("sockname")
                assert_relayed(coturn, relayed[0], 4)
                assert len(relayed) in (1, 2)
                if len(relayed) == 2:  # a coturn that does dual allocation
                    assert_relayed(coturn, relayed[1], 6)
                turn.sendto(b"dual?", peer.address)
                assert await get(peer.received) == (b"dual?", relayed[0])
            finally:
                turn.close()
                await turn.wait_closed()

    run(main)


def test_rest_api_credentials(coturn_factory: CoturnFactory) -> None:
    """Ephemeral credentials from ``rest_credentials`` open an allocation on a coturn
    that knows only the shared secret (``--use-auth-secret``); expired ones are refused."""
    server = coturn_factory(auth_secret="shared-secret")

    async def main() -> None:
        username, password = rest_credentials("shared-secret", now=time.time(), user="bob")
        turn, _ = await create_turn_endpoint(Recorder, server.udp, username, password)
        try:
            assert turn.get_extra_info("sockname")[0] == "127.0.0.1"
        finally:
            turn.close()
            await turn.wait_closed()
        # Credentials whose expiry has passed are refused with 401.
        username, password = rest_credentials("shared-secret", now=time.time() - 7200, ttl=60)
        with pytest.raises(aioice.stun.TransactionFailed) as info:
            await create_turn_endpoint(Recorder, server.udp, username, password)
        assert info.value.response.error_code == 401

    run(main)
