"""The sans-I/O mDNS core, driven by hand from ``now = 0.0`` with exact timers."""

from __future__ import annotations

import random

import dns.exception
import pytest
from aioice.mdns import (
    MDNS_ADDRESS,
    MDNS_ADDRESS6,
    MDNS_PORT,
    MdnsConfig,
    MdnsEvent,
    MdnsService,
    Resolved,
    ResolveFailed,
    Transmit,
    create_mdns_hostname,
    is_mdns_hostname,
    wire,
)
from aioice.mdns.wire import TYPE_A, TYPE_AAAA, TYPE_ANY, Record

NAME = "1f0e4a8b-7c3d-4e2f-9a1b-0c2d3e4f5a6b.local"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.local"
V4 = (MDNS_ADDRESS, MDNS_PORT)
V6 = (MDNS_ADDRESS6, MDNS_PORT)
PEER4 = ("192.168.1.20", MDNS_PORT)
PEER6 = ("fe80::20", MDNS_PORT)


def events(service: MdnsService) -> list[MdnsEvent]:
    out: list[MdnsEvent] = []
    while (event := service.next_event()) is not None:
        out.append(event)
    return out


def parsed(transmit: Transmit) -> wire.Packet:
    packet = wire.parse(transmit.data)
    assert packet is not None
    return packet


def answer(*records: Record) -> bytes:
    return wire.response(list(records))


def deliver(transmits: list[Transmit], to: MdnsService, *, now: float) -> None:
    """Hand each packet to ``to`` as if it came over the family of its group."""
    for transmit in transmits:
        remote = PEER6 if transmit.remote == V6 else PEER4
        to.receive_datagram(transmit.data, remote=remote, now=now)


# -- resolving ----------------------------------------------------------------------------


def test_resolve_sends_one_query_to_both_groups() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    sent = service.datagrams_to_send()
    assert [t.remote for t in sent] == [V4, V6]
    assert sent[0].data == sent[1].data
    packet = parsed(sent[0])
    assert not packet.is_response
    assert packet.questions == ((NAME, TYPE_A), (NAME, TYPE_AAAA))
    assert packet.records == ()
    assert service.stats.queries_sent == 1
    assert service.get_timer() == 0.25
    assert events(service) == []
    assert service.datagrams_to_send() == []


def test_retransmissions_double_then_fail_at_timeout() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    assert len(service.datagrams_to_send()) == 2
    timeline: list[tuple[float, int, list[MdnsEvent]]] = []
    while (timer := service.get_timer()) is not None:
        # Just before the deadline nothing happens.
        service.handle_timer(now=timer - 0.001)
        assert service.datagrams_to_send() == []
        assert events(service) == []
        service.handle_timer(now=timer)
        timeline.append((timer, len(service.datagrams_to_send()), events(service)))
        assert len(timeline) < 10
    assert timeline == [
        (0.25, 2, []),
        (0.75, 2, []),
        (1.75, 2, []),
        (3.0, 0, [ResolveFailed(NAME)]),
    ]
    assert service.stats.queries_sent == 4
    # Each retransmission is the same query, to both groups.
    service.resolve(NAME, now=10.0)
    assert parsed(service.datagrams_to_send()[0]).questions == ((NAME, TYPE_A), (NAME, TYPE_AAAA))


def test_retransmission_timers_follow_a_non_zero_start() -> None:
    config = MdnsConfig(first_retransmit=0.5, timeout=2.0)
    service = MdnsService(config)
    service.resolve(NAME, now=100.0)
    service.datagrams_to_send()
    assert service.get_timer() == 100.5
    service.handle_timer(now=100.5)
    assert len(service.datagrams_to_send()) == 2
    assert service.get_timer() == 101.5
    service.handle_timer(now=101.5)
    assert len(service.datagrams_to_send()) == 2
    assert service.get_timer() == 102.0  # the timeout comes before the next send at 103.5
    service.handle_timer(now=102.0)
    assert service.datagrams_to_send() == []
    assert events(service) == [ResolveFailed(NAME)]
    assert service.get_timer() is None


