"""Sans-I/O TURN client (RFC 8656, RFC 5766, RFC 6156): one allocation on one server.

Time enters only through ``now`` arguments. After every input (:meth:`TurnClient.allocate`,
:meth:`~TurnClient.receive`, :meth:`~TurnClient.send`, :meth:`~TurnClient.handle_timer`,
:meth:`~TurnClient.close`) the caller sends every datagram :meth:`~TurnClient.datagrams_to_send`
returns to the server (framed, on a stream transport), handles every
:meth:`~TurnClient.next_event`, then arms one timer at :meth:`~TurnClient.get_timer`.
"""

from __future__ import annotations

import enum
import logging
import random
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    SecurityFeature,
    StunParseError,
    Transaction,
    TransactionConfig,
    TransactionError,
    TransactionFailed,
    default_transaction_config,
    long_term_key,
    nonce_security_features,
    parse_message,
)

from .constants import (
    CHANNEL_LIFETIME,
    CHANNEL_MAX,
    CHANNEL_MIN,
    PERMISSION_LIFETIME,
    UDP_TRANSPORT,
)
from .errors import TurnStateError
from .events import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Closed,
    DataReceived,
    SendFailed,
    TurnEvent,
)

__all__ = [
    "TurnClient",
    "TurnClientConfig",
    "TurnClientStats",
    "TurnState",
    "is_channel_data",
]

logger = logging.getLogger(__name__)

REFRESH_MARGIN: Final = 60.0
MAX_AUTH_RETRIES: Final = 3
"How many times one request is sent again with new credentials (401) or nonce (438)."
MAX_QUEUED: Final = 256
"Datagrams kept per peer while its channel is being bound; the oldest go first."

_CHANNEL_HEADER = struct.Struct("!HH")


def is_channel_data(data: bytes) -> bool:
    """Whether ``data`` is TURN ChannelData (first two bits 01, RFC 8656 §12.4)."""
    return len(data) >= 4 and (data[0] & 0xC0) == 0x40


class TurnState(enum.Enum):
    """Where a :class:`TurnClient` is in its life."""

    NEW = "new"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnClientConfig:
    """How a :class:`TurnClient` allocates and keeps its allocation."""

    username: str | None = None
    "Long-term credential user name; ``None`` for a server without authentication."
    password: str | None = None
    "Long-term credential password."
    lifetime: int = 600
    "The allocation lifetime to ask for, in seconds (LIFETIME)."
    requested_family: int | None = None
    "REQUESTED-ADDRESS-FAMILY: 1 for an IPv4 relay, 2 for IPv6 (RFC 8656 §7.1); default IPv4."
    additional_family: int | None = None
    "ADDITIONAL-ADDRESS-FAMILY (2) for a dual IPv4 + IPv6 allocation (RFC 8656 §7.1)."
    use_channels: bool = True
    "Bind a channel per peer (4 bytes of overhead); else use Send indications (36+)."
    reliable: bool = False
    "The server transport is TCP or TLS: transactions are not retransmitted (RFC 8489 §6.2.2)."
    transaction: TransactionConfig | None = None
    "Retransmissions; by default built from ``aioice.stun.RETRY_RTO`` / ``RETRY_MAX``."
    software: str | None = None
    "SOFTWARE attribute of the requests, or ``None``."

    def __post_init__(self) -> None:
        # RFC 8656 §7.2: a server rejects both families in one Allocate with 400.
        if self.requested_family is not None and self.additional_family is not None:
            raise ValueError("requested_family and additional_family exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")


@dataclass(slots=True)
class _Channel:
    number: int
    peer: Address
    bound: bool = False
    refresh_at: float = 0.0
    queue: deque[bytes] = field(default_factory=deque)


@dataclass(slots=True)
class _Permission:
    refresh_at: float = 0.0
    pending: bool = True
    queue: deque[tuple[bytes, Address]] = field(default_factory=deque)


@dataclass(slots=True)
class _Request:
    transaction: Transaction
    kind: str
    context: Any
    retries: int


@dataclass(slots=True)
class TurnClientStats:
    """Counters of a :class:`TurnClient`."""

    dropped: int = 0
    "Datagrams from the server dropped: malformed, unexpected, or from unpermitted peers."
    queue_overflow: int = 0
    "Queued datagrams dropped because a peer's queue was full."
    auth_retries: int = 0
    "Requests sent again after a 401 or 438."


