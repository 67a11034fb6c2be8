"""The asyncio Connection on loopback, through its public API only."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aioice import Candidate, Connection, ConnectionClosed, TransportPolicy
from aioice.ice import IceConfig, IceFailedError
from aioice.stun.asyncio import serve

T = TypeVar("T")
LOOPBACK = ["127.0.0.1"]


def arun(main: Callable[[], Awaitable[T]]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(main(), 30)

    return asyncio.run(guarded())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def exchange(a: Connection, b: Connection, *, end: bool = True) -> None:
    for x, y in ((a, b), (b, a)):
        x.remote_username, x.remote_password = y.local_username, y.local_password
        for candidate in y.local_candidates:
            await x.add_remote_candidate(candidate)
        if end:
            await x.add_remote_candidate(None)


async def connected_pair(**kwargs: Any) -> tuple[Connection, Connection]:
    a = Connection(ice_controlling=True, host_addresses=LOOPBACK, **kwargs)
    b = Connection(ice_controlling=False, host_addresses=LOOPBACK, **kwargs)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    await exchange(a, b)
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def test_connect_send_receive_close() -> None:
    fds = open_fds()

    async def main() -> None:
        tasks = asyncio.all_tasks()
        a, b = await connected_pair()
        assert [c.type for c in a.local_candidates] == ["host"]
        pair = a.selected_pair
        assert pair is not None
        assert pair.local.host == "127.0.0.1"
        assert pair.remote_address == (b.local_candidates[0].host, b.local_candidates[0].port)
        for i in range(1, 11):  # asyncio does not send empty datagrams
            await a.send(b"x" * i)
            assert await b.recv() == b"x" * i
        await b.sendto(b"back", 1)
        assert await a.recvfrom() == (b"back", 1)
        assert pair.stats.packets_sent == 10
        assert pair.stats.bytes_sent == sum(range(1, 11))
        assert pair.stats.packets_received == 1
        assert pair.stats.rtt is not None
        await a.close()
        await b.close()
        assert isinstance(await a.get_event(), ConnectionClosed)
        assert await a.get_event() is None
        with pytest.raises(ConnectionError):
            await a.send(b"late")
        with pytest.raises(ConnectionError):
            await a.recv()
        assert asyncio.all_tasks() == tasks

    arun(main)
    assert open_fds() == fds


def test_ipv6_loopback() -> None:
    async def main() -> None:
        a = Connection(ice_controlling=True, host_addresses=["::1"])
        b = Connection(ice_controlling=False, host_addresses=["::1"])
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        await exchange(a, b)
        await asyncio.gather(a.connect(), b.connect())
        await a.send(b"v6")
        assert await b.recv() == b"v6"
        await asyncio.gather(a.close(), b.close())

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    arun(main)


def test_misuse_raises_connection_error() -> None:
    async def main() -> None:
        a = Connection(ice_controlling=True, host_addresses=LOOPBACK)
        with pytest.raises(ConnectionError, match="gathering"):
            await a.connect()
        await a.gather_candidates()
        with pytest.raises(ConnectionError, match="Remote username"):
            await a.connect()
        with pytest.raises(ConnectionError, match="not connected"):
            await a.send(b"x")
        with pytest.raises(ConnectionError, match="not connected"):
            await a.recv()
        await a.add_remote_candidate(None)
        with pytest.raises(ValueError, match="end-of-candidates"):
            await a.add_remote_candidate(Candidate.from_sdp("1 1 udp 1 127.0.0.1 9 typ host"))
        with pytest.raises(ValueError, match="no pair"):
            a.set_selected_pair(1, "x", "y")
        await a.close()

    with pytest.raises(ValueError, match="ice-chars"):
        Connection(ice_controlling=True, local_username="ab")
    with pytest.raises(ValueError, match="turn_transport"):
        Connection(ice_controlling=True, turn_transport="sctp")
    arun(main)


def test_failure_is_a_connection_error_within_the_bound() -> None:
    """Nothing answers the remote candidate: with aiortc's test tunables the single
    pair fails fast; with defaults the bound (here 1 s) ends it."""

    async def main(config: IceConfig | None) -> float:
        loop = asyncio.get_running_loop()
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))  # bound, never answers
        a = Connection(ice_controlling=True, host_addresses=LOOPBACK, config=config)
        await a.gather_candidates()
        a.remote_username, a.remote_password = "abcd", "a" * 22
        port = dead.getsockname()[1]
        await a.add_remote_candidate(Candidate.from_sdp(f"1 1 udp 1 127.0.0.1 {port} typ host"))
        await a.add_remote_candidate(None)
        started = loop.time()
        try:
            with pytest.raises(IceFailedError) as info:
                await a.connect()
            assert isinstance(info.value, ConnectionError)
            return loop.time() - started
        finally:
            await a.close()
            dead.close()

    elapsed = arun(lambda: main(IceConfig(failure_timeout=1.0)))
    assert 1.0 <= elapsed < 1.5


def test_unresolved_mdns_candidate_connects_through_peer_reflexive() -> None:
    async def no_mdns(name: str) -> str | None:
        await asyncio.sleep(0)
        return None

    async def main() -> None:
        a = Connection(ice_controlling=True, host_addresses=LOOPBACK, mdns_resolver=no_mdns)
        b = Connection(ice_controlling=False, host_addresses=LOOPBACK)
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        (hidden,) = b.local_candidates
        hidden_sdp = hidden.to_sdp().replace(
            "127.0.0.1", "0e3f5a2c-1111-4222-8333-444455556666.local"
        )
        await a.add_remote_candidate(Candidate.from_sdp(hidden_sdp))
        await a.add_remote_candidate(None)
        for candidate in a.local_candidates:
            await b.add_remote_candidate(candidate)
        await b.add_remote_candidate(None)
        await asyncio.gather(a.connect(), b.connect())
        pair = a.selected_pair
        assert pair is not None
        assert pair.remote.type == "prflx"
        assert pair.remote_address == (hidden.host, hidden.port)
        await a.send(b"through prflx")
        assert await b.recv() == b"through prflx"
        await asyncio.gather(a.close(), b.close())

    arun(main)


class _Silent(asyncio.DatagramProtocol):
    pass


def test_gathering_does_not_wait_for_a_dead_stun_server_longer_than_the_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        dead, _ = await loop.create_datagram_endpoint(_Silent, local_addr=("127.0.0.1", 0))
        async with await serve(("127.0.0.1", 0)) as server:
            live = server.addresses[0]
            a = Connection(
                ice_controlling=True,
                host_addresses=LOOPBACK,
                stun_servers=[dead.get_extra_info("sockname"), live],
                gather_timeout=0.5,
            )
            started = loop.time()
            seen: list[tuple[str, float]] = []
            async for candidate in a.trickle_candidates():
                seen.append((candidate.type, loop.time() - started))
            elapsed = loop.time() - started
            assert [t for t, _ in seen] == ["host", "srflx"]
            assert all(at < 0.2 for _, at in seen)  # usable at once, before the timeout
            assert 0.5 <= elapsed < 0.8
            srflx = a.local_candidates[1]
            assert srflx.related_port == a.local_candidates[0].port
            await a.close()
        dead.close()

    arun(main)


def test_consent_loss_closes_with_aiortc_tunables(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc's tests shorten these module globals; they must take effect."""
    import aioice.ice
    import aioice.stun

    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 1)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        a, b = await connected_pair()
        assert a.agent.config.consent_interval == 1
        assert a.agent.config.check.retransmissions == 1
        await b.close()  # B vanishes: A's consent checks go unanswered
        started = loop.time()
        assert isinstance(await a.get_event(), ConnectionClosed)
        with pytest.raises(ConnectionError):
            await a.recv()
        return loop.time() - started

    elapsed = arun(main)
    assert 0.5 < elapsed < 2.5