def test_two_services_resolve_over_ipv4_and_ipv6() -> None:
    publisher, resolver = MdnsService(), MdnsService()
    publisher.publish(NAME, "192.168.1.20", now=0.0)
    publisher.datagrams_to_send()
    resolver.resolve(NAME, now=0.0)
    queries = resolver.datagrams_to_send()
    answers_before = publisher.stats.answers_sent

    # The publisher answers each query on the group of the family it came over.
    deliver(queries[:1], publisher, now=0.01)
    over_v4 = publisher.datagrams_to_send()
    assert [t.remote for t in over_v4] == [V4]
    deliver(queries[1:], publisher, now=0.01)
    over_v6 = publisher.datagrams_to_send()
    assert [t.remote for t in over_v6] == [V6]
    assert publisher.stats.answers_sent == answers_before + 2
    packet = parsed(over_v4[0])
    assert packet.is_response
    assert packet.records == (Record(NAME, "192.168.1.20", 120),)

    deliver(over_v4, resolver, now=0.02)
    assert events(resolver) == [Resolved(NAME, ("192.168.1.20",))]
    assert resolver.datagrams_to_send() == []
    # The query is over: only the cache entry is left to time.
    assert resolver.get_timer() == pytest.approx(120.02)
    # The second answer (over IPv6) only refreshes the cache.
    deliver(over_v6, resolver, now=0.03)
    assert events(resolver) == []
    assert resolver.lookup(NAME, now=1.0) == ("192.168.1.20",)


def test_aaaa_publish_and_resolve() -> None:
    publisher, resolver = MdnsService(), MdnsService()
    publisher.publish(NAME, "fe80::1234", now=0.0)
    announcement = publisher.datagrams_to_send()
    assert parsed(announcement[0]).records == (Record(NAME, "fe80::1234", 120),)
    resolver.resolve(NAME.upper() + ".", now=0.0)  # names are case-insensitive
    deliver(resolver.datagrams_to_send(), publisher, now=0.0)
    replies = publisher.datagrams_to_send()
    assert [t.remote for t in replies] == [V4, V6]
    deliver(replies[:1], resolver, now=0.0)
    assert events(resolver) == [Resolved(NAME, ("fe80::1234",))]


def test_a_question_is_not_answered_with_aaaa() -> None:
    publisher = MdnsService()
    publisher.publish(NAME, "fe80::1234", now=0.0)
    publisher.datagrams_to_send()
    publisher.receive_datagram(wire.query([NAME], (TYPE_A,)), remote=PEER4, now=0.0)
    assert publisher.datagrams_to_send() == []
    publisher.receive_datagram(wire.query([NAME], (TYPE_AAAA,)), remote=PEER4, now=0.0)
    assert len(publisher.datagrams_to_send()) == 1


def test_any_question_is_answered() -> None:
    publisher = MdnsService()
    publisher.publish(NAME, "10.0.0.5", now=0.0)
    publisher.datagrams_to_send()
    publisher.receive_datagram(wire.query([NAME], (TYPE_ANY,)), remote=PEER4, now=0.5)
    replies = publisher.datagrams_to_send()
    assert [t.remote for t in replies] == [V4]
    assert parsed(replies[0]).records == (Record(NAME, "10.0.0.5", 120),)


def test_questions_for_other_names_are_ignored() -> None:
    publisher = MdnsService()
    publisher.publish(NAME, "10.0.0.5", now=0.0)
    publisher.datagrams_to_send()
    answers = publisher.stats.answers_sent
    for types in ((TYPE_A,), (TYPE_AAAA,), (TYPE_ANY,), (TYPE_A, TYPE_AAAA)):
        publisher.receive_datagram(wire.query([OTHER], types), remote=PEER4, now=0.5)
        publisher.receive_datagram(wire.query([OTHER], types), remote=PEER6, now=0.5)
    assert publisher.datagrams_to_send() == []
    assert publisher.stats.answers_sent == answers
    # A query for both names is answered for ours only, once.
    publisher.receive_datagram(wire.query([OTHER, NAME, NAME]), remote=PEER4, now=0.5)
    (reply,) = publisher.datagrams_to_send()
    assert parsed(reply).records == (Record(NAME, "10.0.0.5", 120),)


def test_cache_hit_resolves_at_once() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    service.datagrams_to_send()
    service.receive_datagram(answer(Record(NAME, "10.0.0.7", 60)), remote=PEER4, now=0.1)
    assert events(service) == [Resolved(NAME, ("10.0.0.7",))]
    sent = service.stats.queries_sent
    service.resolve(NAME, now=30.0)
    assert events(service) == [Resolved(NAME, ("10.0.0.7",))]
    assert service.datagrams_to_send() == []
    assert service.stats.queries_sent == sent
    assert service.get_timer() == pytest.approx(60.1)


