"""The ICE agent's edges: bad input from the network never raises (it is dropped and
counted), and API misuse raises typed errors. One agent, driven by hand from now = 0.0,
against a hand-written peer."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from aioice.ice.agent import IceAgent
from aioice.ice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice.config import IceConfig
from aioice.ice.errors import IceStateError
from aioice.ice.events import (
    IceEvent,
    IceState,
    IceStateChanged,
    PairStateChanged,
    SelectedPairChanged,
)
from aioice.ice.pair import CandidatePair, PairState
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    StunParseError,
    TransactionConfig,
    parse_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st

A1: Address = ("10.0.0.1", 1000)
B1: Address = ("10.0.0.2", 2000)
PEER_UFRAG = "peer"
PEER_PWD = "peerpasswordpeerpassword"
FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None)


def host(ip: str, port: int, component: int = 1, type: str = "host") -> Candidate:
    return Candidate(
        foundation=candidate_foundation(type, "udp", ip),
        component=component,
        transport="udp",
        priority=candidate_priority(component, type),
        host=ip,
        port=port,
        type=type,
    )


def state_of(item: IceAgent | CandidatePair) -> IceState | PairState:
    """The state now (a call, so that mypy does not narrow it across inputs)."""
    return item.state


def drain(agent: IceAgent) -> tuple[list[tuple[Address | None, Address, Message]], list[IceEvent]]:
    sent = [(t.local, t.remote, parse_message(t.data)) for t in agent.datagrams_to_send()]
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    return sent, events


def started(*, controlling: bool = True, config: IceConfig | None = None) -> IceAgent:
    """An agent on A1 with one pair to the peer on B1, started at 0 and drained: its
    first check is in flight."""
    agent = IceAgent(controlling=controlling, config=config, rng=random.Random(1))
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    agent.add_local_candidate(host(*A1), now=0.0)
    agent.add_local_candidate(None, now=0.0)
    agent.add_remote_candidate(host(*B1), now=0.0)
    agent.start(now=0.0)
    drain(agent)
    return agent


def check(
    agent: IceAgent,
    *,
    username: str | None = None,
    key: bytes | None = None,
    omit: tuple[str, ...] = (),
    fingerprint: bool = True,
    **extra: Any,
) -> Message:
    """A connectivity check from the peer to ``agent``, signed with ``agent``'s password."""
    attributes: dict[str, Any] = {
        "USERNAME": username if username is not None else f"{agent.local_username}:{PEER_UFRAG}",
        "PRIORITY": candidate_priority(1, "prflx"),
        "ICE-CONTROLLED": 1,
    }
    attributes.update({name.replace("_", "-"): value for name, value in extra.items()})
    for name in omit:
        attributes.pop(name, None)
    message = Message(Method.BINDING, Class.REQUEST, attributes=attributes)
    if "MESSAGE-INTEGRITY" not in omit:
        signed = key if key is not None else agent.local_password.encode()
        message.add_message_integrity(signed, fingerprint=fingerprint)
    return message


def answer(request: Message, *, key: bytes = PEER_PWD.encode(), **attributes: Any) -> bytes:
    """The peer's response to one of the agent's checks (success unless ERROR_CODE)."""
    values = {name.replace("_", "-"): value for name, value in attributes.items()}
    cls = Class.ERROR if "ERROR-CODE" in values else Class.RESPONSE
    values.setdefault("XOR-MAPPED-ADDRESS", A1)
    response = Message(Method.BINDING, cls, request.transaction_id, values)
    return response.encode(key)


def receive(
    agent: IceAgent,
    data: bytes | Message,
    *,
    local: Address = A1,
    remote: Address = B1,
    now: float = 0.01,
) -> list[tuple[Address | None, Address, Message]]:
    agent.receive_datagram(bytes(data), local=local, remote=remote, now=now)
    sent, _ = drain(agent)
    return sent


def replies(sent: list[tuple[Address | None, Address, Message]]) -> list[tuple[Class, int | None]]:
    return [(m.message_class, m.error_code) for _, _, m in sent if m.message_class != Class.REQUEST]


def first_check(agent: IceAgent) -> Message:
    """The check in flight on the agent's only pair."""
    (pair,) = agent.pairs
    assert pair.transaction is not None
    return pair.transaction.request


# -- good input, as a baseline -------------------------------------------------------------


