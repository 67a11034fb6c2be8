"""IPv6 on the virtual network: global addresses, no translation, the NAT behaviour as a
stateful firewall (RFC 6092), link-local multicast, STUN and TURN over IPv6."""

from __future__ import annotations

import random
from functools import partial

import pytest
from aioice.mdns import MdnsConfig, MdnsService, Resolved, ResolveFailed
from aioice.stun import Address, Class, Message, Method, parse_message
from aioice.turn import TurnClient, TurnClientConfig, TurnState
from aioice.turn.events import DataReceived, TurnEvent
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    RESTRICTED_CONE,
    SYMMETRIC,
    UDP_BLOCKED,
    Dependency,
    Endpoint,
    Host,
    LinkConditions,
    NatBehavior,
    Network,
    Router,
    stun_server,
    turn_server,
)

LATENCY = LinkConditions(latency=0.01)


def setup(behavior: NatBehavior | None) -> tuple[Network, Router, Host, Host, Host]:
    """A dual-stack LAN behind ``behavior`` with one client, and two servers on the
    internet (dual-stack too)."""
    net = Network(seed=1)
    lan = net.add_lan("lan", "10.0.0.0/24", behavior, link=LATENCY, cidr6="2001:db8:1::/64")
    client = net.add_host("client", lan)
    s1 = net.add_host("s1")
    s2 = net.add_host("s2")
    return net, lan, client, s1, s2


def ip6(host: Host) -> str:
    assert host.ip6 is not None
    return host.ip6


def sources(endpoint: Endpoint) -> list[Address]:
    return [remote for _, remote in endpoint.received]


# -- addresses and routing -----------------------------------------------------------------------


def test_hosts_get_an_ipv4_then_an_ipv6_address() -> None:
    net, lan, client, s1, _ = setup(PORT_RESTRICTED_CONE)
    assert client.ips == ["10.0.0.1", "2001:db8:1::1"]
    assert (client.ip, client.ip6) == ("10.0.0.1", "2001:db8:1::1")
    assert s1.ips == ["198.51.100.2", "2001:db8::1"]  # .1 is the LAN's NAT
    assert client.add_address(6) == "2001:db8:1::2"
    assert client.add_address() == "10.0.0.2"
    assert client.ip == "10.0.0.1"
    assert net.add_host("v4only", lan, ipv6=False).ips == ["10.0.0.3"]
    plain = net.add_lan("plain", "10.9.0.0/24", FULL_CONE)
    legacy = net.add_host("legacy", plain)
    assert (legacy.ips, legacy.ip6) == (["10.9.0.1"], None)
    with pytest.raises(ValueError, match="no IPv6 prefix"):
        legacy.add_address(6)
    with pytest.raises(ValueError, match="overlaps"):
        net.add_lan("again", "10.1.0.0/24", FULL_CONE, cidr6="2001:db8:1:0:8000::/65")
    with pytest.raises(ValueError, match="overlaps"):
        net.add_lan("internet-too", "10.2.0.0/24", FULL_CONE, cidr6="2001:db8::/48")


def test_across_lans_with_exact_latency_and_no_translation() -> None:
    net = Network(seed=1)
    home = net.add_lan(
        "home",
        "10.0.1.0/24",
        PORT_RESTRICTED_CONE,
        link=LinkConditions(latency=0.02),
        cidr6="2001:db8:1::/64",
    )
    office = net.add_lan(
        "office", "10.0.2.0/24", None, link=LinkConditions(latency=0.03), cidr6="2001:db8:2::/64"
    )
    client_host = net.add_host("client", home)
    server_host = net.add_host("server", office)
    client = client_host.bind(5000, ip=ip6(client_host))
    server = server_host.bind(3478, ip=ip6(server_host))
    client.send(b"ping", server.address)
    net.scheduler.run_for(1.0)
    # The server sees the client's own global address: no NAT66.
    assert server.received == [(b"ping", ("2001:db8:1::1", 5000))]
    server.send(b"pong", client.address)
    net.scheduler.run_for(1.0)
    assert client.received == [(b"pong", ("2001:db8:2::1", 3478))]
    assert [(h.where, h.event, h.time) for h in net.trace] == [
        ("client", "send", 0.0),
        ("server", "deliver", 0.05),
        ("server", "send", 1.0),
        ("client", "deliver", 1.05),  # the firewall admits the answer
    ]
    assert net.counters["nat-out"] == 0
    assert net.counters["nat-in"] == 0


