"""Run the sans-I/O STUN and TURN server cores on virtual hosts."""

from __future__ import annotations

import random
from typing import Protocol

from aioice.stun import Address, StunServer, Transmit
from aioice.turn.server import RelayAllocated, RelayReleased, TurnServer

from .network import Endpoint, Host

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
    address the core names, and its timer kept in the network's scheduler."""

    def __init__(self, host: Host, core: ServerCore, addresses: list[Address]) -> None:
        self.host = host
        self.core = core
        self.endpoints: dict[Address, Endpoint] = {}
        self._timer_at: float | None = None
        for address in addresses:
            self._bind(address)

    def _bind(self, address: Address) -> None:
        def receive(data: bytes, remote: Address, local: Address = address) -> None:
            self.core.receive_datagram(data, local=local, remote=remote, now=self.host.network.now)
            self._pump()

        self.endpoints[address] = self.host.bind(address[1], receive, ip=address[0])

    def _pump(self) -> None:
        core = self.core
        if isinstance(core, TurnServer):
            while (event := core.next_event()) is not None:
                if isinstance(event, RelayAllocated) and event.relayed not in self.endpoints:
                    self._bind(event.relayed)
                elif isinstance(event, RelayReleased):
                    endpoint = self.endpoints.pop(event.relayed, None)
                    if endpoint is not None:
                        endpoint.close()
        for transmit in core.datagrams_to_send():
            endpoint = self.endpoints.get(transmit.local or next(iter(self.endpoints)))
            if endpoint is not None:
                endpoint.send(transmit.data, transmit.remote)
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


def stun_server(host: Host, *, rfc5780: bool = False, port: int = 3478) -> ServerHost:
    """A STUN server on ``host``; with ``rfc5780`` it gets a second address and listens on
    the four address and port combinations (RFC 5780 §6)."""
    alternate = (host.add_address(), port + 1) if rfc5780 else None
    core = StunServer((host.ip, port), alternate)
    return ServerHost(host, core, core.addresses)


def turn_server(
    host: Host, *, users: dict[str, str], realm: str = "vnet", port: int = 3478, seed: int = 0
) -> ServerHost:
    """A TURN server (the test server core) on ``host``, relaying from the host's address."""
    core = TurnServer(
        (host.ip, port),
        realm=realm,
        users=users,
        relay_ip=host.ip,
        rng=random.Random(seed),
    )
    return ServerHost(host, core, [(host.ip, port)])
