"""The virtual network: link conditions, determinism, speed, the step guard, TURN over NATs."""

from __future__ import annotations

import random
from functools import partial

import pytest
from aioice.stun import Class, Message, Method, parse_message
from aioice.turn import TurnClient, TurnClientConfig, TurnState
from aioice.turn.events import DataReceived, TurnEvent
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    RESTRICTED_CONE,
    SYMMETRIC,
    Endpoint,
    Hop,
    LinkConditions,
    Network,
    Scheduler,
    SchedulerError,
    stun_server,
    turn_server,
)

Address = tuple[str, int]


def lan_and_server(link: LinkConditions, *, seed: int = 1) -> tuple[Network, Address, Address]:
    """A client endpoint behind a full cone NAT over ``link``, a server endpoint on the
    internet; returns the network and the two addresses (the server's collects datagrams)."""
    net = Network(seed=seed)
    lan = net.add_lan("lan", "10.0.0.0/24", FULL_CONE, link=link)
    client = net.add_host("client", lan).bind(5000)
    server = net.add_host("server").bind(3478)
    return net, client.address, server.address


def endpoint(net: Network, address: Address) -> list[tuple[bytes, Address]]:
    for router in net.routers:
        host = router.hosts.get(address[0])
        if host is not None:
            return host.endpoints[address].received
    raise LookupError(address)


def send(net: Network, source: Address, data: bytes, remote: Address) -> None:
    for router in net.routers:
        host = router.hosts.get(source[0])
        if host is not None:
            host.endpoints[source].send(data, remote)
            return
    raise LookupError(source)


# -- link conditions ---------------------------------------------------------------------------


def test_latency_is_exact_both_ways() -> None:
    net, client, server = lan_and_server(LinkConditions(latency=0.05))
    net.scheduler.run_until(max_time=1.0)
    send(net, client, b"ping", server)
    net.scheduler.run_for(1.0)
    ((_, external),) = endpoint(net, server)
    sent = [h for h in net.trace if h.event == "send"]
    delivered = [h for h in net.trace if h.event == "deliver"]
    assert sent[0].time == 1.0
    assert delivered[0].time == 1.05
    assert delivered[0].where == "server"
    assert delivered[0].source == external
    send(net, server, b"pong", external)
    net.scheduler.run_for(1.0)
    assert endpoint(net, client) == [(b"pong", server)]
    hops = [(h.where, h.event, h.time) for h in net.trace if h.time >= 2.0]
    assert hops == [
        ("server", "send", 2.0),
        ("lan", "nat-in", 2.05),
        ("client", "deliver", 2.05),
    ]


def test_latency_adds_up_across_links() -> None:
    net = Network(seed=1)
    lan_a = net.add_lan("a", "10.0.1.0/24", FULL_CONE, link=LinkConditions(latency=0.02))
    lan_b = net.add_lan("b", "10.0.2.0/24", FULL_CONE, link=LinkConditions(latency=0.03))
    a = net.add_host("ha", lan_a).bind(5000)
    b = net.add_host("hb", lan_b).bind(5000)
    assert lan_b.external_ip is not None
    b.send(b"open", (str(lan_a.external_ip), 9))  # opens b's NAT (full cone: for anyone)
    net.scheduler.run_for(1.0)
    start = net.now
    ((b_external_ip, b_external_port),) = {
        h.source for h in net.trace if h.where == "b" and h.event == "nat-out"
    }
    a.send(b"hi", (b_external_ip, b_external_port))
    net.scheduler.run_for(1.0)
    (deliver,) = [h for h in net.trace if h.where == "hb" and h.event == "deliver"]
    assert deliver.time - start == pytest.approx(0.05, abs=1e-12)
    assert b.received[0][0] == b"hi"


