"""Sans-I/O STUN client transaction (RFC 8489 §6.2).

Time enters only through ``now`` arguments (seconds on any monotonic clock).
After :meth:`Transaction.start`, :meth:`Transaction.handle_timer` and
:meth:`Transaction.receive_response`, the caller sends everything
:meth:`Transaction.datagrams_to_send` returns and re-arms its timer at
:meth:`Transaction.get_timer`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from .errors import StunStateError, TransactionError, TransactionFailed, TransactionTimeout
from .message import Class, Message
from .transmit import Address, Transmit

__all__ = ["Transaction", "TransactionConfig"]

logger = logging.getLogger(__name__)

#: RFC 8489 §6.2.2: timeout of a transaction over a reliable transport.
RELIABLE_TIMEOUT: Final = 39.5


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionConfig:
    """Retransmission parameters (RFC 8489 §6.2.1)."""

    rto: float = 0.5
    "Initial retransmission timeout in seconds (RTO)."
    retransmissions: int = 6
    "Retransmissions after the first send; Rc = retransmissions + 1 requests in all."
    rm: int = 16
    "After the last request, wait Rm * RTO (the initial RTO) for a response."
    max_rto: float | None = None
    "Cap on the doubled RTO between retransmissions, in seconds; ``None`` for no cap."
    reliable: bool = False
    "Over TCP/TLS: send once and time out after ``reliable_timeout`` (§6.2.2)."
    reliable_timeout: float = RELIABLE_TIMEOUT
    "Ti, the timeout of a transaction over a reliable transport, in seconds."


class Transaction:
    """One STUN request and its retransmissions, until a response or a timeout.

    :param request: the request; it is encoded once, at :meth:`start`.
    :param remote: the server address.
    :param config: retransmission parameters; defaults to RFC 8489's values
        with Rc = 7, as in aioice (``RETRY_RTO`` = 0.5 s, ``RETRY_MAX`` = 6).
    :param integrity_key: when set, responses that do not authenticate with it
        are ignored and retransmissions continue (RFC 8489 §9.1.4, §9.2.5).
    :param long_term_credential: with ``integrity_key``, accept unsigned 401 and
        438 error responses, which carry the realm and nonce to retry with (§9.2.4).

    The outcome is read from :attr:`done` and :meth:`result`.
    """

    def __init__(
        self,
        request: Message,
        remote: Address,
        *,
        config: TransactionConfig | None = None,
        integrity_key: bytes | None = None,
        long_term_credential: bool = False,
    ) -> None:
        if request.message_class != Class.REQUEST:
            raise ValueError("a STUN transaction needs a request message")
        self.request = request
        self.remote = remote
        self.config = config or TransactionConfig()
        self._integrity_key = integrity_key
        self._long_term_credential = long_term_credential
        self._data = b""
        self._pending: list[Transmit] = []
        self._sent = 0
        self._rto = self.config.rto
        self._timer: float | None = None
        self._started_at: float | None = None
        self._response: tuple[Message, Address] | None = None
        self._error: TransactionError | None = None
        #: Seconds from the first send to the response, once there is one.
        self.rtt: float | None = None
        #: Responses dropped because they did not authenticate.
        self.dropped_unauthenticated = 0

    @property
    def transaction_id(self) -> bytes:
        """The request's transaction ID, by which the caller routes responses here."""
        return self.request.transaction_id

    @property
    def done(self) -> bool:
        """Whether the transaction has ended, with a response or an error."""
        return self._response is not None or self._error is not None

    @property
    def requests_sent(self) -> int:
        """How many times the request was sent so far."""
        return self._sent

    def start(self, *, now: float) -> None:
        """Send the request for the first time."""
        if self._started_at is not None:
            raise StunStateError("transaction already started")
        self._started_at = now
        self._data = bytes(self.request)
        self._send(now)

    def _send(self, now: float) -> None:
        config = self.config
        self._pending.append(Transmit(self._data, self.remote))
        self._sent += 1
        if config.reliable:
            self._timer = now + config.reliable_timeout
        elif self._sent >= config.retransmissions + 1:
            # §6.2.1: after the last request, wait Rm times the initial RTO.
            self._timer = now + config.rm * config.rto
        else:
            self._timer = now + self._rto
            self._rto *= 2
            if config.max_rto is not None:
                self._rto = min(self._rto, config.max_rto)

    def handle_timer(self, *, now: float) -> None:
        """Advance to ``now``: retransmit, or time out after the last wait."""
        if self._timer is None or now < self._timer:
            return
        if self.config.reliable or self._sent >= self.config.retransmissions + 1:
            self._timer = None
            self._error = TransactionTimeout()
            return
        self._send(now)

    def receive_response(self, message: Message, remote: Address, *, now: float) -> bool:
        """Offer a response; return whether it ended this transaction.

        A response with another transaction ID, a request or indication, or one
        that fails authentication is ignored (and does not raise).
        """
        if (
            self.done
            or self._started_at is None
            or message.transaction_id != self.request.transaction_id
            or message.message_class not in (Class.RESPONSE, Class.ERROR)
        ):
            return False
        key = self._integrity_key
        if key is not None and not self._authenticated(message, key):
            self.dropped_unauthenticated += 1
            logger.debug("STUN response %s dropped: integrity check failed", message)
            return False
        self._timer = None
        self.rtt = now - self._started_at
        if message.message_class == Class.RESPONSE:
            self._response = (message, remote)
        else:
            self._error = TransactionFailed(message)
        return True

    def _authenticated(self, message: Message, key: bytes) -> bool:
        # §9.2.4/9.2.5: a 401 or 438 gives the realm and nonce to retry with and
        # need not be signed.
        if (
            self._long_term_credential
            and message.message_class == Class.ERROR
            and message.error_code in (401, 438)
        ):
            return True
        return message.check_message_integrity(key)

    def cancel(self) -> None:
        """Stop retransmitting; the transaction ends with :class:`TransactionTimeout`."""
        if not self.done:
            self._timer = None
            self._pending.clear()
            self._error = TransactionTimeout()

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the datagrams to send now."""
        pending, self._pending = self._pending, []
        return pending

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None`` once done."""
        return self._timer

    def result(self) -> tuple[Message, Address]:
        """The success response and the address it came from.

        :raises TransactionFailed: the server sent an error response.
        :raises TransactionTimeout: no response came in time.
        :raises StunStateError: the transaction has not ended yet.
        """
        if self._error is not None:
            raise self._error
        if self._response is None:
            raise StunStateError("transaction has not ended")
        return self._response
