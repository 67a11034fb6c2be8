"""Run the sans-I/O STUN and TURN server cores on virtual hosts, over UDP and streams."""

from __future__ import annotations

import random
from functools import partial
from typing import Protocol

from aioice.stun import Address, StreamFramer, StunServer, Transmit
from aioice.turn.server import RelayAllocated, RelayReleased, TurnServer

from .network import Endpoint, Host, Listener, Stream

__all__ = ["ServerCore", "ServerHost", "stun_server", "turn_server"]


class ServerCore(Protocol):
    """What StunServer and TurnServer have in common."""

    def receive_datagram(
        self, data: bytes, *, local: Address, remote: Address, now: float
    ) -> None: ...

    def datagrams_to_send(self) -> list[Transmit]: ...

    def get_timer(self) -> float | None: ...


class ServerHost:
    """A server core on a host: every address it uses is bound, every answer sent from the
    address the core names, and its timer kept in the network's scheduler.

    :param addresses: the core's own addresses, bound for UDP.
    :param aliases: more listening addresses, each standing for one of the core's (a
        core that listens on one address serves both families this way): what arrives
        on an alias reaches the core as if on its address, and what the core sends from
        that address to a remote of the alias's family leaves from the alias.
    :param tcp: also accept streams on the listening addresses (RFC 8489 §6.2.2, RFC
        8656 §3.1): each stream is a client at its :attr:`Stream.remote`, framed with a
        :class:`~aioice.stun.StreamFramer`; the core's answers to that address go back
        on the stream.
    """

    def __init__(
        self,
        host: Host,
        core: ServerCore,
        addresses: list[Address],
        *,
        aliases: dict[Address, Address] | None = None,
        tcp: bool = False,
    ) -> None:
        self.host = host
        self.core = core
        self.endpoints: dict[Address, Endpoint] = {}
        self.listeners: list[Listener] = []
        #: Clients connected over streams, by their address (as the server sees it).
        self.streams: dict[Address, tuple[Stream, StreamFramer]] = {}
        self._timer_at: float | None = None
        # (core address, remote is IPv6) -> the alias that sends to that family.
        self._by_family: dict[tuple[Address, bool], Address] = {}
        self._listening = set(addresses)
        for address in addresses:
            self._bind(address, address)
        for alias, address in (aliases or {}).items():
            self._bind(alias, address)
            self._by_family[(address, ":" in alias[0])] = alias
        if tcp:
            for address in [*addresses, *(aliases or {})]:
                local = (aliases or {}).get(address, address)
                self.listeners.append(
                    host.listen(address[1], partial(self._accept, local), ip=address[0])
                )

    def _bind(self, address: Address, local: Address) -> None:
        def receive(data: bytes, remote: Address) -> None:
            self.core.receive_datagram(data, local=local, remote=remote, now=self.host.network.now)
            self._pump()

        self.endpoints[address] = self.host.bind(address[1], receive, ip=address[0])

    def _accept(self, local: Address, stream: Stream) -> None:
        framer = StreamFramer()
        self.streams[stream.remote] = (stream, framer)
        stream.receiver = partial(self._stream_data, local, stream, framer)
        stream.on_close = partial(self._stream_closed, stream)

    def _stream_data(
        self, local: Address, stream: Stream, framer: StreamFramer, chunk: bytes
    ) -> None:
        now = self.host.network.now
        core = self.core
        for frame in framer.feed(chunk):
            if isinstance(core, StunServer):
                core.receive_datagram(
                    frame, local=local, remote=stream.remote, now=now, stream=True
                )
            else:
                core.receive_datagram(frame, local=local, remote=stream.remote, now=now)
        if framer.broken:
            # Neither STUN nor ChannelData: nothing more can be framed (RFC 8656 §12.5).
            stream.close()
            self._stream_closed(stream)
        self._pump()

    def _stream_closed(self, stream: Stream) -> None:
        client = self.streams.get(stream.remote)
        if client is not None and client[0] is stream:
            del self.streams[stream.remote]

    def _pump(self) -> None:
        core = self.core
        if isinstance(core, TurnServer):
            while (event := core.next_event()) is not None:
                if isinstance(event, RelayAllocated) and event.relayed not in self.endpoints:
                    self._bind(event.relayed, event.relayed)
                elif isinstance(event, RelayReleased):
                    endpoint = self.endpoints.pop(event.relayed, None)
                    if endpoint is not None:
                        endpoint.close()
        streams = self.streams
        for transmit in core.datagrams_to_send():
            local, remote = transmit.local or next(iter(self.endpoints)), transmit.remote
            client = streams.get(remote) if streams and local in self._listening else None
            if client is not None:
                stream, framer = client
                if not stream.closed:
                    stream.write(framer.frame(transmit.data))
                continue
            if (":" in remote[0]) != (":" in local[0]):
                local = self._by_family.get((local, ":" in remote[0]), local)
            endpoint = self.endpoints.get(local)
            if endpoint is not None:
                endpoint.send(transmit.data, remote)
        at = core.get_timer()
        if at is not None and at != self._timer_at:
            self._timer_at = at
            self.host.network.scheduler.call_at(at, lambda: self._fire(at))

    def _fire(self, at: float) -> None:
        if self._timer_at != at:
            return  # superseded
        self._timer_at = None
        handle = getattr(self.core, "handle_timer", None)
        if handle is not None:
            handle(now=self.host.network.now)
        self._pump()


def stun_server(
    host: Host, *, rfc5780: bool = False, port: int = 3478, family: int = 4, tcp: bool = True
) -> ServerHost:
    """A STUN server on ``host``'s first address of ``family`` (4 or 6; call twice for
    both), over UDP and, with ``tcp``, streams. With ``rfc5780`` it gets a second address
    and listens on the four address and port combinations (RFC 5780 §6)."""
    ip = host.ip if family == 4 else host.ip6
    if ip is None:
        raise ValueError(f"{host.name} has no IPv{family} address")
    alternate = (host.add_address(family), port + 1) if rfc5780 else None
    core = StunServer((ip, port), alternate)
    return ServerHost(host, core, core.addresses, tcp=tcp)


def turn_server(
    host: Host,
    *,
    users: dict[str, str],
    realm: str = "vnet",
    port: int = 3478,
    seed: int = 0,
    tcp: bool = True,
) -> ServerHost:
    """A TURN server (the test server core) on ``host``, relaying from the host's
    addresses (IPv4, and IPv6 when the host has one: RFC 8656 §7.2).

    It listens on ``port`` of both families (one core: its IPv6 address is an alias of
    the IPv4 one, see :class:`ServerHost`) and, with ``tcp``, accepts streams there too
    (TURN over TCP to the server, UDP relays: RFC 8656 §3.1). The core keys allocations
    by the client's address; the network gives UDP and TCP one port space per address,
    so a stream client never collides with a UDP one. A closed stream does not delete
    its allocation: it expires.
    """
    listen = (host.ip, port)
    ip6 = host.ip6
    core = TurnServer(
        listen,
        realm=realm,
        users=users,
        relay_ip=host.ip,
        relay_ip6=ip6,
        rng=random.Random(seed),
    )
    aliases = {(ip6, port): listen} if ip6 is not None else {}
    return ServerHost(host, core, [listen], aliases=aliases, tcp=tcp)
