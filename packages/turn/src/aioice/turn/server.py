"""A sans-I/O TURN **test server** (RFC 8656 over UDP, with RFC 6156 IPv6 relays).

.. warning::

   This is a test server, for unit tests and the virtual network: it is **not for
   production**. It keeps everything in memory, has no rate limits, bandwidth or
   permission quotas, does not refuse any peer address (RFC 8656 §21), cannot
   reserve ports (EVEN-PORT with the R bit, RESERVATION-TOKEN) and does not police
   the 5-minute channel quarantine (§12), which RFC 8656 leaves to clients.

What it does: allocations (§7), refreshes (§8), permissions (§9, §10), Send and Data
indications (§11), channels (§12), IPv6 and dual-stack relays (RFC 8656 §7.2, which
absorbed RFC 6156), long-term credentials with MD5 keys (RFC 8489 §9.2), optionally
the RFC 8489 password algorithms (SHA-256) and the "TURN REST API" shared secret, and
Binding requests (TURN extends STUN, RFC 8489). TURN over TCP/TLS and TCP
relays (RFC 6062) are not implemented.

Like :class:`aioice.stun.StunServer`, it is a pure state machine: no sockets, no
clock (time is the ``now`` argument, in seconds on any monotonic clock), and no
global randomness (nonces, relay ports and Data indication transaction IDs come from
the injected :class:`random.Random`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import random
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    SecurityFeature,
    StunParseError,
    Transmit,
    long_term_key,
    make_nonce,
    nonce_security_features,
    parse_message,
    saslprep,
)

from .constants import (
    CHANNEL_LIFETIME,
    CHANNEL_MAX,
    CHANNEL_MIN,
    FAMILY_IPV4,
    FAMILY_IPV6,
    PERMISSION_LIFETIME,
    UDP_TRANSPORT,
)

__all__ = [
    "CHANNEL_LIFETIME",
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "PERMISSION_LIFETIME",
    "UDP_TRANSPORT",
    "AllocationInfo",
    "RelayAllocated",
    "RelayReleased",
    "TurnServer",
    "TurnServerEvent",
    "TurnServerStats",
]

logger = logging.getLogger(__name__)

_FAMILIES: Final = {FAMILY_IPV4: 4, FAMILY_IPV6: 6}

# A Data indication carries at most this much: its 16-bit length also covers
# XOR-PEER-ADDRESS (24 bytes for IPv6) and the DATA header and padding.
_MAX_DATA_INDICATION: Final = 0xFFFF - 32
_CHANNEL_HEADER = struct.Struct("!HH")

_REASONS: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    508: "Insufficient Capacity",
}

#: PASSWORD-ALGORITHMS offered when ``password_algorithms`` is on, in order of preference.
_ALGORITHMS: Final = ((int(PasswordAlgorithm.SHA256), b""), (int(PasswordAlgorithm.MD5), b""))


def _family(host: str) -> int:
    return 6 if ":" in host else 4


def _host(host: str) -> str:
    # A link-local IPv6 source from recvfrom() carries its scope ("fe80::1%eth0"),
    # which XOR-PEER-ADDRESS cannot: compare addresses without it.
    return host.partition("%")[0] if "%" in host else host


# -- events, statistics, snapshots ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayAllocated:
    """A relayed transport address was allocated: the adapter must receive on it.

    A dual-stack allocation (ADDITIONAL-ADDRESS-FAMILY) reports one event per address.
    """

    relayed: Address
    "The relayed transport address, on ``relay_ip`` or ``relay_ip6``."
    client: Address
    "The client's address (its server-reflexive address, as the server sees it)."
    username: str
    "The user name that authenticated the Allocate request."


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayReleased:
    """A relayed transport address was released: the adapter may stop receiving on it."""

    relayed: Address
    "The relayed transport address."
    client: Address
    "The client's address."
    reason: str
    """``"deleted"`` (a Refresh with LIFETIME 0) or ``"expired"`` (not refreshed in time)."""


TurnServerEvent: TypeAlias = RelayAllocated | RelayReleased
"What :meth:`TurnServer.next_event` returns."


@dataclass(slots=True)
class TurnServerStats:
    """Counters of what a :class:`TurnServer` did; every dropped datagram is counted once."""

    bindings: int = 0
    "Binding requests answered (without authentication)."
    allocations: int = 0
    "Allocations created."
    refreshes: int = 0
    "Successful Refresh requests, deletions (LIFETIME 0) included."
    permissions: int = 0
    "Successful CreatePermission requests."
    channel_binds: int = 0
    "Successful ChannelBind requests (new bindings and refreshes)."
    retransmissions: int = 0
    "Allocate requests answered again from the stored response (RFC 8656 §7.2)."
    errors_sent: int = 0
    "Error responses sent, 401 challenges included."
    error_codes: dict[int, int] = field(default_factory=dict)
    "Error responses sent, by code."
    to_peer: int = 0
    "Datagrams relayed to peers (from Send indications and ChannelData)."
    to_client: int = 0
    "Datagrams relayed to clients (as Data indications or ChannelData)."
    no_permission: int = 0
    "Datagrams dropped for want of a permission, either way (also counted in ``dropped``)."
    dropped: int = 0
    "Datagrams dropped: malformed, responses, no allocation or channel, no permission, …"
    expired_allocations: int = 0
    "Allocations deleted because they were not refreshed in time."
    expired_permissions: int = 0
    "Permissions removed because they were not refreshed in time."
    expired_channels: int = 0
    "Channel bindings removed because they were not refreshed in time."


@dataclass(frozen=True, slots=True)
class AllocationInfo:
    """A snapshot of one allocation, for tests and debugging."""

    client: Address
    "The client's address: with ``server``, the 5-tuple (UDP) of the allocation."
    server: Address
    "The server address the client talks to (the listening address)."
    username: str
    "Who allocated it."
    relayed: tuple[Address, ...]
    "The relayed transport addresses (two for a dual-stack allocation)."
    expires: float
    "When it expires unless refreshed (the ``now`` timescale)."
    permissions: dict[str, float]
    "Peer IP address -> expiry."
    channels: dict[int, tuple[Address, float]]
    "Channel number -> (peer address, expiry)."


# -- internal state --------------------------------------------------------------------------


class _Allocation:
    __slots__ = (
        "channels",
        "client",
        "expires",
        "peers",
        "permissions",
        "relays",
        "response",
        "server",
        "tid",
        "username",
    )

    def __init__(
        self,
        *,
        client: Address,
        server: Address,
        username: str,
        tid: bytes,
        expires: float,
    ) -> None:
        self.client = client
        self.server = server
        self.username = username
        self.tid = tid  # the Allocate transaction, answered again from `response`
        self.response = b""
        self.expires = expires
        self.relays: dict[int, Address] = {}  # IP version (4, 6) -> relayed address
        self.permissions: dict[str, float] = {}  # peer IP -> expiry
        self.channels: dict[int, tuple[Address, float]] = {}  # number -> (peer, expiry)
        self.peers: dict[Address, int] = {}  # peer -> channel number

    def deadline(self) -> float:
        deadline = self.expires
        for expiry in self.permissions.values():
            if expiry < deadline:
                deadline = expiry
        for _, expiry in self.channels.values():
            if expiry < deadline:
                deadline = expiry
        return deadline


class _Credentials:
    """Who signed a request, and how to sign the answer."""

    __slots__ = ("key", "sha256", "username")

    def __init__(self, username: str, key: bytes, sha256: bool) -> None:
        self.username = username
        self.key = key
        self.sha256 = sha256


# -- the server ------------------------------------------------------------------------------


class TurnServer:
    """A TURN server over UDP as a sans-I/O core. **A test server: not for production.**

    :param listen: the address clients send to (the 5-tuple's server side).
    :param realm: the REALM of the long-term credentials.
    :param users: user name -> password.
    :param relay_ip: the IPv4 address relayed transport addresses are allocated on;
        by default ``listen``'s address when that is a specific IPv4 address.
    :param relay_ip6: the IPv6 address for IPv6 relays (REQUESTED-ADDRESS-FAMILY,
        ADDITIONAL-ADDRESS-FAMILY); ``None`` answers 440 to IPv6 requests, unless
        ``listen`` is a specific IPv6 address and ``relay_ip`` is not given either.
    :param port_range: relay ports, both ends included (RFC 8656 §7.2 recommends
        49152-65535).
    :param rng: the source of nonce secrets, relay ports and transaction IDs;
        seed one for deterministic tests. Default: :class:`random.SystemRandom`.
    :param nonce_lifetime: seconds a NONCE stays valid; after that a request gets
        438 (Stale Nonce) with a new one. Nonces are stateless (an HMAC over the
        expiry and the client address), so they need no timer.
    :param max_lifetime: the longest allocation lifetime granted, in seconds.
    :param default_lifetime: the allocation lifetime when the client asks for none
        or for less (RFC 8656 §7.2, §8.2), in seconds.
    :param user_quota: allocations one user name may hold at once (486 beyond),
        or ``None`` for no limit.
    :param password_algorithms: announce the RFC 8489 password algorithms (SHA-256,
        then MD5) in the nonce cookie and PASSWORD-ALGORITHMS (RFC 8489 §9.2.4);
        by default nonces have no cookie and keys are MD5 (RFC 5389 behaviour).
    :param auth_secret: the "TURN REST API" shared secret (coturn's
        ``--static-auth-secret``): a user name that is not in ``users`` is accepted
        with the password base64(HMAC-SHA1(secret, user name)).
    :param rest_epoch: the UNIX time at ``now == 0``; when given, a REST user name
        whose leading timestamp (before ``:``) is not after ``rest_epoch + now`` is
        refused with 401. When ``None``, timestamps are not checked.
    :param software: the SOFTWARE attribute of responses, or ``None``.

    Drain rule: after every input (:meth:`receive_datagram`, :meth:`handle_timer`),
    send every :class:`~aioice.stun.Transmit` that :meth:`datagrams_to_send`
    returns from the socket bound to its ``local`` address (``listen`` towards
    clients, a relayed address towards peers), handle every :meth:`next_event`
    (bind or unbind relayed addresses), then arm one timer at :meth:`get_timer`.
    """

    def __init__(
        self,
        listen: Address,
        *,
        realm: str,
        users: Mapping[str, str],
        relay_ip: str | None = None,
        relay_ip6: str | None = None,
        port_range: tuple[int, int] = (49152, 65535),
        rng: random.Random | None = None,
        nonce_lifetime: float = 600.0,
        max_lifetime: int = 3600,
        default_lifetime: int = 600,
        user_quota: int | None = None,
        password_algorithms: bool = False,
        auth_secret: str | bytes | None = None,
        rest_epoch: float | None = None,
        software: str | None = None,
    ) -> None:
        if relay_ip is None and relay_ip6 is None:
            version = _ip_version(listen[0], "listen")
            if ipaddress.ip_address(_host(listen[0])).is_unspecified:
                raise ValueError("give relay_ip or relay_ip6 when listening on any address")
            if version == 4:
                relay_ip = listen[0]
            else:
                relay_ip6 = listen[0]
        if relay_ip is not None and _ip_version(relay_ip, "relay_ip") != 4:
            raise ValueError(f"relay_ip must be an IPv4 address: {relay_ip!r}")
        if relay_ip6 is not None and _ip_version(relay_ip6, "relay_ip6") != 6:
            raise ValueError(f"relay_ip6 must be an IPv6 address: {relay_ip6!r}")
        for ip in (relay_ip, relay_ip6):
            if ip is not None and ipaddress.ip_address(_host(ip)).is_unspecified:
                raise ValueError(f"a relay address must be a specific address: {ip!r}")
        low, high = port_range
        if not 1 <= low <= high <= 0xFFFF:
            raise ValueError(f"invalid port range {port_range!r}")
        if not 0 < default_lifetime <= max_lifetime:
            raise ValueError("need 0 < default_lifetime <= max_lifetime")
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        if user_quota is not None and user_quota < 1:
            raise ValueError("user_quota must be at least 1")
        self.listen = listen
        self.realm = realm
        self.relay_ip = relay_ip
        self.relay_ip6 = relay_ip6
        self.port_range = (low, high)
        self.nonce_lifetime = nonce_lifetime
        self.max_lifetime = max_lifetime
        self.default_lifetime = default_lifetime
        self.user_quota = user_quota
        self.password_algorithms = password_algorithms
        self.rest_epoch = rest_epoch
        self.software = software
        self.stats = TurnServerStats()
        self._rng: random.Random = rng if rng is not None else random.SystemRandom()
        self._secret = self._rng.getrandbits(128).to_bytes(16, "big")
        self._auth_secret = auth_secret.encode() if isinstance(auth_secret, str) else auth_secret
        saslprep(realm)  # raises ValueError now rather than on the first request
        self._passwords = dict(users)
        # (username, algorithm) -> key; raises now for a password SASLprep refuses.
        self._keys: dict[tuple[str, int], bytes] = {}
        for username, password in self._passwords.items():
            for algorithm in PasswordAlgorithm:
                self._keys[(username, algorithm)] = long_term_key(
                    username, realm, password, algorithm=algorithm
                )
        self._allocations: dict[tuple[Address, Address], _Allocation] = {}
        self._relays: dict[Address, _Allocation] = {}
        self._pending: list[Transmit] = []
        self._events: deque[TurnServerEvent] = deque()

    # -- outputs -------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the datagrams to send; each says which ``local`` socket sends it."""
        pending, self._pending = self._pending, []
        return pending

    def next_event(self) -> TurnServerEvent | None:
        """The next :class:`RelayAllocated` or :class:`RelayReleased`, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The next expiry of an allocation, permission or channel; ``None`` if none."""
        deadline: float | None = None
        for allocation in self._allocations.values():
            expiry = allocation.deadline()
            if deadline is None or expiry < deadline:
                deadline = expiry
        return deadline

    @property
    def relayed_addresses(self) -> list[Address]:
        """The relayed transport addresses currently allocated, oldest first."""
        return list(self._relays)

    @property
    def allocations(self) -> list[AllocationInfo]:
        """Snapshots of the current allocations (some may be past expiry until the
        next :meth:`handle_timer`)."""
        return [
            AllocationInfo(
                client=a.client,
                server=a.server,
                username=a.username,
                relayed=tuple(a.relays.values()),
                expires=a.expires,
                permissions=dict(a.permissions),
                channels=dict(a.channels),
            )
            for a in self._allocations.values()
        ]

    # -- inputs --------------------------------------------------------------------------------

    def handle_timer(self, *, now: float) -> None:
        """Expire the allocations, permissions and channels whose time has come.

        Something that expires at ``t`` is gone for any ``now >= t``.
        """
        for allocation in list(self._allocations.values()):
            self._live(allocation, now)

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, *, local: Address, remote: Address, now: float
    ) -> None:
        """Handle a datagram received on the socket bound to ``local`` from ``remote``.

        ``local`` is ``listen`` for datagrams from clients (STUN messages and
        ChannelData), or a relayed address for datagrams from peers. Anything else
        is dropped. Never raises because of ``data``: what cannot be handled is
        dropped, counted in :attr:`stats` and logged at debug level.
        """
        raw = data if isinstance(data, bytes) else bytes(data)
        allocation = self._relays.get(local)
        if allocation is not None:
            self._from_peer(allocation, raw, local, remote, now)
        elif local != self.listen:
            self._drop(remote, "arrived on %s, neither listening nor relayed", local)
        elif not raw:
            self._drop(remote, "empty datagram")
        elif raw[0] < 0x40:
            self._from_client(raw, local, remote, now)
        elif raw[0] < 0x50:
            self._channel_data(raw, local, remote, now)
        else:
            # RFC 8656 §12: 0x5000-0xFFFF are reserved (and not STUN either).
            self._drop(remote, "first byte 0x%02x is neither STUN nor ChannelData", raw[0])

    # -- client side ---------------------------------------------------------------------------

    def _from_client(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        try:
            request = parse_message(data)
        except StunParseError as exc:
            self._drop(remote, "malformed STUN: %s", exc)
            return
        method = request.message_method
        if request.message_class == Class.INDICATION:
            if method == Method.SEND:
                self._send_indication(request, local, remote, now)
            else:
                self._drop(remote, "%s indication", method.name)
            return
        if request.message_class != Class.REQUEST:
            self._drop(remote, "%s %s is not a request", method.name, request.message_class.name)
            return
        if method == Method.BINDING:
            self._binding(request, local, remote)
            return
        credentials = self._authenticate(request, local, remote, now)
        if credentials is None:
            return
        if request.unknown_attributes:
            # RFC 8489 §6.3.1.1, after the authentication checks (RFC 5389 §7.3).
            self._error(
                request,
                local,
                remote,
                420,
                credentials,
                {"UNKNOWN-ATTRIBUTES": request.unknown_attributes},
            )
            return
        if method == Method.ALLOCATE:
            self._allocate(request, local, remote, now, credentials)
            return
        if method not in (Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND):
            self._error(request, local, remote, 400, credentials, reason="Unsupported method")
            return
        # RFC 8656 §5: a request other than Allocate on a 5-tuple without an
        # allocation gets 437; one signed by another user than the allocation's, 441.
        allocation = self._allocation(local, remote, now)
        if allocation is None:
            self._error(request, local, remote, 437, credentials)
            return
        if allocation.username != credentials.username:
            self._error(request, local, remote, 441, credentials)
            return
        if method == Method.REFRESH:
            self._refresh(request, allocation, now, credentials)
        elif method == Method.CREATE_PERMISSION:
            self._create_permission(request, allocation, now, credentials)
        else:
            self._channel_bind(request, allocation, now, credentials)

    def _binding(self, request: Message, local: Address, remote: Address) -> None:
        # TURN extends STUN: answer Binding requests (RFC 8489 §6.3), without credentials.
        if request.unknown_attributes:
            self._error(
                request,
                local,
                remote,
                420,
                None,
                {"UNKNOWN-ATTRIBUTES": request.unknown_attributes},
            )
            return
        self._reply(request, Class.RESPONSE, {"XOR-MAPPED-ADDRESS": remote}, local, remote, None)
        self.stats.bindings += 1

    # RFC 8489 §9.2.4: the long-term credential mechanism, server side.
    def _authenticate(
        self, request: Message, local: Address, remote: Address, now: float
    ) -> _Credentials | None:
        attributes = request.attributes
        if "MESSAGE-INTEGRITY" not in attributes and "MESSAGE-INTEGRITY-SHA256" not in attributes:
            self._challenge(request, local, remote, now, 401)
            return None
        username = attributes.get("USERNAME")
        realm = attributes.get("REALM")
        nonce = attributes.get("NONCE")
        if username is None or realm is None or nonce is None:
            # No REALM, NONCE or MESSAGE-INTEGRITY in this one.
            self._error(request, local, remote, 400, None, reason="Missing credentials")
            return None
        algorithm = PasswordAlgorithm.MD5
        features = nonce_security_features(nonce)
        if features is not None and features & SecurityFeature.PASSWORD_ALGORITHMS:
            offered = attributes.get("PASSWORD-ALGORITHMS")
            chosen = attributes.get("PASSWORD-ALGORITHM")
            if offered is not None or chosen is not None:
                # Both, the list we sent, and a choice from it; else 400.
                if (
                    offered is None
                    or chosen is None
                    or tuple(offered) != _ALGORITHMS
                    or chosen not in _ALGORITHMS
                ):
                    self._error(
                        request, local, remote, 400, None, reason="Bad PASSWORD-ALGORITHM(S)"
                    )
                    return None
                algorithm = PasswordAlgorithm(chosen[0])
        key = self._key(username, realm, algorithm, now) if realm == self.realm else None
        if key is None or not request.check_message_integrity(key):
            logger.debug("401 for %s: unknown user %r or bad integrity", remote, username)
            self._challenge(request, local, remote, now, 401)
            return None
        if not self._nonce_valid(nonce, remote, now):
            self._challenge(request, local, remote, now, 438)
            return None
        return _Credentials(username, key, "MESSAGE-INTEGRITY-SHA256" in attributes)

    def _key(self, username: str, realm: str, algorithm: int, now: float) -> bytes | None:
        key = self._keys.get((username, algorithm))
        if key is not None or username in self._passwords or self._auth_secret is None:
            return key
        # The TURN REST API: the password is derived from the user name.
        if self.rest_epoch is not None:
            stamp = username.partition(":")[0]
            if not (stamp.isascii() and stamp.isdigit()) or int(stamp) <= self.rest_epoch + now:
                return None
        mac = hmac.digest(self._auth_secret, username.encode(), "sha1")
        password = base64.b64encode(mac).decode()
        return long_term_key(username, realm, password, algorithm=PasswordAlgorithm(algorithm))

    def _nonce(self, remote: Address, now: float) -> bytes:
        # Stateless: the expiry, in milliseconds, and an HMAC binding it to the client.
        expiry = int((now + self.nonce_lifetime) * 1000)
        stamp = f"{expiry:x}".encode()
        mac = self._nonce_mac(stamp, remote)
        opaque = stamp + b"." + mac
        if self.password_algorithms:
            return make_nonce(SecurityFeature.PASSWORD_ALGORITHMS, opaque)
        return opaque

    def _nonce_mac(self, stamp: bytes, remote: Address) -> bytes:
        message = stamp + f"|{_host(remote[0])}|{remote[1]}".encode()
        return hmac.digest(self._secret, message, hashlib.sha256)[:8].hex().encode()

    def _nonce_valid(self, nonce: bytes, remote: Address, now: float) -> bool:
        if self.password_algorithms:
            features = nonce_security_features(nonce)
            if features is None or not features & SecurityFeature.PASSWORD_ALGORITHMS:
                return False
            nonce = nonce[13:]  # the cookie "obMatJos2" and 4 base64 characters
        stamp, dot, mac = nonce.partition(b".")
        if not dot or not hmac.compare_digest(mac, self._nonce_mac(stamp, remote)):
            return False
        return now * 1000 < int(stamp, 16)

    def _challenge(
        self, request: Message, local: Address, remote: Address, now: float, code: int
    ) -> None:
        # RFC 8489 §9.2.4: 401 and 438 carry REALM and a (new) NONCE, and no integrity.
        extra: dict[str, Any] = {"REALM": self.realm, "NONCE": self._nonce(remote, now)}
        if self.password_algorithms:
            extra["PASSWORD-ALGORITHMS"] = _ALGORITHMS
        self._error(request, local, remote, code, None, extra)

    # RFC 8656 §7.2: receiving an Allocate request.
    def _allocate(
        self,
        request: Message,
        local: Address,
        remote: Address,
        now: float,
        credentials: _Credentials,
    ) -> None:
        attributes = request.attributes
        existing = self._allocation(local, remote, now)
        if existing is not None:
            if existing.tid == request.transaction_id:
                # A retransmission of the request that created it: the same answer.
                self._pending.append(Transmit(existing.response, remote, local))
                self.stats.retransmissions += 1
            else:
                self._error(request, local, remote, 437, credentials)
            return
        transport = attributes.get("REQUESTED-TRANSPORT")
        if transport is None:
            self._error(request, local, remote, 400, credentials, reason="No REQUESTED-TRANSPORT")
            return
        if transport >> 24 != 17:
            self._error(request, local, remote, 442, credentials)
            return
        # DONT-FRAGMENT is accepted: there is no IP layer to fragment here.
        family = attributes.get("REQUESTED-ADDRESS-FAMILY")
        additional = attributes.get("ADDITIONAL-ADDRESS-FAMILY")
        even_port = attributes.get("EVEN-PORT")
        if "RESERVATION-TOKEN" in attributes:
            if even_port is not None or family is not None or additional is not None:
                self._error(request, local, remote, 400, credentials, reason="Conflicting token")
            else:
                # This server holds no reservations, so no token is valid.
                self._error(request, local, remote, 508, credentials, reason="Unknown token")
            return
        if even_port:  # the R bit: reserve the next port too
            if additional is not None:
                self._error(request, local, remote, 400, credentials, reason="EVEN-PORT and dual")
            else:
                self._error(request, local, remote, 508, credentials, reason="No reservations")
            return
        if family is not None and additional is not None:
            self._error(request, local, remote, 400, credentials, reason="Two address families")
            return
        error_440: dict[str, Any] = {}
        if additional is not None:
            # Dual allocation: IPv4 and IPv6; ADDITIONAL-ADDRESS-FAMILY can only be IPv6.
            if additional != FAMILY_IPV6:
                self._error(request, local, remote, 400, credentials, reason="Bad family")
                return
            versions = [4, 6] if self.relay_ip6 is not None else [4]
            if self.relay_ip6 is None:
                # The IPv4 relay is still granted; the IPv6 refusal is reported (§18.12).
                error_440["ADDRESS-ERROR-CODE"] = (FAMILY_IPV6, 440, _REASONS[440])
        else:
            version = _FAMILIES.get(FAMILY_IPV4 if family is None else family)
            if version is None:
                self._error(request, local, remote, 440, credentials)
                return
            versions = [version]
        if (4 in versions and self.relay_ip is None) or (6 in versions and self.relay_ip6 is None):
            self._error(request, local, remote, 440, credentials)
            return
        if self.user_quota is not None:
            held = sum(a.username == credentials.username for a in self._allocations.values())
            if held >= self.user_quota:
                self._error(request, local, remote, 486, credentials)
                return
        relays: dict[int, Address] = {}
        for version in versions:
            ip = self.relay_ip if version == 4 else self.relay_ip6
            assert ip is not None
            port = self._pick_port(ip, even=even_port is not None)
            if port is None:
                self._error(request, local, remote, 508, credentials, reason="No relay port left")
                return
            relays[version] = (ip, port)
        lifetime = self._lifetime(attributes.get("LIFETIME"))
        allocation = _Allocation(
            client=remote,
            server=local,
            username=credentials.username,
            tid=request.transaction_id,
            expires=now + lifetime,
        )
        allocation.relays = relays
        self._allocations[(local, remote)] = allocation
        for relayed in relays.values():
            self._relays[relayed] = allocation
            self._events.append(
                RelayAllocated(relayed=relayed, client=remote, username=credentials.username)
            )
        relayed_value: Any = list(relays.values()) if len(relays) > 1 else relays[versions[0]]
        allocation.response = self._reply(
            request,
            Class.RESPONSE,
            {
                "XOR-RELAYED-ADDRESS": relayed_value,
                **error_440,
                "LIFETIME": lifetime,
                "XOR-MAPPED-ADDRESS": remote,
            },
            local,
            remote,
            credentials,
        )
        self.stats.allocations += 1
        logger.debug("allocated %s for %s (%s)", list(relays.values()), remote, lifetime)

    def _lifetime(self, requested: int | None) -> int:
        # RFC 8656 §7.2 and §8.2: min(requested, maximum), but not below the default.
        if requested is None:
            return self.default_lifetime
        return max(self.default_lifetime, min(requested, self.max_lifetime))

    def _pick_port(self, ip: str, *, even: bool) -> int | None:
        low, high = self.port_range
        rng = self._rng

        def free(port: int) -> bool:
            return (
                low <= port <= high
                and (ip, port) not in self._relays
                and (ip, port) != self.listen
                and not (even and port & 1)
            )

        for _ in range(16):
            port = rng.randint(low, high)
            if even:
                port &= ~1
            if free(port):
                return port
        count = high - low + 1
        start = rng.randrange(count)
        for i in range(count):
            port = low + (start + i) % count
            if free(port):
                return port
        return None

    # RFC 8656 §8.2: receiving a Refresh request.
    def _refresh(
        self, request: Message, allocation: _Allocation, now: float, credentials: _Credentials
    ) -> None:
        local, remote = allocation.server, allocation.client
        family = request.attributes.get("REQUESTED-ADDRESS-FAMILY")
        version = None if family is None else _FAMILIES.get(family)
        if family is not None and version not in allocation.relays:
            self._error(request, local, remote, 443, credentials)
            return
        requested = request.attributes.get("LIFETIME")
        if requested == 0:
            if version is not None and len(allocation.relays) > 1:
                # A dual allocation loses one family (§8.2).
                self._release(allocation, allocation.relays.pop(version), "deleted")
            else:
                self._delete(allocation, "deleted")
            lifetime = 0
        else:
            lifetime = self._lifetime(requested)
            allocation.expires = now + lifetime
        self._reply(request, Class.RESPONSE, {"LIFETIME": lifetime}, local, remote, credentials)
        self.stats.refreshes += 1

    # RFC 8656 §10.2: receiving a CreatePermission request.
    def _create_permission(
        self, request: Message, allocation: _Allocation, now: float, credentials: _Credentials
    ) -> None:
        local, remote = allocation.server, allocation.client
        peers = request.get_all("XOR-PEER-ADDRESS")
        if not peers:
            self._error(request, local, remote, 400, credentials, reason="No XOR-PEER-ADDRESS")
            return
        if any(_family(host) not in allocation.relays for host, _ in peers):
            self._error(request, local, remote, 443, credentials)
            return
        # All or nothing; the port of each peer is ignored (§9).
        for host, _ in peers:
            allocation.permissions[host] = now + PERMISSION_LIFETIME
        self._reply(request, Class.RESPONSE, {}, local, remote, credentials)
        self.stats.permissions += 1

    # RFC 8656 §12.2: receiving a ChannelBind request.
    def _channel_bind(
        self, request: Message, allocation: _Allocation, now: float, credentials: _Credentials
    ) -> None:
        local, remote = allocation.server, allocation.client
        number = request.attributes.get("CHANNEL-NUMBER")
        peer = request.attributes.get("XOR-PEER-ADDRESS")
        if number is None or peer is None:
            self._error(request, local, remote, 400, credentials, reason="Missing attribute")
            return
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            self._error(request, local, remote, 400, credentials, reason="Bad channel number")
            return
        if _family(peer[0]) not in allocation.relays:
            self._error(request, local, remote, 443, credentials)
            return
        bound = allocation.channels.get(number)
        if (bound is not None and bound[0] != peer) or allocation.peers.get(peer, number) != number:
            # The number is bound to another peer, or the peer to another number.
            self._error(request, local, remote, 400, credentials, reason="Channel already bound")
            return
        allocation.channels[number] = (peer, now + CHANNEL_LIFETIME)
        allocation.peers[peer] = number
        # The binding installs or refreshes the permission for the peer's IP (§12.2).
        allocation.permissions[peer[0]] = now + PERMISSION_LIFETIME
        self._reply(request, Class.RESPONSE, {}, local, remote, credentials)
        self.stats.channel_binds += 1

    # RFC 8656 §11.2: receiving a Send indication.
    def _send_indication(
        self, message: Message, local: Address, remote: Address, now: float
    ) -> None:
        allocation = self._allocation(local, remote, now)
        if allocation is None:
            self._drop(remote, "Send indication without an allocation")
            return
        if message.unknown_attributes:
            self._drop(remote, "Send indication with unknown attributes")  # RFC 8489 §6.3.1.2
            return
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        data = message.attributes.get("DATA")
        if peer is None or data is None:
            self._drop(remote, "Send indication without XOR-PEER-ADDRESS or DATA")
            return
        self._to_peer(allocation, data, peer, remote)

    # RFC 8656 §12.6: receiving a ChannelData message.
    def _channel_data(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        if len(data) < 4:
            self._drop(remote, "ChannelData shorter than its header")
            return
        number, length = _CHANNEL_HEADER.unpack_from(data)
        if 4 + length > len(data):  # over UDP, padding after the data is allowed
            self._drop(remote, "ChannelData length %d exceeds the datagram", length)
            return
        allocation = self._allocation(local, remote, now)
        if allocation is None:
            self._drop(remote, "ChannelData without an allocation")
            return
        bound = allocation.channels.get(number)
        if bound is None:
            self._drop(remote, "ChannelData on unbound channel 0x%04x", number)
            return
        # The channel implies the permission it installed; §12.6 checks no more.
        relay = allocation.relays.get(_family(bound[0][0]))
        if relay is None:  # pragma: no cover - a released family takes its channels along
            self._drop(remote, "ChannelData for a released address family")
            return
        self._pending.append(Transmit(data[4 : 4 + length], bound[0], relay))
        self.stats.to_peer += 1

    def _to_peer(
        self, allocation: _Allocation, data: bytes, peer: Address, remote: Address
    ) -> None:
        relay = allocation.relays.get(_family(peer[0]))
        if relay is None:
            self._drop(remote, "no relay of the family of peer %s", peer)
            return
        if peer[1] == 0:
            self._drop(remote, "peer %s has port 0", peer)
            return
        if not self._permitted(allocation, peer[0]):
            # §11.2: no permission, no relaying (and a Send never refreshes one).
            self.stats.no_permission += 1
            self._drop(remote, "no permission for peer %s", peer)
            return
        self._pending.append(Transmit(data, peer, relay))
        self.stats.to_peer += 1

    # -- peer side -----------------------------------------------------------------------------

    # RFC 8656 §11.3 and §12.7: a UDP datagram from a peer at a relayed address.
    def _from_peer(
        self, allocation: _Allocation, data: bytes, local: Address, remote: Address, now: float
    ) -> None:
        if not self._live(allocation, now):
            self._drop(remote, "datagram for expired relay %s", local)
            return
        peer = (_host(remote[0]), remote[1])
        if _family(peer[0]) != _family(local[0]):
            self._drop(remote, "peer family differs from relay %s", local)
            return
        if not self._permitted(allocation, peer[0]):
            self.stats.no_permission += 1
            self._drop(remote, "no permission for peer %s on %s", peer, local)
            return
        number = allocation.peers.get(peer)
        if number is not None:
            if len(data) > 0xFFFF:
                self._drop(remote, "datagram too large for ChannelData")
                return
            out = _CHANNEL_HEADER.pack(number, len(data)) + data
        else:
            if len(data) > _MAX_DATA_INDICATION:
                self._drop(remote, "datagram too large for a Data indication")
                return
            tid = self._rng.getrandbits(96).to_bytes(12, "big")
            indication = Message(
                Method.DATA, Class.INDICATION, tid, {"XOR-PEER-ADDRESS": peer, "DATA": data}
            )
            out = bytes(indication)
        self._pending.append(Transmit(out, allocation.client, allocation.server))
        self.stats.to_client += 1

    # -- helpers -------------------------------------------------------------------------------

    def _permitted(self, allocation: _Allocation, ip: str) -> bool:
        # Expired permissions are pruned by _live(), which every path runs first.
        return ip in allocation.permissions

    def _allocation(self, local: Address, remote: Address, now: float) -> _Allocation | None:
        allocation = self._allocations.get((local, remote))
        if allocation is None or not self._live(allocation, now):
            return None
        return allocation

    def _live(self, allocation: _Allocation, now: float) -> bool:
        """Apply expiries to one allocation; return whether it still exists."""
        if allocation.expires <= now:
            self.stats.expired_allocations += 1
            self._delete(allocation, "expired")
            return False
        permissions = allocation.permissions
        expired = [ip for ip, expiry in permissions.items() if expiry <= now]
        for ip in expired:
            del permissions[ip]
        self.stats.expired_permissions += len(expired)
        channels = allocation.channels
        gone = [number for number, (_, expiry) in channels.items() if expiry <= now]
        for number in gone:
            peer, _ = channels.pop(number)
            del allocation.peers[peer]
        self.stats.expired_channels += len(gone)
        return True

    def _delete(self, allocation: _Allocation, reason: str) -> None:
        self._allocations.pop((allocation.server, allocation.client), None)
        for relayed in allocation.relays.values():
            self._release(allocation, relayed, reason)
        logger.debug("allocation of %s %s", allocation.client, reason)

    def _release(self, allocation: _Allocation, relayed: Address, reason: str) -> None:
        self._relays.pop(relayed, None)
        version = _family(relayed[0])
        if version not in allocation.relays or allocation.relays[version] != relayed:
            # A dual allocation lost one family: drop its permissions and channels.
            for ip in [ip for ip in allocation.permissions if _family(ip) == version]:
                del allocation.permissions[ip]
            for number, (peer, _) in list(allocation.channels.items()):
                if _family(peer[0]) == version:
                    del allocation.channels[number]
                    del allocation.peers[peer]
        self._events.append(RelayReleased(relayed=relayed, client=allocation.client, reason=reason))

    def _reply(
        self,
        request: Message,
        message_class: Class,
        attributes: dict[str, Any],
        local: Address,
        remote: Address,
        credentials: _Credentials | None,
    ) -> bytes:
        if self.software is not None:
            attributes["SOFTWARE"] = self.software
        response = Message(
            request.message_method, message_class, request.transaction_id, attributes
        )
        fingerprint = "FINGERPRINT" in request.attributes
        if credentials is not None and credentials.sha256:
            # RFC 8489 §9.2.4: answer with the integrity attribute the request used.
            response.add_message_integrity_sha256(credentials.key, fingerprint=fingerprint)
            data = bytes(response)
        else:
            key = credentials.key if credentials is not None else None
            data = response.encode(key, fingerprint=fingerprint)
        self._pending.append(Transmit(data, remote, local))
        return data

    def _error(
        self,
        request: Message,
        local: Address,
        remote: Address,
        code: int,
        credentials: _Credentials | None,
        extra: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        attributes: dict[str, Any] = {"ERROR-CODE": (code, reason or _REASONS[code])}
        if extra:
            attributes.update(extra)
        self._reply(request, Class.ERROR, attributes, local, remote, credentials)
        self.stats.errors_sent += 1
        self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
        logger.debug("%d %s to %s", code, request.message_method.name, remote)

    def _drop(self, remote: Address, why: str, *args: object) -> None:
        self.stats.dropped += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped datagram from %s: %s", remote, why % args)


def _ip_version(host: str, what: str) -> int:
    try:
        return ipaddress.ip_address(_host(host)).version
    except ValueError:
        raise ValueError(f"{what} is not an IP address: {host!r}") from None
