"""Sans-I/O STUN server: Binding (RFC 8489 §6.3) and NAT discovery support (RFC 5780 §6).

With one address the server answers Binding requests with XOR-MAPPED-ADDRESS.
Given an alternate address (another IP *and* another port), it listens on the
four combinations and supports RFC 5780: OTHER-ADDRESS, RESPONSE-ORIGIN,
CHANGE-REQUEST and RESPONSE-PORT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from .errors import StunParseError
from .message import Class, Message, Method, parse_message
from .transmit import Address, Transmit

__all__ = ["CHANGE_IP", "CHANGE_PORT", "StunServer", "StunServerStats"]

logger = logging.getLogger(__name__)

CHANGE_IP: Final = 0x04
"CHANGE-REQUEST flag: answer from the alternate IP address (RFC 5780 §7.2)."
CHANGE_PORT: Final = 0x02
"CHANGE-REQUEST flag: answer from the alternate port (RFC 5780 §7.2)."

_UNSPECIFIED = ("0.0.0.0", "::")


@dataclass(slots=True)
class StunServerStats:
    """Counters of what a :class:`StunServer` received and sent."""

    requests: int = 0
    "Binding requests answered with a success response."
    errors_sent: int = 0
    "Requests answered with an error response (400, 420)."
    indications: int = 0
    "Indications received (they get no answer)."
    dropped: int = 0
    "Datagrams dropped: not STUN, malformed, or responses."


class StunServer:
    """A STUN Binding server as a sans-I/O core.

    :param primary: the primary address (A1, P1).
    :param alternate: the alternate address (A2, P2), with A2 ≠ A1 and P2 ≠ P1,
        to support RFC 5780; the server then listens on (A1, P1), (A1, P2),
        (A2, P1) and (A2, P2), see :attr:`addresses`.
    :param software: the SOFTWARE attribute of responses, or ``None``.

    Drive it with :meth:`receive_datagram`, then send what
    :meth:`datagrams_to_send` returns, each from the socket bound to its
    ``local`` address. It has no timers.
    """

    def __init__(
        self,
        primary: Address,
        alternate: Address | None = None,
        *,
        software: str | None = None,
    ) -> None:
        if alternate is not None and (alternate[0] == primary[0] or alternate[1] == primary[1]):
            raise ValueError("the alternate address needs another IP address and another port")
        self.primary = primary
        self.alternate = alternate
        self.software = software
        self.stats = StunServerStats()
        self._pending: list[Transmit] = []

    @property
    def addresses(self) -> list[Address]:
        """The addresses to listen on: one, or four with an alternate address."""
        if self.alternate is None:
            return [self.primary]
        (a1, p1), (a2, p2) = self.primary, self.alternate
        return [(a1, p1), (a1, p2), (a2, p1), (a2, p2)]

    def _swap(self, local: Address, change_ip: bool, change_port: bool) -> Address:
        assert self.alternate is not None
        (a1, p1), (a2, p2) = self.primary, self.alternate
        host, port = local
        if change_ip:
            host = a2 if host == a1 else a1
        if change_port:
            port = p2 if port == p1 else p1
        return host, port

    def receive_datagram(
        self, data: bytes, *, local: Address, remote: Address, now: float, stream: bool = False
    ) -> None:
        """Handle a datagram received on the socket bound to ``local`` from ``remote``.

        ``stream`` says it came over TCP/TLS, where the response must go back on the
        same connection: a CHANGE-REQUEST there is answered with 400 (RFC 5780 §7.2).

        Never raises because of ``data``: what cannot be answered is dropped and counted.
        """
        try:
            request = parse_message(data)
        except StunParseError as exc:
            self.stats.dropped += 1
            logger.debug("dropped datagram from %s: %s", remote, exc)
            return
        if request.message_class == Class.INDICATION:
            self.stats.indications += 1
            return
        if request.message_class != Class.REQUEST:
            self.stats.dropped += 1
            logger.debug("dropped %s from %s: not a request", request.message_class.name, remote)
            return
        if local not in self.addresses:
            local = self.primary
        self._answer(request, local, remote, stream)

    def _answer(self, request: Message, local: Address, remote: Address, stream: bool) -> None:
        attributes: dict[str, Any] = {}
        if request.unknown_attributes:
            # RFC 8489 §6.3.1.1: 420 listing the unknown comprehension-required attributes.
            self._error(
                request, local, remote, 420, "Unknown Attribute", request.unknown_attributes
            )
            return
        if request.message_method != Method.BINDING:
            self._error(request, local, remote, 400, "Unsupported method")
            return
        source, destination = local, remote
        change = request.attributes.get("CHANGE-REQUEST", 0) & (CHANGE_IP | CHANGE_PORT)
        if change and stream:
            self._error(request, local, remote, 400, "CHANGE-REQUEST needs UDP")
            return
        if change:
            if self.alternate is None:
                # RFC 5780 §6.1: without an alternate address, CHANGE-REQUEST is unknown.
                self._error(request, local, remote, 420, "Unknown Attribute", (0x0003,))
                return
            source = self._swap(local, bool(change & CHANGE_IP), bool(change & CHANGE_PORT))
        response_port = request.attributes.get("RESPONSE-PORT")
        if response_port is not None:
            destination = (remote[0], response_port)  # RFC 5780 §7.5
        attributes["XOR-MAPPED-ADDRESS"] = remote
        if self.alternate is not None:
            attributes["RESPONSE-ORIGIN"] = source
            attributes["OTHER-ADDRESS"] = self._swap(local, True, True)
        elif source[0] not in _UNSPECIFIED:
            attributes["RESPONSE-ORIGIN"] = source
        self._respond(request, Class.RESPONSE, attributes, source, destination)
        self.stats.requests += 1

    def _error(
        self,
        request: Message,
        local: Address,
        remote: Address,
        code: int,
        reason: str,
        unknown: tuple[int, ...] = (),
    ) -> None:
        attributes: dict[str, Any] = {"ERROR-CODE": (code, reason)}
        if unknown:
            attributes["UNKNOWN-ATTRIBUTES"] = unknown
        self._respond(request, Class.ERROR, attributes, local, remote)
        self.stats.errors_sent += 1

    def _respond(
        self,
        request: Message,
        message_class: Class,
        attributes: dict[str, Any],
        source: Address,
        destination: Address,
    ) -> None:
        if self.software is not None:
            attributes["SOFTWARE"] = self.software
        response = Message(
            request.message_method, message_class, request.transaction_id, attributes
        )
        if "FINGERPRINT" in request.attributes:
            response.add_fingerprint()
        self._pending.append(Transmit(bytes(response), destination, source))

    def datagrams_to_send(self) -> list[Transmit]:
        """Drain the datagrams to send; each says which ``local`` socket sends it."""
        pending, self._pending = self._pending, []
        return pending

    def get_timer(self) -> float | None:
        """Always ``None``: the server has no timers."""
        return None
