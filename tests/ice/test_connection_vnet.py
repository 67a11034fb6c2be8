"""Connection features on the virtual network, in virtual time: relay policy, several
servers with a dead one, trickle during connect."""

from __future__ import annotations

import asyncio

from aioice.ice import Connection, TransportPolicy
from aioice.turn.server import TurnServer
from aioice.vnet import (
    PORT_RESTRICTED_CONE,
    Host,
    LinkConditions,
    Network,
    ServerHost,
    stun_server,
    turn_server,
)
from aioice.vnet.asyncio import VirtualNet, run

LINK = LinkConditions(latency=0.01)
SERVERS: dict[Network, ServerHost] = {}
USERS = {"user": "pass"}


def world() -> tuple[Network, Host, Host, Host, Host, Host]:
    net = Network(seed=5)
    stun_host, turn_host, dead_host = (
        net.add_host("stun"),
        net.add_host("turn"),
        net.add_host("dead"),
    )
    stun_server(stun_host)
    SERVERS[net] = turn_server(turn_host, users=USERS)
    hosts = []
    for i in range(2):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", PORT_RESTRICTED_CONE, link=LINK)
        hosts.append(net.add_host(f"h{i}", lan))
    return net, stun_host, turn_host, dead_host, hosts[0], hosts[1]


def test_relay_policy_with_a_dead_turn_server_and_a_dead_stun_server() -> None:
    net, stun_host, turn_host, dead_host, h0, h1 = world()

    async def main() -> tuple[list[list[str]], tuple[str, str], float]:
        loop = asyncio.get_running_loop()
        conns = [
            Connection(
                ice_controlling=i == 0,
                stun_servers=[(dead_host.ip, 3478), (stun_host.ip, 3478)],
                turn_servers=[(dead_host.ip, 3478), (turn_host.ip, 3478)],
                turn_username="user",
                turn_password="pass",
                transport_policy=TransportPolicy.RELAY,
                host_addresses=[host.ip],
                gather_timeout=2.0,
                net=VirtualNet(host),
            )
            for i, host in enumerate((h0, h1))
        ]
        a, b = conns
        started = loop.time()
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        gathered = loop.time() - started
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for candidate in y.local_candidates:
                await x.add_remote_candidate(candidate)
            await x.add_remote_candidate(None)
        await asyncio.gather(a.connect(), b.connect())
        pair = a.selected_pair
        assert pair is not None
        await a.send(b"relayed")
        assert await b.recv() == b"relayed"
        types = [[c.type for c in conn.local_candidates] for conn in conns]
        related = [(c.related_address, c.related_port) for c in a.local_candidates]
        assert related == [("0.0.0.0", 9)]  # hidden under the relay policy (RFC 9429)
        await asyncio.gather(a.close(), b.close())
        return types, (pair.local.type, pair.remote.type), gathered

    types, pair_types, gathered = run(main(), net)
    # close() deleted both allocations on the TURN server.
    core = SERVERS[net].core
    assert isinstance(core, TurnServer)
    assert core.stats.allocations == 2
    assert core.allocations == []
    assert types == [["relay"], ["relay"]]  # no host, no srflx; the dead TURN server gave none
    assert pair_types == ("relay", "relay")
    assert gathered == 2.0  # the dead server costs exactly the gather timeout


def test_trickle_while_connecting() -> None:
    """Each side hands its candidates to the other as they are found and connects
    before its own gathering ends; end-of-candidates follows gathering."""
    net, stun_host, _, dead_host, h0, h1 = world()

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        a, b = (
            Connection(
                ice_controlling=i == 0,
                stun_servers=[(stun_host.ip, 3478), (dead_host.ip, 3478)],
                host_addresses=[host.ip],
                gather_timeout=3.0,
                net=VirtualNet(host),
            )
            for i, host in enumerate((h0, h1))
        )
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password

        async def trickle(source: Connection, sink: Connection) -> None:
            async for candidate in source.trickle_candidates():
                await sink.add_remote_candidate(candidate)
            await sink.add_remote_candidate(None)

        trickles = [asyncio.ensure_future(trickle(a, b)), asyncio.ensure_future(trickle(b, a))]
        await asyncio.sleep(0)
        await asyncio.gather(a.connect(), b.connect())
        connected = loop.time()
        await asyncio.gather(*trickles)
        gathered = loop.time()
        await a.send(b"early")
        assert await b.recv() == b"early"
        await asyncio.gather(a.close(), b.close())
        return connected, gathered

    connected, gathered = run(main(), net)
    # Connected through the server-reflexive candidates long before the dead STUN
    # server's 3 s are over.
    assert connected < 0.5
    assert gathered == 3.0
