"""RFC 4787 NAT behaviour of the vnet presets, in virtual time."""

from __future__ import annotations

import pytest
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
)

LATENCY = LinkConditions(latency=0.01)


def setup(behavior: NatBehavior, *, seed: int = 1) -> tuple[Network, Router, Host, Host, Host]:
    """A LAN behind ``behavior`` with one client, and two servers on the internet."""
    net = Network(seed=seed)
    lan = net.add_lan("lan", "10.0.0.0/24", behavior, link=LATENCY)
    client = net.add_host("client", lan)
    s1 = net.add_host("s1")
    s2 = net.add_host("s2")
    return net, lan, client, s1, s2


def sources(endpoint: Endpoint) -> list[tuple[str, int]]:
    return [remote for _, remote in endpoint.received]


@pytest.mark.parametrize(
    ("behavior", "same_port"),
    [
        (FULL_CONE, True),
        (RESTRICTED_CONE, True),
        (PORT_RESTRICTED_CONE, True),
        (SYMMETRIC, False),
        (NatBehavior(mapping=Dependency.ADDRESS_DEPENDENT), False),
    ],
)
def test_mapping_reuse(behavior: NatBehavior, same_port: bool) -> None:
    net, lan, client, s1, s2 = setup(behavior)
    ep = client.bind(5000)
    a = s1.bind(1000)
    b = s2.bind(2000)
    a_other_port = s1.bind(1001)
    ep.send(b"1", a.address)
    ep.send(b"2", b.address)
    ep.send(b"3", a_other_port.address)
    net.scheduler.run_for(1.0)
    (x1,), (x2,), (x3,) = sources(a), sources(b), sources(a_other_port)
    assert x1[0] == x2[0] == x3[0] == lan.external_ip
    assert x1 != ep.address
    if same_port:  # endpoint-independent mapping: one external address for all
        assert x1 == x2 == x3
        assert lan.nat is not None
        assert lan.nat.mappings == 1
    else:
        assert x1 != x2
        if behavior.mapping is Dependency.ADDRESS_DEPENDENT:
            assert x1 == x3  # same remote IP, other port: the same mapping
        else:
            assert x1 != x3
    # The same destination again reuses the mapping, whatever the behaviour.
    ep.send(b"4", a.address)
    net.scheduler.run_for(1.0)
    assert sources(a) == [x1, x1]


@pytest.mark.parametrize(
    ("behavior", "same_ip_other_port", "other_ip"),
    [
        (FULL_CONE, True, True),
        (RESTRICTED_CONE, True, False),
        (PORT_RESTRICTED_CONE, False, False),
        (SYMMETRIC, False, False),
    ],
)
def test_filtering(behavior: NatBehavior, same_ip_other_port: bool, other_ip: bool) -> None:
    net, _, client, s1, s2 = setup(behavior)
    ep = client.bind(5000)
    contacted = s1.bind(1000)
    sibling = s1.bind(1001)  # the contacted IP, another port
    stranger = s2.bind(1000)  # another IP

    # Unsolicited before any outbound packet: no mapping, always dropped.
    lan_ip = net.routers[1].external_ip
    assert lan_ip is not None
    stranger.send(b"early", (lan_ip, 5000))
    net.scheduler.run_for(1.0)
    assert net.counters["drop-filtered"] == 1
    assert ep.received == []

    ep.send(b"out", contacted.address)
    net.scheduler.run_for(1.0)
    (external,) = sources(contacted)
    contacted.send(b"reply", external)
    sibling.send(b"sibling", external)
    stranger.send(b"stranger", external)
    net.scheduler.run_for(1.0)

    got = [data for data, _ in ep.received]
    expected = [b"reply"]
    if same_ip_other_port:
        expected.append(b"sibling")
    if other_ip:
        expected.append(b"stranger")
    assert got == expected
    assert net.counters["drop-filtered"] == 1 + (3 - len(expected))
    assert ep.received[0][1] == contacted.address  # the real source, un-NATed