def test_unsolicited_answers_are_cached() -> None:
    service = MdnsService()
    service.receive_datagram(answer(Record(NAME, "10.0.0.7", 60)), remote=PEER4, now=0.0)
    assert events(service) == []  # nobody asked
    service.resolve(NAME, now=1.0)
    assert events(service) == [Resolved(NAME, ("10.0.0.7",))]
    assert service.datagrams_to_send() == []


def test_cache_expires_at_exactly_now_plus_ttl() -> None:
    service = MdnsService()
    service.receive_datagram(answer(Record(NAME, "10.0.0.7", 10)), remote=PEER4, now=1.0)
    assert service.get_timer() == 11.0
    assert service.lookup(NAME, now=10.999) == ("10.0.0.7",)
    service.handle_timer(now=10.999)
    assert service.lookup(NAME, now=10.999) == ("10.0.0.7",)
    assert service.lookup(NAME, now=11.0) == ()
    service.handle_timer(now=11.0)
    assert service.get_timer() is None
    assert service.lookup(NAME, now=11.0) == ()
    # Expired: resolving queries the network again.
    service.resolve(NAME, now=11.0)
    assert events(service) == []
    assert len(service.datagrams_to_send()) == 2


def test_goodbye_expires_the_cache_one_second_later() -> None:
    publisher, resolver = MdnsService(), MdnsService()
    publisher.publish(NAME, "10.0.0.9", now=0.0)
    deliver(publisher.datagrams_to_send()[:1], resolver, now=0.0)
    assert resolver.lookup(NAME, now=0.0) == ("10.0.0.9",)
    assert resolver.get_timer() == 120.0

    publisher.unpublish(NAME, now=5.0)
    goodbye = publisher.datagrams_to_send()
    assert [t.remote for t in goodbye] == [V4, V6]
    assert parsed(goodbye[0]).records == (Record(NAME, "10.0.0.9", 0),)
    assert publisher.get_timer() is None  # no more announcements

    deliver(goodbye[:1], resolver, now=5.0)
    assert events(resolver) == []
    assert resolver.get_timer() == 6.0
    resolver.handle_timer(now=5.5)
    assert resolver.lookup(NAME, now=5.5) == ("10.0.0.9",)
    resolver.handle_timer(now=6.0)
    assert resolver.lookup(NAME, now=6.0) == ()
    assert resolver.get_timer() is None

    # The publisher no longer answers, and a second unpublish sends nothing.
    publisher.receive_datagram(wire.query([NAME]), remote=PEER4, now=7.0)
    publisher.unpublish(NAME, now=7.0)
    assert publisher.datagrams_to_send() == []


def test_goodbye_for_an_unknown_record_is_not_cached() -> None:
    service = MdnsService()
    service.receive_datagram(answer(Record(NAME, "10.0.0.9", 0)), remote=PEER4, now=0.0)
    assert service.lookup(NAME, now=0.5) == ()
    assert service.get_timer() is None
    service.resolve(NAME, now=0.5)
    assert events(service) == []
    assert len(service.datagrams_to_send()) == 2
    # Nor does a goodbye during a query resolve it.
    service.receive_datagram(answer(Record(NAME, "10.0.0.9", 0)), remote=PEER4, now=0.6)
    assert events(service) == []


def test_goodbye_does_not_extend_a_record() -> None:
    service = MdnsService()
    service.receive_datagram(answer(Record(NAME, "10.0.0.9", 1)), remote=PEER4, now=0.0)
    service.receive_datagram(answer(Record(NAME, "10.0.0.9", 0)), remote=PEER4, now=0.5)
    assert service.get_timer() == 1.0


def test_conflicting_answers() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    service.datagrams_to_send()
    service.receive_datagram(answer(Record(NAME, "10.0.0.1", 120)), remote=PEER4, now=0.1)
    service.receive_datagram(
        answer(Record(NAME, "10.0.0.2", 120)), remote=("192.168.1.21", MDNS_PORT), now=0.2
    )
    # The first packet resolves; the second only adds to the cache.
    assert events(service) == [Resolved(NAME, ("10.0.0.1",))]
    assert service.lookup(NAME, now=1.0) == ("10.0.0.1", "10.0.0.2")
    service.resolve(NAME, now=1.0)
    assert events(service) == [Resolved(NAME, ("10.0.0.1", "10.0.0.2"))]