def test_a_routed_lan_admits_anyone() -> None:
    net, _, client, s1, _ = setup(None)
    ep = client.bind(5000, ip=ip6(client))
    stranger = s1.bind(1000, ip=ip6(s1))
    stranger.send(b"unsolicited", ep.address)
    net.scheduler.run_for(1.0)
    assert ep.received == [(b"unsolicited", stranger.address)]


def test_nested_lans_route_ipv6_through_both_firewalls() -> None:
    net = Network(seed=1)
    outer = net.add_lan("outer", "10.0.0.0/24", FULL_CONE, link=LATENCY, cidr6="2001:db8:1::/64")
    inner = net.add_lan(
        "inner",
        "10.1.0.0/24",
        PORT_RESTRICTED_CONE,
        parent=outer,
        link=LinkConditions(latency=0.02),
        cidr6="2001:db8:2::/64",
    )
    deep = net.add_host("deep", inner)
    server = net.add_host("server")
    ep = deep.bind(5000, ip=ip6(deep))
    sv = server.bind(3478, ip=ip6(server))
    sv.send(b"early", ep.address)
    net.scheduler.run_for(1.0)
    (dropped,) = [h for h in net.trace if h.event == "drop-filtered"]
    assert (dropped.where, dropped.time) == ("outer", 0.01)  # the first firewall on the way
    ep.send(b"out", sv.address)
    net.scheduler.run_for(1.0)
    sv.send(b"in", ep.address)
    net.scheduler.run_for(1.0)
    assert sv.received == [(b"out", ep.address)]
    assert ep.received == [(b"in", sv.address)]
    assert net.trace[-1].time == 2.03


# -- the firewall ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behavior", "same_ip_other_port", "other_ip"),
    [
        (FULL_CONE, True, True),
        (RESTRICTED_CONE, True, False),
        (PORT_RESTRICTED_CONE, False, False),
        (SYMMETRIC, False, False),
    ],
)
def test_firewall_filtering(
    behavior: NatBehavior, same_ip_other_port: bool, other_ip: bool
) -> None:
    net, lan, client, s1, s2 = setup(behavior)
    ep = client.bind(5000, ip=ip6(client))
    other_port = client.bind(5001, ip=ip6(client))
    contacted = s1.bind(1000, ip=ip6(s1))
    sibling = s1.bind(1001, ip=ip6(s1))  # the contacted IP, another port
    stranger = s2.bind(1000, ip=ip6(s2))  # another IP

    # Unsolicited before any outbound packet: always dropped.
    stranger.send(b"early", ep.address)
    net.scheduler.run_for(1.0)
    assert net.counters["drop-filtered"] == 1
    assert ep.received == []

    ep.send(b"out", contacted.address)
    net.scheduler.run_for(1.0)
    assert sources(contacted) == [ep.address]  # no translation, whatever the behaviour
    contacted.send(b"reply", ep.address)
    sibling.send(b"sibling", ep.address)
    stranger.send(b"stranger", ep.address)
    # The pinhole is the internal address's: another port of the client stays closed.
    contacted.send(b"other port", other_port.address)
    net.scheduler.run_for(1.0)

    got = [data for data, _ in ep.received]
    expected = [b"reply"]
    if same_ip_other_port:
        expected.append(b"sibling")
    if other_ip:
        expected.append(b"stranger")
    assert got == expected
    assert other_port.received == []
    assert net.counters["drop-filtered"] == 1 + (3 - len(expected)) + 1
    assert net.counters["nat-out"] == 0
    assert lan.firewall is not None
    assert lan.firewall.pinholes == 1
    assert lan.nat is not None
    assert lan.nat.mappings == 0  # IPv6 never touches the NAT's table


