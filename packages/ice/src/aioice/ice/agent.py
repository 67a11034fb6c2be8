"""The ICE agent (RFC 8445, with RFC 5245 and ICE-lite peers) as a sans-I/O core.

The agent does no discovery (str0m's boundary): the adapter gathers candidates,
binds sockets and TURN relays, and feeds local candidates in as they appear, which
makes trickle ICE the natural mode. The agent pairs, paces, checks, nominates and
watches consent; it names the local socket of every datagram by its *base*.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import secrets
import string
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Final

from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    StunParseError,
    Transaction,
    Transmit,
    parse_message,
)

from .candidate import Candidate, candidate_foundation, candidate_pair_priority
from .config import IceConfig, Nomination
from .errors import IceStateError
from .events import (
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
from .pair import CandidatePair, PairState

__all__ = ["IceAgent", "random_password", "random_username"]

logger = logging.getLogger(__name__)

_ICE_CHARS: Final = string.ascii_letters + string.digits
_WAIT_AFTER_CANCEL: Final = 8.0  # RFC 8489 Rm * RTO: how long a cancelled check is heard
_ACTIVE = (PairState.WAITING, PairState.IN_PROGRESS)
_PENDING = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
_TYPE_PREFERENCE_PRFLX: Final = 110


def random_username(rng: random.Random | None = None) -> str:
    """A username fragment: 4 ice-chars, 24 bits of randomness (RFC 8445 §5.3)."""
    choice = (rng or secrets.SystemRandom()).choice
    return "".join(choice(_ICE_CHARS) for _ in range(4))


def random_password(rng: random.Random | None = None) -> str:
    """A password: 22 ice-chars, at least 128 bits of randomness (RFC 8445 §5.3)."""
    choice = (rng or secrets.SystemRandom()).choice
    return "".join(choice(_ICE_CHARS) for _ in range(22))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _normalize(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host  # an mDNS name, resolved by the adapter


@dataclass(slots=True)
class _Check:
    transaction: Transaction
    pair: CandidatePair
    kind: str  # "check", "nominate" or "consent"
    controlling: bool  # our role when it was sent (§7.2.5.1)
    cancelled_until: float | None = None  # cancelled: no retransmission, heard until then


@dataclass(slots=True)
class _Local:
    candidate: Candidate
    base: Address


class IceAgent:
    """An ICE agent for one data stream with ``components`` components.

    Driven by: API calls, :meth:`receive_datagram` and :meth:`handle_timer`.
    After each of them, send every :class:`~aioice.stun.Transmit` that
    :meth:`datagrams_to_send` returns from the socket (or TURN relay) bound to its
    ``local`` address, handle every :meth:`next_event`, then arm one timer at
    :meth:`get_timer` (the drain rule).

    :param controlling: the initial role (a role conflict may change it).
    :param components: component IDs are ``1..components``.
    :param config: timers and policies.
    :param local_username: ``ice-ufrag``; random when omitted.
    :param local_password: ``ice-pwd``; random when omitted.
    :param rng: every random choice (credentials, tie-breaker, transaction IDs,
        consent jitter); the default is :class:`secrets.SystemRandom`.
    """

    def __init__(
        self,
        *,
        controlling: bool,
        components: int = 1,
        config: IceConfig | None = None,
        local_username: str | None = None,
        local_password: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if components < 1:
            raise ValueError("components must be at least 1")
        self._rng: random.Random = rng if rng is not None else secrets.SystemRandom()
        self.config = config or IceConfig()
        self.components = components
        self.controlling = controlling
        self.tie_breaker = self._rng.getrandbits(64)
        self.local_username = local_username or random_username(self._rng)
        self.local_password = local_password or random_password(self._rng)
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self.remote_is_lite = False
        self.state = IceState.NEW
        #: Why the agent failed, once it has.
        self.failure_reason: str | None = None
        #: Dropped inputs by reason (bad input from the network never raises).
        self.dropped: Counter[str] = Counter()
        self._local: list[_Local] = []
        self._local_by_base: dict[Address, _Local] = {}
        self._remote: list[Candidate] = []
        self._pairs: dict[tuple[int, Address, Address], CandidatePair] = {}
        self._checks: dict[bytes, _Check] = {}
        self._triggered: deque[CandidatePair] = deque()
        self._selected: dict[int, CandidatePair] = {}
        self._local_key = b""
        self._remote_key: bytes | None = None
        self._local_end = False
        self._remote_end_at: float | None = None
        self._started_at: float | None = None
        self._next_check = float("-inf")
        self._first_valid: dict[int, float] = {}
        self._nomination_failed: set[tuple[int, Address, Address]] = set()
        self._consent_next: dict[int, float] = {}
        self._consent_failed: dict[int, int] = {}  # consecutive failed consent checks
        self._prflx_count = 0
        self._pending: list[Transmit] = []
        self._events: deque[IceEvent] = deque()
        self._local_key = self.local_password.encode()

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the datagrams to send; ``local`` names the base to send from."""
        pending, self._pending = self._pending, []
        return pending

    def next_event(self) -> IceEvent | None:
        """The next event, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None``."""
        if self.state in (IceState.FAILED, IceState.CLOSED):
            return None
        times: list[float] = []
        for check in self._checks.values():
            at = (
                check.cancelled_until
                if check.cancelled_until is not None
                else check.transaction.get_timer()
            )
            if at is not None:
                times.append(at)
        if self._checking and self._has_work():
            times.append(self._next_check)
        if self.controlling and self._checking and self.config.nomination is Nomination.REGULAR:
            for component in self._first_valid:
                # Only while _nominate() waits for a better pair: with no pair left
                # to nominate, a deadline in the past would make the caller spin.
                if component not in self._selected and not self._nominating(component):
                    planned = self._nomination(component)
                    if planned is not None:
                        times.append(planned[1])
        deadline = self._failure_deadline()
        if deadline is not None:
            times.append(deadline)
        max_age = self.config.consent_max_age
        for component, pair in self._selected.items():
            times.append(self._consent_next[component])
            if pair.stats.consent_at is not None:
                times.append(pair.stats.consent_at + max_age)
        return min(times) if times else None

    # -- state ----------------------------------------------------------------------------

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates, in the order they were added (peer-reflexive ones included)."""
        return [local.candidate for local in self._local]

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, in the order they were added or discovered."""
        return list(self._remote)

    @property
    def pairs(self) -> list[CandidatePair]:
        """The check list, highest priority first."""
        return sorted(self._pairs.values(), key=lambda p: p.priority, reverse=True)

    def selected_pair(self, component: int = 1) -> CandidatePair | None:
        """The pair carrying ``component``'s data, once nominated."""
        return self._selected.get(component)

    def pair_for(self, component: int, base: Address, remote: Address) -> CandidatePair | None:
        """The pair of ``component`` from ``base`` to ``remote``, if there is one."""
        return self._pairs.get((component, base, remote))

    @property
    def _checking(self) -> bool:
        return self.state in (IceState.CHECKING, IceState.CONNECTED, IceState.COMPLETED) and (
            self._remote_key is not None
        )

    # -- API inputs -----------------------------------------------------------------------

    def set_remote_credentials(self, username: str, password: str, *, lite: bool = False) -> None:
        """The peer's ``ice-ufrag`` and ``ice-pwd`` (and whether it is ICE-lite).

        :raises IceStateError: once the agent is closed.
        """
        self._check_open()
        if not username or not password:
            raise ValueError("remote username and password must not be empty")
        self.remote_username = username
        self.remote_password = password
        self.remote_is_lite = lite
        self._remote_key = password.encode()
        if lite and not self.controlling:
            # RFC 8445 §6.1.1: with a lite peer, the full agent controls.
            self.controlling = True
            self._reprioritize()

    def set_controlling(self, controlling: bool) -> None:
        """Choose the role before checks start (a role conflict may change it later).

        :raises IceStateError: once checks have started.
        """
        if self._started_at is not None:
            raise IceStateError("the role can only be chosen before checks start")
        if controlling != self.controlling:
            self.controlling = controlling
            self._reprioritize()

    def add_local_candidate(
        self, candidate: Candidate | None, *, base: Address | None = None, now: float
    ) -> None:
        """A local candidate found by the adapter, or ``None`` when gathering is done.

        ``base`` is the transport address checks are sent from: the host address of
        a server-reflexive candidate, the candidate's own address otherwise.

        :raises ValueError: for a component this agent does not have, or a
            server-reflexive candidate without ``base``.
        """
        self._check_open()
        if candidate is None:
            self._local_end = True
            self._after_input(now)
            return
        if not 1 <= candidate.component <= self.components:
            raise ValueError(f"component {candidate.component} out of 1..{self.components}")
        if base is None:
            if candidate.type == "srflx":
                raise ValueError("a server-reflexive candidate needs its base")
            base = (candidate.host, candidate.port)
        base = (_normalize(base[0]), base[1])
        local = _Local(candidate, base)
        self._local.append(local)
        if candidate.type != "srflx" or base not in self._local_by_base:
            # §6.1.2.4: a server-reflexive candidate is checked from its base.
            self._local_by_base.setdefault(base, local)
        for remote in self._remote:
            self._add_pair(self._local_by_base[base], remote, now)
        self._after_input(now)

    def add_remote_candidate(self, candidate: Candidate | None, *, now: float) -> None:
        """A remote candidate (trickled or from the offer), or ``None`` for the peer's
        end-of-candidates. ``.local`` (mDNS) hosts must be resolved first; TCP
        candidates are kept but not paired (ICE-TCP is not supported).
        """
        self._check_open()
        if candidate is None:
            if self._remote_end_at is None:
                self._remote_end_at = now
            self._after_input(now)
            return
        if not 1 <= candidate.component <= self.components:
            logger.debug("remote candidate %s: no component %d", candidate, candidate.component)
            return
        candidate.network_host = _normalize(candidate.network_host)
        key = (candidate.component, (candidate.network_host, candidate.port))
        for known in self._remote:
            if (known.component, (known.network_host, known.port)) == key:
                if known.type == "prflx" and candidate.type != "prflx":
                    # §7.3.1.3: signalling names one learnt as peer-reflexive: it takes
                    # the signalled type, foundation and host (an mDNS name stays a name).
                    address = known.network_host
                    known.host = candidate.host
                    known.network_host = address
                    known.type = candidate.type
                    known.foundation = candidate.foundation
                    for pair in self._pairs.values():
                        if pair.remote is known:
                            pair.foundation = f"{pair.local.foundation}:{known.foundation}"
                return
        self._remote.append(candidate)
        for local in self._bases():
            self._add_pair(local, candidate, now)
        self._after_input(now)

    def start(self, *, now: float) -> None:
        """Start connectivity checks (once the remote credentials are set).

        :raises IceStateError: without remote credentials, or once started.
        """
        self._check_open()
        if self._remote_key is None:
            raise IceStateError("set the remote credentials before starting checks")
        if self._started_at is not None:
            raise IceStateError("checks already started")
        self._started_at = now
        self._set_state(IceState.CHECKING)
        # §6.1.2.6: for each foundation, the pair with the lowest component ID and then
        # the highest priority is Waiting; the others stay Frozen.
        first: dict[str, CandidatePair] = {}
        for pair in sorted(self._pairs.values(), key=lambda p: (p.component, -p.priority)):
            first.setdefault(pair.foundation, pair)
        active = {p.foundation for p in self._pairs.values() if p.state in _ACTIVE}
        for foundation, pair in first.items():
            if foundation not in active and pair.state is PairState.FROZEN:
                self._set_pair_state(pair, PairState.WAITING)
        self._after_input(now)

    def select_pair(self, pair: CandidatePair, *, now: float) -> None:
        """Use ``pair`` for its component without checks (aioice's ``set_selected_pair``)."""
        self._check_open()
        if self._pairs.get(pair.key) is not pair:
            raise ValueError(f"{pair} is not in the check list")
        pair.nominated = True
        self._select(pair, now)
        self._after_input(now)

    def close(self, *, now: float) -> None:
        """Stop everything: no more datagrams, events or timers after the CLOSED event."""
        del now
        if self.state is IceState.CLOSED:
            return
        self._checks.clear()
        self._triggered.clear()
        self._pending.clear()
        self._set_state(IceState.CLOSED)

    # -- network inputs -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, *, local: Address, remote: Address, now: float) -> None:
        """A STUN datagram that arrived on the base ``local`` from ``remote``.

        Never raises because of ``data``: what cannot be used is dropped, counted in
        :attr:`dropped` and logged at debug level. Once failed, the agent answers
        nothing: the peer must not select a pair (or keep consent) with a failed agent.
        """
        if self.state is IceState.CLOSED:
            return
        if self.state is IceState.FAILED:
            self._drop("failed", "from %s: the agent has failed", remote)
            return
        try:
            message = parse_message(data)
        except StunParseError as exc:
            self._drop("malformed", "from %s: %s", remote, exc)
            return
        if message.message_method != Method.BINDING:
            self._drop("not-binding", "from %s: %s", remote, message.message_method)
            return
        local = (_normalize(local[0]), local[1])
        remote = (_normalize(remote[0]), remote[1])
        if message.message_class == Class.REQUEST:
            self._receive_request(message, local, remote, now)
        elif message.message_class in (Class.RESPONSE, Class.ERROR):
            self._receive_response(message, local, remote, now)
        # Binding indications are keepalives (RFC 8445 §11): nothing to do.
        self._after_input(now)

    def handle_timer(self, *, now: float) -> None:
        """Advance to ``now``: retransmit, pace checks, nominate, check consent, fail."""
        if self.state in (IceState.FAILED, IceState.CLOSED):
            return
        for txid, check in list(self._checks.items()):
            if check.cancelled_until is not None:
                if now >= check.cancelled_until:
                    del self._checks[txid]
                continue
            transaction = check.transaction
            at = transaction.get_timer()
            if at is None or now < at:
                continue
            transaction.handle_timer(now=now)
            self._flush(check)
            if transaction.done:
                del self._checks[txid]
                self._timed_out(check, now)
        if self.failure_reason is not None:
            return
        self._consent(now)
        self._after_input(now)

    # -- requests (RFC 8445 §7.3) ---------------------------------------------------------

    def _receive_request(
        self, request: Message, local: Address, remote: Address, now: float
    ) -> None:
        attributes = request.attributes
        username = attributes.get("USERNAME")
        if (
            not isinstance(username, str)
            or "MESSAGE-INTEGRITY" not in attributes
            or "PRIORITY" not in attributes
        ):
            # RFC 8489 §9.1.3: no credentials is a 400, but only when they are missing;
            # a check without PRIORITY is malformed for ICE (§7.1.1).
            self._drop(
                "bad-request", "from %s: missing USERNAME/MESSAGE-INTEGRITY/PRIORITY", remote
            )
            self._respond_error(request, local, remote, 400, "Bad Request", signed=False)
            return
        ufrag, sep, _ = username.partition(":")
        if (
            not sep
            or ufrag != self.local_username
            or not request.check_message_integrity(self._local_key)
        ):
            self._drop("unauthenticated", "from %s: username %r", remote, username)
            self._respond_error(request, local, remote, 401, "Unauthorized", signed=False)
            return
        base = self._local_by_base.get(local)
        if base is None:
            self._drop("unknown-base", "check from %s on unknown local address %s", remote, local)
            return
        # §7.3.1.1: role conflicts.
        if self.controlling and "ICE-CONTROLLING" in attributes:
            if self.tie_breaker >= attributes["ICE-CONTROLLING"]:
                self._respond_error(request, local, remote, 487, "Role Conflict", signed=True)
                return
            self._switch_role(False)
        elif not self.controlling and "ICE-CONTROLLED" in attributes:
            if self.tie_breaker >= attributes["ICE-CONTROLLED"]:
                self._switch_role(True)
            else:
                self._respond_error(request, local, remote, 487, "Role Conflict", signed=True)
                return
        # §7.3.1.2: the success response, from the base the request arrived on.
        response = Message(
            Method.BINDING,
            Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": remote},
        )
        self._pending.append(Transmit(response.encode(self._local_key), remote, local))
        component = base.candidate.component
        candidate = self._remote_for(component, remote, attributes["PRIORITY"], now)
        pair = self._pairs.get((component, local, remote))
        if pair is None:
            if candidate is None:
                return
            pair = self._add_pair(base, candidate, now, triggered=True)
            if pair is None:
                return
        else:
            self._trigger(pair, now)
        pair.stats.requests_received += 1
        pair.stats.responses_sent += 1
        pair.stats.last_received = now
        # §7.3.1.5: USE-CANDIDATE from the controlling agent.
        if not self.controlling and "USE-CANDIDATE" in attributes:
            pair.remote_nominated = True
            if pair.state is PairState.SUCCEEDED:
                pair.nominated = True
                self._select(pair, now)

    def _respond_error(
        self,
        request: Message,
        local: Address,
        remote: Address,
        code: int,
        reason: str,
        *,
        signed: bool,
    ) -> None:
        response = Message(
            Method.BINDING,
            Class.ERROR,
            transaction_id=request.transaction_id,
            attributes={"ERROR-CODE": (code, reason)},
        )
        data = response.encode(self._local_key if signed else None)
        self._pending.append(Transmit(data, remote, local))

    def _remote_for(
        self, component: int, remote: Address, priority: int, now: float
    ) -> Candidate | None:
        for candidate in self._remote:
            if (
                candidate.component == component
                and (candidate.network_host, candidate.port) == remote
            ):
                return candidate
        # §7.3.1.3: a peer-reflexive remote candidate.
        if self._prflx_count >= self.config.max_pairs:
            # Bounded like the check list: authenticated checks from ever new addresses
            # must not grow the candidate list without end.
            self._drop("too-many-prflx", "not learning %s: peer-reflexive limit", remote)
            return None
        self._prflx_count += 1
        candidate = Candidate(
            foundation=f"prflx{self._prflx_count}",
            component=component,
            transport="udp",
            priority=priority,
            host=remote[0],
            port=remote[1],
            type="prflx",
        )
        self._remote.append(candidate)
        self._events.append(RemoteCandidateDiscovered(candidate))
        logger.debug("peer-reflexive remote candidate %s", candidate)
        return candidate

    def _trigger(self, pair: CandidatePair, now: float) -> None:
        """§7.3.1.4: a check received on ``pair`` triggers a check of ours."""
        state = pair.state
        if state is PairState.SUCCEEDED or self._component_done(pair.component):
            return
        if state is PairState.IN_PROGRESS:
            # Cancel: no more retransmissions, but a response is still heard.
            for check in self._checks.values():
                if check.pair is pair and check.kind == "check" and check.cancelled_until is None:
                    check.cancelled_until = now + _WAIT_AFTER_CANCEL
            pair.transaction = None
        self._set_pair_state(pair, PairState.WAITING)
        if pair not in self._triggered:
            self._triggered.append(pair)

    # -- responses (RFC 8445 §7.2.5) ------------------------------------------------------

    def _receive_response(
        self, response: Message, local: Address, remote: Address, now: float
    ) -> None:
        check = self._checks.get(response.transaction_id)
        if check is None:
            self._drop("unknown-transaction", "response from %s", remote)
            return
        transaction = check.transaction
        if not transaction.receive_response(response, remote, now=now):
            self._drop("unauthenticated", "response from %s failed its integrity check", remote)
            return
        del self._checks[response.transaction_id]
        pair = check.pair
        pair.stats.last_received = now
        if pair.transaction is transaction:
            pair.transaction = None
        if check.kind == "consent":
            if response.message_class == Class.RESPONSE:
                pair.stats.responses_received += 1
                pair.stats.rtt = transaction.rtt
                pair.stats.consent_at = now
                self._consent_failed[pair.component] = 0
            else:
                self._consent_failure(pair, now)
            return
        # §7.2.5.2.1: the response must come back on the same 5-tuple.
        if remote != pair.remote_address or local != pair.base:
            logger.debug("%s: non-symmetric response from %s on %s", pair, remote, local)
            self._fail_pair(pair, check, now)
            return
        if response.message_class == Class.ERROR:
            if response.error_code == 487 and check.kind != "consent":
                # §7.2.5.1: switch role (unless it already changed) and check again.
                if check.controlling == self.controlling:
                    self._switch_role(not self.controlling)
                if pair.state is PairState.IN_PROGRESS:
                    self._set_pair_state(pair, PairState.WAITING)
                    self._triggered.append(pair)
                elif check.kind == "nominate":
                    pair.nominating = False
                return
            logger.debug("%s: error %s", pair, response.error_code)
            self._fail_pair(pair, check, now)
            return
        pair.stats.responses_received += 1
        pair.stats.rtt = transaction.rtt
        pair.stats.consent_at = now
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is not None:
            self._learn_local((_normalize(mapped[0]), mapped[1]), pair, transaction.request)
        if pair.state is not PairState.SUCCEEDED:
            self._set_pair_state(pair, PairState.SUCCEEDED)
            self._first_valid.setdefault(pair.component, now)
            # §7.2.5.3.3: unfreeze the pairs with the same foundation.
            for other in self._pairs.values():
                if other.state is PairState.FROZEN and other.foundation == pair.foundation:
                    self._set_pair_state(other, PairState.WAITING)
        if check.kind == "nominate" or (
            self.controlling and "USE-CANDIDATE" in transaction.request.attributes
        ):
            pair.nominating = False
            pair.nominated = True
            self._select(pair, now)
        elif not self.controlling and pair.remote_nominated:
            # §7.3.1.5: the peer nominated this pair before our check succeeded.
            pair.nominated = True
            self._select(pair, now)

    def _learn_local(self, mapped: Address, pair: CandidatePair, request: Message) -> None:
        """§7.2.5.3.1: a mapped address we do not know is a peer-reflexive candidate."""
        for local in self._local:
            if (local.candidate.host, local.candidate.port) == mapped:
                return
        candidate = Candidate(
            foundation=candidate_foundation("prflx", "udp", pair.base[0]),
            component=pair.component,
            transport="udp",
            priority=request.attributes["PRIORITY"],
            host=mapped[0],
            port=mapped[1],
            type="prflx",
            related_address=pair.base[0],
            related_port=pair.base[1],
        )
        self._local.append(_Local(candidate, pair.base))
        self._events.append(LocalCandidateDiscovered(candidate))

    def _fail_pair(
        self, pair: CandidatePair, check: _Check, now: float, *, timed_out: bool = False
    ) -> None:
        if check.kind == "nominate":
            pair.nominating = False
            if not timed_out:
                # Refused: nominate another pair. A nomination that only went
                # unanswered (a lossy path) is sent again, by _nominate().
                self._nomination_failed.add(pair.key)
        elif pair.state is PairState.IN_PROGRESS and pair.transaction is None:
            # Only the pair's current check fails it (the caller has cleared
            # pair.transaction): not an older one while a newer check is in flight.
            self._set_pair_state(pair, PairState.FAILED)
        del now

    def _timed_out(self, check: _Check, now: float) -> None:
        pair = check.pair
        if pair.transaction is check.transaction:
            pair.transaction = None
        if check.kind == "consent":
            self._consent_failure(pair, now)
            return
        logger.debug("%s: %s timed out", pair, check.kind)
        self._fail_pair(pair, check, now, timed_out=True)

    # -- pairs ----------------------------------------------------------------------------

    def _bases(self) -> list[_Local]:
        return list(self._local_by_base.values())

    def _add_pair(
        self, local: _Local, remote: Candidate, now: float, *, triggered: bool = False
    ) -> CandidatePair | None:
        candidate = local.candidate
        if (
            candidate.component != remote.component
            or remote.transport.lower() != "udp"
            or candidate.transport.lower() != "udp"
            or not _is_ip(remote.network_host)
            or (":" in local.base[0]) != (":" in remote.network_host)
        ):
            return None
        key = (candidate.component, local.base, (remote.network_host, remote.port))
        if key in self._pairs:
            return self._pairs[key]
        if len(self._pairs) >= self.config.max_pairs:
            # §6.1.2.5: keep the check list bounded; drop the lowest-priority pair.
            lowest = min(self._pairs.values(), key=lambda p: p.priority)
            priority = self._priority(candidate, remote)
            if lowest.priority >= priority or lowest.state not in (
                PairState.FROZEN,
                PairState.WAITING,
            ):
                self._drop("too-many-pairs", "pair limit: not pairing %s", remote)
                return None
            del self._pairs[lowest.key]
            if lowest in self._triggered:
                self._triggered.remove(lowest)
        pair = CandidatePair(candidate, local.base, remote, self._priority(candidate, remote))
        self._pairs[key] = pair
        # §6.1.2.6: before checks start, pairs wait Frozen for start() to unfreeze one
        # per foundation; afterwards (RFC 8838, trickled pairs) a pair is Waiting unless
        # one with the same foundation is already being checked.
        if triggered:
            self._set_pair_state(pair, PairState.WAITING)
            self._triggered.append(pair)
        elif self._started_at is not None and not any(
            p.foundation == pair.foundation and p.state in _ACTIVE
            for p in self._pairs.values()
            if p is not pair
        ):
            self._set_pair_state(pair, PairState.WAITING)
        else:
            self._events.append(PairStateChanged(pair, pair.state))
        del now
        return pair

    def _priority(self, local: Candidate, remote: Candidate) -> int:
        return candidate_pair_priority(local, remote, self.controlling)

    def _reprioritize(self) -> None:
        for pair in self._pairs.values():
            pair.priority = self._priority(pair.local, pair.remote)

    def _switch_role(self, controlling: bool) -> None:
        logger.info("role conflict: now %s", "controlling" if controlling else "controlled")
        self.controlling = controlling
        self._reprioritize()
        self._events.append(RoleChanged(controlling))

    def _set_pair_state(self, pair: CandidatePair, state: PairState) -> None:
        if pair.state is not state:
            pair.set_state(state)
            self._events.append(PairStateChanged(pair, state))

    def _component_done(self, component: int) -> bool:
        """Whether ``component`` needs no more ordinary checks (§8.1.2)."""
        return component in self._selected and (
            self.controlling or self.config.nomination is Nomination.REGULAR
        )

    def _has_work(self) -> bool:
        """Whether :meth:`_pace` would send a check once Ta has passed."""
        if self._triggered:
            return True
        # A Frozen pair whose foundation is being checked cannot be unfrozen yet: it
        # is no work (a timer for it would fire at once, again and again).
        return self._next_pair(unfreeze=False) is not None

    # -- sending checks (RFC 8445 §6.1.4, §7.2.4) ----------------------------------------

    def _pace(self, now: float) -> None:
        """Send triggered checks now, and the next ordinary check if Ta has passed since
        the last one (§6.1.4.2, §14.2).

        Deviation: RFC 8445 paces triggered checks with Ta too. Ours answer the peer's
        own check, which just opened its NAT: sending them at once is what makes
        NAT-to-NAT and relay-to-relay connects take one round trip instead of Ta more.
        """
        if not self._checking:
            return
        while self._triggered:
            triggered = self._triggered.popleft()
            if triggered.state is PairState.WAITING and self._pairs.get(triggered.key) is triggered:
                self._send_check(triggered, now, "check")
        if now < self._next_check:
            return
        pair = self._next_pair()
        if pair is None:
            return
        self._send_check(pair, now, "check")
        self._next_check = now + self.config.ta

    def _next_pair(self, *, unfreeze: bool = True) -> CandidatePair | None:
        ordered = [p for p in self.pairs if not self._component_done(p.component)]
        for pair in ordered:
            if pair.state is PairState.WAITING:
                return pair
        # §6.1.4.2: unfreeze a pair whose foundation has nothing Waiting or In-Progress.
        active = {p.foundation for p in self._pairs.values() if p.state in _ACTIVE}
        for pair in ordered:
            if pair.state is PairState.FROZEN and pair.foundation not in active:
                if unfreeze:
                    self._set_pair_state(pair, PairState.WAITING)
                return pair
        return None

    def _send_check(self, pair: CandidatePair, now: float, kind: str) -> None:
        assert self._remote_key is not None
        assert self.remote_username is not None
        local = pair.local
        # §7.1.1: PRIORITY is what a peer-reflexive candidate of ours would have.
        priority = (_TYPE_PREFERENCE_PRFLX << 24) | (local.priority & 0xFFFFFF)
        attributes: dict[str, object] = {
            "USERNAME": f"{self.remote_username}:{self.local_username}",
            "PRIORITY": priority,
        }
        if self.controlling:
            attributes["ICE-CONTROLLING"] = self.tie_breaker
            if kind == "nominate" or (
                kind == "check" and self.config.nomination is Nomination.AGGRESSIVE
            ):
                attributes["USE-CANDIDATE"] = None
        else:
            attributes["ICE-CONTROLLED"] = self.tie_breaker
        request = Message(
            Method.BINDING,
            Class.REQUEST,
            transaction_id=self._rng.getrandbits(96).to_bytes(12, "big"),
            attributes=attributes,
        )
        request.add_message_integrity(self._remote_key)
        config = self.config.check
        rtt = pair.stats.rtt
        if kind != "check" and rtt is not None:
            # A nomination or consent check goes over a pair whose round trip is known:
            # retransmit after three of them (at least Ta), not the initial RTO
            # (RFC 8489 §6.2.1 lets RTO follow measurements), so a lossy path agrees fast.
            config = replace(config, rto=min(config.rto, max(3 * rtt, self.config.ta)))
        transaction = Transaction(
            request, pair.remote_address, config=config, integrity_key=self._remote_key
        )
        check = _Check(transaction, pair, kind, self.controlling)
        self._checks[request.transaction_id] = check
        if kind == "check":
            pair.transaction = transaction
            pair.checked_at = now
            self._set_pair_state(pair, PairState.IN_PROGRESS)
        elif kind == "nominate":
            pair.nominating = True
        transaction.start(now=now)
        self._flush(check)

    def _flush(self, check: _Check) -> None:
        pair = check.pair
        for transmit in check.transaction.datagrams_to_send():
            pair.stats.requests_sent += 1
            self._pending.append(Transmit(transmit.data, transmit.remote, pair.base))

    # -- nomination and selection (RFC 8445 §8) ------------------------------------------

    def _nominating(self, component: int) -> bool:
        return any(p.nominating for p in self._pairs.values() if p.component == component)

    def _nomination(self, component: int) -> tuple[CandidatePair, float] | None:
        """The pair regular nomination would choose for ``component`` and when.

        The best valid pair is nominated once no pair of higher priority can still
        succeed soon: a higher pair in flight gets twice the chosen pair's RTT (at
        least Ta) from its check to answer, plus one RTO when the chosen pair is
        relayed; one not checked yet is waited for. Never later than
        ``nomination_delay`` after the component's first success.
        """
        valid = [
            p
            for p in self._pairs.values()
            if p.component == component
            and p.state is PairState.SUCCEEDED
            and p.key not in self._nomination_failed
        ]
        if not valid:
            return None
        best = max(valid, key=lambda p: p.priority)
        deadline = self._first_valid[component] + self.config.nomination_delay
        margin = max(2 * (best.stats.rtt or 0.0), self.config.ta)
        if best.local.type == "relay" or best.remote.type == "relay":
            # Before settling for a relay, a direct pair gets its first retransmission:
            # behind a restricted NAT the first check is dropped until the peer's own
            # check opens the way.
            margin += self.config.check.rto
        at = float("-inf")
        for pair in self._pairs.values():
            if (
                pair.component != component
                or pair.priority <= best.priority
                or pair.state not in _PENDING
            ):
                continue
            if pair.state is not PairState.IN_PROGRESS or pair.checked_at is None:
                return best, deadline
            at = max(at, pair.checked_at + margin)
        return best, min(at, deadline)

    def _nominate(self, now: float) -> None:
        """Regular nomination (§8.1.1) by the controlling agent."""
        if (
            not self.controlling
            or not self._checking
            or self.config.nomination is Nomination.AGGRESSIVE
        ):
            return
        for component in range(1, self.components + 1):
            if component in self._selected or self._nominating(component):
                continue
            planned = self._nomination(component)
            if planned is None or now < planned[1]:
                continue
            logger.debug("nominating %s", planned[0])
            self._send_check(planned[0], now, "nominate")

    def _select(self, pair: CandidatePair, now: float) -> None:
        current = self._selected.get(pair.component)
        if current is pair or (current is not None and current.priority >= pair.priority):
            return
        self._selected[pair.component] = pair
        pair.stats.consent_at = now
        self._consent_failed[pair.component] = 0
        self._consent_next[pair.component] = now + self._consent_interval()
        self._events.append(SelectedPairChanged(pair.component, pair))
        logger.info("component %d: selected %s", pair.component, pair)
        if self._component_done(pair.component):
            # §8.1.2: no more checks for this component.
            for check in self._checks.values():
                if (
                    check.pair.component == pair.component
                    and check.kind == "check"
                    and check.pair is not pair
                    and check.cancelled_until is None
                ):
                    check.cancelled_until = now + _WAIT_AFTER_CANCEL
        if len(self._selected) == self.components and self.state is IceState.CHECKING:
            self._set_state(IceState.CONNECTED)

    def _update_completion(self) -> None:
        if (
            self.state is IceState.CONNECTED
            and not any(
                p.state in _PENDING and not self._component_done(p.component)
                for p in self._pairs.values()
            )
            and not self._triggered
        ):
            self._set_state(IceState.COMPLETED)

    # -- consent freshness (RFC 7675) -----------------------------------------------------

    def _consent_interval(self) -> float:
        # §5.1: randomized to 0.8-1.2 times the interval.
        return self.config.consent_interval * (0.8 + 0.4 * self._rng.random())

    def _consent_failure(self, pair: CandidatePair, now: float) -> None:
        """A consent check of ``pair`` failed: count it if ``pair`` is still selected."""
        component = pair.component
        if self._selected.get(component) is not pair or self.failure_reason is not None:
            return
        failed = self._consent_failed.get(component, 0) + 1
        self._consent_failed[component] = failed
        if failed >= self.config.consent_failures:
            self._consent_lost(component, pair, f"{failed} consent checks failed in a row")
        del now

    def _consent_lost(self, component: int, pair: CandidatePair, why: str) -> None:
        logger.warning("component %d: consent lost on %s (%s)", component, pair, why)
        self._events.append(ConsentExpired(component, pair))
        self._fail(f"consent lost on component {component}: {why}")

    def _consent(self, now: float) -> None:
        if not self._selected or self._remote_key is None:
            return
        max_age = self.config.consent_max_age
        for component, pair in list(self._selected.items()):
            granted = pair.stats.consent_at
            if granted is not None and now >= granted + max_age:
                # RFC 7675 §5.1: 30 s without a response.
                self._consent_lost(component, pair, f"no response for {max_age:g} s")
                return
            if now >= self._consent_next[component]:
                self._consent_next[component] = now + self._consent_interval()
                self._send_check(pair, now, "consent")

    # -- failure and state ----------------------------------------------------------------

    def _failure_deadline(self) -> float | None:
        """``failure_timeout`` after checks start (and the remote end-of-candidates), or
        twice that once a pair is promising: it succeeded, is being nominated, or the peer
        nominated it. A lossy path may need that long to agree on a pair; a path where
        nothing ever succeeds is given up at the first bound."""
        if (
            self.state is not IceState.CHECKING
            or self._started_at is None
            or self._remote_end_at is None
        ):
            return None
        timeout = self.config.failure_timeout
        if any(
            p.state is PairState.SUCCEEDED
            or p.nominating
            or (p.remote_nominated and p.state is not PairState.FAILED)
            for p in self._pairs.values()
            if p.component not in self._selected
        ):
            timeout *= 2
        return max(self._started_at, self._remote_end_at) + timeout

    def _check_failure(self, now: float) -> None:
        if self.state is not IceState.CHECKING or self._remote_key is None:
            return
        deadline = self._failure_deadline()
        if deadline is None:
            return
        if now >= deadline:
            waited = deadline - max(self._started_at or 0.0, self._remote_end_at or 0.0)
            self._fail(f"no candidate pair selected within {waited:g} s")
            return
        exhausted = not self._triggered and all(
            p.state is PairState.FAILED
            for p in self._pairs.values()
            if p.component not in self._selected
        )
        if exhausted and self._local_end:
            self._fail("every candidate pair failed")

    def _fail(self, reason: str) -> None:
        self.failure_reason = reason
        self._checks.clear()
        self._triggered.clear()
        self._set_state(IceState.FAILED, reason)

    def _set_state(self, state: IceState, reason: str = "") -> None:
        if state is not self.state:
            self.state = state
            self._events.append(IceStateChanged(state, reason))

    def _after_input(self, now: float) -> None:
        if self.state in (IceState.FAILED, IceState.CLOSED, IceState.NEW):
            return
        self._pace(now)
        self._nominate(now)
        self._check_failure(now)
        self._update_completion()

    def _check_open(self) -> None:
        if self.state is IceState.CLOSED:
            raise IceStateError("the ICE agent is closed")

    def _drop(self, reason: str, message: str, *args: object) -> None:
        self.dropped[reason] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped (%s): %s", reason, message % args)
