"""The mDNS service as a sans-I/O core: resolve ``.local`` names, publish our own (RFC 6762).

One core serves every resolver and publisher of a process (or event loop): it owns
the multicast sockets' traffic. Time enters only through ``now``. After each input
(:meth:`MdnsService.resolve`, :meth:`~MdnsService.publish`,
:meth:`~MdnsService.unpublish`, :meth:`~MdnsService.receive_datagram`,
:meth:`~MdnsService.handle_timer`) the adapter sends every
:meth:`~MdnsService.datagrams_to_send` to its group (``Transmit.remote``), handles
:meth:`~MdnsService.next_event`, and arms one timer at :meth:`~MdnsService.get_timer`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from . import wire
from .names import normalize_name
from .wire import Record

__all__ = [
    "MDNS_ADDRESS",
    "Address",
    "Transmit",
    "MDNS_ADDRESS6",
    "MDNS_PORT",
    "MdnsConfig",
    "MdnsEvent",
    "MdnsService",
    "MdnsStats",
    "Resolved",
    "ResolveFailed",
]

logger = logging.getLogger(__name__)

Address: TypeAlias = tuple[str, int]
"An ``(host, port)`` pair."


@dataclass(frozen=True, slots=True)
class Transmit:
    """One packet to send. (aioice-mdns does not depend on aioice-stun, whose
    ``Transmit`` has the same shape.)"""

    data: bytes
    "The packet."
    remote: Address
    "The multicast group and port to send it to."


MDNS_ADDRESS: Final = "224.0.0.251"
MDNS_ADDRESS6: Final = "ff02::fb"
MDNS_PORT: Final = 5353
GROUPS: Final = ((MDNS_ADDRESS, MDNS_PORT), (MDNS_ADDRESS6, MDNS_PORT))
MAX_CACHED_NAMES: Final = 1024
"Unsolicited answers are cached up to this many names; answers to our queries always are."


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsConfig:
    """Timing of queries, answers and announcements, in seconds."""

    first_retransmit: float = 0.25
    "Delay before the first retransmission of a query; it doubles after each."
    timeout: float = 3.0
    "A query that got no answer by then fails."
    ttl: int = 120
    "TTL of the records we publish (RFC 6762 §10: 120 s for host records)."
    announcements: int = 2
    "Unsolicited responses when a name is published, one second apart (RFC 6762 §8.3)."
    families: tuple[int, ...] = (4, 6)
    "Which groups to use: 4 for 224.0.0.251, 6 for ff02::fb."


@dataclass(frozen=True, slots=True)
class MdnsEvent:
    """Base class of the service's events."""


@dataclass(frozen=True, slots=True)
class Resolved(MdnsEvent):
    """A name was resolved, from the network or the cache."""

    name: str
    "The name, lower case, without the final dot."
    addresses: tuple[str, ...]
    "Its addresses, in the order they came."


@dataclass(frozen=True, slots=True)
class ResolveFailed(MdnsEvent):
    """No answer for a name before the timeout."""

    name: str
    "The name."


@dataclass(slots=True)
class MdnsStats:
    """Counters of an :class:`MdnsService`."""

    queries_sent: int = 0
    "Query packets sent (each to every group)."
    answers_sent: int = 0
    "Response packets sent: answers, announcements and goodbyes."
    dropped: int = 0
    "Packets that could not be read at all."
    salvaged: int = 0
    "Packets that did not parse strictly, whose readable records were used."


@dataclass(slots=True)
class _Query:
    started: float
    next_send: float
    interval: float


@dataclass(slots=True)
class _Published:
    address: str
    announcements_left: int
    next_announcement: float


@dataclass(slots=True)
class _Cached:
    expires: dict[str, float] = field(default_factory=dict)  # address -> expiry


