"""The sans-I/O ICE agent, driven by hand from now = 0.0 over a plain wire (str0m style).

Agents are joined by a :class:`Wire` with a fixed one-way latency in virtual time
(:class:`aioice.vnet.Scheduler`). The wire can drop datagrams, put an endpoint behind a
one-to-one NAT, and log everything sent, so tests assert exact times and counts.
Every run is bounded in virtual time and in steps, and the wire checks the timer
contract: after ``handle_timer(now)``, ``get_timer()`` is ``None`` or later than ``now``
(a deadline in the past would make an adapter spin).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple, Protocol, TypeVar

import pytest
from aioice.ice.agent import IceAgent
from aioice.ice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice.config import IceConfig, Nomination
from aioice.ice.events import (
    ConsentExpired,
    IceEvent,
    IceState,
    IceStateChanged,
    LocalCandidateDiscovered,
    PairStateChanged,
    RemoteCandidateDiscovered,
    RoleChanged,
    SelectedPairChanged,
)
from aioice.ice.pair import PairState
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    StunParseError,
    TransactionConfig,
    Transmit,
    parse_message,
)
from aioice.vnet import Scheduler

A1: Address = ("10.0.0.1", 1000)
B1: Address = ("10.0.0.2", 2000)
MAX_STEPS = 100_000
#: A check transaction that gives up quickly: sent at t and t + 0.1, fails at t + 0.3.
SHORT = TransactionConfig(rto=0.1, retransmissions=1, rm=2)
#: One that outlives the failure timeout: RFC 8489's Rm = 16, so it fails at t + 15.9.
LONG = TransactionConfig(rto=0.5, retransmissions=6, max_rto=1.6, rm=16)

E = TypeVar("E")


def host(ip: str, port: int, component: int = 1, pref: int = 65535) -> Candidate:
    return Candidate(
        foundation=candidate_foundation("host", "udp", ip),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host", pref),
        host=ip,
        port=port,
        type="host",
    )


def address(candidate: Candidate) -> Address:
    return (candidate.host, candidate.port)


class Endpoint(Protocol):
    """What the wire drives: an :class:`IceAgent`, or a hand-written peer."""

    def receive_datagram(
        self, data: bytes, *, local: Address, remote: Address, now: float
    ) -> None: ...

    def handle_timer(self, *, now: float) -> None: ...

    def datagrams_to_send(self) -> list[Transmit]: ...

    def next_event(self) -> IceEvent | None: ...

    def get_timer(self) -> float | None: ...


class Sent(NamedTuple):
    at: float
    src: Address
    dst: Address
    msg: Message


def _never(src: Address, dst: Address, msg: Message) -> bool:
    return False


@dataclass
class Wire:
    """Endpoints joined by a wire with a fixed one-way latency.

    ``drop(src, dst, message)`` filters what is sent (``src`` is the sender's base).
    ``nat`` maps an internal address to its public one: the receiver sees the public
    source, datagrams to the public address reach the internal one, and the internal
    address cannot be reached from outside.
    """

    latency: float = 0.01
    scheduler: Scheduler = field(default_factory=Scheduler)
    owners: dict[Address, Endpoint] = field(default_factory=dict)
    events: dict[int, list[tuple[float, IceEvent]]] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)
    drop: Callable[[Address, Address, Message], bool] = _never
    nat: dict[Address, Address] = field(default_factory=dict)
    _timers: dict[int, float | None] = field(default_factory=dict)

    @property
    def now(self) -> float:
        return self.scheduler.now

    def add(self, endpoint: Endpoint, *addresses: Address) -> None:
        self.events[id(endpoint)] = []
        for addr in addresses:
            self.owners[addr] = endpoint

    def pump(self, endpoint: Endpoint) -> None:
        """The drain rule: send everything, collect the events, re-arm the timer."""
        now = self.now
        public = {ext: internal for internal, ext in self.nat.items()}
        for transmit in endpoint.datagrams_to_send():
            assert transmit.local is not None
            message = parse_message(transmit.data)
            self.log.append(Sent(now, transmit.local, transmit.remote, message))
            if self.drop(transmit.local, transmit.remote, message) or transmit.remote in self.nat:
                continue
            source = self.nat.get(transmit.local, transmit.local)
            destination = public.get(transmit.remote, transmit.remote)
            target = self.owners.get(destination)
            if target is not None:
                self.scheduler.call_later(
                    self.latency,
                    partial(self._deliver, target, transmit.data, destination, source),
                )
        while (event := endpoint.next_event()) is not None:
            self.events[id(endpoint)].append((now, event))
        at = endpoint.get_timer()
        if at is not None and self._timers.get(id(endpoint)) != at:
            self._timers[id(endpoint)] = at
            self.scheduler.call_at(at, partial(self._fire, endpoint, at))

    def _deliver(self, endpoint: Endpoint, data: bytes, local: Address, remote: Address) -> None:
        endpoint.receive_datagram(data, local=local, remote=remote, now=self.now)
        self.pump(endpoint)

    def _fire(self, endpoint: Endpoint, at: float) -> None:
        if self._timers.get(id(endpoint)) != at:
            return
        self._timers[id(endpoint)] = None
        now = self.now
        endpoint.handle_timer(now=now)
        self.pump(endpoint)
        after = endpoint.get_timer()
        assert after is None or after > now, f"timer did not advance: {after} at {now}"

    def run(self, until: Callable[[], bool] | None = None, *, max_time: float) -> bool:
        return self.scheduler.run_until(until, max_time=max_time, max_steps=MAX_STEPS)

    # -- what happened --------------------------------------------------------------------

    def of(self, endpoint: Endpoint, kind: type[E]) -> list[tuple[float, E]]:
        """``endpoint``'s events of one kind, with the (rounded) time they were drained."""
        return [(t6(t), e) for t, e in self.events[id(endpoint)] if isinstance(e, kind)]

    def states(self, endpoint: Endpoint) -> list[tuple[float, IceState]]:
        return [(t, e.state) for t, e in self.of(endpoint, IceStateChanged)]

    def requests(self, src: Address | None = None, *, first: bool = False) -> list[Sent]:
        """Binding requests sent (from base ``src``); ``first``: not retransmissions."""
        seen: set[bytes] = set()
        found = []
        for entry in self.log:
            if entry.msg.message_class != Class.REQUEST or (src is not None and entry.src != src):
                continue
            if first and entry.msg.transaction_id in seen:
                continue
            seen.add(entry.msg.transaction_id)
            found.append(entry)
        return found


def t6(t: float) -> float:
    return round(t, 6)


def times(entries: list[Sent]) -> list[float]:
    return [t6(entry.at) for entry in entries]


def make(
    wire: Wire,
    a_candidates: list[Candidate],
    b_candidates: list[Candidate],
    *,
    config: IceConfig | None = None,
    b_config: IceConfig | None = None,
    components: int = 1,
    remote_end: bool = True,
    local_end: bool = True,
) -> tuple[IceAgent, IceAgent]:
    """A (controlling, seed 1) and B (controlled, seed 2), with each other's
    credentials and candidates (through SDP), not started."""
    a = IceAgent(controlling=True, components=components, config=config, rng=random.Random(1))
    b = IceAgent(
        controlling=False, components=components, config=b_config or config, rng=random.Random(2)
    )
    wire.add(a, *map(address, a_candidates))
    wire.add(b, *map(address, b_candidates))
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for agent, candidates in ((a, a_candidates), (b, b_candidates)):
        for candidate in candidates:
            agent.add_local_candidate(candidate, now=0.0)
        if local_end:
            agent.add_local_candidate(None, now=0.0)
    for agent, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            agent.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()), now=0.0)
        if remote_end:
            agent.add_remote_candidate(None, now=0.0)
    return a, b