def test_valid_check_is_answered_and_triggers_a_check() -> None:
    agent = started()
    request = check(agent)
    sent = receive(agent, request)
    assert [(local, remote, m.message_class) for local, remote, m in sent] == [
        (A1, B1, Class.RESPONSE),
        (A1, B1, Class.REQUEST),
    ]
    response = sent[0][2]
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == B1
    assert response.check_message_integrity(agent.local_password.encode())
    assert agent.dropped == {}


# -- 11. bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"username": "nobody:peer"}, "wrong ufrag"),
        ({"username": "peer"}, "no colon"),
        ({"key": b"not the password"}, "bad MESSAGE-INTEGRITY"),
    ],
)
def test_unauthenticated_check_gets_401(kwargs: dict[str, Any], reason: str) -> None:
    agent = started()
    sent = receive(agent, check(agent, **kwargs))
    assert replies(sent) == [(Class.ERROR, 401)], reason
    assert "MESSAGE-INTEGRITY" not in sent[0][2].attributes
    assert agent.dropped == {"unauthenticated": 1}
    assert agent.remote_candidates == [agent.pairs[0].remote]  # nothing learnt


@pytest.mark.parametrize("missing", ["PRIORITY", "USERNAME", "MESSAGE-INTEGRITY"])
def test_incomplete_check_gets_400(missing: str) -> None:
    agent = started()
    sent = receive(agent, check(agent, omit=(missing,)))
    assert replies(sent) == [(Class.ERROR, 400)]
    assert agent.dropped == {"bad-request": 1}
    (pair,) = agent.pairs
    assert pair.stats.requests_received == 0


def test_check_on_unknown_local_base_is_dropped() -> None:
    agent = started()
    sent = receive(agent, check(agent), local=("10.9.9.9", 9))
    assert sent == []
    assert agent.dropped == {"unknown-base": 1}


def test_not_binding_and_indications() -> None:
    agent = started()
    allocate = Message(Method.ALLOCATE, Class.REQUEST, attributes={"LIFETIME": 600})
    send = Message(Method.SEND, Class.INDICATION, attributes={"DATA": b"x"})
    assert receive(agent, allocate) == []
    assert receive(agent, send) == []
    assert agent.dropped == {"not-binding": 2}
    # A Binding indication is a keepalive (RFC 8445 §11): no answer, not a drop.
    assert receive(agent, Message(Method.BINDING, Class.INDICATION)) == []
    assert agent.dropped == {"not-binding": 2}


def test_responses_that_do_not_match_a_check() -> None:
    agent = started()
    request = first_check(agent)
    stray = Message(Method.BINDING, Class.REQUEST)
    assert receive(agent, answer(stray)) == []
    assert agent.dropped == {"unknown-transaction": 1}
    # The right transaction, the wrong key: ignored, the check goes on.
    assert receive(agent, answer(request, key=b"wrong")) == []
    assert agent.dropped == {"unknown-transaction": 1, "unauthenticated": 1}
    (pair,) = agent.pairs
    assert state_of(pair) is PairState.IN_PROGRESS
    agent.handle_timer(now=0.5)
    sent, _ = drain(agent)
    assert [m.transaction_id for _, _, m in sent] == [request.transaction_id]
    # An unsigned error (as our own 401/400) does not authenticate either.
    unsigned = Message(
        Method.BINDING, Class.ERROR, request.transaction_id, {"ERROR-CODE": (401, "x")}
    )
    assert receive(agent, unsigned.encode(), now=0.6) == []
    assert agent.dropped["unauthenticated"] == 2
    assert state_of(pair) is PairState.IN_PROGRESS


def test_signed_error_response_fails_the_pair() -> None:
    agent = started()
    request = first_check(agent)
    receive(agent, answer(request, ERROR_CODE=(500, "Server Error")))
    (pair,) = agent.pairs
    assert state_of(pair) is PairState.FAILED
    assert state_of(agent) is IceState.CHECKING  # no remote end-of-candidates yet
    agent.add_remote_candidate(None, now=0.02)
    assert state_of(agent) is IceState.FAILED
    assert agent.failure_reason == "every candidate pair failed"