@pytest.mark.parametrize("preserve", [False, True])
def test_mapping_lifetime(preserve: bool) -> None:
    behavior = NatBehavior(
        mapping=Dependency.ENDPOINT_INDEPENDENT,
        filtering=Dependency.ENDPOINT_INDEPENDENT,
        mapping_lifetime=10.0,
        port_preservation=preserve,
    )
    net, _, client, s1, _ = setup(behavior)
    ep = client.bind(5000)
    server = s1.bind(1000)
    ep.send(b"a", server.address)
    net.scheduler.run_for(1.0)
    (x1,) = sources(server)

    # Outbound traffic keeps the mapping alive past its first lifetime.
    net.scheduler.run_until(max_time=8.0)
    ep.send(b"keepalive", server.address)
    net.scheduler.run_until(max_time=15.0)
    server.send(b"still", x1)
    net.scheduler.run_for(1.0)
    assert [d for d, _ in ep.received] == [b"still"]
    assert sources(server) == [x1, x1]

    # Then silence for longer than the lifetime: inbound is dropped.
    net.scheduler.run_until(max_time=30.0)
    dropped = net.counters["drop-filtered"]
    server.send(b"late", x1)
    net.scheduler.run_for(1.0)
    assert net.counters["drop-filtered"] == dropped + 1
    assert [d for d, _ in ep.received] == [b"still"]

    # A new outbound packet creates a new mapping.
    ep.send(b"again", server.address)
    net.scheduler.run_for(1.0)
    x2 = sources(server)[-1]
    if preserve:
        assert x1 == x2 == (x1[0], 5000)
    else:
        assert x2 != x1
        assert x1[1] != 5000 or x2[1] != 5000


def test_port_preservation() -> None:
    behavior = NatBehavior(port_preservation=True)
    net, lan, client, s1, _ = setup(behavior)
    other = net.add_host("other", lan)
    server = s1.bind(1000)
    ep = client.bind(5000)
    ep2 = other.bind(5000)  # the same internal port on another host: a conflict
    ep3 = client.bind(5001)
    ep.send(b"1", server.address)
    ep2.send(b"2", server.address)
    ep3.send(b"3", server.address)
    net.scheduler.run_for(1.0)
    x1, x2, x3 = sources(server)
    assert x1 == (lan.external_ip, 5000)
    assert x2[0] == lan.external_ip
    assert x2[1] != 5000
    assert x3 == (lan.external_ip, 5001)

    # Without it the port is a random one (deterministic in the seed).
    net2, lan2, client2, s1b, _ = setup(NatBehavior())
    server2 = s1b.bind(1000)
    client2.bind(5000).send(b"1", server2.address)
    net2.scheduler.run_for(1.0)
    ((ip, port),) = sources(server2)
    assert ip == lan2.external_ip
    assert port != 5000


@pytest.mark.parametrize("hairpinning", [False, True])
def test_hairpinning(hairpinning: bool) -> None:
    behavior = NatBehavior(
        mapping=Dependency.ENDPOINT_INDEPENDENT,
        filtering=Dependency.ENDPOINT_INDEPENDENT,
        hairpinning=hairpinning,
    )
    net, _, a_host, s1, _ = setup(behavior)
    b_host = net.add_host("b", net.routers[1])
    server = s1.bind(3478)
    a = a_host.bind(5000)
    b = b_host.bind(5000)
    # Both learn their external addresses from a server (as STUN would).
    a.send(b"a", server.address)
    b.send(b"b", server.address)
    net.scheduler.run_for(1.0)
    xa, xb = sources(server)
    assert xa != xb
    assert xa[0] == xb[0]

    a.send(b"hello b", xb)
    net.scheduler.run_for(1.0)
    if hairpinning:
        # RFC 4787 REQ-9: the hairpinned packet comes from a's external address.
        assert b.received == [(b"hello b", xa)]
        b.send(b"hello a", xa)
        net.scheduler.run_for(1.0)
        assert a.received == [(b"hello a", xb)]
        assert net.counters["drop-hairpin"] == 0
    else:
        assert b.received == []
        assert net.counters["drop-hairpin"] == 1
    # Hairpinned packets never leave the LAN.
    assert len(server.received) == 2


def test_udp_blocked() -> None:
    net, lan, client, s1, _ = setup(UDP_BLOCKED)
    server = s1.bind(3478)
    ep = client.bind(5000)
    for i in range(10):
        ep.send(bytes([i]), server.address)
    net.scheduler.run_for(1.0)
    assert server.received == []
    assert net.counters["drop-blocked"] == 10
    assert net.counters["deliver"] == 0
    assert lan.nat is not None
    assert lan.nat.mappings == 0
    # Inside the LAN, traffic still flows: only the NAT blocks.
    neighbour = net.add_host("n", lan).bind(6000)
    ep.send(b"local", neighbour.address)
    net.scheduler.run_for(1.0)
    assert neighbour.received == [(b"local", ep.address)]