def start(wire: Wire, *agents: IceAgent) -> None:
    for agent in agents:
        agent.start(now=wire.now)
        wire.pump(agent)


def completed(*agents: IceAgent) -> Callable[[], bool]:
    return lambda: all(agent.state is IceState.COMPLETED for agent in agents)


def connect(wire: Wire, a: IceAgent, b: IceAgent, *, max_time: float = 5.0) -> None:
    start(wire, a, b)
    assert wire.run(completed(a, b), max_time=max_time)


def selected(wire: Wire, agent: IceAgent) -> list[tuple[float, Address, Address]]:
    """When ``agent`` selected which pair, as (time, base, remote address)."""
    return [(t, e.pair.base, e.pair.remote_address) for t, e in wire.of(agent, SelectedPairChanged)]


USE = "USE-CANDIDATE"


# -- 1. host-host ------------------------------------------------------------------------


def test_host_pair_connects_in_two_round_trips() -> None:
    wire = Wire(latency=0.01)
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    pa, pb = a.selected_pair(), b.selected_pair()
    assert pa is not None
    assert pb is not None
    assert pa.remote_address == B1
    assert pb.remote_address == A1
    assert wire.states(a) == [
        (0.0, IceState.CHECKING),
        (0.04, IceState.CONNECTED),
        (0.04, IceState.COMPLETED),
    ]
    assert wire.states(b) == [
        (0.0, IceState.CHECKING),
        (0.03, IceState.CONNECTED),
        (0.03, IceState.COMPLETED),
    ]
    # Both check at 0. Each check arrives while the receiver's own is in flight: a
    # triggered check goes at once (0.01, RFC 8445 §7.3.1.4). A's first check succeeds
    # at 0.02 and A nominates at once (the only pair); B selects when the USE-CANDIDATE
    # check arrives at 0.03, A on its response at 0.04.
    checks = [(t6(s.at), USE in s.msg.attributes) for s in wire.requests()]
    assert checks == [(0.0, False), (0.0, False), (0.01, False), (0.01, False), (0.02, True)]
    assert selected(wire, a) == [(0.04, A1, B1)]
    assert selected(wire, b) == [(0.03, B1, A1)]
    assert wire.now == pytest.approx(0.04)
    assert a.dropped == b.dropped == {}
    assert pa.stats.rtt == pytest.approx(0.02)
    # Ten datagrams in all: five checks, five responses. Counters per pair (str0m's
    # IceAgentStats): sent, received, answered, and successes received.
    assert len(wire.log) == 10
    stats = [(p.stats.requests_sent, p.stats.requests_received) for p in (pa, pb)]
    assert stats == [(3, 2), (2, 3)]
    assert [(p.stats.responses_sent, p.stats.responses_received) for p in (pa, pb)] == [
        (2, 3),
        (3, 2),
    ]


# Two host candidates on A: X (local preference 65535) and Y (65534); B has one.
X: Address = ("10.0.1.1", 1001)
Y: Address = ("10.0.0.1", 1000)


def _two_paths(unreachable: Address, latency: float = 0.01) -> tuple[Wire, IceAgent, IceAgent]:
    wire = Wire(latency=latency)
    wire.drop = lambda src, dst, msg: unreachable in (src, dst)
    a, b = make(wire, [host(*X, pref=65535), host(*Y, pref=65534)], [host(*B1)])
    start(wire, a, b)
    assert wire.run(completed(a, b), max_time=5)
    return wire, a, b


def test_unreachable_best_pair_gets_two_round_trips() -> None:
    # X is the best pair but unreachable. Checks go X at 0, Y at 0.05 (Ta); Y succeeds
    # at 0.07 with an RTT of 0.02. X, in flight since 0, has had max(2 RTT, Ta) = 0.05 to
    # answer, so A nominates Y at once.
    wire, a, b = _two_paths(unreachable=X)
    assert times(wire.requests(Y, first=True)) == [0.05, 0.06, 0.07]
    nominations = [s for s in wire.requests() if USE in s.msg.attributes]
    assert [(t6(s.at), s.src, s.dst) for s in nominations] == [(0.07, Y, B1)]
    assert selected(wire, a) == [(0.09, Y, B1)]
    assert selected(wire, b) == [(0.08, B1, Y)]
    pair_x = a.pair_for(1, X, B1)
    assert pair_x is not None
    assert pair_x.state is PairState.IN_PROGRESS  # cancelled, still heard for a while
    # The check to X stopped before its first retransmission (0.5): Y was selected.
    assert times(wire.requests(X)) == [0.0]
    # X's check; Y's three checks and two responses; B's two checks, one triggered
    # check and three responses.
    assert [len([s for s in wire.log if s.src == src]) for src in (X, Y, B1)] == [1, 5, 6]


def test_valid_pair_that_is_best_possible_is_nominated_at_once() -> None:
    # Y is now the unreachable one and X, the best pair, succeeds at 0.02: nothing better
    # is pending, so A nominates at once.
    wire, a, b = _two_paths(unreachable=Y)
    nominations = [s for s in wire.requests() if USE in s.msg.attributes]
    assert [(t6(s.at), s.src) for s in nominations] == [(0.02, X)]
    assert selected(wire, a) == [(0.04, X, B1)]
    assert selected(wire, b) == [(0.03, B1, X)]
    assert wire.states(a)[-1] == (0.04, IceState.COMPLETED)


def test_nomination_waits_for_a_better_pair_at_most_nomination_delay() -> None:
    # 0.3 s each way: Y succeeds at 0.05 + 0.6 = 0.65 with an RTT of 0.6, so X (in flight
    # since 0) would get until 0 + 1.2; nomination_delay caps the wait at 0.65 + 0.5.
    wire, a, _ = _two_paths(unreachable=X, latency=0.3)
    nominations = [s for s in wire.requests() if USE in s.msg.attributes]
    # Sent at 1.15, retransmitted at 1.65 (RTO 0.5 < RTT), answered at 1.75.
    assert [(t6(s.at), s.src) for s in nominations] == [(1.15, Y), (1.65, Y)]
    assert len({s.msg.transaction_id for s in nominations}) == 1
    assert selected(wire, a) == [(1.75, Y, B1)]


# -- 2. pacing, Frozen and Waiting --------------------------------------------------------


