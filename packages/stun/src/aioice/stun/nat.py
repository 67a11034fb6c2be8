"""NAT behaviour discovery (RFC 5780 §4.3 and §4.4) as a sans-I/O core.

All tests run from one local socket. The order matters: the filtering tests
come before the mapping tests, because a mapping test sends to the server's
alternate address and that alone would open an address-dependent filter.

1. Test I: Binding to the primary address: mapped address X1 and OTHER-ADDRESS.
2. Filtering test II: CHANGE-REQUEST "change IP and port". A response means
   endpoint-independent filtering; else:
3. Filtering test III: CHANGE-REQUEST "change port". A response means
   address-dependent filtering; none means address-and-port-dependent.
4. Mapping test II: Binding to (alternate IP, primary port): X2 = X1 means
   endpoint-independent mapping; else:
5. Mapping test III: Binding to the alternate address: X3 = X2 means
   address-dependent mapping; else address-and-port-dependent.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import NatDiscoveryError, StunParseError, TransactionError, TransactionFailed
from .message import Class, Message, Method, parse_message
from .server import CHANGE_IP, CHANGE_PORT
from .transaction import Transaction, TransactionConfig
from .transmit import Address, Transmit

__all__ = ["FilteringBehavior", "MappingBehavior", "NatBehavior", "NatBehaviorDiscovery"]

logger = logging.getLogger(__name__)


class MappingBehavior(enum.Enum):
    """How a NAT maps an internal address to external ones (RFC 4787 §4.1)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class FilteringBehavior(enum.Enum):
    """Which inbound packets a NAT lets through to a mapping (RFC 4787 §5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class NatBehavior:
    """The result of :class:`NatBehaviorDiscovery`."""

    mapping: MappingBehavior
    "The mapping behaviour."
    filtering: FilteringBehavior
    "The filtering behaviour."
    mapped_address: Address
    "The server-reflexive address seen by the primary address (test I)."
    behind_nat: bool
    "False when the mapped address is one of the local addresses."


# Steps, in order.
_TEST_I = "test I"
_FILTER_II = "filtering test II"
_FILTER_III = "filtering test III"
_MAP_II = "mapping test II"
_MAP_III = "mapping test III"


class NatBehaviorDiscovery:
    """Discover the mapping and filtering behaviour of the NATs before a server.

    :param server: the server's primary address; the server must support RFC 5780.
    :param local_addresses: the local socket's addresses, to tell "no NAT".
    :param config: retransmissions of each test; a filtering test that gets no
        answer is a result, so keep this short (default: 4 requests, 2.75 s).

    Drive it with :meth:`start`, :meth:`receive_datagram` (every datagram of the
    socket) and :meth:`handle_timer`; drain :meth:`datagrams_to_send` and re-arm
    the timer at :meth:`get_timer` after each. Read :meth:`result` once :attr:`done`.
    """

    def __init__(
        self,
        server: Address,
        *,
        local_addresses: Sequence[Address] = (),
        config: TransactionConfig | None = None,
        transaction_id: Callable[[], bytes] | None = None,
    ) -> None:
        self.server = server
        self.local_addresses = list(local_addresses)
        self.config = config or TransactionConfig(rto=0.25, retransmissions=3, rm=4)
        self._new_tid = transaction_id
        self._transaction: Transaction | None = None
        self._step = ""
        self._pending: list[Transmit] = []
        self._other: Address | None = None
        self._x1: Address | None = None
        self._x2: Address | None = None
        self._filtering: FilteringBehavior | None = None
        self._result: NatBehavior | None = None
        self._error: NatDiscoveryError | None = None
        #: Datagrams that were not responses to a current test.
        self.dropped = 0

    @property
    def done(self) -> bool:
        """Whether discovery has ended, with a result or an error."""
        return self._result is not None or self._error is not None

    def start(self, *, now: float) -> None:
        """Send test I."""
        self._run(_TEST_I, self.server, {}, now)

    def _run(self, step: str, remote: Address, attributes: dict[str, Any], now: float) -> None:
        tid = self._new_tid() if self._new_tid is not None else None
        request = Message(Method.BINDING, Class.REQUEST, tid, attributes)
        self._step = step
        self._transaction = Transaction(request, remote, config=self.config)
        self._transaction.start(now=now)
        self._collect()

    def _collect(self) -> None:
        if self._transaction is not None:
            self._pending.extend(self._transaction.datagrams_to_send())

    def receive_datagram(self, data: bytes, *, remote: Address, now: float) -> None:
        """Offer a datagram received on the probing socket (from any address)."""
        transaction = self._transaction
        try:
            message = parse_message(data)
        except StunParseError as exc:
            self.dropped += 1
            logger.debug("dropped datagram from %s: %s", remote, exc)
            return
        if transaction is None or not transaction.receive_response(message, remote, now=now):
            self.dropped += 1
            return
        self._advance(transaction, now)

    def handle_timer(self, *, now: float) -> None:
        """Advance the current test to ``now``."""
        transaction = self._transaction
        if transaction is None:
            return
        transaction.handle_timer(now=now)
        self._collect()
        if transaction.done:
            self._advance(transaction, now)

    def _mapped(self, response: Message) -> Address | None:
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is None:
            mapped = response.attributes.get("MAPPED-ADDRESS")
        return mapped

    def _fail(self, reason: str) -> None:
        self._transaction = None
        self._error = NatDiscoveryError(reason)

    def _advance(self, transaction: Transaction, now: float) -> None:
        try:
            response: Message | None = transaction.result()[0]
        except TransactionFailed as exc:
            # An error response is not "no answer": reporting it as filtering would lie.
            self._fail(f"the server rejected {self._step}: {exc}")
            return
        except TransactionError as exc:
            response = None
            error = exc
        step = self._step
        if step == _TEST_I:
            if response is None:
                self._fail(f"no answer from {self.server[0]}:{self.server[1]}: {error}")
                return
            self._x1 = self._mapped(response)
            self._other = response.attributes.get("OTHER-ADDRESS")
            if self._x1 is None:
                self._fail("the server's response has no mapped address")
            elif self._other is None:
                self._fail("the server does not support RFC 5780 (no OTHER-ADDRESS)")
            else:
                self._run(_FILTER_II, self.server, {"CHANGE-REQUEST": CHANGE_IP | CHANGE_PORT}, now)
        elif step == _FILTER_II:
            if response is not None:
                self._filtering = FilteringBehavior.ENDPOINT_INDEPENDENT
                self._map_test_ii(now)
            else:
                self._run(_FILTER_III, self.server, {"CHANGE-REQUEST": CHANGE_PORT}, now)
        elif step == _FILTER_III:
            self._filtering = (
                FilteringBehavior.ADDRESS_DEPENDENT
                if response is not None
                else FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT
            )
            self._map_test_ii(now)
        elif step == _MAP_II:
            if response is None or (x2 := self._mapped(response)) is None:
                self._fail(f"no mapped address from the alternate address ({step})")
            elif x2 == self._x1:
                self._finish(MappingBehavior.ENDPOINT_INDEPENDENT)
            else:
                self._x2 = x2
                assert self._other is not None
                self._run(_MAP_III, self._other, {}, now)
        elif step == _MAP_III:
            if response is None or (x3 := self._mapped(response)) is None:
                self._fail(f"no mapped address from the alternate address ({step})")
            elif x3 == self._x2:
                self._finish(MappingBehavior.ADDRESS_DEPENDENT)
            else:
                self._finish(MappingBehavior.ADDRESS_AND_PORT_DEPENDENT)

    def _map_test_ii(self, now: float) -> None:
        assert self._other is not None
        self._run(_MAP_II, (self._other[0], self.server[1]), {}, now)

    def _finish(self, mapping: MappingBehavior) -> None:
        assert self._x1 is not None
        assert self._filtering is not None
        self._transaction = None
        self._result = NatBehavior(
            mapping=mapping,
            filtering=self._filtering,
            mapped_address=self._x1,
            behind_nat=self._x1 not in self.local_addresses,
        )

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the datagrams to send from the probing socket."""
        pending, self._pending = self._pending, []
        return pending

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` next, or ``None``."""
        return self._transaction.get_timer() if self._transaction is not None else None

    def result(self) -> NatBehavior:
        """The discovered behaviour.

        :raises NatDiscoveryError: discovery could not complete, or has not yet.
        """
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise NatDiscoveryError("discovery has not ended")
        return self._result
