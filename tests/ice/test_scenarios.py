"""The NAT scenario matrix: two asyncio ``Connection`` objects on the virtual network,
in virtual time, through every pair of NAT types, with STUN only and with TURN."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from aioice.ice import Connection, IceFailedError
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    RESTRICTED_CONE,
    SYMMETRIC,
    UDP_BLOCKED,
    Host,
    LinkConditions,
    NatBehavior,
    Network,
    stun_server,
    turn_server,
)
from aioice.vnet.asyncio import VirtualNet, run

NATS: dict[str, NatBehavior | None] = {
    "none": None,
    "full-cone": FULL_CONE,
    "restricted": RESTRICTED_CONE,
    "port-restricted": PORT_RESTRICTED_CONE,
    "symmetric": SYMMETRIC,
}
USERS = {"user": "pass"}


def reachable_without_relay(a: str, b: str) -> bool:
    """What theory allows with STUN alone (RFC 4787 / RFC 8445 hole punching): anything
    but a symmetric NAT facing a port-restricted or symmetric one."""
    hard = {"port-restricted", "symmetric"}
    return not ("symmetric" in (a, b) and a in hard and b in hard)


@dataclass
class Outcome:
    connected: bool
    types: tuple[str, str] | None = None  # A's selected pair: (local type, remote type)
    connect_time: float = 0.0  # virtual seconds from connect() to success or failure
    echoed: bytes = b""
    error: str = ""


def side(
    net: Network, name: str, nat: NatBehavior | None, index: int, link: LinkConditions
) -> Host:
    if nat is None:
        return net.add_host(name)
    lan = net.add_lan(f"lan-{name}", f"10.0.{index}.0/24", nat, link=link)
    return net.add_host(name, lan)


def scenario(
    nat_a: NatBehavior | None,
    nat_b: NatBehavior | None,
    *,
    turn: bool,
    turn_transport: str = "udp",
    loss: float = 0.0,
    seed: int = 1,
) -> tuple[Outcome, Network]:
    net = Network(seed=seed)
    link = LinkConditions(latency=0.01, loss=loss)
    stun_host = net.add_host("stun")
    stun_server(stun_host)
    turn_host = net.add_host("turn")
    turn_server(turn_host, users=USERS)
    a_host = side(net, "a", nat_a, 1, link)
    b_host = side(net, "b", nat_b, 2, link)

    def connection(host: Host, controlling: bool) -> Connection:
        return Connection(
            ice_controlling=controlling,
            stun_server=(stun_host.ip, 3478),
            turn_server=(turn_host.ip, 3478) if turn else None,
            turn_username="user",
            turn_password="pass",
            turn_transport=turn_transport,
            host_addresses=[host.ip],
            net=VirtualNet(host),
        )

    async def main() -> Outcome:
        loop = asyncio.get_running_loop()
        a = connection(a_host, True)
        b = connection(b_host, False)
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for candidate in y.local_candidates:
                await x.add_remote_candidate(candidate)
            await x.add_remote_candidate(None)
        started = loop.time()
        try:
            await asyncio.gather(a.connect(), b.connect())
        except IceFailedError as exc:
            outcome = Outcome(False, connect_time=loop.time() - started, error=str(exc))
        else:
            connect_time = loop.time() - started
            echoed = await echo(a, b)
            pair = a.selected_pair
            assert pair is not None
            outcome = Outcome(True, (pair.local.type, pair.remote.type), connect_time, echoed)
        await asyncio.gather(a.close(), b.close())
        return outcome

    return run(main(), net), net


async def echo(a: Connection, b: Connection) -> bytes:
    """A ping from A that B echoes; application data is not retransmitted, so on lossy
    links ping again every 100 ms (at most 50 times)."""

    async def responder() -> None:
        while True:
            data = await b.recv()
            await b.send(data + b"/pong")

    task = asyncio.ensure_future(responder())
    try:
        for _ in range(50):
            await a.send(b"ping")
            try:
                return await asyncio.wait_for(a.recv(), 0.1)
            except asyncio.TimeoutError:
                continue
        return b""
    finally:
        task.cancel()


MATRIX = [(a, b) for a in NATS for b in NATS]


@pytest.mark.parametrize(("a", "b"), MATRIX)
def test_stun_only(a: str, b: str) -> None:
    outcome, _ = scenario(NATS[a], NATS[b], turn=False)
    if reachable_without_relay(a, b):
        assert outcome.connected, outcome.error
        assert outcome.echoed == b"ping/pong"
        assert outcome.types is not None
        assert "relay" not in outcome.types
        if a == b == "none":
            assert outcome.types == ("host", "host")
        # Two round trips through 10 ms links, plus at most one wait for a better pair.
        assert outcome.connect_time <= 0.15 + 1e-9
    else:
        assert not outcome.connected
        # Failure within the configured bound (10 s after end-of-candidates).
        assert outcome.connect_time <= 10.0 + 1e-6


@pytest.mark.parametrize(("a", "b"), MATRIX)
def test_stun_and_turn(a: str, b: str) -> None:
    outcome, _ = scenario(NATS[a], NATS[b], turn=True)
    assert outcome.connected, outcome.error
    assert outcome.echoed == b"ping/pong"
    assert outcome.types is not None
    if reachable_without_relay(a, b):
        assert "relay" not in outcome.types
    else:
        assert "relay" in outcome.types
    # A relay is chosen only after direct pairs had a retransmission's chance (RTO 0.5 s).
    assert outcome.connect_time <= (0.15 if "relay" not in outcome.types else 1.0) + 1e-9


def test_udp_blocked_uses_turn_over_tcp() -> None:
    outcome, net = scenario(UDP_BLOCKED, PORT_RESTRICTED_CONE, turn=True, turn_transport="tcp")
    assert outcome.connected, outcome.error
    assert outcome.echoed == b"ping/pong"
    assert outcome.types is not None
    assert outcome.types[0] == "relay"
    assert net.counters["tcp-connect"] >= 1


@pytest.mark.parametrize("loss", [0.1, 0.3])
@pytest.mark.parametrize(
    ("a", "b"), [("port-restricted", "port-restricted"), ("symmetric", "full-cone")]
)
def test_lossy_links(a: str, b: str, loss: float) -> None:
    outcome, net = scenario(NATS[a], NATS[b], turn=True, loss=loss, seed=7)
    assert outcome.connected, outcome.error
    assert outcome.echoed == b"ping/pong"
    assert net.counters["drop-loss"] > 0
    assert outcome.connect_time < 8.0