def test_ordinary_checks_are_paced_by_ta() -> None:
    # Five remote candidates with five foundations: five Waiting pairs, checked in
    # priority order exactly Ta apart. Nothing answers (B is not on the wire).
    wire = Wire()
    a = IceAgent(controlling=True, rng=random.Random(1))
    wire.add(a, A1)
    a.set_remote_credentials("peer", "peerpasswordpeerpassword")
    a.add_local_candidate(host(*A1), now=0.0)
    remotes = [host(f"10.0.0.{10 + i}", 3000, pref=60000 + i) for i in range(5)]
    for remote in remotes:
        a.add_remote_candidate(remote, now=0.0)
    assert [p.state for p in a.pairs] == [PairState.FROZEN] * 5  # until start()
    start(wire, a)
    wire.run(max_time=0.45)
    first = wire.requests(first=True)
    assert times(first) == [0.0, 0.05, 0.1, 0.15, 0.2]
    assert [s.dst for s in first] == [address(r) for r in reversed(remotes)]
    assert all(p.state is PairState.IN_PROGRESS for p in a.pairs)
    # Then only retransmissions, each 0.5 s after its first send.
    wire.run(max_time=0.71)
    assert times(wire.requests())[5:] == [0.5, 0.55, 0.6, 0.65, 0.7]


def _frozen_setup(config: IceConfig | None = None) -> tuple[Wire, IceAgent, IceAgent]:
    # B: P1..P3 share an IP (one foundation), Q has its own. A is controlled, so it
    # keeps checking after successes (nobody nominates: B is never started).
    wire = Wire()
    a = IceAgent(controlling=False, config=config, rng=random.Random(1))
    b = IceAgent(controlling=True, rng=random.Random(2))
    remotes = [
        host("10.0.0.2", 2000, pref=65535),
        host("10.0.0.2", 2001, pref=65534),
        host("10.0.0.2", 2002, pref=65533),
        host("10.0.0.3", 3000, pref=65532),
    ]
    wire.add(a, A1)
    wire.add(b, *map(address, remotes))
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    a.add_local_candidate(host(*A1), now=0.0)
    for remote in remotes:
        b.add_local_candidate(remote, now=0.0)
        a.add_remote_candidate(Candidate.from_sdp(remote.to_sdp()), now=0.0)
    return wire, a, b


def test_initial_states_one_waiting_pair_per_foundation() -> None:
    wire, a, _ = _frozen_setup()
    # Pairs wait Frozen until start(); then, §6.1.2.6: per foundation the pair with the
    # lowest component and highest priority is Waiting, the others stay Frozen.
    assert all(p.state is PairState.FROZEN for p in a.pairs)
    a.set_remote_credentials("peer", "peerpasswordpeerpassword")
    a.start(now=0.0)
    waiting = [e.pair.remote_address[1] for e in _pair_events(a, wire, PairState.WAITING)]
    assert waiting == [2000, 3000]
    assert [(p.remote_address[1], p.state) for p in a.pairs] == [
        (2000, PairState.IN_PROGRESS),  # checked at once
        (2001, PairState.FROZEN),
        (2002, PairState.FROZEN),
        (3000, PairState.WAITING),
    ]


def test_initial_waiting_pair_does_not_depend_on_the_order_candidates_came_in() -> None:
    wire = Wire()
    a = IceAgent(controlling=False, rng=random.Random(1))
    wire.add(a, A1)
    a.add_local_candidate(host(*A1), now=0.0)
    # One foundation (one IP), added lowest priority first.
    for port, pref in ((2002, 65533), (2001, 65534), (2000, 65535)):
        a.add_remote_candidate(host("10.0.0.2", port, pref=pref), now=0.0)
    a.set_remote_credentials("peer", "peerpasswordpeerpassword")
    a.start(now=0.0)
    waiting = [e.pair.remote_address[1] for e in _pair_events(a, wire, PairState.WAITING)]
    assert waiting == [2000]


def _pair_events(agent: IceAgent, wire: Wire, state: PairState) -> list[PairStateChanged]:
    wire.pump(agent)
    return [e for _, e in wire.of(agent, PairStateChanged) if e.state is state]


def test_success_unfreezes_the_same_foundation() -> None:
    # §7.2.5.3.3: P1 succeeds at 0.02 and unfreezes P2 and P3, which (higher priority
    # than Q) are checked next: P2 at 0.05, P3 at 0.1, then Q at 0.15.
    wire, a, _ = _frozen_setup()
    start(wire, a)
    wire.run(max_time=0.3)
    first = wire.requests(A1, first=True)
    assert [(t6(s.at), s.dst[1]) for s in first] == [
        (0.0, 2000),
        (0.05, 2001),
        (0.1, 2002),
        (0.15, 3000),
    ]
    unfrozen = [(t, e.pair.remote_address[1]) for t, e in wire.of(a, PairStateChanged)]
    assert (0.02, 2001) in unfrozen
    assert (0.02, 2002) in unfrozen
    assert [p.state for p in a.pairs] == [PairState.SUCCEEDED] * 4
    assert a.state is IceState.CHECKING  # controlled: waits for a nomination


def test_frozen_pair_waits_for_its_foundation_to_finish() -> None:
    # Nothing answers: P1 at 0 and Q at 0.05 are checked, P2 stays Frozen while P1 is
    # in progress, and is unfrozen when P1 fails (0.3, §6.1.4.2); P3 when P2 fails.
    wire, a, _ = _frozen_setup(IceConfig(check=SHORT))
    wire.drop = lambda src, dst, msg: True
    start(wire, a)
    wire.run(max_time=2.0)
    first = wire.requests(A1, first=True)
    assert [(t6(s.at), s.dst[1]) for s in first] == [
        (0.0, 2000),
        (0.05, 3000),
        (0.3, 2001),
        (0.6, 2002),
    ]
    assert [p.state for p in a.pairs] == [PairState.FAILED] * 4
    assert a.get_timer() is None


def test_frozen_component_does_not_spin_while_its_foundation_is_checked() -> None:
    # Regression: with a latency above Ta, component 2's pair is Frozen (same
    # foundation as component 1's, in progress) when Ta expires. The agent used to
    # return a timer in the past and spin at t = 0.05.
    wire = Wire(latency=0.1)
    a, b = make(
        wire,
        [host(*A1), host(A1[0], 1001, component=2)],
        [host(*B1), host(B1[0], 2001, component=2)],
        components=2,
    )
    connect(wire, a, b)
    first = wire.requests(A1, first=True) + wire.requests((A1[0], 1001), first=True)
    ordinary = sorted((t6(s.at), s.src[1], USE in s.msg.attributes) for s in first)
    # Component 2 is unfrozen when component 1's check succeeds at 0.2.
    assert ordinary[:3] == [(0.0, 1000, False), (0.1, 1000, False), (0.2, 1000, True)]
    assert (0.2, 1001, False) in ordinary
    assert wire.states(a)[1] == (0.6, IceState.CONNECTED)


# -- 3. triggered checks and peer-reflexive candidates ------------------------------------


