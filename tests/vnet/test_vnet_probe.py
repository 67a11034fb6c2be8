"""RFC 5780 NAT behaviour discovery over the virtual network, one NAT preset at a time."""

from __future__ import annotations

import pytest
from aioice.stun import FilteringBehavior, MappingBehavior, NatBehaviorDiscovery
from aioice.stun import NatBehavior as Discovered
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    RESTRICTED_CONE,
    SYMMETRIC,
    Dependency,
    LinkConditions,
    NatBehavior,
    Network,
    stun_server,
)

EIM = MappingBehavior.ENDPOINT_INDEPENDENT
ADM = MappingBehavior.ADDRESS_DEPENDENT
APDM = MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
EIF = FilteringBehavior.ENDPOINT_INDEPENDENT
ADF = FilteringBehavior.ADDRESS_DEPENDENT
APDF = FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT


def discover(behavior: NatBehavior | None, *, seed: int = 1) -> tuple[Discovered, Network]:
    """Run NatBehaviorDiscovery from a client behind ``behavior`` (None: on the internet)."""
    net = Network(seed=seed)
    server_host = net.add_host("stun")
    stun_server(server_host, rfc5780=True)
    if behavior is None:
        client = net.add_host("client")
    else:
        lan = net.add_lan("lan", "10.0.0.0/24", behavior, link=LinkConditions(latency=0.02))
        client = net.add_host("client", lan)
    probe = NatBehaviorDiscovery((server_host.ip, 3478), local_addresses=[(client.ip, 5000)])
    armed: list[float] = []

    def fire(at: float) -> None:
        if probe.get_timer() == at:
            probe.handle_timer(now=net.now)
            pump()

    def pump() -> None:
        for transmit in probe.datagrams_to_send():
            endpoint.send(transmit.data, transmit.remote)
        at = probe.get_timer()
        if at is not None and (not armed or armed[-1] != at):
            armed.append(at)
            net.scheduler.call_at(at, lambda: fire(at))

    def receive(data: bytes, remote: tuple[str, int]) -> None:
        probe.receive_datagram(data, remote=remote, now=net.now)
        pump()

    endpoint = client.bind(5000, receive)
    probe.start(now=net.now)
    pump()
    assert net.scheduler.run_until(lambda: probe.done, max_time=60.0)
    return probe.result(), net


@pytest.mark.parametrize(
    ("behavior", "mapping", "filtering"),
    [
        pytest.param(FULL_CONE, EIM, EIF, id="full-cone"),
        pytest.param(RESTRICTED_CONE, EIM, ADF, id="restricted-cone"),
        pytest.param(PORT_RESTRICTED_CONE, EIM, APDF, id="port-restricted-cone"),
        pytest.param(SYMMETRIC, APDM, APDF, id="symmetric"),
        pytest.param(
            NatBehavior(
                mapping=Dependency.ADDRESS_DEPENDENT, filtering=Dependency.ADDRESS_DEPENDENT
            ),
            ADM,
            ADF,
            id="address-dependent",
        ),
    ],
)
def test_probe_classifies_nat(
    behavior: NatBehavior, mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    result, net = discover(behavior)
    assert result.mapping is mapping
    assert result.filtering is filtering
    assert result.behind_nat
    lan = net.routers[1]
    assert result.mapped_address[0] == lan.external_ip
    # Filtering tests that get no answer are dropped by the NAT, not lost.
    if filtering is not EIF:
        assert net.counters["drop-filtered"] > 0
    else:
        assert net.counters["drop-filtered"] == 0
    assert net.counters["drop-loss"] == 0


def test_probe_without_nat() -> None:
    result, net = discover(None)
    assert result.mapping is EIM
    assert result.filtering is EIF
    assert not result.behind_nat
    assert result.mapped_address == (net.routers[0].hosts[result.mapped_address[0]].ip, 5000)
    assert net.counters["drop-filtered"] == 0
    assert net.counters["nat-out"] == 0


def test_probe_is_fast_in_virtual_time() -> None:
    # Full cone: test I, filtering test II, mapping test II, one round trip of 40 ms each.
    _, net = discover(FULL_CONE)
    assert net.now == pytest.approx(3 * 0.04)
    # A port-restricted one waits out two filtering tests (RTO 0.25 s, 3 retransmissions).
    _, net = discover(PORT_RESTRICTED_CONE)
    assert 3 * 0.04 + 2 * 0.25 < net.now < 60.0