class TurnClient:
    """A TURN allocation as a sans-I/O state machine.

    :param server: the TURN server's address (where every datagram goes).
    :param config: credentials, lifetime and options.
    :param rng: source of transaction IDs (for deterministic tests); default ``secrets``.

    Call :meth:`allocate`, then :meth:`send` data to peers; data from peers comes as
    :class:`~aioice.turn.events.DataReceived` events. The client refreshes the
    allocation, its permissions and its channels by itself from :meth:`handle_timer`.
    """

    def __init__(
        self,
        server: Address,
        config: TurnClientConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.config = config or TurnClientConfig()
        self.state = TurnState.NEW
        self.stats = TurnClientStats()
        #: The relayed addresses, once allocated (two for a dual allocation).
        self.relayed_addresses: tuple[Address, ...] = ()
        #: The client's address as the server saw it, once allocated.
        self.mapped_address: Address | None = None
        #: The lifetime the server granted, in seconds.
        self.lifetime = 0
        self._new_tid: Callable[[], bytes] | None = (
            (lambda: rng.randbytes(12)) if rng is not None else None
        )
        self._realm: str | None = None
        self._nonce: bytes | None = None
        self._key: bytes | None = None
        self._sha256 = False
        self._algorithms: tuple[tuple[int, bytes], ...] = ()
        self._requests: dict[bytes, _Request] = {}
        self._pending: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._refresh_at: float | None = None
        self._channels: dict[Address, _Channel] = {}
        self._peers: dict[int, Address] = {}
        # peer -> number of the channels that are bound: the data path's lookup table.
        self._bound: dict[Address, int] = {}
        self._bound_view = MappingProxyType(self._bound)
        self._peers_view = MappingProxyType(self._peers)
        self._next_channel = CHANNEL_MIN
        # Numbers whose binding failed stay with their peer: the server may hold the
        # binding, and a number cannot go to another peer for 5 minutes (RFC 8656 §12).
        self._failed_channels: dict[Address, int] = {}
        self._permissions: dict[str, _Permission] = {}

    @property
    def bound_channels(self) -> Mapping[Address, int]:
        """Peer -> channel number of the bound channels (a live, read-only view).

        Adapters may read it on their data path to frame ChannelData themselves.
        """
        return self._bound_view

    @property
    def channel_peers(self) -> Mapping[int, Address]:
        """Channel number -> peer (a live, read-only view), to deliver ChannelData."""
        return self._peers_view

    @property
    def relayed_address(self) -> Address | None:
        """The (first) relayed address, once allocated."""
        return self.relayed_addresses[0] if self.relayed_addresses else None

    # -- inputs -------------------------------------------------------------------------

    def allocate(self, *, now: float) -> None:
        """Send the Allocate request (RFC 8656 §7.1)."""
        if self.state is not TurnState.NEW:
            raise TurnStateError(f"cannot allocate in state {self.state.value}")
        self.state = TurnState.ALLOCATING
        attributes: dict[str, Any] = {
            "LIFETIME": self.config.lifetime,
            "REQUESTED-TRANSPORT": UDP_TRANSPORT,
        }
        if self.config.requested_family is not None:
            attributes["REQUESTED-ADDRESS-FAMILY"] = self.config.requested_family
        if self.config.additional_family is not None:
            attributes["ADDITIONAL-ADDRESS-FAMILY"] = self.config.additional_family
        self._request(Method.ALLOCATE, attributes, "allocate", None, now)

    def send(self, data: bytes, peer: Address, *, now: float) -> None:
        """Relay ``data`` to ``peer``.

        The first datagram for a peer binds a channel (which also installs the
        permission); datagrams sent meanwhile wait in a queue of :data:`MAX_QUEUED`
        and leave as ChannelData once it is bound. Without channels (``use_channels``
        false, or all 4096 numbers taken) data goes in Send indications once a
        permission exists.
        """
        if len(data) > 0xFFFF:
            raise ValueError(f"TURN cannot relay {len(data)} bytes in one datagram (max 65535)")
        channel = self._channels.get(peer)
        if channel is not None and channel.bound:
            self._pending.append(_CHANNEL_HEADER.pack(channel.number, len(data)) + data)
            return
        if self.state is not TurnState.ALLOCATED:
            raise TurnStateError(f"cannot send in state {self.state.value}")
        if channel is not None:
            self._enqueue(channel.queue, data)
            return
        number = self._channel_number(peer) if self.config.use_channels else None
        if number is not None:
            channel = _Channel(number, peer)
            channel.queue.append(data)
            self._channels[peer] = channel
            self._peers[number] = peer
            self._bind(channel, now)
            return
        permission = self._permissions.get(peer[0])
        if permission is None:
            permission = self._permissions[peer[0]] = _Permission()
            permission.queue.append((data, peer))
            self._create_permission([peer], now)
        elif permission.pending:
            self._enqueue(permission.queue, (data, peer))
        else:
            self._send_indication(data, peer)

    def channel_data(self, data: bytes, peer: Address) -> bytes | None:
        """ChannelData carrying ``data`` to ``peer`` if its channel is bound, else ``None``.

        The data path's fast lane: no state changes, no event, no timer. The
        caller sends the result itself; on ``None`` it calls :meth:`send`.
        """
        number = self._bound.get(peer)
        if number is None or len(data) > 0xFFFF:
            return None
        return _CHANNEL_HEADER.pack(number, len(data)) + data

    def channel_payload(self, data: bytes) -> tuple[bytes, Address] | None:
        """``(payload, peer)`` of ChannelData on a bound channel, else ``None``.

        The receive path's fast lane: the caller hands anything else to :meth:`receive`.
        """
        if len(data) < 4 or (data[0] & 0xC0) != 0x40:
            return None
        number, length = _CHANNEL_HEADER.unpack_from(data)
        peer = self._peers.get(number)
        if peer is None or len(data) < 4 + length:
            return None
        return data[4 : 4 + length], peer

    def create_permission(self, peers: list[Address], *, now: float) -> None:
        """Install permissions for ``peers`` ahead of any data (RFC 8656 §9)."""
        if self.state is not TurnState.ALLOCATED:
            raise TurnStateError(f"cannot create permissions in state {self.state.value}")
        new = [p for p in peers if p[0] not in self._permissions]
        for peer in new:
            self._permissions[peer[0]] = _Permission()
        if new:
            self._create_permission(new, now)

    def receive(self, data: bytes, *, now: float) -> None:
        """Handle one datagram (or one stream frame) from the server. Never raises."""
        if is_channel_data(data):
            number, length = _CHANNEL_HEADER.unpack_from(data)
            peer = self._peers.get(number)
            if peer is None or len(data) < 4 + length:
                self.stats.dropped += 1
                return
            self._events.append(DataReceived(data[4 : 4 + length], peer))
            return
        try:
            message = parse_message(data)
        except StunParseError as exc:
            self.stats.dropped += 1
            logger.debug("TURN %s: dropped datagram: %s", self.server, exc)
            return
        if message.message_class in (Class.RESPONSE, Class.ERROR):
            request = self._requests.get(message.transaction_id)
            if request is None or not request.transaction.receive_response(
                message, self.server, now=now
            ):
                self.stats.dropped += 1
                return
            self._finish(request, now)
        elif message.message_method == Method.DATA and message.message_class == Class.INDICATION:
            self._data_indication(message)
        else:
            self.stats.dropped += 1

    def handle_timer(self, *, now: float) -> None:
        """Advance to ``now``: retransmissions, and refreshes that are due."""
        for request in list(self._requests.values()):
            transaction = request.transaction
            timer = transaction.get_timer()
            if timer is not None and timer <= now:
                transaction.handle_timer(now=now)
                self._pending.extend(m.data for m in transaction.datagrams_to_send())
                if transaction.done:
                    self._finish(request, now)
        if self.state is not TurnState.ALLOCATED:
            return
        if self._refresh_at is not None and self._refresh_at <= now:
            self._refresh_at = None
            self._request(Method.REFRESH, {"LIFETIME": self.config.lifetime}, "refresh", None, now)
        for ip, permission in self._permissions.items():
            if not permission.pending and permission.refresh_at <= now:
                # The permission holds for another minute, so data is not held back
                # (``pending`` stays false) while the refresh is in flight.
                permission.refresh_at = now + PERMISSION_LIFETIME  # until the answer
                self._request(
                    Method.CREATE_PERMISSION,
                    {"XOR-PEER-ADDRESS": (ip, 0)},
                    "permission-refresh",
                    [(ip, 0)],
                    now,
                )
        for channel in self._channels.values():
            if channel.bound and channel.refresh_at <= now:
                channel.refresh_at = now + CHANNEL_LIFETIME  # until the answer
                self._bind(channel, now)

    def close(self, *, now: float) -> None:
        """Delete the allocation (a Refresh with LIFETIME 0, RFC 8656 §8).

        A :class:`~aioice.turn.events.Closed` event follows, whether the server
        answers or not; errors are ignored, since an allocation expires anyway.
        """
        if self.state in (TurnState.CLOSING, TurnState.CLOSED):
            return
        allocated = self.state is TurnState.ALLOCATED
        self._drop_requests()
        if allocated:
            self.state = TurnState.CLOSING
            self._request(Method.REFRESH, {"LIFETIME": 0}, "delete", None, now)
        else:
            self._closed()

    # -- outputs ------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        """Drain the datagrams to send to the server."""
        pending, self._pending = self._pending, []
        return pending

    def next_event(self) -> TurnEvent | None:
        """The next event, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None``."""
        deadlines = [r.transaction.get_timer() for r in self._requests.values()]
        if self.state is TurnState.ALLOCATED:
            deadlines.append(self._refresh_at)
            deadlines.extend(p.refresh_at for p in self._permissions.values() if not p.pending)
            deadlines.extend(c.refresh_at for c in self._channels.values() if c.bound)
        return min((d for d in deadlines if d is not None), default=None)

    # -- requests -----------------------------------------------------------------------

    def _request(
        self,
        method: Method,
        attributes: dict[str, Any],
        kind: str,
        context: Any,
        now: float,
        retries: int = 0,
    ) -> None:
        tid = self._new_tid() if self._new_tid is not None else None
        message = Message(method, Class.REQUEST, tid, dict(attributes))
        if self.config.software is not None:
            message.attributes["SOFTWARE"] = self.config.software
        if self._key is not None:
            self._sign(message)
        config = self.config.transaction
        if config is None:
            config = default_transaction_config(reliable=self.config.reliable)
        transaction = Transaction(
            message,
            self.server,
            config=config,
            integrity_key=self._key,
            long_term_credential=True,
        )
        self._requests[message.transaction_id] = _Request(transaction, kind, context, retries)
        transaction.start(now=now)
        self._pending.extend(m.data for m in transaction.datagrams_to_send())

    def _sign(self, message: Message) -> None:
        assert self._key is not None
        attributes = message.attributes
        attributes["USERNAME"] = self.config.username
        attributes["REALM"] = self._realm
        attributes["NONCE"] = self._nonce
        if self._sha256:
            # RFC 8489 §9.2.4: the server's PASSWORD-ALGORITHMS echoed, and the choice.
            attributes["PASSWORD-ALGORITHMS"] = self._algorithms
            attributes["PASSWORD-ALGORITHM"] = (PasswordAlgorithm.SHA256, b"")
            message.add_message_integrity_sha256(self._key)
        else:
            message.add_message_integrity(self._key)

    def _finish(self, request: _Request, now: float) -> None:
        transaction = request.transaction
        self._requests.pop(transaction.transaction_id, None)
        try:
            response, _ = transaction.result()
        except TransactionFailed as exc:
            if self._retry_with_credentials(request, exc, now):
                return
            self._failed(request, exc, now)
            return
        except TransactionError as exc:
            self._failed(request, exc, now)
            return
        self._succeeded(request, response, now)

    def _retry_with_credentials(
        self, request: _Request, exc: TransactionFailed, now: float
    ) -> bool:
        """RFC 8489 §9.2.5: a 401 gives the realm and nonce, a 438 a fresh nonce."""
        response = exc.response
        code = response.error_code
        nonce = response.attributes.get("NONCE")
        if (
            code not in (401, 438)
            or nonce is None
            or request.retries >= MAX_AUTH_RETRIES
            or self.config.username is None
            or self.config.password is None
        ):
            return False
        realm = response.attributes.get("REALM", self._realm)
        if realm is None:
            return False
        if code == 401 and self._key is not None and nonce == self._nonce:
            return False  # the credentials themselves were refused
        if realm != self._realm or self._key is None:
            sha256 = self._offers_sha256(response, nonce)
            algorithm = PasswordAlgorithm.SHA256 if sha256 else PasswordAlgorithm.MD5
            try:
                key = long_term_key(
                    self.config.username, realm, self.config.password, algorithm=algorithm
                )
            except ValueError as exc:
                # SASLprep refuses the realm (from the network) or the password: no key,
                # so the request fails instead of raising out of receive().
                logger.debug("TURN %s: cannot make the long-term key: %s", self.server, exc)
                return False
            self._realm = realm
            self._sha256 = sha256
            self._algorithms = response.attributes.get("PASSWORD-ALGORITHMS", ())
            self._key = key
        self._nonce = nonce
        self.stats.auth_retries += 1
        old = request.transaction.request
        attributes = {
            name: value
            for name, value in old.attributes.items()
            if name
            not in (
                "USERNAME",
                "REALM",
                "NONCE",
                "PASSWORD-ALGORITHM",
                "PASSWORD-ALGORITHMS",
                "MESSAGE-INTEGRITY",
                "MESSAGE-INTEGRITY-SHA256",
                "FINGERPRINT",
                "SOFTWARE",
            )
        }
        self._request(
            old.message_method, attributes, request.kind, request.context, now, request.retries + 1
        )
        return True

    @staticmethod
    def _offers_sha256(response: Message, nonce: bytes) -> bool:
        # RFC 8489 §9.2.4: the nonce cookie announces PASSWORD-ALGORITHMS, which lists
        # the algorithms in the server's order of preference.
        features = nonce_security_features(nonce)
        if features is None or not features & SecurityFeature.PASSWORD_ALGORITHMS:
            return False
        # The first algorithm of the server's list that this client knows.
        for number, _ in response.attributes.get("PASSWORD-ALGORITHMS", ()):
            if number in (PasswordAlgorithm.MD5, PasswordAlgorithm.SHA256):
                return bool(number == PasswordAlgorithm.SHA256)
        return False

    def _succeeded(self, request: _Request, response: Message, now: float) -> None:
        kind = request.kind
        if kind == "allocate":
            self._allocated(response, now)
        elif kind == "refresh":
            lifetime = response.attributes.get("LIFETIME")
            if not isinstance(lifetime, int) or lifetime <= 0:
                self._lost(TransactionFailed(response), "refresh response without LIFETIME")
                return
            self.lifetime = lifetime
            self._refresh_at = now + self._refresh_delay(lifetime)
            logger.debug("TURN %s: allocation refreshed for %d s", self.server, lifetime)
        elif kind == "delete":
            self._closed()
        elif kind in ("permission", "permission-refresh"):
            for peer in request.context:
                permission = self._permissions.get(peer[0])
                if permission is None:
                    continue
                permission.pending = False
                permission.refresh_at = now + PERMISSION_LIFETIME - REFRESH_MARGIN
                while permission.queue:
                    self._send_indication(*permission.queue.popleft())
        elif kind == "channel":
            channel: _Channel = request.context
            if self._channels.get(channel.peer) is not channel:
                return  # forgotten meanwhile
            channel.bound = True
            self._bound[channel.peer] = channel.number
            channel.refresh_at = now + CHANNEL_LIFETIME - REFRESH_MARGIN
            # A channel binding installs or refreshes the permission too (§12.2), which
            # lasts 300 s only: CreatePermission keeps it from then on.
            permission = self._permissions.get(channel.peer[0])
            if permission is None:
                permission = self._permissions[channel.peer[0]] = _Permission(pending=False)
            if not permission.pending:
                permission.refresh_at = now + PERMISSION_LIFETIME - REFRESH_MARGIN
            header = _CHANNEL_HEADER.pack
            while channel.queue:
                data = channel.queue.popleft()
                self._pending.append(header(channel.number, len(data)) + data)

    def _failed(self, request: _Request, error: TransactionError, now: float) -> None:
        kind = request.kind
        logger.info("TURN %s: %s failed: %s", self.server, kind, error)
        if kind == "allocate":
            response = error.response
            alternate = None
            if response is not None and response.error_code == 300:
                alternate = response.attributes.get("ALTERNATE-SERVER")
            self._drop_requests()
            self.state = TurnState.CLOSED
            self._events.append(AllocationFailed(error, alternate))
        elif kind == "refresh":
            self._lost(error, "refresh failed")
        elif kind == "delete":
            self._closed()
        elif kind in ("permission", "permission-refresh"):
            for peer in request.context:
                permission = self._permissions.pop(peer[0], None)
                if permission is not None:
                    self._events.append(SendFailed(peer, error, len(permission.queue)))
        elif kind == "channel":
            channel: _Channel = request.context
            if self._channels.get(channel.peer) is channel:
                del self._channels[channel.peer]
                self._bound.pop(channel.peer, None)
                del self._peers[channel.number]
                # The same number may be bound to the same peer again (§12).
                self._failed_channels[channel.peer] = channel.number
                self._events.append(SendFailed(channel.peer, error, len(channel.queue)))

    # -- helpers ------------------------------------------------------------------------

    def _allocated(self, response: Message, now: float) -> None:
        relayed = tuple(response.get_all("XOR-RELAYED-ADDRESS"))
        lifetime = response.attributes.get("LIFETIME")
        if not relayed or not isinstance(lifetime, int) or lifetime <= 0:
            # RFC 8656 §7.3: the success response carries both.
            self._drop_requests()
            self.state = TurnState.CLOSED
            self._events.append(AllocationFailed(TransactionFailed(response)))
            return
        self.state = TurnState.ALLOCATED
        self.relayed_addresses = relayed
        self.mapped_address = response.attributes.get("XOR-MAPPED-ADDRESS")
        self.lifetime = lifetime
        self._refresh_at = now + self._refresh_delay(lifetime)
        logger.info("TURN %s: allocated %s for %d s", self.server, relayed, lifetime)
        self._events.append(AllocationSucceeded(relayed, self.mapped_address, lifetime))

    @staticmethod
    def _refresh_delay(lifetime: int) -> float:
        # A minute before expiry, or halfway for short lifetimes.
        return lifetime - REFRESH_MARGIN if lifetime > 2 * REFRESH_MARGIN else lifetime / 2

    def _lost(self, error: TransactionError, reason: str) -> None:
        logger.info("TURN %s: allocation lost: %s", self.server, reason)
        self._drop_requests()
        self.state = TurnState.CLOSED
        self._events.append(AllocationLost(error))

    def _closed(self) -> None:
        self._drop_requests()
        self.state = TurnState.CLOSED
        self._events.append(Closed())

    def _drop_requests(self) -> None:
        for request in self._requests.values():
            request.transaction.cancel()
        self._requests.clear()
        self._refresh_at = None
        # Without an allocation, channels and permissions are gone too.
        self._channels.clear()
        self._peers.clear()
        self._bound.clear()
        self._permissions.clear()

    def _channel_number(self, peer: Address) -> int | None:
        number = self._failed_channels.pop(peer, None)
        if number is not None:
            return number
        if self._next_channel > CHANNEL_MAX:
            return None
        self._next_channel += 1
        return self._next_channel - 1

    def _bind(self, channel: _Channel, now: float) -> None:
        attributes = {"CHANNEL-NUMBER": channel.number, "XOR-PEER-ADDRESS": channel.peer}
        self._request(Method.CHANNEL_BIND, attributes, "channel", channel, now)

    def _create_permission(self, peers: list[Address], now: float) -> None:
        attributes = {"XOR-PEER-ADDRESS": list(peers)}
        self._request(Method.CREATE_PERMISSION, attributes, "permission", list(peers), now)

    def _send_indication(self, data: bytes, peer: Address) -> None:
        message = Message(
            Method.SEND,
            Class.INDICATION,
            self._new_tid() if self._new_tid is not None else None,
            {"XOR-PEER-ADDRESS": peer, "DATA": data},
        )
        self._pending.append(message.encode(fingerprint=False))

    def _enqueue(self, queue: deque[Any], item: Any) -> None:
        if len(queue) >= MAX_QUEUED:
            queue.popleft()
            self.stats.queue_overflow += 1
        queue.append(item)

    def _data_indication(self, message: Message) -> None:
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        data = message.attributes.get("DATA")
        # RFC 8656 §11.4: only from peers the client has a permission for.
        if peer is None or data is None or peer[0] not in self._permissions:
            self.stats.dropped += 1
            return
        self._events.append(DataReceived(data, peer))