def test_check_on_in_progress_pair_triggers_immediate_check() -> None:
    wire = Wire()
    lost: list[bytes] = []

    def drop(src: Address, dst: Address, msg: Message) -> bool:
        if src == A1 and msg.message_class == Class.REQUEST and not lost:
            lost.append(msg.transaction_id)
            return True
        return False

    wire.drop = drop
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    wire.run(max_time=1.0)
    # A's check at 0 is lost; B's arrives at 0.01, on A's In-Progress pair: A cancels
    # its check (never retransmitted) and sends a triggered one at once.
    a_checks = wire.requests(A1)
    assert [(t6(s.at), s.msg.transaction_id == lost[0]) for s in a_checks] == [
        (0.0, True),
        (0.01, False),
        (0.03, False),  # the nomination
    ]
    assert USE in a_checks[2].msg.attributes
    assert wire.states(a)[1] == (0.05, IceState.CONNECTED)
    assert len(wire.requests(B1)) == 1


def test_check_on_failed_pair_triggers_new_check() -> None:
    # A's check fails (nothing gets through before 1.0; short transactions: Failed at
    # 0.3). B starts at 1.0: its check on A's Failed pair triggers one at 1.01.
    wire = Wire()
    wire.drop = lambda src, dst, msg: wire.now < 1.0
    config = IceConfig(check=SHORT)
    a, b = make(wire, [host(*A1)], [host(*B1)], config=config, remote_end=False)
    start(wire, a)
    wire.run(max_time=1.0)
    pair = a.pair_for(1, A1, B1)
    assert pair is not None
    assert pair.state is PairState.FAILED
    assert a.state is IceState.CHECKING  # no remote end-of-candidates: not failed
    assert a.get_timer() is None
    start(wire, b)
    assert wire.run(completed(a, b), max_time=5)
    assert times(wire.requests(A1, first=True)) == [0.0, 1.01, 1.03]
    assert [(t, e.state) for t, e in wire.of(a, PairStateChanged)][-3:] == [
        (1.01, PairState.WAITING),
        (1.01, PairState.IN_PROGRESS),
        (1.03, PairState.SUCCEEDED),
    ]
    assert wire.states(a)[-1] == (1.05, IceState.COMPLETED)


def test_peer_reflexive_candidates_through_a_nat() -> None:
    # B sits behind a one-to-one NAT (192.168.1.2:2000 is 203.0.113.2:62000) and only
    # signals its private host candidate, which A cannot reach.
    public: Address = ("203.0.113.2", 62000)
    private: Address = ("192.168.1.2", 2000)
    wire = Wire(nat={private: public})
    a, b = make(wire, [host(*A1)], [host(*private)])
    connect(wire, a, b)
    # §7.3.1.3: B's check comes from an unknown address: a peer-reflexive remote
    # candidate with B's PRIORITY, and a triggered check to it.
    discovered = wire.of(a, RemoteCandidateDiscovered)
    assert len(discovered) == 1
    at, event = discovered[0]
    assert at == 0.01
    assert (event.candidate.type, address(event.candidate)) == ("prflx", public)
    assert event.candidate.priority == candidate_priority(1, "prflx")
    assert event.candidate in a.remote_candidates
    # §7.2.5.3.1: A's response maps B to its public address: a peer-reflexive local
    # candidate of B, based on its host address, with the PRIORITY it sent.
    learnt = wire.of(b, LocalCandidateDiscovered)
    assert len(learnt) == 1
    at, learnt_event = learnt[0]
    found = learnt_event.candidate
    assert at == 0.02
    assert (found.type, address(found)) == ("prflx", public)
    assert (found.related_address, found.related_port) == private
    assert found.priority == candidate_priority(1, "prflx")
    assert b.local_candidates[-1] is found
    # A selects the peer-reflexive pair, and B its host pair (same base, same socket).
    # The pair to B's private address ranks higher and is in flight since 0: it gets
    # max(2 RTT, Ta) = 0.05 to answer, so A nominates at 0.05.
    assert times([s for s in wire.requests(A1) if USE in s.msg.attributes]) == [0.05]
    assert selected(wire, a) == [(0.07, A1, public)]
    assert selected(wire, b) == [(0.06, private, A1)]
    pair = a.pair_for(1, A1, private)
    assert pair is not None
    assert pair.state is PairState.IN_PROGRESS  # unreachable, cancelled on selection


def test_response_from_another_address_fails_the_pair() -> None:
    # §7.2.5.2.1: B's private address is reached directly (the NAT is left out for
    # requests), but answers from its public one: A's check is not symmetric.
    public: Address = ("203.0.113.2", 62000)
    private: Address = ("192.168.1.2", 2000)
    wire = Wire(nat={private: public})
    a, b = make(wire, [host(*A1)], [host(*private)])
    wire.nat = {}
    start(wire, a)
    wire.run(max_time=0.005)
    wire.nat = {private: public}
    start(wire, b)
    assert wire.run(completed(a, b), max_time=5)
    pair = a.pair_for(1, A1, private)
    assert pair is not None
    assert pair.state is PairState.FAILED
    assert (0.02, PairState.FAILED) in [
        (t, e.state) for t, e in wire.of(a, PairStateChanged) if e.pair is pair
    ]
    assert selected(wire, a) == [(0.055, A1, public)]


# -- 4. checks before start ---------------------------------------------------------------


def test_checks_before_start_are_answered_and_triggered_on_start() -> None:
    wire = Wire()
    a = IceAgent(controlling=True, rng=random.Random(1))
    b = IceAgent(controlling=False, rng=random.Random(2))
    wire.add(a, A1)
    wire.add(b, B1)
    a.set_remote_credentials(b.local_username, b.local_password)
    for agent, addr in ((a, A1), (b, B1)):
        agent.add_local_candidate(host(*addr), now=0.0)
        agent.add_local_candidate(None, now=0.0)
    a.add_remote_candidate(host(*B1), now=0.0)
    a.add_remote_candidate(None, now=0.0)
    start(wire, a)
    wire.run(max_time=1.0)
    # B knows neither A's credentials nor its candidates, and has not started: it
    # answers A's check and A's nomination anyway (only its own password is needed).
    assert b.state is IceState.NEW
    assert [(t6(s.at), s.msg.message_class) for s in wire.log if s.src == B1] == [
        (0.01, Class.RESPONSE),
        (0.03, Class.RESPONSE),
    ]
    assert [(t, e.candidate.type) for t, e in wire.of(b, RemoteCandidateDiscovered)] == [
        (0.01, "prflx")
    ]
    (pair,) = b.pairs
    assert pair.state is PairState.WAITING
    assert pair.remote_nominated
    assert b.get_timer() is None  # nothing to do before start
    assert a.state is IceState.COMPLETED
    # Signalling catches up at 1.0: the peer-reflexive candidate becomes the host one,
    # and start() sends the triggered check at once; its success selects the pair.
    b.set_remote_credentials(a.local_username, a.local_password)
    b.add_remote_candidate(Candidate.from_sdp(host(*A1).to_sdp()), now=1.0)
    b.add_remote_candidate(None, now=1.0)
    assert len(b.remote_candidates) == 1
    assert b.remote_candidates[0].type == "host"
    assert len(b.pairs) == 1
    start(wire, b)
    assert wire.run(completed(b), max_time=5)
    assert times(wire.requests(B1)) == [1.0]
    assert selected(wire, b) == [(1.02, B1, A1)]
    assert wire.states(b) == [
        (1.0, IceState.CHECKING),
        (1.02, IceState.CONNECTED),
        (1.02, IceState.COMPLETED),
    ]