class MdnsService:
    """Resolves ``.local`` names and answers for the ones published here.

    :param config: timings and groups.
    """

    def __init__(self, config: MdnsConfig | None = None) -> None:
        self.config = config or MdnsConfig()
        self.stats = MdnsStats()
        self._groups = [g for g in GROUPS if (6 if ":" in g[0] else 4) in self.config.families]
        self._queries: dict[str, _Query] = {}
        self._published: dict[str, _Published] = {}
        self._cache: dict[str, _Cached] = {}
        self._pending: list[Transmit] = []
        self._events: deque[MdnsEvent] = deque()

    # -- inputs -------------------------------------------------------------------------

    def resolve(self, name: str, *, now: float) -> None:
        """Start resolving ``name``; a :class:`Resolved` or :class:`ResolveFailed` follows.

        A name in the cache is resolved at once; a name already being resolved is
        not queried twice.
        """
        key = normalize_name(name)
        cached = self.lookup(key, now=now)
        if cached:
            self._events.append(Resolved(key, cached))
            return
        if key in self._published:
            self._events.append(Resolved(key, (self._published[key].address,)))
            return
        if key in self._queries:
            return
        # Build the query first: a name it refuses must not stay queued for the timer.
        self._send_query([key])
        first = self.config.first_retransmit
        self._queries[key] = _Query(started=now, next_send=now + first, interval=first)

    def lookup(self, name: str, *, now: float) -> tuple[str, ...]:
        """The cached, unexpired addresses of ``name``."""
        cached = self._cache.get(normalize_name(name))
        if cached is None:
            return ()
        return tuple(a for a, expiry in cached.expires.items() if expiry > now)

    def publish(self, name: str, address: str, *, now: float) -> None:
        """Answer for ``name`` with ``address`` and announce it (RFC 6762 §8.3)."""
        key = normalize_name(name)
        # Build the answer first: a name or address it refuses must not stay published.
        self._send_answer([Record(key, address, self.config.ttl)])
        self._published[key] = _Published(address, self.config.announcements - 1, now + 1.0)

    def unpublish(self, name: str, *, now: float) -> None:
        """Stop answering for ``name`` and send a goodbye (TTL 0, RFC 6762 §10.1)."""
        published = self._published.pop(normalize_name(name), None)
        if published is not None:
            self._send_answer([Record(normalize_name(name), published.address, 0)])

    def receive_datagram(self, data: bytes, *, remote: Address, now: float) -> None:
        """Handle a packet from the mDNS port. Never raises on what it contains."""
        packet = wire.parse(data)
        if packet is None:
            self.stats.dropped += 1
            logger.debug("mDNS packet from %s dropped: unreadable", remote)
            return
        if not packet.strict:
            self.stats.salvaged += 1
        if packet.is_response:
            self._answers(packet.records, now)
        else:
            self._questions(packet.questions, remote)

    def handle_timer(self, *, now: float) -> None:
        """Retransmit queries, fail the ones past their timeout, announce, expire the cache."""
        due: list[str] = []
        for name, query in list(self._queries.items()):
            if now >= query.started + self.config.timeout:
                del self._queries[name]
                self._events.append(ResolveFailed(name))
            elif now >= query.next_send:
                query.interval *= 2
                query.next_send = now + query.interval
                due.append(name)
        if due:
            self._send_query(due)
        announce = []
        for name, published in self._published.items():
            if published.announcements_left > 0 and now >= published.next_announcement:
                published.announcements_left -= 1
                published.next_announcement = now + 1.0
                announce.append(Record(name, published.address, self.config.ttl))
        if announce:
            self._send_answer(announce)
        for name, cached in list(self._cache.items()):
            for address, expiry in list(cached.expires.items()):
                if expiry <= now:
                    del cached.expires[address]
            if not cached.expires:
                del self._cache[name]

    # -- outputs ------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the packets to send; ``remote`` is the group (and port) to send to."""
        pending, self._pending = self._pending, []
        return pending

    def next_event(self) -> MdnsEvent | None:
        """The next event, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None``."""
        deadlines: list[float] = []
        for query in self._queries.values():
            deadlines.append(min(query.next_send, query.started + self.config.timeout))
        deadlines.extend(
            p.next_announcement for p in self._published.values() if p.announcements_left > 0
        )
        for cached in self._cache.values():
            deadlines.extend(cached.expires.values())
        return min(deadlines, default=None)

    # -- helpers ------------------------------------------------------------------------

    def _send_query(self, names: list[str]) -> None:
        data = wire.query(names)
        self.stats.queries_sent += 1
        self._pending.extend(Transmit(data, group) for group in self._groups)

    def _send_answer(self, records: list[Record], groups: list[Address] | None = None) -> None:
        data = wire.response(records)
        self.stats.answers_sent += 1
        self._pending.extend(Transmit(data, group) for group in groups or self._groups)

    def _questions(self, questions: tuple[tuple[str, int], ...], remote: Address) -> None:
        records = []
        for name, rdtype in questions:
            published = self._published.get(name)
            if published is None:
                continue
            is_v6 = ":" in published.address
            if rdtype == wire.TYPE_ANY or rdtype == (wire.TYPE_AAAA if is_v6 else wire.TYPE_A):
                record = Record(name, published.address, self.config.ttl)
                if record not in records:
                    records.append(record)
        if records:
            # Answer on the group of the family the question came over.
            family_group = [g for g in self._groups if (":" in g[0]) == (":" in remote[0])]
            self._send_answer(records, family_group or None)

    def _answers(self, records: tuple[Record, ...], now: float) -> None:
        found: dict[str, list[str]] = {}
        for record in records:
            if record.ttl == 0:
                # A goodbye expires a cached record one second later (RFC 6762 §10.1);
                # it neither adds a record nor extends one.
                known = self._cache.get(record.name)
                if known is not None and record.address in known.expires:
                    expiry = known.expires[record.address]
                    known.expires[record.address] = min(expiry, now + 1)
                continue
            cached = self._cache.get(record.name)
            if cached is None:
                if len(self._cache) >= MAX_CACHED_NAMES and record.name not in self._queries:
                    continue  # a full cache keeps room for the names we ask for
                cached = self._cache[record.name] = _Cached()
            cached.expires[record.address] = now + record.ttl
            found.setdefault(record.name, []).append(record.address)
        for name, addresses in found.items():
            if self._queries.pop(name, None) is not None:
                self._events.append(Resolved(name, tuple(dict.fromkeys(addresses))))
