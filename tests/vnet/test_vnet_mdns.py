"""mDNS over the virtual network: multicast stays on its LAN segment."""

from __future__ import annotations

from functools import partial

from aioice.mdns import MdnsConfig, MdnsService, Resolved, ResolveFailed
from aioice.stun import Address
from aioice.vnet import PORT_RESTRICTED_CONE, Endpoint, Host, Network


class MdnsNode:
    """An MdnsService on a virtual host's port 5353, pumped in virtual time."""

    def __init__(self, network: Network, host: Host) -> None:
        self.network = network
        self.service = MdnsService(MdnsConfig(families=(4,)))
        self.events: list[object] = []
        self.endpoint: Endpoint = host.bind(5353, self.received)

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


def test_resolve_on_the_same_lan_and_not_across_routers() -> None:
    network = Network(seed=6762)
    lan = network.add_lan("home", "10.1.0.0/24", PORT_RESTRICTED_CONE)
    other = network.add_lan("office", "10.2.0.0/24", PORT_RESTRICTED_CONE)
    publisher = MdnsNode(network, network.add_host("a", lan))
    neighbour = MdnsNode(network, network.add_host("b", lan))
    stranger = MdnsNode(network, network.add_host("c", other))

    publisher.service.publish("7b4e9c2a-0d1f-4c56-9a3e-2f1b8d6c5e4a.local", "10.1.0.1", now=0.0)
    publisher.pump()
    neighbour.service.resolve("7b4e9c2a-0d1f-4c56-9a3e-2f1b8d6c5e4a.local", now=0.0)
    neighbour.pump()
    stranger.service.resolve("7b4e9c2a-0d1f-4c56-9a3e-2f1b8d6c5e4a.local", now=0.0)
    stranger.pump()
    network.scheduler.run_until(max_time=5.0)

    assert [e for e in neighbour.events if isinstance(e, Resolved)] == [
        Resolved("7b4e9c2a-0d1f-4c56-9a3e-2f1b8d6c5e4a.local", ("10.1.0.1",))
    ]
    # Multicast is link-local: the other LAN never hears the question, and gives up at 3 s.
    assert stranger.events == [ResolveFailed("7b4e9c2a-0d1f-4c56-9a3e-2f1b8d6c5e4a.local")]
    assert network.counters["nat-out"] == 0