# -- 5. role conflicts --------------------------------------------------------------------

HIGH = 2**63
LOW = 2**62


@pytest.mark.parametrize("controlling", [True, False], ids=["both-controlling", "both-controlled"])
@pytest.mark.parametrize("a_wins", [True, False], ids=["a-wins", "b-wins"])
def test_role_conflict_on_request(controlling: bool, a_wins: bool) -> None:
    # §7.3.1.1: each side gets the other's conflicting check at 0.01, and the larger
    # tie-breaker ends up controlling. Both controlling: the loser yields on the
    # winner's check, and the winner answers the loser's check with 487. Both
    # controlled: the winner takes control on the loser's check, and the loser
    # answers the winner's check with 487. The 487 arrives once the sender of that
    # check has switched already: it does not switch back (§7.2.5.1), it retries.
    wire = Wire()
    a, b = make(wire, [host(*A1)], [host(*B1)])
    a.set_controlling(controlling)
    b.set_controlling(controlling)
    a.tie_breaker, b.tie_breaker = (HIGH, LOW) if a_wins else (LOW, HIGH)
    connect(wire, a, b)
    winner, loser = (a, b) if a_wins else (b, a)
    assert winner.controlling
    assert not loser.controlling
    # Both controlling: the loser yields. Both controlled: the winner takes control.
    switched = loser if controlling else winner
    assert wire.of(switched, RoleChanged) == [(0.01, RoleChanged(not controlling))]
    other = winner if switched is loser else loser
    assert wire.of(other, RoleChanged) == []
    # Exactly one 487, from the agent that did not switch.
    errors = [s for s in wire.log if s.msg.message_class == Class.ERROR]
    assert [(t6(s.at), s.msg.error_code) for s in errors] == [(0.01, 487)]
    assert errors[0].src == address(other.local_candidates[0])
    # Only the controlling agent nominates.
    nominations = [s for s in wire.requests() if USE in s.msg.attributes]
    assert {s.src for s in nominations} == {address(winner.local_candidates[0])}
    assert all("ICE-CONTROLLING" in s.msg.attributes for s in nominations)
    assert winner.selected_pair() is not None
    assert loser.selected_pair() is not None


@pytest.mark.parametrize("controlling", [True, False], ids=["both-controlling", "both-controlled"])
def test_role_conflict_on_487(controlling: bool) -> None:
    # The winner's own check is lost, so A (the loser when both control, the winner when
    # both are controlled) learns of the conflict only from B's 487 at 0.02: it switches
    # role and checks again at once, with the new role (§7.2.5.1).
    wire = Wire()
    dropped: list[Message] = []

    def drop(src: Address, dst: Address, msg: Message) -> bool:
        if src == B1 and msg.message_class == Class.REQUEST and not dropped:
            dropped.append(msg)
            return True
        return False

    wire.drop = drop
    a, b = make(wire, [host(*A1)], [host(*B1)])
    a.set_controlling(controlling)
    b.set_controlling(controlling)
    # Both controlling: B wins. Both controlled: A wins.
    a.tie_breaker, b.tie_breaker = (LOW, HIGH) if controlling else (HIGH, LOW)
    connect(wire, a, b)
    assert wire.of(a, RoleChanged) == [(0.02, RoleChanged(not controlling))]
    assert wire.of(b, RoleChanged) == []
    assert a.controlling is not controlling
    assert b.controlling is controlling
    errors = [(t6(s.at), s.src, s.msg.error_code) for s in wire.log if s.msg.error_code]
    assert errors == [(0.01, B1, 487)]
    retry = wire.requests(A1)[1]
    assert t6(retry.at) == 0.02
    role = "ICE-CONTROLLED" if controlling else "ICE-CONTROLLING"
    assert role in retry.msg.attributes
    assert (a.controlling, b.controlling) in ((True, False), (False, True))
    assert a.selected_pair() is not None
    assert b.selected_pair() is not None


# -- 6. aggressive nomination ------------------------------------------------------------


def test_aggressive_nomination_upgrades_to_a_better_pair() -> None:
    # A nominates aggressively: USE-CANDIDATE on every check. B -> X is cut until 0.3,
    # so A's check on X reaches B (which takes it as a nomination) but neither B's
    # answer nor B's own checks get back. Y succeeds first and both select it; when
    # B's retransmitted check on X succeeds (0.53), B moves to the better pair.
    wire = Wire()
    wire.drop = lambda src, dst, msg: (src, dst) == (B1, X) and wire.now < 0.3
    config = IceConfig(nomination=Nomination.AGGRESSIVE)
    a, b = make(wire, [host(*X, pref=65535), host(*Y, pref=65534)], [host(*B1)], config=config)
    start(wire, a, b)
    wire.run(max_time=2.0)
    a_checks = [s for s in wire.requests() if s.src in (X, Y)]
    assert a_checks
    assert all(USE in s.msg.attributes for s in a_checks)
    assert selected(wire, a) == [(0.07, Y, B1)]
    assert selected(wire, b) == [(0.07, B1, Y), (0.53, B1, X)]
    assert wire.states(b) == [
        (0.0, IceState.CHECKING),
        (0.07, IceState.CONNECTED),
        (0.53, IceState.COMPLETED),
    ]
    pair = b.selected_pair()
    assert pair is not None
    assert pair.remote_address == X
    assert pair.nominated


def test_aggressive_controlling_agent_selects_on_first_success() -> None:
    wire = Wire()
    config = IceConfig(nomination=Nomination.AGGRESSIVE)
    a, b = make(wire, [host(*A1)], [host(*B1)], config=config)
    connect(wire, a, b)
    # A's very first check carries USE-CANDIDATE: it is both check and nomination.
    assert [(t6(s.at), USE in s.msg.attributes) for s in wire.requests(A1)] == [
        (0.0, True),
        (0.01, True),
    ]
    assert selected(wire, a) == [(0.02, A1, B1)]
    assert selected(wire, b) == [(0.02, B1, A1)]


# -- 7. ICE-lite peer ---------------------------------------------------------------------


