"""The sans-I/O ICE agent, driven by hand from now = 0.0 (no NAT: a plain wire)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest
from aioice.ice.agent import IceAgent
from aioice.ice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice.config import IceConfig
from aioice.ice.events import (
    IceEvent,
    IceState,
    IceStateChanged,
    SelectedPairChanged,
)
from aioice.stun import Address, Class, Message, parse_message
from aioice.vnet import Scheduler


def host(ip: str, port: int, component: int = 1) -> Candidate:
    return Candidate(
        foundation=candidate_foundation("host", "udp", ip),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host"),
        host=ip,
        port=port,
        type="host",
    )


@dataclass
class Wire:
    """Agents joined by a wire with a fixed one-way latency; ``drop`` filters datagrams."""

    latency: float = 0.01
    scheduler: Scheduler = field(default_factory=Scheduler)
    owners: dict[Address, IceAgent] = field(default_factory=dict)
    events: dict[int, list[IceEvent]] = field(default_factory=dict)
    log: list[tuple[float, Address, Address, Message]] = field(default_factory=list)
    drop: Callable[[Address, Address, Message], bool] = lambda src, dst, msg: False
    _timers: dict[int, float | None] = field(default_factory=dict)

    def add(self, agent: IceAgent, *addresses: Address) -> None:
        self.events[id(agent)] = []
        for address in addresses:
            self.owners[address] = agent

    def pump(self, agent: IceAgent) -> None:
        now = self.scheduler.now
        for transmit in agent.datagrams_to_send():
            assert transmit.local is not None
            message = parse_message(transmit.data)
            self.log.append((now, transmit.local, transmit.remote, message))
            if self.drop(transmit.local, transmit.remote, message):
                continue
            target = self.owners.get(transmit.remote)
            if target is not None:
                self.scheduler.call_later(
                    self.latency,
                    partial(self._deliver, target, transmit.data, transmit.remote, transmit.local),
                )
        while (event := agent.next_event()) is not None:
            self.events[id(agent)].append(event)
        at = agent.get_timer()
        if at is not None and self._timers.get(id(agent)) != at:
            self._timers[id(agent)] = at
            self.scheduler.call_at(at, partial(self._fire, agent, at))

    def _deliver(self, agent: IceAgent, data: bytes, local: Address, remote: Address) -> None:
        agent.receive_datagram(data, local=local, remote=remote, now=self.scheduler.now)
        self.pump(agent)

    def _fire(self, agent: IceAgent, at: float) -> None:
        if self._timers.get(id(agent)) != at:
            return
        self._timers[id(agent)] = None
        agent.handle_timer(now=self.scheduler.now)
        self.pump(agent)

    def states(self, agent: IceAgent) -> list[IceState]:
        return [e.state for e in self.events[id(agent)] if isinstance(e, IceStateChanged)]

    def checks(self, src: Address | None = None) -> list[tuple[float, Address, Address, Message]]:
        return [
            entry
            for entry in self.log
            if entry[3].message_class == Class.REQUEST and (src is None or entry[1] == src)
        ]


def pair_up(
    wire: Wire,
    a_addresses: list[Address],
    b_addresses: list[Address],
    *,
    config: IceConfig | None = None,
    b_config: IceConfig | None = None,
) -> tuple[IceAgent, IceAgent]:
    a = IceAgent(controlling=True, config=config, rng=random.Random(1))
    b = IceAgent(controlling=False, config=b_config or config, rng=random.Random(2))
    wire.add(a, *a_addresses)
    wire.add(b, *b_addresses)
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for agent, addresses in ((a, a_addresses), (b, b_addresses)):
        for ip, port in addresses:
            agent.add_local_candidate(host(ip, port), now=0.0)
        agent.add_local_candidate(None, now=0.0)
    for agent, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            agent.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()), now=0.0)
        agent.add_remote_candidate(None, now=0.0)
    return a, b


def start(wire: Wire, *agents: IceAgent) -> None:
    for agent in agents:
        agent.start(now=wire.scheduler.now)
        wire.pump(agent)


def test_host_pair_connects_in_two_round_trips() -> None:
    wire = Wire(latency=0.01)
    a, b = pair_up(wire, [("10.0.0.1", 1000)], [("10.0.0.2", 2000)])
    start(wire, a, b)
    wire.scheduler.run_until(
        lambda: a.state is IceState.COMPLETED and b.state is IceState.COMPLETED, max_time=5
    )
    pa, pb = a.selected_pair(), b.selected_pair()
    assert pa is not None
    assert pb is not None
    assert pa.remote_address == ("10.0.0.2", 2000)
    assert pb.remote_address == ("10.0.0.1", 1000)
    assert wire.states(a) == [IceState.CHECKING, IceState.CONNECTED, IceState.COMPLETED]
    assert wire.states(b) == [IceState.CHECKING, IceState.CONNECTED, IceState.COMPLETED]
    # Both check at 0. Each check arrives while the receiver's own is in flight: a
    # triggered check goes at once (0.01, RFC 8445 §7.3.1.4). A's first check succeeds
    # at 0.02 and A nominates at once (the only pair); B selects when the USE-CANDIDATE
    # check arrives at 0.03, A on its response at 0.04.
    times = [(t, "USE-CANDIDATE" in m.attributes) for t, _, _, m in wire.checks()]
    assert times == [(0.0, False), (0.0, False), (0.01, False), (0.01, False), (0.02, True)]
    selected_at = {
        name: [e for e in wire.events[id(x)] if isinstance(e, SelectedPairChanged)]
        for name, x in (("a", a), ("b", b))
    }
    assert len(selected_at["a"]) == len(selected_at["b"]) == 1
    assert wire.scheduler.now == pytest.approx(0.04)
