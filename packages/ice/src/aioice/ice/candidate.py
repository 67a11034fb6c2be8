"""ICE candidates: the SDP ``candidate`` attribute, foundations and priorities.

This module is API-compatible with ``aioice.candidate`` of aioice 0.13 (the names aiortc
uses: :class:`Candidate`, :func:`candidate_foundation`, :func:`candidate_priority`) and adds
:func:`local_preference`, :func:`candidate_pair_priority` and :class:`CandidateParseError`.
It is a sans-I/O module: no sockets, no clock, no randomness.

Differences from aioice 0.13, all deliberate:

- :meth:`Candidate.from_sdp` validates its input and raises :class:`CandidateParseError`
  (a :class:`ValueError`) with a message naming the bad field. aioice 0.13 raised
  ``ValueError`` only for a short line or a non-integer, and accepted the rest silently.
- A leading ``candidate:`` (or ``a=candidate:``) is stripped. aioice 0.13 kept it as part of
  the foundation, so ``to_sdp()`` gave it back; here it does not, and the foundation is the
  bare value the peer chose.
- Attributes other than ``raddr``, ``rport``, ``tcptype`` and ``generation`` (``ufrag``,
  ``network-id``, ``network-cost``, ...) are kept in :attr:`Candidate.extensions` and written
  back by :meth:`Candidate.to_sdp`, in order, after the known ones. aioice 0.13 dropped them.
- Keywords (``typ``, ``raddr``, ...) and the values of ``typ`` and ``tcptype`` are matched
  case-insensitively (RFC 5234 section 2.3: ABNF strings are case-insensitive) and written in
  lower case. The transport keeps the case it was given (Firefox and libnice send ``UDP``).
- :meth:`Candidate.can_pair_with` returns ``False`` for a candidate whose address is not an
  IP address (an mDNS ``.local`` name not resolved yet) instead of raising ``ValueError``,
  and applies the TCP pairing rule of RFC 6544 section 6.2.
- :func:`candidate_priority` raises ``ValueError`` for an unknown type or an out-of-range
  component or local preference, where aioice 0.13 used a type preference of 0.
- :func:`candidate_foundation` takes an optional ``server`` and lower-cases the type and
  transport; for the arguments aioice 0.13 used (lower-case ``"udp"``, canonical addresses),
  it returns the same 32 hex digits.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from .errors import IceError

__all__ = [
    "TCP_TYPES",
    "TYPE_PREFERENCES",
    "Candidate",
    "CandidateParseError",
    "candidate_foundation",
    "candidate_pair_priority",
    "candidate_priority",
    "local_preference",
]

#: Recommended type preferences (RFC 8445 section 5.1.2.2), by candidate type.
TYPE_PREFERENCES: Final[Mapping[str, int]] = MappingProxyType(
    {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}
)

#: The values of ``tcptype`` (RFC 6544 section 4.5).
TCP_TYPES: Final = frozenset({"active", "passive", "so"})

# Keywords with a meaning of their own in the candidate attribute (RFC 8839 section 5.1,
# RFC 6544 section 4.5, and the de-facto ``generation``); anything else is an extension.
_KNOWN_KEYS: Final = frozenset({"typ", "raddr", "rport", "tcptype", "generation"})

# RFC 6544 section 6.2: active pairs with passive, passive with active, so with so.
_TCP_PAIRS: Final = frozenset({("active", "passive"), ("passive", "active"), ("so", "so")})

# RFC 4566 section 9: token-char.
_TOKEN_RE: Final = re.compile(r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7e]+")
# RFC 8839 section 5.1: foundation = 1*32ice-char, ice-char = ALPHA / DIGIT / "+" / "/".
_FOUNDATION_RE: Final = re.compile(r"[A-Za-z0-9+/]{1,32}")
# Visible ASCII (VCHAR): what an address or a related address may contain.
_VCHAR_RE: Final = re.compile(r"[\x21-\x7e]+")
# RFC 8839 section 5.1: extension-att-value = non-ws-string (VCHAR / %x80-FF).
_NON_WS_RE: Final = re.compile(r"[^\x00-\x20\x7f\s]+")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,10}")

_UINT32_MAX: Final = 0xFFFFFFFF
_PORT_MAX: Final = 0xFFFF


class CandidateParseError(IceError, ValueError):
    """Raised by :meth:`Candidate.from_sdp` for a malformed candidate attribute.

    It is the only exception ``from_sdp`` raises for any ``str``; it subclasses
    :class:`ValueError` because aioice 0.13 raised plain ``ValueError``.
    """


def candidate_foundation(
    candidate_type: str,
    candidate_transport: str,
    base_address: str,
    *,
    server: str | None = None,
) -> str:
    """Compute the foundation of a local candidate (RFC 8445 section 5.1.1.3).

    Candidates get the same foundation when they have the same type, the same base IP
    address, the same transport protocol and (for server-reflexive and relayed candidates)
    the same STUN or TURN server; otherwise they get different ones.

    The foundation is the MD5 digest of ``"type|transport|base"`` (plus ``"|server"`` when
    ``server`` is given) in 32 lower-case hex digits, the format of aioice 0.13, so it is
    deterministic across processes and hosts and is a valid ``1*32ice-char``.
    MD5 is not used for security here.

    Args:
        candidate_type: ``"host"``, ``"srflx"``, ``"prflx"`` or ``"relay"``.
        candidate_transport: ``"udp"`` or ``"tcp"``, in any case.
        base_address: the IP address of the candidate's base; IP literals are compared in
            canonical form (``"FE80:0::1"`` and ``"fe80::1"`` are the same base).
        server: the address of the STUN or TURN server the candidate was obtained from;
            ``None`` (the default, and aioice 0.13's behaviour) leaves it out of the key.
    """
    key = f"{candidate_type.lower()}|{candidate_transport.lower()}|{_canonical(base_address)}"
    if server is not None:
        key += f"|{_canonical(server)}"
    return hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()


def candidate_priority(
    candidate_component: int, candidate_type: str, local_pref: int = 65535
) -> int:
    """Compute the priority of a candidate (RFC 8445 section 5.1.2.1).

    ``priority = 2**24 * type_preference + 2**8 * local_pref + (256 - component)``, with the
    type preferences of :data:`TYPE_PREFERENCES` (host 126, prflx 110, srflx 100, relay 0).

    Args:
        candidate_component: the component ID, from 1 to 256.
        candidate_type: ``"host"``, ``"prflx"``, ``"srflx"`` or ``"relay"``.
        local_pref: the local preference, from 0 to 65535 (RFC 8445 section 5.1.2.2); 65535
            suits a host with a single address, :func:`local_preference` a multihomed one.

    Raises:
        ValueError: for an unknown type or an argument out of range.
    """
    try:
        type_pref = TYPE_PREFERENCES[candidate_type]
    except KeyError:
        raise ValueError(f"unknown candidate type {candidate_type!r}") from None
    if not 1 <= candidate_component <= 256:
        raise ValueError(f"component must be from 1 to 256, got {candidate_component}")
    if not 0 <= local_pref <= 65535:
        raise ValueError(f"local preference must be from 0 to 65535, got {local_pref}")
    return (type_pref << 24) + (local_pref << 8) + (256 - candidate_component)


def local_preference(address: str, *, index: int = 0) -> int:
    """Local preference of a host address on a multihomed or dual-stack host.

    RFC 8445 section 5.1.2.2 asks for a distinct local preference per IP address of a
    multihomed host, and RFC 8421 for IPv6 to be preferred while the families stay
    intermingled so that a broken IPv6 path does not delay every IPv4 check. This function
    interleaves the families::

        IPv6 #0 -> 65535, IPv4 #0 -> 65534, IPv6 #1 -> 65533, IPv4 #1 -> 65532, ...

    i.e. ``65535 - 2 * index - (0 if IPv6 else 1)``. Distinct ``(family, index)`` give
    distinct values. A host with a single address should use 65535 (the default of
    :func:`candidate_priority`), as RFC 8445 recommends.

    Args:
        address: the IP address of the interface (an IPv6 zone ``%eth0`` is allowed).
        index: the rank of this address among the host's addresses of the same family,
            0 being the most preferred (for example the order of the interfaces); from 0 to
            32767.

    Raises:
        ValueError: if ``address`` is not an IP address or ``index`` is out of range.
    """
    ip = ipaddress.ip_address(address)
    if not 0 <= index <= 32767:
        raise ValueError(f"index must be from 0 to 32767, got {index}")
    return 65535 - 2 * index - (0 if ip.version == 6 else 1)


def candidate_pair_priority(local: Candidate, remote: Candidate, ice_controlling: bool) -> int:
    """Compute the priority of a candidate pair (RFC 8445 section 6.1.2.3).

    ``2**32 * min(G, D) + 2 * max(G, D) + (1 if G > D else 0)``, where ``G`` is the priority
    of the controlling agent's candidate and ``D`` that of the controlled agent's. Both
    agents therefore compute the same value for the same pair.

    Args:
        local: our candidate.
        remote: the peer's candidate.
        ice_controlling: whether we are the controlling agent.
    """
    if ice_controlling:
        g, d = local.priority, remote.priority
    else:
        g, d = remote.priority, local.priority
    return (1 << 32) * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)


class Candidate:
    """An ICE candidate: one line of the SDP ``candidate`` attribute (RFC 8839 section 5.1).

    The constructor takes the same arguments as aioice 0.13's, plus the keyword-only
    ``extensions``. It does not validate the known fields (aioice 0.13 did not either);
    :meth:`from_sdp` does.

    Candidates compare and hash by identity, as in aioice 0.13, which defines no
    ``__eq__``: they are mutable (an agent updates a peer-reflexive candidate when the peer
    signals it), so value equality would make them unsafe as dict keys. Compare
    ``to_sdp()`` for value equality.
    """

    foundation: str
    "The foundation: candidates sharing it are expected to behave alike (RFC 8445 5.1.1.3)."
    component: int
    "The component ID, from 1 to 256 (1 is RTP, 2 is RTCP)."
    transport: str
    "The transport protocol, ``udp`` or ``tcp``, in the case it was given."
    priority: int
    "The priority (RFC 8445 section 5.1.2)."
    host: str
    "The address: an IP address, or a hostname such as an mDNS ``.local`` name."
    port: int
    "The port."
    type: str
    "The type: ``host``, ``srflx``, ``prflx`` or ``relay``."
    related_address: str | None
    "The related address (``raddr``): the base of a reflexive candidate, or ``None``."
    related_port: int | None
    "The related port (``rport``), or ``None``."
    tcptype: str | None
    "For TCP, ``active``, ``passive`` or ``so`` (RFC 6544 section 4.5), else ``None``."
    generation: int | None
    "The ``generation`` extension some browsers send, or ``None``."
    extensions: tuple[tuple[str, str], ...]
    "Other attributes as ``(name, value)`` pairs in line order (``ufrag``, ``network-id``, ...)."

    def __init__(
        self,
        foundation: str,
        component: int,
        transport: str,
        priority: int,
        host: str,
        port: int,
        type: str,
        related_address: str | None = None,
        related_port: int | None = None,
        tcptype: str | None = None,
        generation: int | None = None,
        *,
        extensions: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> None:
        self.foundation = foundation
        self.component = component
        self.transport = transport
        self.priority = priority
        self.host = host
        self.port = port
        self.type = type
        self.related_address = related_address
        self.related_port = related_port
        self.tcptype = tcptype
        self.generation = generation
        self.extensions = _check_extensions(extensions)
        # The address a remote mDNS candidate was resolved to, if any (see network_host).
        self._network_host: str | None = None

    @property
    def network_host(self) -> str:
        """The address used to reach the candidate.

        It is :attr:`host`, unless a resolved address was assigned: an agent resolving a
        remote mDNS candidate (draft-ietf-mmusic-mdns-ice-candidates section 3.3.1) sets it
        to the IP address, while :attr:`host` and :meth:`to_sdp` keep the ``.local`` name.
        """
        return self.host if self._network_host is None else self._network_host

    @network_host.setter
    def network_host(self, value: str) -> None:
        self._network_host = value

    def extension(self, name: str) -> str | None:
        """Return the value of the first extension attribute called ``name``, or ``None``."""
        for key, value in self.extensions:
            if key == name:
                return value
        return None

    @classmethod
    def from_sdp(cls, sdp: str) -> Candidate:
        """Parse a candidate from the value of an SDP ``candidate`` attribute.

        The grammar is RFC 8839 section 5.1 with ``tcptype`` from RFC 6544::

            <foundation> <component> <transport> <priority> <address> <port> typ <type>
                [raddr <address>] [rport <port>] [tcptype <tcptype>] [generation <n>]
                *(<name> <value>)

        A leading ``candidate:`` or ``a=candidate:`` is accepted and ignored, and so is
        surrounding whitespace. Attributes may come in any order; unknown ones are kept in
        :attr:`extensions`.

        .. code-block:: python

            Candidate.from_sdp("6815297761 1 udp 659136 1.2.3.4 31102 typ host generation 0")

        Checks: a component from 1 to 256; a priority and a generation from 0 to
        2**32 - 1 (what a STUN PRIORITY attribute holds); ports from 0 to 65535; a type
        among host, srflx, prflx and relay; a tcptype among active, passive and so; a
        foundation of 1 to 32 ice-chars; an address and related address of visible
        ASCII; a transport and attribute names that are RFC 4566 tokens; every attribute
        with a value, and known attributes at most once. Addresses are not resolved, nor
        required to be IP literals (hostnames and mDNS names are valid).

        Raises:
            CandidateParseError: the line is malformed; the message names the field.
        """
        line = sdp.strip()
        for prefix in ("a=candidate:", "candidate:"):
            if _ascii_lower(line[: len(prefix)]) == prefix:
                line = line[len(prefix) :]
                break
        bits = line.split()
        if len(bits) < 8:
            raise CandidateParseError(
                f"candidate must have at least 8 fields, got {len(bits)}: "
                "<foundation> <component> <transport> <priority> <address> <port> typ <type>"
            )

        foundation = bits[0]
        if not _FOUNDATION_RE.fullmatch(foundation):
            raise CandidateParseError(
                f"invalid foundation {foundation!r}: expected 1 to 32 of A-Z a-z 0-9 + /"
            )
        component = _parse_int(bits[1], "component", 1, 256)
        transport = bits[2]
        if not _TOKEN_RE.fullmatch(transport):
            raise CandidateParseError(f"invalid transport {transport!r}")
        priority = _parse_int(bits[3], "priority", 0, _UINT32_MAX)
        host = _check_vchar(bits[4], "address")
        port = _parse_int(bits[5], "port", 0, _PORT_MAX)
        if _ascii_lower(bits[6]) != "typ":
            raise CandidateParseError(f"expected 'typ' after the port, got {bits[6]!r}")
        candidate_type = _ascii_lower(bits[7])
        if candidate_type not in TYPE_PREFERENCES:
            raise CandidateParseError(
                f"invalid candidate type {bits[7]!r}: expected host, srflx, prflx or relay"
            )

        if len(bits) % 2:
            raise CandidateParseError(f"attribute {bits[-1]!r} has no value")
        related_address: str | None = None
        related_port: int | None = None
        tcptype: str | None = None
        generation: int | None = None
        extensions: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i in range(8, len(bits), 2):
            name, value = bits[i], bits[i + 1]
            key = _ascii_lower(name)
            if key in _KNOWN_KEYS:
                if key in seen or key == "typ":
                    raise CandidateParseError(f"duplicate attribute {name!r}")
                seen.add(key)
            if key == "raddr":
                related_address = _check_vchar(value, "raddr")
            elif key == "rport":
                related_port = _parse_int(value, "rport", 0, _PORT_MAX)
            elif key == "tcptype":
                tcptype = _ascii_lower(value)
                if tcptype not in TCP_TYPES:
                    raise CandidateParseError(
                        f"invalid tcptype {value!r}: expected active, passive or so"
                    )
            elif key == "generation":
                generation = _parse_int(value, "generation", 0, _UINT32_MAX)
            else:
                if not _TOKEN_RE.fullmatch(name):
                    raise CandidateParseError(f"invalid attribute name {name!r}")
                if not _NON_WS_RE.fullmatch(value):
                    raise CandidateParseError(f"invalid value {value!r} for attribute {name!r}")
                extensions.append((name, value))

        return cls(
            foundation=foundation,
            component=component,
            transport=transport,
            priority=priority,
            host=host,
            port=port,
            type=candidate_type,
            related_address=related_address,
            related_port=related_port,
            tcptype=tcptype,
            generation=generation,
            extensions=extensions,
        )

    def to_sdp(self) -> str:
        """Return the value of the SDP ``candidate`` attribute, without ``candidate:``.

        The output is aioice 0.13's, byte for byte: the eight mandatory fields, then
        ``raddr``, ``rport``, ``tcptype`` and ``generation`` when set, then the extensions
        in order.
        """
        sdp = (
            f"{self.foundation} {self.component} {self.transport} "
            f"{self.priority} {self.host} {self.port} typ {self.type}"
        )
        if self.related_address is not None:
            sdp += f" raddr {self.related_address}"
        if self.related_port is not None:
            sdp += f" rport {self.related_port}"
        if self.tcptype is not None:
            sdp += f" tcptype {self.tcptype}"
        if self.generation is not None:
            sdp += f" generation {self.generation}"
        for name, value in self.extensions:
            sdp += f" {name} {value}"
        return sdp

    def can_pair_with(self, other: Candidate) -> bool:
        """Whether this (local) candidate can be paired with ``other`` (a remote one).

        RFC 8445 section 6.1.2.2: the same component ID and the same IP address family;
        as in aioice 0.13 the transports must match too (case-insensitively). For TCP,
        when both candidates carry a ``tcptype``, RFC 6544 section 6.2 applies: active
        pairs with passive, passive with active, so with so.

        Families are those of :attr:`network_host`. A candidate whose address is not an
        IP address (an mDNS ``.local`` name not resolved yet) pairs with nothing: there is
        no address to send checks to. aioice 0.13 raised ``ValueError`` instead.
        """
        if self.component != other.component:
            return False
        if self.transport.lower() != other.transport.lower():
            return False
        a = _ip_or_none(self.network_host)
        b = _ip_or_none(other.network_host)
        if a is None or b is None or a.version != b.version:
            return False
        return (
            self.transport.lower() != "tcp"
            or self.tcptype is None
            or other.tcptype is None
            or (self.tcptype, other.tcptype) in _TCP_PAIRS
        )

    def __repr__(self) -> str:
        return f"Candidate({self.to_sdp()})"


def _ascii_lower(value: str) -> str:
    # str.lower() maps some non-ASCII letters onto ASCII ones (KELVIN SIGN -> "k").
    return value.lower() if value.isascii() else value


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _ip_or_none(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _check_vchar(value: str, field: str) -> str:
    if not _VCHAR_RE.fullmatch(value):
        raise CandidateParseError(f"invalid {field} {value!r}: expected visible ASCII")
    return value


def _parse_int(value: str, field: str, low: int, high: int) -> int:
    # Digits only: int() would also take "+1", "1_000", " 1" and non-ASCII digits.
    if _DIGITS_RE.fullmatch(value):
        number = int(value)
        if low <= number <= high:
            return number
    raise CandidateParseError(
        f"invalid {field} {value!r}: expected an integer from {low} to {high}"
    )


def _check_extensions(
    extensions: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    pairs = tuple(extensions.items() if isinstance(extensions, Mapping) else extensions)
    for name, value in pairs:
        if not _TOKEN_RE.fullmatch(name) or _ascii_lower(name) in _KNOWN_KEYS:
            raise ValueError(f"invalid extension attribute name {name!r}")
        if not _NON_WS_RE.fullmatch(value):
            raise ValueError(f"invalid value {value!r} for extension attribute {name!r}")
    return pairs