def test_firewall_address_vs_port_dependent() -> None:
    for behavior, admitted in ((RESTRICTED_CONE, [b"a", b"b"]), (PORT_RESTRICTED_CONE, [b"a"])):
        net, _, client, s1, _ = setup(behavior)
        ep = client.bind(5000, ip=ip6(client))
        a = s1.bind(1000, ip=ip6(s1))
        b = s1.bind(2000, ip=ip6(s1))
        ep.send(b"out", a.address)
        net.scheduler.run_for(1.0)
        a.send(b"a", ep.address)
        b.send(b"b", ep.address)
        net.scheduler.run_for(1.0)
        assert [d for d, _ in ep.received] == admitted


def test_firewall_lifetime() -> None:
    behavior = NatBehavior(
        mapping=Dependency.ENDPOINT_INDEPENDENT,
        filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT,
        mapping_lifetime=10.0,
    )
    net, _, client, s1, _ = setup(behavior)
    ep = client.bind(5000, ip=ip6(client))
    server = s1.bind(1000, ip=ip6(s1))
    ep.send(b"a", server.address)  # at 0: the pinhole lives until 10.0
    net.scheduler.run_until(max_time=8.0)
    ep.send(b"keepalive", server.address)  # until 18.0
    net.scheduler.run_until(max_time=15.0)
    server.send(b"still", ep.address)
    net.scheduler.run_until(max_time=17.98)
    server.send(b"just in time", ep.address)  # arrives at 17.99
    net.scheduler.run_until(max_time=17.995)
    server.send(b"too late", ep.address)  # arrives at 18.005
    net.scheduler.run_for(1.0)
    assert [d for d, _ in ep.received] == [b"still", b"just in time"]
    (dropped,) = [h for h in net.trace if h.event == "drop-filtered"]
    assert (dropped.where, round(dropped.time, 9)) == ("lan", 18.005)
    # A new outbound packet opens it again.
    ep.send(b"again", server.address)
    net.scheduler.run_for(1.0)
    server.send(b"back", ep.address)
    net.scheduler.run_for(1.0)
    assert [d for d, _ in ep.received][-1] == b"back"


def test_full_cone_admits_anyone_after_any_outbound_packet() -> None:
    net, _, client, s1, s2 = setup(FULL_CONE)
    ep = client.bind(5000, ip=ip6(client))
    strangers = [s2.bind(port, ip=ip6(s2)) for port in (1, 2, 3)]
    ep.send(b"anywhere", (ip6(s1), 9))  # nobody listens there: the pinhole opens anyway
    net.scheduler.run_for(1.0)
    for stranger in strangers:
        stranger.send(b"hi", ep.address)
    net.scheduler.run_for(1.0)
    assert sources(ep) == [s.address for s in strangers]
    assert net.counters["drop-port-closed"] == 1
    assert net.counters["drop-filtered"] == 0


def test_blocked_udp_blocks_ipv6_too() -> None:
    net, lan, client, s1, _ = setup(UDP_BLOCKED)
    ep = client.bind(5000, ip=ip6(client))
    server = s1.bind(3478, ip=ip6(s1))
    ep.send(b"out", server.address)
    server.send(b"in", ep.address)
    net.scheduler.run_for(1.0)
    assert server.received == []
    assert ep.received == []
    assert net.counters["drop-blocked"] == 1
    assert net.counters["drop-filtered"] == 1
    # Inside the LAN IPv6 still flows.
    neighbour_host = net.add_host("n", lan)
    neighbour = neighbour_host.bind(6000, ip=ip6(neighbour_host))
    ep.send(b"local", neighbour.address)
    net.scheduler.run_for(1.0)
    assert neighbour.received == [(b"local", ep.address)]


