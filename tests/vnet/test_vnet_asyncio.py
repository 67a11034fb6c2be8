"""The asyncio bridge: the STUN and TURN adapters on the virtual network, in virtual time."""

from __future__ import annotations

import asyncio
import errno
import ssl
from typing import Any

import pytest
from aioice.stun import Class, Message, Method, TransactionTimeout
from aioice.stun.asyncio import request
from aioice.turn.asyncio import create_turn_endpoint
from aioice.turn.server import TurnServer
from aioice.vnet import (
    PORT_RESTRICTED_CONE,
    SYMMETRIC,
    UDP_BLOCKED,
    Host,
    LinkConditions,
    NatBehavior,
    Network,
    stun_server,
    turn_server,
)
from aioice.vnet.asyncio import VirtualEventLoop, VirtualIdleError, VirtualNet, run

LINK = LinkConditions(latency=0.02)
USERS = {"alice": "secret"}


class Collector(asyncio.DatagramProtocol):
    """Collects datagrams with the virtual time of their arrival."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int], float]] = []
        self.arrived = asyncio.Event()
        self.lost = False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, (addr[0], addr[1]), asyncio.get_running_loop().time()))
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"echo:" + data, addr)


def behind(behavior: NatBehavior, *, seed: int = 1) -> tuple[Network, Host, Host]:
    """A client behind ``behavior`` (20 ms to the internet) and a server host on it."""
    net = Network(seed=seed)
    lan = net.add_lan("lan", "10.0.0.0/24", behavior, link=LINK)
    return net, net.add_host("client", lan), net.add_host("server")


def test_sleep_fast_forwards_exactly() -> None:
    net = Network()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(600)
        await asyncio.sleep(0.25)
        return loop.time()

    assert run(main(), net) == 600.25
    assert net.now == 600.25


def test_stun_binding_through_a_nat() -> None:
    net, client, server = behind(PORT_RESTRICTED_CONE)
    stun_server(server)
    lan = client.router

    async def main() -> tuple[tuple[str, int], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response, _ = await request(
            Message(Method.BINDING, Class.REQUEST), (server.ip, 3478), net=VirtualNet(client)
        )
        mapped = response.attributes["XOR-MAPPED-ADDRESS"]
        return (mapped[0], mapped[1]), loop.time() - started

    mapped, rtt = run(main(), net)
    assert mapped[0] == lan.external_ip
    assert rtt == pytest.approx(0.04)  # 20 ms each way
    assert client.endpoints == {}  # the socket was closed


def test_unanswered_request_times_out_at_ti() -> None:
    net, client, server = behind(UDP_BLOCKED)
    stun_server(server)

    async def main() -> float:
        with pytest.raises(TransactionTimeout):
            await request(
                Message(Method.BINDING, Class.REQUEST), (server.ip, 3478), net=VirtualNet(client)
            )
        return asyncio.get_running_loop().time()

    # RFC 8489 §6.2.1 with aioice's tunables: 7 sends, Ti = 39.5 s.
    assert run(main(), net) == pytest.approx(39.5)
    assert net.counters["drop-blocked"] == 7


def test_two_hosts_one_loop_and_connected_endpoints() -> None:
    net = Network()
    a, b, c = net.add_host("a"), net.add_host("b"), net.add_host("c")

    async def main() -> tuple[Collector, Collector]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        tb, pb = await VirtualNet(b).create_datagram_endpoint(Collector, ("0.0.0.0", 4000))
        ta, pa = await VirtualNet(a).create_datagram_endpoint(Collector, remote_addr=(b.ip, 4000))
        tc, _ = await VirtualNet(c).create_datagram_endpoint(Collector)
        assert tb.get_extra_info("sockname") == (b.ip, 4000)
        assert ta.get_extra_info("peername") == (b.ip, 4000)
        ta.sendto(b"hello")
        await pb.arrived.wait()
        tb.sendto(b"reply", pb.received[0][1])
        tc.sendto(b"stranger", ta.get_extra_info("sockname"))
        await asyncio.sleep(1)
        for transport in (ta, tb, tc):
            transport.close()
        await asyncio.sleep(0)
        return pa, pb

    pa, pb = run(main(), net)
    assert [(d, t) for d, _, t in pb.received] == [(b"hello", 0.0)]
    # The connected socket hears its peer only.
    assert [d for d, _, _ in pa.received] == [b"reply"]
    assert pa.lost
    assert pb.lost
    assert a.endpoints == b.endpoints == c.endpoints == {}


def test_bind_errors_are_socket_errors() -> None:
    net = Network()
    a = net.add_host("a")

    async def main() -> None:
        vnet = VirtualNet(a)
        with pytest.raises(OSError, match="no address") as info:
            await vnet.create_datagram_endpoint(Collector, ("203.0.113.9", 0))
        assert info.value.errno == errno.EADDRNOTAVAIL
        transport, _ = await vnet.create_datagram_endpoint(Collector, (a.ip, 5000))
        with pytest.raises(OSError, match="in use"):
            await vnet.create_datagram_endpoint(Collector, (a.ip, 5000))
        transport.close()
        context = ssl.create_default_context()
        with pytest.raises(ValueError, match="TLS"):
            await vnet.create_connection(asyncio.Protocol, a.ip, 443, ssl=context)

    run(main(), net)


def test_idle_loop_raises_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.vnet.asyncio as bridge

    monkeypatch.setattr(bridge, "IDLE_REAL_TIMEOUT", 0.01)
    net = Network()

    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualIdleError, match="idle"):
        run(main(), net)


def test_max_time_guard() -> None:
    async def main() -> None:
        for _ in range(1000):  # virtual hours
            await asyncio.sleep(60)

    with pytest.raises(VirtualIdleError, match="max_time"):
        run(main(), Network(), max_time=3600)


def test_virtual_net_needs_the_virtual_loop() -> None:
    net = Network()
    host = net.add_host("a")

    async def main() -> None:
        await VirtualNet(host).create_datagram_endpoint(Collector)

    with pytest.raises(RuntimeError, match="VirtualEventLoop"):
        asyncio.run(main())


def test_turn_relay_over_udp_for_ten_virtual_minutes() -> None:
    """create_turn_endpoint behind a symmetric NAT, relaying to an echo peer while the
    allocation, permission and channel are refreshed for ten virtual minutes."""
    net, client, server = behind(SYMMETRIC)
    relay = turn_server(server, users=USERS)
    assert isinstance(relay.core, TurnServer)
    peer = net.add_host("peer")

    async def main() -> list[tuple[bytes, float]]:
        loop = asyncio.get_running_loop()
        await VirtualNet(peer).create_datagram_endpoint(Echo, (peer.ip, 7000))
        transport, protocol = await create_turn_endpoint(
            Collector,
            (server.ip, 3478),
            "alice",
            "secret",
            lifetime=600,
            net=VirtualNet(client),
        )
        got: list[tuple[bytes, float]] = []
        for i in range(25):
            protocol.arrived.clear()
            sent = loop.time()
            transport.sendto(b"%d" % i, (peer.ip, 7000))
            await protocol.arrived.wait()
            data, source, at = protocol.received[-1]
            assert source == (peer.ip, 7000)
            got.append((data, at - sent))
            await asyncio.sleep(25)  # within the NAT mapping lifetime (30 s)
        transport.close()
        await transport.wait_closed()
        return got

    got = run(main(), net)
    assert [d for d, _ in got] == [b"echo:%d" % i for i in range(25)]
    # The first waits for CreatePermission + ChannelBind; then one round trip over the
    # 20 ms link each way.
    assert got[0][1] == pytest.approx(0.08)
    assert all(rtt == pytest.approx(0.04) for _, rtt in got[1:])
    stats = relay.core.stats
    assert (stats.allocations, stats.to_peer, stats.to_client) == (1, 25, 25)
    # Refreshed once a minute before its 600 s expiry, then deleted by close();
    # the channel re-bound before its 600 s expiry; the nonce went stale once (438).
    assert (stats.refreshes, stats.channel_binds) == (2, 2)
    assert stats.error_codes == {401: 1, 438: 1}
    assert relay.core.allocations == []
    assert client.endpoints == {}
    assert net.now >= 600


def test_turn_over_tcp_when_udp_is_blocked() -> None:
    """The asyncio TURN adapter over a virtual stream: the client's NAT drops UDP, so
    only TURN over TCP works; relayed data reaches a UDP peer and comes back."""
    net, client, server = behind(UDP_BLOCKED)
    relay = turn_server(server, users=USERS)
    peer = net.add_host("peer")

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        await VirtualNet(peer).create_datagram_endpoint(Echo, (peer.ip, 7000))
        with pytest.raises(TransactionTimeout):
            await create_turn_endpoint(
                Collector, (server.ip, 3478), "alice", "secret", net=VirtualNet(client)
            )
        transport, protocol = await create_turn_endpoint(
            Collector,
            (server.ip, 3478),
            "alice",
            "secret",
            transport="tcp",
            net=VirtualNet(client),
        )
        sent = loop.time()
        transport.sendto(b"over tcp", (peer.ip, 7000))
        await protocol.arrived.wait()
        data, source, at = protocol.received[0]
        assert source == (peer.ip, 7000)
        transport.close()
        await transport.wait_closed()
        return data, at - sent

    data, rtt = run(main(), net)
    assert data == b"echo:over tcp"
    # CreatePermission + ChannelBind round trips, then the data's: 20 ms each way.
    assert rtt == pytest.approx(0.08)
    assert isinstance(relay.core, TurnServer)
    assert relay.core.stats.to_peer == relay.core.stats.to_client == 1
    assert net.counters["tcp-connect"] == 1
    assert client.streams == {}


def test_stun_binding_over_ipv6_and_interfaces() -> None:
    net = Network()
    lan = net.add_lan(
        "lan", "10.0.0.0/24", PORT_RESTRICTED_CONE, link=LINK, cidr6="2001:db8:1::/64"
    )
    client, server = net.add_host("client", lan), net.add_host("server")
    stun_server(server, family=6)
    assert client.ip6 is not None
    server_ip6 = server.ip6
    assert server_ip6 is not None
    vnet = VirtualNet(client)
    assert vnet.interfaces() == [("vnet0", [client.ip, client.ip6])]

    async def main() -> tuple[str, int]:
        response, _ = await request(
            Message(Method.BINDING, Class.REQUEST), (server_ip6, 3478), net=vnet
        )
        mapped = response.attributes["XOR-MAPPED-ADDRESS"]
        return (mapped[0], mapped[1])

    mapped = run(main(), net)
    assert mapped[0] == client.ip6  # no NAT66: the host's own address