def test_jitter_stays_in_bounds() -> None:
    net, client, server = lan_and_server(LinkConditions(latency=0.01, jitter=0.02))
    for i in range(200):
        net.scheduler.call_at(i * 0.1, lambda: send(net, client, b"x", server))
    net.scheduler.run_until()
    sends = [h.time for h in net.trace if h.event == "send"]
    delivers = [h.time for h in net.trace if h.event == "deliver"]
    delays = [d - s for s, d in zip(sends, delivers, strict=True)]  # 100 ms apart: in order
    assert all(0.01 <= d < 0.03 + 1e-12 for d in delays)
    assert max(delays) - min(delays) > 0.015  # really spread


def test_loss_rate() -> None:
    net, client, server = lan_and_server(LinkConditions(loss=0.1), seed=7)
    net.tracing = False
    for _ in range(10_000):
        send(net, client, b"x", server)
    net.scheduler.run_until()
    lost = net.counters["drop-loss"]
    assert 850 <= lost <= 1150  # 1000 expected, sigma 30
    assert len(endpoint(net, server)) == 10_000 - lost
    assert net.counters["deliver"] == 10_000 - lost
    assert net.trace == []


def test_duplication() -> None:
    net, client, server = lan_and_server(LinkConditions(latency=0.01, duplicate=0.2), seed=3)
    for i in range(1000):
        send(net, client, i.to_bytes(2, "big"), server)
    net.scheduler.run_until()
    received = [data for data, _ in endpoint(net, server)]
    assert 1100 <= len(received) <= 1300
    assert set(received) == {i.to_bytes(2, "big") for i in range(1000)}
    assert max(received.count(d) for d in set(received)) == 2
    assert net.counters["deliver"] == len(received)


def test_reordering() -> None:
    net, client, server = lan_and_server(LinkConditions(latency=0.01, reorder=0.2), seed=5)
    for i in range(500):
        net.scheduler.call_at(i * 0.001, partial(send, net, client, i.to_bytes(2, "big"), server))
    net.scheduler.run_until()
    order = [int.from_bytes(data, "big") for data, _ in endpoint(net, server)]
    assert sorted(order) == list(range(500))  # nothing lost or duplicated
    assert order != sorted(order)
    late = sum(1 for i in range(1, len(order)) if order[i] < order[i - 1])
    assert 50 <= late <= 150  # about 20 % of the packets are overtaken


def test_reordered_packet_takes_one_more_latency() -> None:
    net, client, server = lan_and_server(LinkConditions(latency=0.01, reorder=1.0))
    send(net, client, b"x", server)
    net.scheduler.run_until()
    (deliver,) = [h for h in net.trace if h.event == "deliver"]
    assert deliver.time == 0.02


# -- determinism -------------------------------------------------------------------------------