def test_mixed_family_is_dropped() -> None:
    net, _, client, s1, _ = setup(FULL_CONE)
    v4 = client.bind(5000)
    v6 = client.bind(5000, ip=ip6(client))
    server4 = s1.bind(3478)
    server6 = s1.bind(3478, ip=ip6(s1))
    v4.send(b"x", server6.address)
    v6.send(b"y", server4.address)
    net.scheduler.run_for(1.0)
    assert server4.received == server6.received == []
    assert net.counters["drop-family"] == 2
    assert net.counters["send"] == 2
    assert [h.where for h in net.trace if h.event == "drop-family"] == ["client", "client"]


# -- multicast -------------------------------------------------------------------------------------


def test_ipv6_multicast_stays_on_the_lan() -> None:
    net = Network(seed=1)
    home = net.add_lan("home", "10.0.1.0/24", FULL_CONE, cidr6="2001:db8:1::/64")
    office = net.add_lan("office", "10.0.2.0/24", FULL_CONE, cidr6="2001:db8:2::/64")
    a, b, c = (net.add_host(n, lan) for n, lan in (("a", home), ("b", home), ("c", office)))
    sender = a.bind(5353, ip=ip6(a))
    neighbour = b.bind(5353, ip=ip6(b))
    neighbour4 = b.bind(5353)  # IPv4: not in the IPv6 group
    stranger = c.bind(5353, ip=ip6(c))
    sender.send(b"query", ("ff02::fb", 5353))
    net.scheduler.run_for(1.0)
    assert neighbour.received == [(b"query", sender.address)]
    assert neighbour4.received == []
    assert stranger.received == []
    assert sender.received == []


class MdnsNode:
    """An IPv6-only MdnsService on a virtual host's port 5353."""

    def __init__(self, network: Network, host: Host) -> None:
        self.network = network
        self.service = MdnsService(MdnsConfig(families=(6,)))
        self.events: list[object] = []
        self.endpoint = host.bind(5353, self.received, ip=ip6(host))

    def received(self, data: bytes, remote: Address) -> None:
        self.service.receive_datagram(data, remote=remote, now=self.network.now)
        self.pump()

    def pump(self) -> None:
        for transmit in self.service.datagrams_to_send():
            self.endpoint.send(transmit.data, transmit.remote)
        while (event := self.service.next_event()) is not None:
            self.events.append(event)
        at = self.service.get_timer()
        if at is not None:
            self.network.scheduler.call_at(at, partial(self.fire, at))

    def fire(self, at: float) -> None:
        if self.service.get_timer() == at:
            self.service.handle_timer(now=self.network.now)
            self.pump()


def test_mdns_over_ipv6() -> None:
    net = Network(seed=6762)
    home = net.add_lan("home", "10.1.0.0/24", PORT_RESTRICTED_CONE, cidr6="2001:db8:1::/64")
    office = net.add_lan("office", "10.2.0.0/24", PORT_RESTRICTED_CONE, cidr6="2001:db8:2::/64")
    publisher = MdnsNode(net, net.add_host("a", home))
    neighbour = MdnsNode(net, net.add_host("b", home))
    stranger = MdnsNode(net, net.add_host("c", office))
    name = "3f2c1d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f.local"
    publisher.service.publish(name, "2001:db8:1::1", now=0.0)
    publisher.pump()
    for node in (neighbour, stranger):
        node.service.resolve(name, now=0.0)
        node.pump()
    net.scheduler.run_until(max_time=5.0)
    assert [e for e in neighbour.events if isinstance(e, Resolved)] == [
        Resolved(name, ("2001:db8:1::1",))
    ]
    assert stranger.events == [ResolveFailed(name)]


# -- STUN and TURN ---------------------------------------------------------------------------------


def test_stun_binding_over_ipv6_returns_the_host_address() -> None:
    net, _, client, s1, _ = setup(SYMMETRIC)
    stun_server(s1, family=6)
    responses: list[Message] = []
    ep = client.bind(5000, lambda data, _: responses.append(parse_message(data)), ip=ip6(client))
    request = Message(Method.BINDING, Class.REQUEST, bytes(12))
    ep.send(request.encode(), (ip6(s1), 3478))
    assert net.scheduler.run_until(lambda: bool(responses), max_time=1.0)
    assert net.now == 0.02
    (response,) = responses
    assert response.message_class is Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8:1::1", 5000)
    assert response.attributes["RESPONSE-ORIGIN"] == ("2001:db8::1", 3478)