class LiteResponder:
    """A minimal ICE-lite agent: answers checks, never sends any (RFC 8445 §2.5)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.requests: list[Message] = []
        self.nominated: list[Address] = []
        self._pending: list[Transmit] = []

    def receive_datagram(self, data: bytes, *, local: Address, remote: Address, now: float) -> None:
        try:
            request = parse_message(data)
        except StunParseError:
            return
        username = request.attributes.get("USERNAME", "")
        if (
            request.message_class != Class.REQUEST
            or not username.startswith(f"{self.username}:")
            or not request.check_message_integrity(self.password.encode())
        ):
            return
        self.requests.append(request)
        if USE in request.attributes:
            self.nominated.append(remote)
        response = Message(
            Method.BINDING,
            Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": remote},
        )
        self._pending.append(Transmit(response.encode(self.password.encode()), remote, local))

    def handle_timer(self, *, now: float) -> None:
        pass

    def datagrams_to_send(self) -> list[Transmit]:
        pending, self._pending = self._pending, []
        return pending

    def next_event(self) -> IceEvent | None:
        return None

    def get_timer(self) -> float | None:
        return None


def test_full_agent_controls_and_nominates_with_lite_peer() -> None:
    wire = Wire()
    lite = LiteResponder("lite", "litepasswordlitepassword")
    wire.add(lite, B1)
    a = IceAgent(controlling=False, rng=random.Random(1))
    wire.add(a, A1)
    # §6.1.1: with a lite peer, the full agent is controlling whatever it was told.
    a.set_remote_credentials(lite.username, lite.password, lite=True)
    assert a.controlling
    assert a.remote_is_lite
    a.add_local_candidate(host(*A1), now=0.0)
    a.add_local_candidate(None, now=0.0)
    a.add_remote_candidate(host(*B1), now=0.0)
    a.add_remote_candidate(None, now=0.0)
    start(wire, a)
    assert wire.run(completed(a), max_time=5)
    # Check at 0, answered at 0.02; the only pair is the best: nominated at once.
    assert [(t6(s.at), USE in s.msg.attributes) for s in wire.requests(A1)] == [
        (0.0, False),
        (0.02, True),
    ]
    assert all("ICE-CONTROLLING" in r.attributes for r in lite.requests)
    assert lite.nominated == [A1]
    assert selected(wire, a) == [(0.04, A1, B1)]
    assert wire.states(a) == [
        (0.0, IceState.CHECKING),
        (0.04, IceState.CONNECTED),
        (0.04, IceState.COMPLETED),
    ]
    assert wire.of(a, RoleChanged) == []  # not a conflict
    # Consent freshness keeps going towards the lite peer.
    wire.run(max_time=20.0)
    assert a.state is IceState.COMPLETED
    assert len(lite.requests) >= 5


# -- 8. several components ----------------------------------------------------------------


def test_two_components_connected_only_when_both_are_selected() -> None:
    wire = Wire()
    a_ports, b_ports = [A1, (A1[0], 1001)], [B1, (B1[0], 2001)]
    a, b = make(
        wire,
        [host(*addr, component=i + 1) for i, addr in enumerate(a_ports)],
        [host(*addr, component=i + 1) for i, addr in enumerate(b_ports)],
        components=2,
    )
    connect(wire, a, b)
    for agent, ports in ((a, a_ports), (b, b_ports)):
        events = wire.of(agent, SelectedPairChanged)
        assert sorted(e.component for _, e in events) == [1, 2]
        last = max(t for t, _ in events)
        assert min(t for t, _ in events) < last
        assert (last, IceState.CONNECTED) in wire.states(agent)
        for component in (1, 2):
            pair = agent.selected_pair(component)
            assert pair is not None
            assert pair.base == ports[component - 1]
            assert pair.component == component
    # Component 2 shares component 1's foundation: Frozen until 1 succeeds (0.02).
    assert wire.states(a) == [
        (0.0, IceState.CHECKING),
        (0.09, IceState.CONNECTED),
        (0.09, IceState.COMPLETED),
    ]
    assert times(wire.requests(a_ports[1], first=True))[0] == 0.05


def test_two_components_consent_loss_on_one_fails() -> None:
    wire = Wire()
    a_ports, b_ports = [A1, (A1[0], 1001)], [B1, (B1[0], 2001)]
    a, b = make(
        wire,
        [host(*addr, component=i + 1) for i, addr in enumerate(a_ports)],
        [host(*addr, component=i + 1) for i, addr in enumerate(b_ports)],
        components=2,
    )
    connect(wire, a, b)
    cut = wire.now
    wire.drop = lambda src, dst, msg: wire.now > cut and a_ports[1] in (src, dst)
    wire.run(lambda: a.state is IceState.FAILED, max_time=40)
    ((_, expired),) = wire.of(a, ConsentExpired)
    assert expired.component == 2


# -- 9. consent freshness (RFC 7675) ------------------------------------------------------


def _consent_requests(wire: Wire, src: Address, after: float) -> list[Sent]:
    return [s for s in wire.requests(src, first=True) if s.at > after]


def test_consent_checks_every_interval_with_jitter() -> None:
    wire = Wire()
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    wire.run(max_time=60.0)
    for agent, addr, selected_at in ((a, A1, 0.04), (b, B1, 0.03)):
        sent = times(_consent_requests(wire, addr, after=0.05))
        gaps = [t1 - t0 for t0, t1 in zip([selected_at, *sent], sent, strict=False)]
        # §5.1: 0.8 to 1.2 times consent_interval (5 s); the seeded rng fixes them.
        assert all(4.0 <= gap <= 6.0 for gap in gaps), gaps
        assert 10 <= len(sent) <= 15
        assert max(gaps) - min(gaps) > 0.5  # randomized, not a fixed period
        assert agent.state is IceState.COMPLETED
        assert all("USE-CANDIDATE" not in s.msg.attributes for s in wire.requests(addr)[3:])
    expected = [4.675, 8.72, 14.598, 20.536, 24.979, 30.085, 34.523, 40.376, 45.488, 50.747]
    assert times(_consent_requests(wire, A1, after=0.05))[:10] == pytest.approx(expected, abs=1e-3)


def test_consent_survives_half_of_the_requests_lost() -> None:
    # aioice#58: consent requests are retransmitted, so losing half of them (every
    # transmission, independently) does not lose consent.
    wire = Wire()
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    loss = random.Random(58)
    wire.drop = lambda src, dst, msg: msg.message_class == Class.REQUEST and loss.random() < 0.5
    wire.run(max_time=600.0)
    assert a.state is b.state is IceState.COMPLETED
    assert wire.of(a, ConsentExpired) == wire.of(b, ConsentExpired) == []
    consent = [s for s in wire.requests(A1) if s.at > 0.05]
    ids = [s.msg.transaction_id for s in consent]
    retransmitted = {tid for tid in ids if ids.count(tid) > 1}
    assert len(retransmitted) > 20
    pair = a.selected_pair()
    assert pair is not None
    assert pair.stats.consent_at is not None
    assert wire.now - pair.stats.consent_at < a.config.consent_max_age


def test_consent_expires_after_timeout_of_silence() -> None:
    wire = Wire()
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    wire.drop = lambda src, dst, msg: True
    wire.run(max_time=60.0)
    # Consent was last granted at selection: A at 0.04, B at 0.03; it expires
    # consent_max_age = 30 s later exactly (RFC 7675 §5.1), before the sixth failed
    # consent check would end it.
    for agent, granted in ((a, 0.04), (b, 0.03)):
        pair = agent.selected_pair()
        assert pair is not None
        assert wire.of(agent, ConsentExpired) == [(t6(granted + 30.0), ConsentExpired(1, pair))]
        assert wire.states(agent)[-1] == (t6(granted + 30.0), IceState.FAILED)
        assert agent.failure_reason == "consent lost on component 1: no response for 30 s"
        assert agent.get_timer() is None
    # Silence is not idleness: consent requests were retransmitted meanwhile, and
    # nothing was sent after the expiry.
    consent = [s for s in wire.requests(A1) if s.at > 0.05]
    ids = [s.msg.transaction_id for s in consent]
    assert len(ids) > len(set(ids)) > 4
    assert max(s.at for s in wire.log) < 30.04


AIORTC_CHECK = TransactionConfig(rto=0.1, retransmissions=1, rm=4)
"aiortc's tests: RETRY_RTO = 0.1, RETRY_MAX = 1: a check fails 0.5 s after it is sent."


def test_consent_lost_after_consent_failures_checks_fail_in_a_row() -> None:
    wire = Wire()
    config = IceConfig(consent_interval=1.0, consent_failures=3, check=AIORTC_CHECK)
    a, b = make(wire, [host(*A1)], [host(*B1)], config=config)
    connect(wire, a, b)
    cut = wire.now
    wire.drop = lambda src, dst, msg: True
    wire.run(max_time=10.0)
    for agent, address in ((a, A1), (b, B1)):
        consent = times(_consent_requests(wire, address, after=cut))
        assert len(consent) == 3  # none after the third failed
        # Consent checks retransmit after 3 RTTs (0.06 s, not the 0.1 s RTO), so the
        # third fails 0.06 + 4 x 0.06 = 0.3 s after it was sent: consent is lost then.
        assert wire.states(agent)[-1] == (t6(consent[2] + 0.3), IceState.FAILED)
        assert (
            agent.failure_reason == "consent lost on component 1: 3 consent checks failed in a row"
        )


def test_consent_holds_on_a_healthy_link_with_aiortc_test_timers() -> None:
    # aiortc patches CONSENT_INTERVAL = CONSENT_FAILURES = 1: checks go out 0.8-1.2 s
    # apart, later than interval * failures; a healthy link must keep consent anyway.
    wire = Wire()
    config = IceConfig(consent_interval=1.0, consent_failures=1, check=AIORTC_CHECK)
    a, b = make(wire, [host(*A1)], [host(*B1)], config=config)
    connect(wire, a, b)
    wire.run(max_time=60.0)
    assert a.state is b.state is IceState.COMPLETED
    assert len(_consent_requests(wire, A1, after=0.05)) >= 45


# -- 10. the failure bound ----------------------------------------------------------------


def _unreachable(
    config: IceConfig | None = None, *, remote_end: bool = True, local_end: bool = True
) -> tuple[Wire, IceAgent, IceAgent]:
    wire = Wire()
    wire.drop = lambda src, dst, msg: True
    a, b = make(
        wire,
        [host(*A1)],
        [host(*B1)],
        config=config,
        remote_end=remote_end,
        local_end=local_end,
    )
    return wire, a, b


def test_no_reachable_pair_fails_at_failure_timeout() -> None:
    # The checks are still in progress at 10 s: the failure bound ends them.
    wire, a, b = _unreachable(IceConfig(check=LONG))
    start(wire, a, b)
    wire.run(max_time=60.0)
    for agent in (a, b):
        assert wire.states(agent) == [(0.0, IceState.CHECKING), (10.0, IceState.FAILED)]
        assert agent.failure_reason == "no candidate pair selected within 10 s"
        assert agent.get_timer() is None
    assert max(s.at for s in wire.log) < 10.0


def test_failure_timeout_counts_from_remote_end_of_candidates() -> None:
    wire, a, b = _unreachable(IceConfig(check=LONG), remote_end=False)
    start(wire, a, b)
    wire.run(max_time=3.0)
    a.add_remote_candidate(None, now=3.0)
    wire.pump(a)
    wire.run(max_time=60.0)
    assert wire.states(a) == [(0.0, IceState.CHECKING), (13.0, IceState.FAILED)]
    assert wire.states(b) == [(0.0, IceState.CHECKING)]  # never told: never fails


def test_failure_timeout_counts_from_start() -> None:
    wire, a, _ = _unreachable(IceConfig(check=LONG))
    wire.run(max_time=2.0)
    start(wire, a)
    wire.run(max_time=60.0)
    assert wire.states(a) == [(2.0, IceState.CHECKING), (12.0, IceState.FAILED)]


def test_default_checks_give_up_before_the_failure_timeout() -> None:
    # With the default transactions (the last of 7 requests at 7.9, then 4 RTOs), an
    # unreachable pair fails at 9.9: every pair has failed before the 10 s bound.
    wire, a, b = _unreachable()
    start(wire, a, b)
    wire.run(max_time=60.0)
    assert times(wire.requests(A1)) == [0.0, 0.5, 1.5, 3.1, 4.7, 6.3, 7.9]
    for agent in (a, b):
        assert wire.states(agent) == [(0.0, IceState.CHECKING), (9.9, IceState.FAILED)]
        assert agent.failure_reason == "every candidate pair failed"


def test_fails_early_when_every_pair_failed() -> None:
    # Short transactions: both pairs fail (0.3 and 0.35) with both ends of candidates.
    wire = Wire()
    wire.drop = lambda src, dst, msg: True
    a, _ = make(
        wire,
        [host(*A1)],
        [host(*B1), host("10.0.0.3", 3000, pref=60000)],
        config=IceConfig(check=SHORT),
    )
    start(wire, a)
    wire.run(max_time=60.0)
    assert wire.states(a) == [(0.0, IceState.CHECKING), (0.35, IceState.FAILED)]
    assert a.failure_reason == "every candidate pair failed"


def test_all_pairs_failed_waits_for_local_end_of_candidates() -> None:
    # Gathering may still bring a candidate: without the local end-of-candidates the
    # agent waits for the failure timeout.
    wire, a, _ = _unreachable(IceConfig(check=SHORT), local_end=False)
    start(wire, a)
    wire.run(max_time=60.0)
    assert wire.states(a) == [(0.0, IceState.CHECKING), (10.0, IceState.FAILED)]


def test_never_fails_without_remote_end_of_candidates() -> None:
    wire, a, b = _unreachable(remote_end=False)
    start(wire, a, b)
    wire.run(max_time=60.0)
    for agent in (a, b):
        assert agent.state is IceState.CHECKING
        assert agent.failure_reason is None
        # The only pair failed at 9.9 (its last retransmission at 7.9, then Rm = 4
        # times the RTO): nothing left to do.
        (pair,) = agent.pairs
        assert pair.state is PairState.FAILED
        assert agent.get_timer() is None
    # A trickled candidate later still gets checked.
    b.add_local_candidate(host("10.0.0.3", 3000), now=wire.now)
    wire.add(b, ("10.0.0.3", 3000))
    wire.drop = _never
    a.add_remote_candidate(Candidate.from_sdp(host("10.0.0.3", 3000).to_sdp()), now=wire.now)
    wire.pump(a)
    assert wire.run(lambda: a.state is IceState.COMPLETED, max_time=65.0)


def test_failed_agent_answers_nothing() -> None:
    # B's pair succeeds at 0.02 but A's nominations are lost until 7.0: B fails at its
    # bound, doubled because a pair succeeded (2 x 3.0 here). A's nomination sent again
    # after 7.0 must not make A select a pair with a failed peer: B used to answer it
    # (and every consent check after), and to report SelectedPairChanged while FAILED.
    wire = Wire()
    a, b = make(
        wire,
        [host(*A1)],
        [host(*B1)],
        b_config=IceConfig(failure_timeout=3.0),
        remote_end=False,
    )
    b.add_remote_candidate(None, now=0.0)
    wire.drop = lambda src, dst, msg: USE in msg.attributes and wire.now < 7.0
    start(wire, a, b)
    wire.run(max_time=60.0)
    assert wire.states(b) == [(0.0, IceState.CHECKING), (6.0, IceState.FAILED)]
    assert b.failure_reason == "no candidate pair selected within 6 s"
    assert wire.of(b, SelectedPairChanged) == []
    assert [s for s in wire.log if s.src == B1 and s.at > 6.0] == []
    assert b.dropped["failed"] >= 1  # A's nominations after 7.0, unanswered
    assert set(b.dropped) == {"failed"}
    assert a.selected_pair() is None
    assert a.state is IceState.CHECKING


def test_nomination_that_times_out_is_sent_again_without_spinning() -> None:
    # Every USE-CANDIDATE check is lost. A nomination that goes unanswered (unlike one
    # refused) is sent again once its transaction is over, one at a time: sent at 0.02
    # and 0.08 (RTO: 3 RTTs of the valid pair, 0.06 s), over at 0.2 (Rm = 2), sent again
    # at once. The nomination deadline never stays armed in the past (the Wire checks
    # every timer).
    wire = Wire()
    wire.drop = lambda src, dst, msg: USE in msg.attributes
    a, b = make(wire, [host(*A1)], [host(*B1)], config=IceConfig(check=SHORT), remote_end=False)
    start(wire, a, b)
    wire.run(max_time=60.0)
    assert a.state is IceState.CHECKING
    assert a.selected_pair() is None
    nominations = [s for s in wire.requests(A1) if USE in s.msg.attributes]
    assert times(nominations[:4]) == [0.02, 0.08, 0.2, 0.26]
    assert len({s.msg.transaction_id for s in nominations[:4]}) == 2
    assert len(nominations) == 667  # a transaction (two sends) every 0.18 s until 60 s


# -- 13. a long session -------------------------------------------------------------------


def test_thirty_minute_session_keeps_state_bounded() -> None:
    wire = Wire()
    a, b = make(wire, [host(*A1)], [host(*B1)])
    connect(wire, a, b)
    peak = {id(a): 0, id(b): 0}

    def sample() -> bool:
        for agent in (a, b):
            peak[id(agent)] = max(peak[id(agent)], len(agent._checks))
        return False

    wire.run(sample, max_time=1800.0)
    assert a.state is b.state is IceState.COMPLETED
    assert peak[id(a)] <= 2
    assert peak[id(b)] <= 2
    for agent in (a, b):
        assert len(agent._checks) <= 1
        assert not agent._triggered
        assert len(agent.pairs) == 1
        assert len(agent.remote_candidates) == 1
    consent = len([s for s in wire.requests(A1) if s.at > 0.05])
    assert 300 <= consent <= 450  # about one every 5 s


# -- random topologies ----------------------------------------------------------------------


def _random_scenario(seed: int) -> tuple[Wire, IceAgent, IceAgent]:
    """1-3 host candidates per side and component, B behind a NAT or not, random
    latency, loss up to 30 %, random roles, nomination, trickle and start times."""
    rng = random.Random(seed)
    components = rng.choice([1, 1, 2])
    a_candidates = [
        host(f"10.0.{i}.1", 1000 + 10 * i + c, component=c, pref=65535 - i * rng.randint(0, 3))
        for i in range(rng.randint(1, 3))
        for c in range(1, components + 1)
    ]
    b_candidates = [
        host(f"192.168.{i}.2", 2000 + 10 * i + c, component=c, pref=65535 - i * rng.randint(0, 3))
        for i in range(rng.randint(1, 3))
        for c in range(1, components + 1)
    ]
    behind_nat = rng.random() < 0.5
    nat = {address(c): (f"203.0.113.{i}", 40000 + i) for i, c in enumerate(b_candidates)}
    wire = Wire(latency=rng.choice([0.005, 0.01, 0.05, 0.2]), nat=nat if behind_nat else {})
    loss, loss_rng = rng.choice([0.0, 0.1, 0.3]), random.Random(seed)
    wire.drop = lambda src, dst, msg: loss_rng.random() < loss
    config = IceConfig(nomination=rng.choice(list(Nomination)))
    a = IceAgent(
        controlling=rng.random() < 0.8,
        components=components,
        config=config,
        rng=random.Random(2 * seed),
    )
    b = IceAgent(
        controlling=rng.random() < 0.2,
        components=components,
        config=config,
        rng=random.Random(2 * seed + 1),
    )
    wire.add(a, *map(address, a_candidates))
    wire.add(b, *map(address, b_candidates))
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)

    def trickle(agent: IceAgent, other: IceAgent, candidate: Candidate | None) -> None:
        agent.add_local_candidate(candidate, now=wire.now)
        wire.pump(agent)
        signalled = None if candidate is None else Candidate.from_sdp(candidate.to_sdp())
        other.add_remote_candidate(signalled, now=wire.now)
        wire.pump(other)

    for agent, other, candidates in ((a, b, a_candidates), (b, a, b_candidates)):
        last = 0.0
        for candidate in candidates:
            at = rng.choice([0.0, 0.0, 0.1, 0.5, 1.0])
            last = max(last, at)
            wire.scheduler.call_at(at, partial(trickle, agent, other, candidate))
        wire.scheduler.call_at(last + rng.choice([0.0, 0.2]), partial(trickle, agent, other, None))
        wire.scheduler.call_at(rng.choice([0.0, 0.0, 0.3]), partial(start, wire, agent))
    return wire, a, b


@pytest.mark.parametrize("seed", range(20))
def test_random_topology_connects(seed: int) -> None:
    wire, a, b = _random_scenario(seed)
    wire.run(completed(a, b), max_time=12.0)
    # With up to 30 % loss every scenario here connects (they are all reachable)...
    assert a.state is b.state is IceState.COMPLETED, (a.failure_reason, b.failure_reason)
    assert a.controlling is not b.controlling
    for component in range(1, a.components + 1):
        pa, pb = a.selected_pair(component), b.selected_pair(component)
        assert pa is not None
        assert pb is not None
        assert pa.nominated
        assert pb.nominated
    # ... and stays connected through consent freshness.
    wire.run(max_time=wire.now + 60.0)
    assert a.state is b.state is IceState.COMPLETED