def noisy_trace(seed: int) -> list[Hop]:
    net = Network(seed=seed)
    link = LinkConditions(latency=0.01, jitter=0.01, loss=0.1, duplicate=0.1, reorder=0.1)
    server_host = net.add_host("stun")
    stun_server(server_host)
    for i, preset in enumerate((FULL_CONE, RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=link)
        ep = net.add_host(f"c{i}", lan).bind(5000)
        for k in range(50):
            request = Message(Method.BINDING, Class.REQUEST, bytes([i, k]) * 6).encode()
            net.scheduler.call_at(k * 0.05, partial(ep.send, request, (server_host.ip, 3478)))
    net.scheduler.run_until()
    return net.trace


def test_same_seed_same_trace() -> None:
    first = noisy_trace(42)
    assert len(first) > 500
    assert {h.event for h in first} >= {"send", "nat-out", "nat-in", "deliver"}
    assert noisy_trace(42) == first


def test_other_seed_other_trace() -> None:
    assert noisy_trace(42) != noisy_trace(43)


# -- a long scenario, fast ---------------------------------------------------------------------


class BindingClient:
    """Sends a STUN Binding request every ``interval`` seconds until ``until``."""

    def __init__(self, net: Network, endpoint: Endpoint, server: Address, until: float) -> None:
        self.net = net
        self.endpoint = endpoint
        self.server = server
        self.until = until
        self.rng = random.Random(endpoint.ip)
        self.responses = 0
        self.mapped: set[Address] = set()
        endpoint.receiver = self.receive

    def receive(self, data: bytes, remote: Address) -> None:
        message = parse_message(data)
        assert message.message_class is Class.RESPONSE
        assert remote == self.server
        self.responses += 1
        self.mapped.add(message.attributes["XOR-MAPPED-ADDRESS"])

    def tick(self, interval: float) -> None:
        request = Message(Method.BINDING, Class.REQUEST, self.rng.randbytes(12))
        self.endpoint.send(request.encode(), self.server)
        if self.net.now + interval < self.until:
            self.net.scheduler.call_later(interval, lambda: self.tick(interval))


def test_ten_virtual_minutes_of_keepalives() -> None:
    """10 virtual minutes of keepalives every 100 ms from 3 clients behind different NATs,
    over links with latency and jitter (its real time is measured by `hatch run bench:vnet`).
    """
    net = Network(seed=9)
    server_host = net.add_host("echo")
    echo = server_host.bind(3478, lambda data, remote: echo.send(data, remote))
    link = LinkConditions(latency=0.02, jitter=0.005)
    received = [0, 0, 0]
    externals: dict[str | None, int] = {}

    def client(i: int, ep: Endpoint) -> None:
        ep.send(b"keepalive %d" % i, echo.address)
        if net.now + 0.1 < 600.0:
            net.scheduler.call_later(0.1, lambda: client(i, ep))

    def receive(i: int, data: bytes, remote: Address) -> None:
        assert data == b"keepalive %d" % i
        received[i] += 1

    for i, preset in enumerate((FULL_CONE, PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=link)
        externals[lan.external_ip] = i
        ep = net.add_host(f"c{i}", lan).bind(5000, partial(receive, i))
        net.scheduler.call_at(i * 0.01, partial(client, i, ep))
    net.scheduler.run_until(max_time=600.0)
    assert net.now == 600.0
    assert received == [6000, 6000, 6000]
    seen = {h.source for h in net.trace if h.where == "echo" and h.event == "deliver"}
    # Keepalives every 100 ms: each NAT keeps one mapping for the whole 10 minutes.
    assert sorted(externals[ip] for ip, _ in seen) == [0, 1, 2]
    assert net.counters["drop-filtered"] == 0
    assert net.counters["deliver"] == 2 * 18_000


TRACING = False


def test_ten_virtual_minutes_of_stun_bindings() -> None:
    """The same 10 minutes with real STUN Binding transactions against ``stun_server``."""
    net = Network(seed=9)
    net.tracing = False
    server_host = net.add_host("stun")
    stun_server(server_host)
    link = LinkConditions(latency=0.02, jitter=0.005)
    clients = []
    for i, preset in enumerate((FULL_CONE, PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=link)
        ep = net.add_host(f"c{i}", lan).bind(5000)
        client = BindingClient(net, ep, (server_host.ip, 3478), until=600.0)
        net.scheduler.call_at(i * 0.01, partial(client.tick, 0.1))
        clients.append(client)
    net.scheduler.run_until(max_time=600.0)
    assert net.now == 600.0
    assert [c.responses for c in clients] == [6000, 6000, 6000]
    # Keepalives every 100 ms: each mapping lives the whole 10 minutes.
    assert all(len(c.mapped) == 1 for c in clients)
    assert net.counters["drop-filtered"] == 0
    assert net.counters["deliver"] == 2 * 18_000


# -- the step guard ----------------------------------------------------------------------------


def test_step_guard_stops_a_runaway_scheduler() -> None:
    scheduler = Scheduler()

    def forever() -> None:
        scheduler.call_later(0.0, forever)

    scheduler.call_at(0.0, forever)
    with pytest.raises(SchedulerError, match="1000 steps"):
        scheduler.run_until(max_steps=1000)
    assert scheduler.steps == 1000
    assert scheduler.now == 0.0  # time did not move: a zero-delay loop


def test_step_guard_stops_a_ping_pong_loop() -> None:
    net = Network(seed=1)
    a_host = net.add_host("a")
    b_host = net.add_host("b")
    a = a_host.bind(1000, lambda data, remote: a.send(data, remote))
    b = b_host.bind(1000, lambda data, remote: b.send(data, remote))
    a.send(b"ball", b.address)
    with pytest.raises(SchedulerError):
        net.scheduler.run_until(lambda: False, max_steps=10_000)
    assert net.counters["deliver"] >= 9_999


# -- TURN --------------------------------------------------------------------------------------


def test_turn_through_nats() -> None:
    net = Network(seed=11)
    turn_host = net.add_host("turn")
    turn_server(turn_host, users={"u": "p"})
    client_lan = net.add_lan(
        "client-lan", "10.0.1.0/24", SYMMETRIC, link=LinkConditions(latency=0.02)
    )
    peer_lan = net.add_lan(
        "peer-lan", "10.0.2.0/24", PORT_RESTRICTED_CONE, link=LinkConditions(latency=0.03)
    )
    client_host = net.add_host("client", client_lan)
    peer_host = net.add_host("peer", peer_lan)

    turn = TurnClient(
        (turn_host.ip, 3478),
        TurnClientConfig(username="u", password="p"),
        rng=random.Random(1),
    )
    events: list[TurnEvent] = []
    armed: list[float] = []

    def fire(at: float) -> None:
        if turn.get_timer() == at:
            turn.handle_timer(now=net.now)
            pump()

    def pump() -> None:
        for data in turn.datagrams_to_send():
            client_ep.send(data, turn.server)
        while (event := turn.next_event()) is not None:
            events.append(event)
        at = turn.get_timer()
        if at is not None and (not armed or armed[-1] != at):
            armed.append(at)
            net.scheduler.call_at(at, lambda: fire(at))

    def client_receive(data: bytes, remote: Address) -> None:
        assert remote == turn.server
        turn.receive(data, now=net.now)
        pump()

    client_ep = client_host.bind(5000, client_receive)
    peer_ep = peer_host.bind(6000)

    turn.allocate(now=net.now)
    pump()
    assert net.scheduler.run_until(lambda: turn.state is TurnState.ALLOCATED, max_time=10.0)
    relayed = turn.relayed_address
    assert relayed is not None
    assert relayed[0] == turn_host.ip
    # The server saw the symmetric NAT's external address, not the client's.
    assert turn.mapped_address is not None
    assert turn.mapped_address[0] == client_lan.external_ip
    # 401 then success: two round trips of 2 * 20 ms.
    assert net.now == pytest.approx(0.08)

    # The peer opens its port-restricted NAT towards the relayed address (as ICE would do
    # with a connectivity check); the server drops it: no permission yet.
    peer_ep.send(b"knock", relayed)
    net.scheduler.run_for(1.0)
    (peer_external,) = {
        h.source for h in net.trace if h.where == "peer-lan" and h.event == "nat-out"
    }

    start = net.now
    turn.send(b"hello peer", peer_external, now=net.now)  # binds a channel first
    pump()
    assert net.scheduler.run_until(lambda: bool(peer_ep.received), max_time=start + 5.0)
    assert peer_ep.received == [(b"hello peer", relayed)]
    assert turn.bound_channels.get(peer_external) is not None
    # ChannelBind round trip (40 ms), then client -> relay (20 ms) -> peer (30 ms).
    assert net.now - start == pytest.approx(0.04 + 0.05)

    # Data now flows both ways over the channel; each one-way trip takes 50 ms.
    for i in range(5):
        start = net.now
        peer_ep.send(b"pong %d" % i, relayed)
        net.scheduler.run_for(0.05)
        assert events[-1] == DataReceived(b"pong %d" % i, peer_external)
        assert net.now - start == pytest.approx(0.05)
        turn.send(b"ping %d" % i, peer_external, now=net.now)
        pump()
        net.scheduler.run_for(0.05)
        assert peer_ep.received[-1] == (b"ping %d" % i, relayed)
    assert sum(isinstance(e, DataReceived) for e in events) == 5
    assert net.counters["drop-filtered"] == 0
    assert turn.stats.dropped == 0