def test_stun_server_family_needs_an_address() -> None:
    net = Network(seed=1, cidr6=None)
    with pytest.raises(ValueError, match="no IPv6 address"):
        stun_server(net.add_host("v4"), family=6)


class TurnDriver:
    """A sans-I/O TurnClient over a UDP endpoint of a virtual host."""

    def __init__(self, net: Network, endpoint: Endpoint, turn: TurnClient) -> None:
        self.net = net
        self.endpoint = endpoint
        self.turn = turn
        self.events: list[TurnEvent] = []
        self.armed: float | None = None
        endpoint.receiver = self.receive

    def receive(self, data: bytes, remote: Address) -> None:
        assert remote == self.turn.server
        self.turn.receive(data, now=self.net.now)
        self.pump()

    def fire(self, at: float) -> None:
        if self.turn.get_timer() == at:
            self.turn.handle_timer(now=self.net.now)
            self.pump()

    def pump(self) -> None:
        for data in self.turn.datagrams_to_send():
            self.endpoint.send(data, self.turn.server)
        while (event := self.turn.next_event()) is not None:
            self.events.append(event)
        at = self.turn.get_timer()
        if at is not None and at != self.armed:
            self.armed = at
            self.net.scheduler.call_at(at, partial(self.fire, at))


def test_turn_over_ipv6_relays_from_an_ipv6_address() -> None:
    net, _, client, turn_host, peer_host = setup(PORT_RESTRICTED_CONE)
    server = turn_server(turn_host, users={"u": "p"})
    turn = TurnClient(
        (ip6(turn_host), 3478),
        TurnClientConfig(username="u", password="p", requested_family=2),
        rng=random.Random(1),
    )
    driver = TurnDriver(net, client.bind(5000, ip=ip6(client)), turn)
    turn.allocate(now=net.now)
    driver.pump()
    assert net.scheduler.run_until(lambda: turn.state is TurnState.ALLOCATED, max_time=10.0)
    assert net.now == pytest.approx(0.04)  # 401, then success: two round trips of 20 ms
    relayed = turn.relayed_address
    assert relayed is not None
    assert relayed[0] == ip6(turn_host)
    assert turn.mapped_address == (ip6(client), 5000)  # no translation

    peer = peer_host.bind(6000, ip=ip6(peer_host))
    start = net.now
    turn.send(b"hello peer", peer.address, now=net.now)
    driver.pump()
    assert net.scheduler.run_until(lambda: bool(peer.received), max_time=start + 5.0)
    assert peer.received == [(b"hello peer", relayed)]
    # ChannelBind round trip (20 ms), then client -> relay (10 ms) -> peer (0 ms).
    assert net.now - start == pytest.approx(0.03)
    peer.send(b"hello client", relayed)
    net.scheduler.run_for(1.0)
    assert driver.events[-1] == DataReceived(b"hello client", peer.address)
    assert net.counters["drop-filtered"] == 0

    # The same server also serves IPv4 clients (one core; its IPv6 address is an alias).
    lan4 = net.add_lan("lan4", "10.4.0.0/24", SYMMETRIC, link=LATENCY)
    turn4 = TurnClient(
        (turn_host.ip, 3478), TurnClientConfig(username="u", password="p"), rng=random.Random(2)
    )
    driver4 = TurnDriver(net, net.add_host("client4", lan4).bind(5000), turn4)
    turn4.allocate(now=net.now)
    driver4.pump()
    assert net.scheduler.run_until(lambda: turn4.state is TurnState.ALLOCATED, max_time=20.0)
    assert turn4.relayed_address is not None
    assert turn4.relayed_address[0] == turn_host.ip
    assert turn4.mapped_address is not None
    assert turn4.mapped_address[0] == lan4.external_ip
    assert len(server.endpoints) == 4  # two listening addresses, two relays
