"""TCP-like streams on the virtual network: connect, accept, data, close, failures, NATs
and firewalls, and TURN over TCP from behind a NAT that blocks UDP."""

from __future__ import annotations

import random
from functools import partial

import pytest
from aioice.stun import Address, Class, Message, Method, StreamFramer, parse_message
from aioice.turn import TurnClient, TurnClientConfig, TurnState
from aioice.turn.events import DataReceived, TurnEvent
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    SYMMETRIC,
    UDP_BLOCKED,
    Host,
    LinkConditions,
    NatBehavior,
    Network,
    Router,
    Stream,
    stun_server,
    turn_server,
)


def state(stream: Stream) -> tuple[bool, bool]:
    """(connected, closed), read through a call so that mypy does not narrow them."""
    return stream.connected, stream.closed


class Log:
    """What happened to streams, with the virtual time."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.events: list[tuple[float, str, object]] = []

    def add(self, what: str, value: object = None) -> None:
        # Rounded: a path's latency is a sum of link latencies (float additions).
        self.events.append((round(self.net.now, 9), what, value))

    def on_accept(self, accepted: list[Stream], greeting: bytes | None, stream: Stream) -> None:
        self.add("accept", stream.remote)
        accepted.append(stream)
        stream.receiver = partial(self.add, "server got")
        stream.on_close = partial(self.add, "server closed")
        if greeting is not None:
            stream.write(greeting)

    def on_connected(self, stream: Stream) -> None:
        self.add("connected", stream.local)
        stream.receiver = partial(self.add, "client got")
        stream.on_close = partial(self.add, "client closed")

    def on_failed(self, error: OSError) -> None:
        self.add("failed", type(error))


def two_lans(
    client_behavior: NatBehavior = PORT_RESTRICTED_CONE,
) -> tuple[Network, Router, Host, Host]:
    """A client behind a NAT (20 ms to the internet), a server in a routed LAN (30 ms)."""
    net = Network(seed=5382)
    home = net.add_lan(
        "home",
        "10.0.1.0/24",
        client_behavior,
        link=LinkConditions(latency=0.02),
        cidr6="2001:db8:1::/64",
    )
    dc = net.add_lan(
        "dc", "10.0.2.0/24", None, link=LinkConditions(latency=0.03), cidr6="2001:db8:2::/64"
    )
    return net, home, net.add_host("client", home), net.add_host("server", dc)


def test_connect_accept_and_data_both_ways_with_exact_times() -> None:
    net, home, client, server = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    server.listen(443, partial(log.on_accept, accepted, b"welcome"))
    stream = client.connect(
        (server.ip, 443), on_connected=log.on_connected, on_failed=log.on_failed
    )
    stream.write(b"early")  # buffered until connected
    assert state(stream) == (False, False)
    net.scheduler.run_for(1.0)
    (served,) = accepted
    external = served.remote
    assert external[0] == home.external_ip  # the server sees the NAT's TCP mapping
    assert external != stream.local
    assert served.local == (server.ip, 443)
    assert stream.remote == (server.ip, 443)
    assert state(stream) == state(served) == (True, False)
    assert log.events == [
        (0.05, "accept", external),
        (0.1, "connected", stream.local),
        (0.1, "client got", b"welcome"),  # written in on_accept, after connected
        (0.15, "server got", b"early"),
    ]
    log.events.clear()
    served.write(b"ping")
    stream.write(b"pong")
    net.scheduler.run_for(1.0)
    assert log.events == [
        (1.05, "client got", b"ping"),
        (1.05, "server got", b"pong"),
    ]
    assert net.counters["tcp-connect"] == 1
    assert net.counters["tcp-accept"] == 1
    assert net.counters["tcp-send"] == net.counters["tcp-deliver"] == 4
    assert [h.event for h in net.trace if h.where == "client"] == [
        "tcp-connect",
        "tcp-send",
        "tcp-deliver",
        "tcp-send",
        "tcp-deliver",
    ]
    assert home.nat is not None
    assert home.nat.tcp_mappings == 1
    assert home.nat.mappings == 0


def test_refused() -> None:
    net, _, client, server = two_lans()
    log = Log(net)
    stream = client.connect((server.ip, 443), on_failed=log.on_failed)
    stream.write(b"lost")
    net.scheduler.run_for(1.0)
    assert log.events == [(0.1, "failed", ConnectionRefusedError)]
    assert state(stream) == (False, True)
    assert net.counters["tcp-refused"] == 1
    (refused,) = [h for h in net.trace if h.event == "tcp-refused"]
    assert (refused.where, refused.time) == ("server", 0.05)
    with pytest.raises(OSError, match="closed"):
        stream.write(b"x")
    assert stream.local not in client.streams  # the port is free again


def test_closed_listener_refuses() -> None:
    net, _, client, server = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    listener = server.listen(443, partial(log.on_accept, accepted, None))
    assert listener.address == (server.ip, 443)
    with pytest.raises(OSError, match="in use"):
        server.listen(443, partial(log.on_accept, accepted, None))
    listener.close()
    client.connect((server.ip, 443), on_failed=log.on_failed)
    net.scheduler.run_for(1.0)
    assert log.events == [(0.1, "failed", ConnectionRefusedError)]


def test_timeout_through_a_nat() -> None:
    """A listener behind a NAT is unreachable from outside: no port forwarding."""
    net, home, inside, outside = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    inside.listen(443, partial(log.on_accept, accepted, None))
    assert home.external_ip is not None
    stream = outside.connect((home.external_ip, 443), on_failed=log.on_failed, timeout=3.0)
    net.scheduler.run_until()
    assert log.events == [(3.0, "failed", TimeoutError)]
    assert accepted == []
    assert stream.closed
    (dropped,) = [h for h in net.trace if h.event == "drop-filtered"]
    assert (dropped.where, dropped.time) == ("home", 0.05)
    assert net.counters["tcp-timeout"] == 1
    # A private address of another LAN is unroutable: the same timeout.
    outside.connect(("10.0.1.1", 443), on_failed=log.on_failed, timeout=2.0)
    net.scheduler.run_until()
    assert log.events[-1] == (5.0, "failed", TimeoutError)
    assert net.counters["drop-unroutable"] == 1


def test_timeout_shorter_than_the_round_trip_resets_the_accepted_stream() -> None:
    net, _, client, server = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    server.listen(443, partial(log.on_accept, accepted, b"too late"))
    client.connect(
        (server.ip, 443), on_connected=log.on_connected, on_failed=log.on_failed, timeout=0.08
    )
    net.scheduler.run_until()
    (served,) = accepted
    assert log.events == [
        (0.05, "accept", served.remote),
        (0.08, "failed", TimeoutError),
        (0.15, "server closed", None),  # the client's reset
    ]
    assert served.closed
    assert net.counters["drop-closed"] == 1  # "too late" reached a closed stream


def test_many_writes_arrive_in_order_whatever_the_link() -> None:
    net = Network(seed=1)
    lossy = LinkConditions(latency=0.01, jitter=0.05, loss=0.5, duplicate=0.5, reorder=0.5)
    lan = net.add_lan("lan", "10.0.0.0/24", SYMMETRIC, link=lossy)
    client = net.add_host("client", lan)
    server = net.add_host("server")
    received = bytearray()
    times: list[float] = []
    accepted: list[Stream] = []

    def accept(stream: Stream) -> None:
        accepted.append(stream)
        stream.receiver = receive

    def receive(chunk: bytes) -> None:
        received.extend(chunk)
        times.append(net.now)

    server.listen(9000, accept)
    stream = client.connect((server.ip, 9000))
    sent = bytearray()
    for i in range(1000):
        chunk = b"%d," % i
        sent += chunk
        stream.write(chunk)
        assert not received  # never delivered inside write
    net.scheduler.run_until()
    assert received == sent
    assert times == [0.03] * 1000  # connected at 0.02, then one latency: no jitter
    assert net.counters["tcp-deliver"] == 1000
    assert net.counters["drop-loss"] == 0


def test_close_from_either_side() -> None:
    net, home, client, server = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    server.listen(443, partial(log.on_accept, accepted, None))
    first = client.connect((server.ip, 443), on_connected=log.on_connected)
    second = client.connect((server.ip, 443), on_connected=log.on_connected)
    net.scheduler.run_until(max_time=1.0)
    assert home.nat is not None
    assert home.nat.tcp_mappings == 2
    served_first, served_second = accepted
    log.events.clear()

    # The client closes: data written before still arrives, then the close.
    first.write(b"bye")
    first.close()
    first.close()  # idempotent
    assert state(first) == (True, True)
    assert state(served_first) == (True, False)
    with pytest.raises(OSError, match="closed"):
        first.write(b"more")
    assert first.local not in client.streams  # the port is free again
    assert home.nat.tcp_mappings == 1
    net.scheduler.run_for(1.0)
    assert log.events == [
        (1.05, "server got", b"bye"),
        (1.05, "server closed", None),
    ]
    assert state(served_first) == (True, True)
    with pytest.raises(OSError, match="closed"):
        served_first.write(b"x")

    # The server closes the other one.
    log.events.clear()
    served_second.close()
    net.scheduler.run_for(1.0)
    assert log.events == [(2.05, "client closed", None)]
    assert second.closed
    assert home.nat.tcp_mappings == 0
    assert client.streams == {}
    assert net.counters["tcp-close"] == 2


def test_streams_on_one_lan_and_over_ipv6() -> None:
    net, home, client, server = two_lans()
    log = Log(net)
    accepted: list[Stream] = []
    neighbour = net.add_host("neighbour", home)
    neighbour.listen(80, partial(log.on_accept, accepted, b"local"))
    assert server.ip6 is not None
    assert client.ip6 is not None
    server.listen(443, partial(log.on_accept, accepted, b"global"), ip=server.ip6)

    # On the LAN: no link crossed, no NAT; everything still scheduled.
    local = client.connect((neighbour.ip, 80), on_connected=log.on_connected)
    assert log.events == []
    net.scheduler.run_for(1.0)
    assert log.events == [
        (0.0, "accept", local.local),
        (0.0, "connected", local.local),
        (0.0, "client got", b"local"),
    ]

    # IPv6 through the firewall: the server sees the client's own address.
    log.events.clear()
    global_ = client.connect((server.ip6, 443), on_connected=log.on_connected)
    assert global_.local[0] == client.ip6
    net.scheduler.run_for(1.0)
    assert log.events == [
        (1.05, "accept", global_.local),
        (1.1, "connected", global_.local),
        (1.1, "client got", b"global"),
    ]
    assert home.nat is not None
    assert home.nat.tcp_mappings == 0

    # From outside, the firewall drops the attempt: no pinhole for the listener.
    log.events.clear()
    neighbour.listen(8080, partial(log.on_accept, accepted, None), ip=neighbour.ip6)
    assert neighbour.ip6 is not None
    server.connect((neighbour.ip6, 8080), on_failed=log.on_failed, timeout=1.0)
    net.scheduler.run_until()
    assert log.events == [(3.0, "failed", TimeoutError)]
    (dropped,) = [h for h in net.trace if h.event == "drop-filtered"]
    assert (dropped.where, dropped.time) == ("home", 2.05)

    # A routed LAN (no behaviour) accepts connections from anyone, IPv6 and IPv4.
    log.events.clear()
    outsider = net.add_host("outsider")
    server.listen(8443, partial(log.on_accept, accepted, None), ip=server.ip6)
    server.listen(8443, partial(log.on_accept, accepted, None))
    outsider.connect((server.ip6, 8443), on_connected=log.on_connected)
    outsider.connect((server.ip, 8443), on_connected=log.on_connected)
    net.scheduler.run_until()
    assert [(round(t, 9), what) for t, what, _ in log.events] == [
        (3.03, "accept"),
        (3.03, "accept"),
        (3.06, "connected"),
        (3.06, "connected"),
    ]
    with pytest.raises(OSError, match="cannot connect"):
        client.connect((server.ip6, 443), ip=client.ip)
    with pytest.raises(OSError, match="no IPv6 address"):
        net.add_host("v4only", ipv6=False).connect((server.ip6, 443))


def test_stun_binding_over_a_stream() -> None:
    net, home, client, server = two_lans(SYMMETRIC)
    stun_server(server)
    framer = StreamFramer()
    responses: list[Message] = []
    request = Message(Method.BINDING, Class.REQUEST, bytes(12))

    def connected(stream: Stream) -> None:
        stream.receiver = lambda chunk: responses.extend(map(parse_message, framer.feed(chunk)))

    stream = client.connect((server.ip, 3478), on_connected=connected)
    stream.write(framer.frame(request.encode()))
    assert net.scheduler.run_until(lambda: bool(responses), max_time=1.0)
    assert net.now == pytest.approx(0.2)  # handshake, then one round trip
    (response,) = responses
    assert response.message_class is Class.RESPONSE
    mapped = response.attributes["XOR-MAPPED-ADDRESS"]
    assert mapped[0] == home.external_ip
    assert mapped != stream.local


class StreamTurnDriver:
    """A sans-I/O TurnClient over a stream (RFC 8656 §3.1: TCP to the server)."""

    def __init__(self, net: Network, host: Host, server: Address, turn: TurnClient) -> None:
        self.net = net
        self.turn = turn
        self.framer = StreamFramer()
        self.events: list[TurnEvent] = []
        self.armed: float | None = None
        self.stream = host.connect(server, on_connected=self.connected)

    def connected(self, stream: Stream) -> None:
        stream.receiver = self.receive

    def receive(self, chunk: bytes) -> None:
        for frame in self.framer.feed(chunk):
            self.turn.receive(frame, now=self.net.now)
        self.pump()

    def fire(self, at: float) -> None:
        if self.turn.get_timer() == at:
            self.turn.handle_timer(now=self.net.now)
            self.pump()

    def pump(self) -> None:
        for data in self.turn.datagrams_to_send():
            self.stream.write(self.framer.frame(data))
        while (event := self.turn.next_event()) is not None:
            self.events.append(event)
        at = self.turn.get_timer()
        if at is not None and at != self.armed:
            self.armed = at
            self.net.scheduler.call_at(at, partial(self.fire, at))


def test_turn_over_tcp_from_behind_a_udp_blocking_nat() -> None:
    net = Network(seed=8656)
    turn_host = net.add_host("turn")
    server = turn_server(turn_host, users={"u": "p"})
    lan = net.add_lan("blocked", "10.0.1.0/24", UDP_BLOCKED, link=LinkConditions(latency=0.02))
    client_host = net.add_host("client", lan)
    peer_lan = net.add_lan("peer-lan", "10.0.2.0/24", FULL_CONE, link=LinkConditions(latency=0.03))
    peer = net.add_host("peer", peer_lan).bind(6000)

    # UDP does not get out.
    client_host.bind(5000).send(b"udp?", (turn_host.ip, 3478))
    net.scheduler.run_for(1.0)
    assert net.counters["drop-blocked"] == 1

    start = net.now
    turn = TurnClient(
        (turn_host.ip, 3478),
        TurnClientConfig(username="u", password="p", reliable=True),
        rng=random.Random(1),
    )
    driver = StreamTurnDriver(net, client_host, turn.server, turn)
    turn.allocate(now=net.now)
    driver.pump()  # buffered until connected
    assert net.scheduler.run_until(lambda: turn.state is TurnState.ALLOCATED, max_time=10.0)
    # Handshake, 401, success: three round trips of 2 * 20 ms.
    assert net.now - start == pytest.approx(0.12)
    relayed = turn.relayed_address
    assert relayed is not None
    assert relayed[0] == turn_host.ip
    assert turn.mapped_address is not None
    assert turn.mapped_address[0] == lan.external_ip
    assert turn.mapped_address in server.streams

    # The peer opens its NAT towards the relay (dropped by the server: no permission).
    peer.send(b"knock", relayed)
    net.scheduler.run_for(1.0)
    (peer_external,) = {
        h.source for h in net.trace if h.where == "peer-lan" and h.event == "nat-out"
    }

    start = net.now
    turn.send(b"hello peer", peer_external, now=net.now)  # binds a channel first
    driver.pump()
    assert net.scheduler.run_until(lambda: bool(peer.received), max_time=start + 5.0)
    assert peer.received == [(b"hello peer", relayed)]
    # ChannelBind round trip (40 ms), then client -> relay (20 ms) -> peer (30 ms).
    assert net.now - start == pytest.approx(0.04 + 0.05)

    # ChannelData both ways, padded on the stream (RFC 8656 §12.5): odd lengths.
    for i in range(5):
        start = net.now
        peer.send(b"pong %d!" % i, relayed)
        assert net.scheduler.run_until(
            partial(lambda i: len(driver.events) == 2 + i, i), max_time=start + 1
        )
        assert driver.events[-1] == DataReceived(b"pong %d!" % i, peer_external)
        assert net.now - start == pytest.approx(0.05)  # 30 ms, then 20 ms on the stream
        start = net.now
        turn.send(b"ping %d" % i, peer_external, now=net.now)
        driver.pump()
        assert net.scheduler.run_until(
            partial(lambda i: len(peer.received) == 2 + i, i), max_time=start + 1
        )
        assert peer.received[-1] == (b"ping %d" % i, relayed)
        assert net.now - start == pytest.approx(0.05)
    assert sum(isinstance(e, DataReceived) for e in driver.events) == 5
    assert turn.stats.dropped == 0
    assert lan.nat is not None
    assert (lan.nat.mappings, lan.nat.tcp_mappings) == (0, 1)
    assert net.counters["drop-blocked"] == 1