def test_late_success_of_cancelled_check_after_pair_failed() -> None:
    # Regression: check 1 is cancelled by a triggered check 2 (the peer's check came
    # in), check 2 gets an error response (Failed), then check 1's success arrives: it
    # is still heard (§7.3.1.4) and must make the pair succeed. receive_datagram used
    # to raise ValueError (FAILED -> SUCCEEDED was not in the transition table).
    agent = started()
    check1 = first_check(agent)
    sent = receive(agent, check(agent), now=0.01)
    check2 = sent[1][2]
    receive(agent, answer(check2, ERROR_CODE=(500, "Server Error")), now=0.02)
    (pair,) = agent.pairs
    assert state_of(pair) is PairState.FAILED
    sent = receive(agent, answer(check1), now=0.03)
    assert state_of(pair) is PairState.SUCCEEDED
    # The only pair, now valid: nominated at once.
    assert [("USE-CANDIDATE" in m.attributes) for _, _, m in sent] == [True]


def test_older_check_timing_out_does_not_fail_a_pair_being_checked_again() -> None:
    # A pair is In-Progress with a fresh check: an older transaction of the same pair
    # that times out (here: retried after a 487 on a cancelled check) must not fail it.
    agent = started(config=IceConfig(check=TransactionConfig(rto=0.1, retransmissions=1, rm=2)))
    check1 = first_check(agent)
    sent = receive(agent, check(agent), now=0.01)  # cancels check 1, sends check 2
    check2 = sent[1][2]
    # The 487 to (cancelled) check 1 re-queues the pair: check 3, check 2 still live.
    sent = receive(agent, answer(check1, ERROR_CODE=(487, "Role Conflict")), now=0.02)
    assert agent.controlling is False
    check3 = sent[0][2]
    assert check3.transaction_id not in (check1.transaction_id, check2.transaction_id)
    (pair,) = agent.pairs
    retransmitted = []
    for now in (0.11, 0.12, 0.31):  # check 2, check 3 retransmitted; check 2 times out
        agent.handle_timer(now=now)
        sent, events = drain(agent)
        retransmitted += [m.transaction_id for _, _, m in sent]
        assert not [e for e in events if isinstance(e, PairStateChanged)]
    assert retransmitted == [check2.transaction_id, check3.transaction_id]
    assert state_of(pair) is PairState.IN_PROGRESS
    receive(agent, answer(check3), now=0.315)
    assert state_of(pair) is PairState.SUCCEEDED


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    agent = started()
    sent = receive(agent, data)
    assert all(m.message_class == Class.ERROR for _, _, m in sent)
    assert sum(agent.dropped.values()) <= 1  # a Binding indication is not a drop


@FUZZ
@given(
    fingerprint=st.booleans(),
    length=st.integers(min_value=0, max_value=200),
    flips=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=4),
)
def test_fuzz_truncated_and_mutated_checks(
    fingerprint: bool, length: int, flips: list[tuple[int, int]]
) -> None:
    agent = started()
    original = bytes(check(agent, fingerprint=fingerprint, USE_CANDIDATE=None))
    data = bytearray(original[:length])
    for index, value in flips:
        if index < len(data):
            data[index] = value
    sent = receive(agent, bytes(data))
    if bytes(data) != original:
        # Whatever was changed, nothing authenticates: no success, no new candidate.
        assert Class.RESPONSE not in [m.message_class for _, _, m in sent]
        assert len(agent.remote_candidates) == 1
        assert sum(agent.dropped.values()) <= 1


addresses = st.one_of(
    st.tuples(st.sampled_from(["10.0.0.2", "10.0.0.3", "192.0.2.1"]), st.integers(1, 65535)),
    st.tuples(st.sampled_from(["2001:db8::1", "::ffff:10.0.0.2"]), st.integers(1, 65535)),
)
checks = st.fixed_dictionaries(
    {
        "remote": addresses,
        "priority": st.integers(0, 2**32 - 1),
        "role": st.sampled_from(["ICE-CONTROLLING", "ICE-CONTROLLED", None]),
        "tie_breaker": st.integers(0, 2**64 - 1),
        "use_candidate": st.booleans(),
        "local": st.sampled_from([A1, ("10.9.9.9", 9)]),
    }
)


@FUZZ
@given(st.lists(checks, max_size=12), st.booleans())
def test_fuzz_authenticated_checks(items: list[dict[str, Any]], controlling: bool) -> None:
    # Valid, signed checks with arbitrary sources, priorities, roles and tie-breakers:
    # the deep paths (peer-reflexive candidates, role conflicts, nominations) never
    # raise, and the agent stays consistent.
    agent = started(controlling=controlling, config=IceConfig(max_pairs=5))
    now = 0.0
    for item in items:
        now += 0.01
        extra: dict[str, Any] = {"PRIORITY": item["priority"]}
        if item["role"] is not None:
            extra[item["role"]] = item["tie_breaker"]
        if item["use_candidate"]:
            extra["USE-CANDIDATE"] = None
        message = check(agent, omit=("ICE-CONTROLLED",), **extra)
        agent.receive_datagram(bytes(message), local=item["local"], remote=item["remote"], now=now)
        agent.handle_timer(now=now)
        for transmit in agent.datagrams_to_send():
            parse_message(transmit.data)
        timer = agent.get_timer()
        assert timer is None or timer > now
    assert len(agent.pairs) <= 5
    assert all(pair.state in PairState for pair in agent.pairs)
    while agent.next_event() is not None:
        pass


