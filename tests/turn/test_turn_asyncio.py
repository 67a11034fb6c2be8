"""create_turn_endpoint against our in-process TURN server on loopback: the paths
coturn cannot be made to take (300 Try Alternate, 437 Allocation Mismatch)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from aioice.stun import Address, Class, Message, Method, TransactionFailed, parse_message
from aioice.turn import create_turn_endpoint
from aioice.turn.server import RelayAllocated, RelayReleased, TurnServer

USERS = {"alice": "secret"}
REALM = "aioice.test"


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, (addr[0], addr[1]))


class ServerRunner:
    """The TurnServer core on loopback sockets, with a hook before it sees a datagram."""

    def __init__(self, hook: Callable[[Message, Address], Message | None] | None = None) -> None:
        self.hook = hook
        self.core: TurnServer | None = None
        self.sockets: dict[Address, asyncio.DatagramTransport] = {}
        self.loop = asyncio.get_running_loop()

    async def start(self) -> Address:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Socket(lambda d, r: self._received(d, self.listen, r)),
            local_addr=("127.0.0.1", 0),
        )
        host, port = transport.get_extra_info("sockname")[:2]
        self.listen: Address = (host, port)
        self.sockets[self.listen] = transport
        self.core = TurnServer(
            self.listen,
            realm=REALM,
            users=USERS,
            rng=random.Random(8656),
            port_range=(47000, 47999),
        )
        return self.listen

    def _received(self, data: bytes, local: Address, remote: Address) -> None:
        assert self.core is not None
        if self.hook is not None and local == self.listen and data[0] < 0x40:
            message = parse_message(data)
            answer = self.hook(message, remote)
            if answer is not None:
                self.sockets[local].sendto(bytes(answer), remote)
                return
        self.core.receive_datagram(data, local=local, remote=remote, now=self.loop.time())
        self._pump()

    def _pump(self) -> None:
        assert self.core is not None
        while (event := self.core.next_event()) is not None:
            if isinstance(event, RelayAllocated):
                self.loop.create_task(self._bind(event.relayed))
            elif isinstance(event, RelayReleased):
                socket = self.sockets.pop(event.relayed, None)
                if socket is not None:
                    socket.close()
        for transmit in self.core.datagrams_to_send():
            socket = self.sockets.get(transmit.local or self.listen)
            if socket is not None:
                socket.sendto(transmit.data, transmit.remote)

    async def _bind(self, relayed: Address) -> None:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Socket(lambda d, r: self._received(d, relayed, r)), local_addr=relayed
        )
        self.sockets[relayed] = transport

    def close(self) -> None:
        for socket in self.sockets.values():
            socket.close()


def error(request: Message, code: int, reason: str, **attributes: Any) -> Message:
    return Message(
        request.message_method,
        Class.ERROR,
        request.transaction_id,
        {"ERROR-CODE": (code, reason), **attributes},
    )


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_300_follows_the_alternate_server_once() -> None:
    async def scenario() -> None:
        real = ServerRunner()
        target = await real.start()
        redirects: list[Address] = []

        def redirect(message: Message, remote: Address) -> Message | None:
            redirects.append(remote)
            return error(message, 300, "Try Alternate", **{"ALTERNATE-SERVER": target})

        first = ServerRunner(redirect)
        await first.start()
        try:
            transport, protocol = await create_turn_endpoint(
                Receiver, first.listen, "alice", "secret"
            )
            assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
            assert len(redirects) == 1
            transport.close()
            assert await asyncio.wait_for(protocol.lost, 5) is None
        finally:
            first.close()
            real.close()

    asyncio.run(scenario())


def test_a_second_300_is_not_followed() -> None:
    async def scenario() -> None:
        bounce = ServerRunner()
        await bounce.start()
        bounce.hook = lambda m, r: error(
            m, 300, "Try Alternate", **{"ALTERNATE-SERVER": bounce.listen}
        )
        fds = open_fds()
        try:
            with pytest.raises(TransactionFailed) as info:
                await create_turn_endpoint(Receiver, bounce.listen, "alice", "secret")
            assert info.value.response.error_code == 300
            assert open_fds() == fds  # both sockets closed
        finally:
            bounce.close()

    asyncio.run(scenario())


def test_437_allocates_again_from_a_new_port() -> None:
    async def scenario() -> None:
        sources: list[Address] = []

        def mismatch_first(message: Message, remote: Address) -> Message | None:
            if message.message_method != Method.ALLOCATE:
                return None
            sources.append(remote)
            if len(sources) == 1:
                return error(message, 437, "Allocation Mismatch")
            return None

        server = ServerRunner(mismatch_first)
        await server.start()
        try:
            transport, protocol = await create_turn_endpoint(
                Receiver, server.listen, "alice", "secret"
            )
            # The retry came from another local port (then a 401 and the signed one).
            assert sources[0][1] != sources[1][1]
            assert sources[1] == sources[-1]
            transport.close()
            assert await asyncio.wait_for(protocol.lost, 5) is None
        finally:
            server.close()

    asyncio.run(scenario())


def test_cancelled_allocation_leaks_no_socket() -> None:
    async def scenario() -> None:
        silent = ServerRunner(lambda m, r: Message(Method.BINDING, Class.INDICATION))
        await silent.start()
        fds = open_fds()
        try:
            task = asyncio.ensure_future(
                create_turn_endpoint(Receiver, silent.listen, "alice", "secret")
            )
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert open_fds() == fds
        finally:
            silent.close()

    asyncio.run(scenario())