def test_one_answer_with_both_families() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    data = answer(
        Record(NAME, "10.0.0.1", 120),
        Record(NAME, "fe80::1", 120),
        Record(NAME, "10.0.0.1", 120),
        Record(OTHER, "10.0.0.3", 120),
    )
    service.receive_datagram(data, remote=PEER4, now=0.1)
    assert events(service) == [Resolved(NAME, ("10.0.0.1", "fe80::1"))]
    assert service.lookup(OTHER, now=0.1) == ("10.0.0.3",)


def test_announcements() -> None:
    service = MdnsService()
    service.publish(NAME, "10.0.0.5", now=0.0)
    first = service.datagrams_to_send()
    assert [t.remote for t in first] == [V4, V6]
    packet = parsed(first[0])
    assert packet.is_response
    assert packet.records == (Record(NAME, "10.0.0.5", 120),)
    assert service.get_timer() == 1.0
    service.handle_timer(now=0.999)
    assert service.datagrams_to_send() == []
    service.handle_timer(now=1.0)
    second = service.datagrams_to_send()
    assert [t.remote for t in second] == [V4, V6]
    assert second[0].data == first[0].data
    assert service.get_timer() is None
    assert service.stats.answers_sent == 2
    assert service.stats.queries_sent == 0


def test_more_announcements_one_second_apart() -> None:
    service = MdnsService(MdnsConfig(announcements=3, ttl=30))
    service.publish(NAME, "10.0.0.5", now=0.0)
    times = [0.0] if service.datagrams_to_send() else []
    while (timer := service.get_timer()) is not None:
        service.handle_timer(now=timer)
        sent = service.datagrams_to_send()
        assert parsed(sent[0]).records == (Record(NAME, "10.0.0.5", 30),)
        times.append(timer)
    assert times == [0.0, 1.0, 2.0]


def test_a_name_being_resolved_is_not_queried_twice() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    service.resolve(NAME, now=0.1)
    service.resolve(NAME.upper(), now=0.2)
    assert len(service.datagrams_to_send()) == 2
    assert service.stats.queries_sent == 1
    assert service.get_timer() == 0.25  # the first query's timer
    service.receive_datagram(answer(Record(NAME, "10.0.0.1", 120)), remote=PEER4, now=0.3)
    assert events(service) == [Resolved(NAME, ("10.0.0.1",))]


def test_two_names_retransmit_in_one_packet() -> None:
    service = MdnsService()
    service.resolve(NAME, now=0.0)
    service.resolve(OTHER, now=0.0)
    assert len(service.datagrams_to_send()) == 4
    service.handle_timer(now=0.25)
    (v4, v6) = service.datagrams_to_send()
    assert parsed(v4).questions == (
        (NAME, TYPE_A),
        (NAME, TYPE_AAAA),
        (OTHER, TYPE_A),
        (OTHER, TYPE_AAAA),
    )
    assert v6.remote == V6


def test_resolving_a_name_we_publish() -> None:
    service = MdnsService()
    service.publish(NAME, "10.0.0.5", now=0.0)
    service.datagrams_to_send()
    service.resolve(NAME, now=0.1)
    assert events(service) == [Resolved(NAME, ("10.0.0.5",))]
    assert service.datagrams_to_send() == []
    assert service.stats.queries_sent == 0


def test_our_own_query_looped_back_is_answered() -> None:
    # Multicast loopback: a query from this host reaches its own socket too.
    service = MdnsService()
    service.publish(NAME, "10.0.0.5", now=0.0)
    service.resolve(OTHER, now=0.0)
    service.datagrams_to_send()
    service.receive_datagram(wire.query([NAME, OTHER]), remote=PEER4, now=0.0)
    (reply,) = service.datagrams_to_send()
    service.receive_datagram(reply.data, remote=PEER4, now=0.0)
    assert events(service) == []  # OTHER is still unresolved
    assert service.get_timer() == 0.25