def test_parse_errors_are_counted_as_malformed() -> None:
    agent = started()
    for data in (b"", b"\x00" * 19, b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 11):
        receive(agent, data)
    assert agent.dropped == {"malformed": 3}
    with pytest.raises(StunParseError):
        parse_message(b"")


# -- 12. API misuse ------------------------------------------------------------------------


def test_start_needs_remote_credentials() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    with pytest.raises(IceStateError):
        agent.start(now=0.0)
    assert state_of(agent) is IceState.NEW


def test_start_twice() -> None:
    agent = started()
    with pytest.raises(IceStateError):
        agent.start(now=1.0)


def test_set_controlling_after_start() -> None:
    agent = started()
    with pytest.raises(IceStateError):
        agent.set_controlling(False)


@pytest.mark.parametrize("component", [0, 2, 257])
def test_local_candidate_component_out_of_range(component: int) -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    candidate = host(*A1)
    candidate.component = component
    with pytest.raises(ValueError, match="component"):
        agent.add_local_candidate(candidate, now=0.0)
    assert agent.local_candidates == []


def test_remote_candidate_component_out_of_range_is_ignored() -> None:
    # Remote input: not raised, not paired.
    agent = started()
    agent.add_remote_candidate(host("10.0.0.3", 3000, component=2), now=0.0)
    assert len(agent.remote_candidates) == 1


