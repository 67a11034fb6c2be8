"""mDNS packets: build queries and responses, and read answers robustly (RFC 6762).

dnspython is imported on first use, because importing it costs over 100 ms.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["CLASS_IN", "TYPE_A", "TYPE_AAAA", "TYPE_ANY", "Packet", "Record", "parse"]

TYPE_A: Final = 1
TYPE_AAAA: Final = 28
TYPE_ANY: Final = 255
CLASS_IN: Final = 1
_CACHE_FLUSH: Final = 0x8000
_FLAG_QR: Final = 0x8000
_FLAG_AA: Final = 0x0400


@dataclass(frozen=True, slots=True)
class Record:
    """An A or AAAA answer."""

    name: str
    "The owner name, lower case, without the final dot."
    address: str
    "The IPv4 or IPv6 address."
    ttl: int
    "Time to live in seconds; 0 is a goodbye (RFC 6762 §10.1)."


@dataclass(frozen=True, slots=True)
class Packet:
    """What the service needs from a packet."""

    is_response: bool
    "QR bit set."
    questions: tuple[tuple[str, int], ...]
    "``(name, type)`` of each question."
    records: tuple[Record, ...]
    "The A and AAAA records found in the answer, authority and additional sections."
    strict: bool
    "Whether dnspython parsed the whole packet (False: records were salvaged)."


def _name(value: object) -> str:
    return str(value).rstrip(".").lower()


def _address(rdtype: int, data: bytes) -> str | None:
    if rdtype == TYPE_A and len(data) == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    if rdtype == TYPE_AAAA and len(data) == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    return None


def parse(data: bytes) -> Packet | None:
    """Parse an mDNS packet; ``None`` when nothing can be read. Never raises.

    Browsers' answers do not always parse strictly; when dnspython refuses the
    whole packet, the records are read one by one and those that can be read are
    kept (:attr:`Packet.strict` is then false).
    """
    if len(data) < 12:
        return None
    try:
        return _parse_strict(data)
    except Exception:  # dnspython raises many types on bad input
        pass
    try:
        return _parse_lenient(data)
    except Exception:
        return None


def _parse_strict(data: bytes) -> Packet:
    import dns.message

    message = dns.message.from_wire(data, ignore_trailing=True)
    questions = tuple((_name(q.name), int(q.rdtype)) for q in message.question)
    records: list[Record] = []
    for section in (message.answer, message.authority, message.additional):
        for rrset in section:
            rdtype = int(rrset.rdtype)
            if rdtype not in (TYPE_A, TYPE_AAAA) or int(rrset.rdclass) & 0x7FFF != CLASS_IN:
                continue
            for rdata in rrset:
                # With the cache-flush bit the class is not IN to dnspython: read the bytes.
                address = _address(rdtype, rdata.to_wire() or b"")
                if address is not None:
                    records.append(Record(_name(rrset.name), address, int(rrset.ttl)))
    is_response = bool(message.flags & _FLAG_QR)
    return Packet(is_response, questions, tuple(records), True)


def _parse_lenient(data: bytes) -> Packet:
    import dns.name

    flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!2xHHHHH", data)
    pos = 12
    questions: list[tuple[str, int]] = []
    for _ in range(qdcount):
        name, used = dns.name.from_wire(data, pos)
        pos += used
        rdtype, _rdclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        questions.append((_name(name), rdtype))
    records: list[Record] = []
    for _ in range(ancount + nscount + arcount):
        try:
            name, used = dns.name.from_wire(data, pos)
            pos += used
            rdtype, rdclass, ttl, length = struct.unpack_from("!HHIH", data, pos)
        except Exception:
            break  # the rest cannot be read: keep what was
        pos += 10
        rdata = data[pos : pos + length]
        pos += length
        address = _address(rdtype, rdata) if rdclass & 0x7FFF == CLASS_IN else None
        if address is not None and len(rdata) == length:
            records.append(Record(_name(name), address, ttl))
    return Packet(bool(flags & _FLAG_QR), tuple(questions), tuple(records), False)


def query(names: list[str], types: tuple[int, ...] = (TYPE_A, TYPE_AAAA)) -> bytes:
    """A multicast query (id 0, RFC 6762 §18.1) asking each name for each type."""
    import dns.name

    parts = [struct.pack("!HHHHHH", 0, 0, len(names) * len(types), 0, 0, 0)]
    for name in names:
        wire = dns.name.from_text(name).to_wire()
        assert wire is not None
        parts.extend(wire + struct.pack("!HH", rdtype, CLASS_IN) for rdtype in types)
    return b"".join(parts)


def response(records: list[Record]) -> bytes:
    """An authoritative response carrying ``records`` (cache-flush set, RFC 6762 §10.2)."""
    import dns.name

    parts = [struct.pack("!HHHHHH", 0, _FLAG_QR | _FLAG_AA, 0, len(records), 0, 0)]
    for record in records:
        wire = dns.name.from_text(record.name).to_wire()
        assert wire is not None
        if ":" in record.address:
            rdtype, rdata = TYPE_AAAA, socket.inet_pton(socket.AF_INET6, record.address)
        else:
            rdtype, rdata = TYPE_A, socket.inet_pton(socket.AF_INET, record.address)
        parts.append(
            wire
            + struct.pack("!HHIH", rdtype, CLASS_IN | _CACHE_FLUSH, record.ttl, len(rdata))
            + rdata
        )
    return b"".join(parts)