def test_relay_policy_without_turn_gathers_nothing() -> None:
    async def main() -> None:
        a = Connection(
            ice_controlling=True, host_addresses=LOOPBACK, transport_policy=TransportPolicy.RELAY
        )
        await a.gather_candidates()
        assert a.local_candidates == []
        assert a.get_default_candidate(1) is None
        await a.close()

    arun(main)


def test_port_range_and_two_components() -> None:
    async def main() -> None:
        a, b = await connected_pair(components=2, port_range=(40000, 40100))
        for c in a.local_candidates + b.local_candidates:
            assert 40000 <= c.port <= 40100
        assert sorted(c.component for c in a.local_candidates) == [1, 2]
        await a.sendto(b"two", 2)
        assert await b.recvfrom() == (b"two", 2)
        default = a.get_default_candidate(2)
        assert default is not None
        assert default.component == 2
        await asyncio.gather(a.close(), b.close())

    arun(main)


def test_set_selected_pair_without_checks() -> None:
    async def main() -> None:
        a = Connection(ice_controlling=True, host_addresses=LOOPBACK)
        b = Connection(ice_controlling=False, host_addresses=LOOPBACK)
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        await exchange(a, b)
        for x, y in ((a, b), (b, a)):
            x.set_selected_pair(
                1, x.local_candidates[0].foundation, y.local_candidates[0].foundation
            )
        await a.send(b"no ice")
        assert await b.recv() == b"no ice"
        await asyncio.gather(a.close(), b.close())

    arun(main)