def test_server_reflexive_candidate_needs_its_base() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    srflx = host("203.0.113.1", 40000, type="srflx")
    with pytest.raises(ValueError, match="base"):
        agent.add_local_candidate(srflx, now=0.0)
    # With its base, it is checked from there: redundant with the host candidate.
    agent.add_local_candidate(host(*A1), now=0.0)
    agent.add_local_candidate(srflx, base=A1, now=0.0)
    agent.add_remote_candidate(host(*B1), now=0.0)
    (pair,) = agent.pairs
    assert pair.base == A1
    assert pair.local.type == "host"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IceConfig(ta=0.0), "ta"),
        (lambda: IceConfig(failure_timeout=0.0), "failure_timeout"),
        (lambda: IceConfig(nomination_delay=-1.0), "nomination_delay"),
        (lambda: IceConfig(consent_interval=0.0), "consent_interval"),
        (lambda: IceConfig(consent_failures=0), "consent_failures"),
        (lambda: IceConfig(max_pairs=0), "max_pairs"),
        (lambda: IceAgent(controlling=True, components=0), "components"),
    ],
)
def test_bad_configuration(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_arguments() -> None:
    agent = started()
    with pytest.raises(ValueError, match="must not be empty"):
        agent.set_remote_credentials("", "x")
    stranger = CandidatePair(host(*A1), A1, host("10.0.0.9", 9), 1)
    with pytest.raises(ValueError, match="not in the check list"):
        agent.select_pair(stranger, now=0.0)


def test_close_is_final_and_idempotent() -> None:
    agent = started()
    receive(agent, check(agent))  # leaves work: checks in flight, a timer
    agent.receive_datagram(bytes(check(agent)), local=A1, remote=B1, now=0.02)
    assert agent.get_timer() is not None
    agent.close(now=0.03)
    agent.close(now=0.04)
    sent, events = drain(agent)
    assert sent == []  # what was pending is not sent any more
    assert [e for e in events if isinstance(e, IceStateChanged)] == [
        IceStateChanged(IceState.CLOSED)
    ]
    assert agent.get_timer() is None
    (pair,) = agent.pairs
    with pytest.raises(IceStateError):
        agent.start(now=1.0)
    with pytest.raises(IceStateError):
        agent.add_local_candidate(host("10.0.0.5", 5), now=1.0)
    with pytest.raises(IceStateError):
        agent.add_local_candidate(None, now=1.0)
    with pytest.raises(IceStateError):
        agent.add_remote_candidate(host("10.0.0.6", 6), now=1.0)
    with pytest.raises(IceStateError):
        agent.add_remote_candidate(None, now=1.0)
    with pytest.raises(IceStateError):
        agent.set_remote_credentials("x", "y")
    with pytest.raises(IceStateError):
        agent.select_pair(pair, now=1.0)
    # Network input and timers after close are ignored, not errors (the adapter may
    # still have a datagram or a timer in flight).
    agent.receive_datagram(bytes(check(agent)), local=A1, remote=B1, now=1.0)
    agent.handle_timer(now=100.0)
    assert drain(agent) == ([], [])
    assert agent.get_timer() is None
    assert state_of(agent) is IceState.CLOSED


# -- 13. timers ----------------------------------------------------------------------------


def test_no_timer_when_idle() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    assert agent.get_timer() is None
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    agent.add_local_candidate(host(*A1), now=0.0)
    agent.add_remote_candidate(host(*B1), now=0.0)
    assert agent.get_timer() is None  # not started
    assert agent.datagrams_to_send() == []
    idle = IceAgent(controlling=True, rng=random.Random(1))
    idle.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    idle.start(now=0.0)
    assert idle.get_timer() is None  # started, nothing to check
    idle.add_remote_candidate(None, now=0.0)
    assert idle.get_timer() == 10.0  # the failure bound
    assert state_of(idle) is IceState.CHECKING  # no local end-of-candidates: may still gather
    idle.add_local_candidate(None, now=0.0)
    assert state_of(idle) is IceState.FAILED
    assert idle.get_timer() is None


def test_timer_follows_the_check_in_flight() -> None:
    agent = started()
    # The check went at 0; the retransmission is due at 0.5 (nothing else to do).
    assert agent.get_timer() == 0.5
    agent.handle_timer(now=0.5)
    sent, _ = drain(agent)
    assert len(sent) == 1
    assert agent.get_timer() == 1.5


def test_select_pair_by_hand() -> None:
    agent = started()
    (pair,) = agent.pairs
    agent.select_pair(pair, now=0.1)
    _, events = drain(agent)
    assert SelectedPairChanged(1, pair) in events
    assert IceStateChanged(IceState.CONNECTED) in events
    assert agent.selected_pair() is pair
    assert pair.nominated


# -- pairing rules ---------------------------------------------------------------------------


def test_pairing_rules() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1), config=IceConfig(max_pairs=3))
    agent.add_local_candidate(host(*A1), now=0.0)
    agent.add_remote_candidate(host("2001:db8::2", 2000), now=0.0)  # IPv6: no
    tcp = host("10.0.0.4", 9)
    tcp.transport = "tcp"
    tcp.tcptype = "passive"
    agent.add_remote_candidate(tcp, now=0.0)  # TCP: kept, not paired
    agent.add_remote_candidate(host("abcd.local", 2000), now=0.0)  # unresolved mDNS
    assert agent.pairs == []
    assert len(agent.remote_candidates) == 3
    # The same address twice is one candidate.
    agent.add_remote_candidate(host("10.0.0.2", 2000), now=0.0)
    agent.add_remote_candidate(host("10.0.0.2", 2000), now=0.0)
    assert len(agent.pairs) == 1
    # max_pairs: a better pair replaces the lowest Waiting one; a worse one is dropped.
    for i, pref in enumerate((100, 50, 200, 10)):
        remote = host(f"10.0.1.{i}", 3000)
        remote.priority = candidate_priority(1, "host", pref)
        agent.add_remote_candidate(remote, now=0.0)
    assert len(agent.pairs) == 3
    assert sorted(p.remote_address[0] for p in agent.pairs) == ["10.0.0.2", "10.0.1.0", "10.0.1.2"]
    assert agent.dropped == {"too-many-pairs": 1}


def test_peer_reflexive_candidates_are_bounded() -> None:
    # Authenticated checks from ever new source addresses (a peer behind a NAT that
    # keeps changing ports, or one replaying checks) learn at most max_pairs
    # peer-reflexive candidates; later ones are answered but not learnt.
    agent = started(config=IceConfig(max_pairs=10))
    for port in range(20):
        sent = receive(agent, check(agent), remote=("10.9.9.9", 40000 + port))
        assert (Class.RESPONSE, None) in replies(sent)
    learnt = [c for c in agent.remote_candidates if c.type == "prflx"]
    assert len(learnt) == 10
    assert agent.dropped["too-many-prflx"] == 10
    assert len(agent.pairs) <= 10