@pytest.mark.parametrize(("families", "group"), [((4,), V4), ((6,), V6)])
def test_families_choose_the_groups(families: tuple[int, ...], group: tuple[str, int]) -> None:
    service = MdnsService(MdnsConfig(families=families))

    def remotes() -> list[tuple[str, int]]:
        return [t.remote for t in service.datagrams_to_send()]

    service.resolve(NAME, now=0.0)
    assert remotes() == [group]
    service.handle_timer(now=0.25)
    assert remotes() == [group]
    service.publish(OTHER, "10.0.0.5", now=0.5)
    assert remotes() == [group]
    service.handle_timer(now=1.5)  # a retransmission and an announcement
    assert remotes() == [group, group]
    # Over the other family (or ours), the answer goes to the one group in use.
    service.receive_datagram(wire.query([OTHER]), remote=PEER4, now=2.0)
    service.receive_datagram(wire.query([OTHER]), remote=PEER6, now=2.0)
    assert remotes() == [group, group]
    service.unpublish(OTHER, now=2.0)
    assert remotes() == [group]


GARBAGE = [
    b"",
    b"\x00",
    b"\x00" * 11,
    b"\xff" * 11,
    b"\xff" * 12,  # 65535 questions, none there
    b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # one question, none there
    b"\x00\x00\x84\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
    b"\x00\x00\x84\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40abc",  # bad label type
    b"\x00\x00\x84\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05local\x00\x00",  # short question
]


def test_garbage_is_dropped_and_counted() -> None:
    service = MdnsService()
    service.publish(NAME, "10.0.0.5", now=0.0)
    service.resolve(OTHER, now=0.0)
    service.datagrams_to_send()
    for data in GARBAGE:
        service.receive_datagram(data, remote=PEER4, now=0.1)
    assert service.stats.dropped == len(GARBAGE)
    assert service.stats.salvaged == 0
    assert service.datagrams_to_send() == []
    assert events(service) == []
    assert service.get_timer() == 0.25


def test_readable_packets_are_not_dropped() -> None:
    service = MdnsService()
    service.receive_datagram(b"\x00" * 12, remote=PEER4, now=0.0)  # an empty query
    service.receive_datagram(answer(), remote=PEER4, now=0.0)  # an empty response
    assert service.stats.dropped == 0
    assert service.datagrams_to_send() == []


def test_a_name_wire_refuses_leaves_no_state() -> None:
    service = MdnsService()
    for name in ("a..local", "x" * 64 + ".local", ".".join(["abcdefgh"] * 40)):
        with pytest.raises(dns.exception.DNSException):
            service.resolve(name, now=0.0)
        with pytest.raises(dns.exception.DNSException):
            service.publish(name, "10.0.0.1", now=0.0)
    with pytest.raises(OSError, match="illegal IP address"):
        service.publish(NAME, "not-an-address", now=0.0)
    assert service.get_timer() is None
    assert service.datagrams_to_send() == []
    service.handle_timer(now=1.0)  # nothing left queued that would raise here
    service.receive_datagram(wire.query([NAME]), remote=PEER4, now=1.0)
    assert service.datagrams_to_send() == []
    assert service.stats.queries_sent == 0
    assert service.stats.answers_sent == 0


# -- names --------------------------------------------------------------------------------


def test_mdns_hostnames() -> None:
    name = create_mdns_hostname(random.Random(1))
    assert name == create_mdns_hostname(random.Random(1))
    assert is_mdns_hostname(name)
    assert is_mdns_hostname(create_mdns_hostname())
    assert name[14] == "4"  # a version 4 UUID
    assert is_mdns_hostname("abc.local.")
    for bad in ("abc.local\n", "a.b.local", ".local", "abc.local..", "x" * 64 + ".local", "abc"):
        assert not is_mdns_hostname(bad), bad


def test_unsolicited_answers_cannot_fill_the_cache_without_bound() -> None:
    from aioice.mdns import wire
    from aioice.mdns.service import MAX_CACHED_NAMES

    service = MdnsService()
    for n in range(MAX_CACHED_NAMES + 100):
        data = wire.response([wire.Record(f"n{n}.local", "192.0.2.9", 120)])
        service.receive_datagram(data, remote=("192.0.2.9", 5353), now=0.0)
    assert service.lookup(f"n{MAX_CACHED_NAMES - 1}.local", now=1.0) == ("192.0.2.9",)
    assert service.lookup(f"n{MAX_CACHED_NAMES}.local", now=1.0) == ()
    # An answer to our own query is still cached, full or not.
    service.resolve("wanted.local", now=1.0)
    data = wire.response([wire.Record("wanted.local", "192.0.2.10", 120)])
    service.receive_datagram(data, remote=("192.0.2.10", 5353), now=1.1)
    assert service.lookup("wanted.local", now=1.2) == ("192.0.2.10",)
