"""RFC 5780 NAT behaviour discovery, in virtual time, through a small NAT model."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from aioice.stun import (
    Address,
    Class,
    FilteringBehavior,
    MappingBehavior,
    Message,
    Method,
    NatBehavior,
    NatBehaviorDiscovery,
    NatDiscoveryError,
    StunServer,
    TransactionConfig,
    parse_message,
)

A1P1 = ("192.0.2.1", 3478)
A2P2 = ("192.0.2.2", 3479)
A2P1 = ("192.0.2.2", 3478)
LOCAL = ("10.0.0.2", 5000)
EXTERNAL_IP = "203.0.113.1"
FIRST_PORT = 50000

EIM = MappingBehavior.ENDPOINT_INDEPENDENT
ADM = MappingBehavior.ADDRESS_DEPENDENT
APDM = MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
EIF = FilteringBehavior.ENDPOINT_INDEPENDENT
ADF = FilteringBehavior.ADDRESS_DEPENDENT
APDF = FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT


class Nat:
    """A NAT with one external IP, RFC 4787 mapping and filtering, and no timeouts."""

    def __init__(self, mapping: MappingBehavior, filtering: FilteringBehavior) -> None:
        self.mapping = mapping
        self.filtering = filtering
        self._ports: dict[tuple[Address, str, int], int] = {}
        self._internal: dict[int, Address] = {}
        self._contacted: dict[int, set[Address]] = {}
        self.blocked = 0

    def outbound(self, internal: Address, remote: Address) -> Address:
        """Translate the source of a packet from ``internal`` to ``remote``."""
        if self.mapping is EIM:
            key = (internal, "", 0)
        elif self.mapping is ADM:
            key = (internal, remote[0], 0)
        else:
            key = (internal, remote[0], remote[1])
        port = self._ports.get(key)
        if port is None:
            port = self._ports[key] = FIRST_PORT + len(self._ports)
            self._internal[port] = internal
            self._contacted[port] = set()
        self._contacted[port].add(remote)
        return (EXTERNAL_IP, port)

    def inbound(self, external: Address, remote: Address) -> Address | None:
        """Where a packet from ``remote`` to ``external`` goes inside, or None if filtered."""
        internal = self._internal.get(external[1])
        if external[0] != EXTERNAL_IP or internal is None:
            self.blocked += 1
            return None
        contacted = self._contacted[external[1]]
        if self.filtering is EIF:
            allowed = True
        elif self.filtering is ADF:
            allowed = any(host == remote[0] for host, _ in contacted)
        else:
            allowed = remote in contacted
        if not allowed:
            self.blocked += 1
            return None
        return internal


@dataclass
class Run:
    discovery: NatBehaviorDiscovery
    end: float
    sends: list[tuple[float, Address]] = field(default_factory=list)
    transaction_ids: list[bytes] = field(default_factory=list)


def done(discovery: NatBehaviorDiscovery) -> bool:
    # (A call, so that mypy does not narrow ``done`` across handle_timer.)
    return discovery.done


def tids(seed: int = 5780) -> random.Random:
    return random.Random(seed)


def run_discovery(
    nat: Nat | None,
    server: StunServer | None,
    *,
    reachable: set[Address] | None = None,
    max_steps: int = 500,
) -> Run:
    """Drive discovery <-> NAT <-> server with zero latency until discovery ends.

    When nothing is in flight, ``now`` jumps to the discovery's timer.
    ``reachable`` limits which server addresses receive packets.
    """
    rng = tids()
    discovery = NatBehaviorDiscovery(
        A1P1, local_addresses=[LOCAL], transaction_id=lambda: rng.randbytes(12)
    )
    run = Run(discovery, 0.0)
    listening = set(server.addresses) if server is not None else set()
    if reachable is not None:
        listening &= reachable
    # (data, source, destination); a destination of LOCAL is the discovery socket.
    in_flight: deque[tuple[bytes, Address, Address]] = deque()
    now = 0.0
    discovery.start(now=now)
    for _ in range(max_steps):
        for transmit in discovery.datagrams_to_send():
            assert transmit.local is None
            run.sends.append((now, transmit.remote))
            run.transaction_ids.append(transmit.data[8:20])
            source = nat.outbound(LOCAL, transmit.remote) if nat is not None else LOCAL
            in_flight.append((transmit.data, source, transmit.remote))
        if in_flight:
            data, source, destination = in_flight.popleft()
            if destination in listening:
                assert server is not None
                server.receive_datagram(data, local=destination, remote=source, now=now)
                for reply in server.datagrams_to_send():
                    assert reply.local is not None
                    in_flight.append((reply.data, reply.local, reply.remote))
            elif destination == LOCAL or destination[0] == EXTERNAL_IP:
                inside = nat.inbound(destination, source) if nat is not None else destination
                if inside == LOCAL:
                    discovery.receive_datagram(data, remote=source, now=now)
            continue
        if discovery.done:
            run.end = now
            assert discovery.get_timer() is None
            return run
        timer = discovery.get_timer()
        assert timer is not None
        assert timer >= now
        now = timer
        discovery.handle_timer(now=now)
    raise AssertionError(f"discovery did not end within {max_steps} steps")


FILTERING_END = {EIF: 0.0, ADF: 2.75, APDF: 5.5}
FILTERING_REQUESTS = {EIF: 1, ADF: 4 + 1, APDF: 4 + 4}
MAPPING_REQUESTS = {EIM: 1, ADM: 2, APDM: 2}


@pytest.mark.parametrize("filtering", [EIF, ADF, APDF], ids=lambda f: f.name)
@pytest.mark.parametrize("mapping", [EIM, ADM, APDM], ids=lambda m: m.name)
def test_discovers_every_mapping_and_filtering(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    nat = Nat(mapping, filtering)
    run = run_discovery(nat, StunServer(A1P1, A2P2))
    assert run.discovery.result() == NatBehavior(
        mapping=mapping,
        filtering=filtering,
        mapped_address=(EXTERNAL_IP, FIRST_PORT),
        behind_nat=True,
    )
    # Filtering tests that get no answer time out after 4 requests (2.75 s each).
    assert run.end == FILTERING_END[filtering]
    assert len(run.sends) == 1 + FILTERING_REQUESTS[filtering] + MAPPING_REQUESTS[mapping]
    assert nat.blocked == {EIF: 0, ADF: 4, APDF: 8}[filtering]
    assert run.discovery.dropped == 0
    # Test I and the filtering tests go to the primary address, the mapping tests to
    # the alternate IP: first (A2, P1), then (A2, P2) if the mapping changed.
    destinations = [remote for _, remote in run.sends]
    expected = [A1P1] * (1 + FILTERING_REQUESTS[filtering]) + [A2P1, A2P2][
        : MAPPING_REQUESTS[mapping]
    ]
    assert destinations == expected


def test_filtering_test_schedule_is_exact() -> None:
    run = run_discovery(Nat(APDM, APDF), StunServer(A1P1, A2P2))
    assert run.sends == [
        (0.0, A1P1),  # test I
        (0.0, A1P1),  # filtering test II
        (0.25, A1P1),
        (0.75, A1P1),
        (1.75, A1P1),
        (2.75, A1P1),  # filtering test III
        (3.0, A1P1),
        (3.5, A1P1),
        (4.5, A1P1),
        (5.5, A2P1),  # mapping test II
        (5.5, A2P2),  # mapping test III
    ]


def test_no_nat() -> None:
    run = run_discovery(None, StunServer(A1P1, A2P2))
    behavior = run.discovery.result()
    assert behavior == NatBehavior(
        mapping=EIM, filtering=EIF, mapped_address=LOCAL, behind_nat=False
    )
    assert run.end == 0.0
    assert len(run.sends) == 3


def test_single_address_server_is_not_rfc5780() -> None:
    run = run_discovery(Nat(EIM, EIF), StunServer(A1P1))
    assert run.end == 0.0
    assert len(run.sends) == 1
    with pytest.raises(NatDiscoveryError, match="RFC 5780"):
        run.discovery.result()


def test_no_server_times_out() -> None:
    run = run_discovery(Nat(EIM, EIF), None)
    assert run.sends == [(0.0, A1P1), (0.25, A1P1), (0.75, A1P1), (1.75, A1P1)]
    assert run.end == 2.75
    with pytest.raises(NatDiscoveryError, match=r"no answer from 192\.0\.2\.1:3478"):
        run.discovery.result()


@pytest.mark.parametrize(
    ("mapping", "reachable", "step", "end"),
    [
        (EIM, {A1P1}, "mapping test II", 2.75),
        (ADM, {A1P1, A2P1}, "mapping test III", 2.75),
    ],
)
def test_alternate_address_unreachable(
    mapping: MappingBehavior, reachable: set[Address], step: str, end: float
) -> None:
    run = run_discovery(Nat(mapping, EIF), StunServer(A1P1, A2P2), reachable=reachable)
    assert run.end == end
    with pytest.raises(NatDiscoveryError, match=f"alternate address \\({step}\\)"):
        run.discovery.result()


def test_custom_config() -> None:
    config = TransactionConfig(rto=1.0, retransmissions=1, rm=2)
    discovery = NatBehaviorDiscovery(A1P1, config=config)
    assert discovery.config is config
    discovery.start(now=0.0)
    assert len(discovery.datagrams_to_send()) == 1
    assert discovery.get_timer() == 1.0
    discovery.handle_timer(now=1.0)
    assert len(discovery.datagrams_to_send()) == 1
    assert discovery.get_timer() == 3.0
    discovery.handle_timer(now=2.9)
    assert not discovery.done
    discovery.handle_timer(now=3.0)
    assert done(discovery)
    assert discovery.get_timer() is None
    with pytest.raises(NatDiscoveryError, match="no answer"):
        discovery.result()


def test_before_start() -> None:
    discovery = NatBehaviorDiscovery(A1P1)
    assert discovery.config == TransactionConfig(rto=0.25, retransmissions=3, rm=4)
    assert not discovery.done
    assert discovery.get_timer() is None
    discovery.handle_timer(now=10.0)
    assert discovery.datagrams_to_send() == []
    with pytest.raises(NatDiscoveryError, match="has not ended"):
        discovery.result()
    # A datagram before start is dropped.
    response = Message(Method.BINDING, Class.RESPONSE, attributes={"XOR-MAPPED-ADDRESS": LOCAL})
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.0)
    assert discovery.dropped == 1


def start(discovery: NatBehaviorDiscovery) -> Message:
    discovery.start(now=0.0)
    [transmit] = discovery.datagrams_to_send()
    assert transmit.remote == A1P1
    return parse_message(transmit.data)


def test_garbage_and_stray_responses_are_dropped() -> None:
    discovery = NatBehaviorDiscovery(A1P1, local_addresses=[LOCAL])
    request = start(discovery)
    assert request.message_class == Class.REQUEST
    assert request.attributes == {}
    for garbage in (b"", b"junk", b"\x00\x01\x00\x00" + bytes(16), b"\x40\x00\x00\x00"):
        discovery.receive_datagram(garbage, remote=A1P1, now=0.1)
    stray = Message(Method.BINDING, Class.RESPONSE, b"x" * 12, {"XOR-MAPPED-ADDRESS": LOCAL})
    discovery.receive_datagram(bytes(stray), remote=A1P1, now=0.1)
    other_request = Message(Method.BINDING, Class.REQUEST, request.transaction_id)
    discovery.receive_datagram(bytes(other_request), remote=A1P1, now=0.1)
    assert discovery.dropped == 6
    assert not discovery.done
    assert discovery.get_timer() == 0.25

    # The real answer moves on to filtering test II.
    response = Message(
        Method.BINDING,
        Class.RESPONSE,
        request.transaction_id,
        {"XOR-MAPPED-ADDRESS": LOCAL, "OTHER-ADDRESS": A2P2},
    )
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.2)
    [transmit] = discovery.datagrams_to_send()
    assert transmit.remote == A1P1
    filter_ii = parse_message(transmit.data)
    assert filter_ii.attributes == {"CHANGE-REQUEST": 0x06}
    assert filter_ii.transaction_id != request.transaction_id
    # The duplicate answer to test I is now stray.
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.3)
    assert discovery.dropped == 7
    assert discovery.get_timer() == 0.45


def test_classic_mapped_address_is_accepted() -> None:
    discovery = NatBehaviorDiscovery(A1P1, local_addresses=[LOCAL])
    request = start(discovery)
    response = Message(
        Method.BINDING,
        Class.RESPONSE,
        request.transaction_id,
        {"MAPPED-ADDRESS": LOCAL, "OTHER-ADDRESS": A2P2},
    )
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.0)
    [transmit] = discovery.datagrams_to_send()
    assert parse_message(transmit.data).attributes == {"CHANGE-REQUEST": 0x06}


def test_response_without_mapped_address_fails() -> None:
    discovery = NatBehaviorDiscovery(A1P1)
    request = start(discovery)
    response = Message(
        Method.BINDING, Class.RESPONSE, request.transaction_id, {"OTHER-ADDRESS": A2P2}
    )
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.0)
    assert discovery.done
    assert discovery.datagrams_to_send() == []
    with pytest.raises(NatDiscoveryError, match="no mapped address"):
        discovery.result()


def test_error_response_to_test_i_fails() -> None:
    discovery = NatBehaviorDiscovery(A1P1)
    request = start(discovery)
    response = Message(
        Method.BINDING, Class.ERROR, request.transaction_id, {"ERROR-CODE": (500, "Oops")}
    )
    discovery.receive_datagram(bytes(response), remote=A1P1, now=0.0)
    with pytest.raises(NatDiscoveryError, match=r"500 - Oops"):
        discovery.result()


def test_transaction_ids_come_from_the_injected_source() -> None:
    rng = tids()
    expected = [rng.randbytes(12) for _ in range(3)]
    run = run_discovery(Nat(EIM, EIF), StunServer(A1P1, A2P2))
    assert run.discovery.result().mapping is EIM
    assert run.transaction_ids == expected


class RejectsChangeRequest(StunServer):
    """An RFC 5780 server that answers every CHANGE-REQUEST with an error."""

    def receive_datagram(
        self, data: bytes, *, local: Address, remote: Address, now: float, stream: bool = False
    ) -> None:
        changes = "CHANGE-REQUEST" in parse_message(data).attributes
        # Over a "stream", the core refuses CHANGE-REQUEST with 400.
        super().receive_datagram(data, local=local, remote=remote, now=now, stream=changes)


def test_an_error_response_to_a_filtering_test_is_not_read_as_filtering() -> None:
    run = run_discovery(None, RejectsChangeRequest(A1P1, A2P2))
    with pytest.raises(NatDiscoveryError, match=r"rejected filtering test II.*400"):
        run.discovery.result()
    assert run.end == 0.0
