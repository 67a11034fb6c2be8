"""The sans-I/O TURN client (RFC 8656), driven by hand in virtual time from ``now = 0.0``.

Every test takes the client's datagrams, parses them with :func:`aioice.stun.parse_message`
and answers with responses built here by :class:`FakeTurnServer`, signed with the
long-term key, so that retransmission and refresh times can be checked exactly.
The last section feeds random and mutated server messages into ``receive()``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import random
from collections import Counter
from typing import Any

import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    SecurityFeature,
    TransactionFailed,
    TransactionTimeout,
    long_term_key,
    make_nonce,
    parse_message,
)
from aioice.turn import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Closed,
    DataReceived,
    SendFailed,
    TurnClient,
    TurnClientConfig,
    TurnEvent,
    TurnState,
    TurnStateError,
    rest_credentials,
)
from aioice.turn.client import MAX_AUTH_RETRIES, MAX_QUEUED
from hypothesis import given, settings
from hypothesis import strategies as st

SERVER: Address = ("192.0.2.1", 3478)
RELAYED: Address = ("192.0.2.1", 49152)
RELAYED6: Address = ("2001:db8::1", 49153)
MAPPED: Address = ("198.51.100.7", 40000)
PEER: Address = ("203.0.113.5", 6000)
PEER_OTHER_PORT: Address = ("203.0.113.5", 6001)
PEER2: Address = ("203.0.113.6", 7000)
PEER3: Address = ("2001:db8::6", 7000)

USERNAME = "alice"
PASSWORD = "secret"
REALM = "example.org"
NONCE = b"nonce-1"
KEY = long_term_key(USERNAME, REALM, PASSWORD)
SHA256_KEY = long_term_key(USERNAME, REALM, PASSWORD, algorithm=PasswordAlgorithm.SHA256)
CONFIG = TurnClientConfig(username=USERNAME, password=PASSWORD)

UDP = 0x11000000  # REQUESTED-TRANSPORT: protocol 17 in the top byte (RFC 8656 §18.8)
# RFC 8489 defaults with Rc = 7: RTO doubles from 0.5 s; the last wait is Rm * RTO = 8 s.
DEFAULT_SENDS = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
DEFAULT_TIMEOUT = 39.5


# -- the fake server ------------------------------------------------------------------


class FakeTurnServer:
    """Answers a :class:`TurnClient` by hand, as a TURN server with long-term credentials.

    :meth:`take` reads the one request the client just sent (and checks its signature
    once the client has credentials); :meth:`succeed`, :meth:`fail` and
    :meth:`challenge` feed an answer into ``client.receive``.
    """

    def __init__(self, client: TurnClient, *, realm: str = REALM, nonce: bytes = NONCE) -> None:
        self.client = client
        self.realm = realm
        self.nonce = nonce
        self.key = KEY
        self.sha256 = False

    def take_all(self) -> list[Message]:
        return [parse_message(data) for data in self.client.datagrams_to_send()]

    def take(self, method: Method, *, signed: bool = True) -> Message:
        """The one request the client has to send, checked for method and signature."""
        datagrams = self.client.datagrams_to_send()
        assert len(datagrams) == 1, f"expected one datagram, got {datagrams!r}"
        request = parse_message(datagrams[0])
        assert request.message_method == method
        assert request.message_class == Class.REQUEST
        if signed:
            self.verify(request)
        else:
            for name in ("USERNAME", "REALM", "NONCE", "MESSAGE-INTEGRITY"):
                assert name not in request.attributes
        return request

    def verify(self, request: Message) -> None:
        """RFC 8489 §9.2.4: USERNAME, REALM, NONCE and a MESSAGE-INTEGRITY under the key."""
        attributes = request.attributes
        assert attributes["USERNAME"] == USERNAME
        assert attributes["REALM"] == self.realm
        assert attributes["NONCE"] == self.nonce
        if self.sha256:
            assert "MESSAGE-INTEGRITY" not in attributes
            assert "MESSAGE-INTEGRITY-SHA256" in attributes
        else:
            assert "MESSAGE-INTEGRITY" in attributes
            assert "MESSAGE-INTEGRITY-SHA256" not in attributes
        assert request.check_message_integrity(self.key)
        assert not request.check_message_integrity(b"wrong key")

    def answer(
        self,
        request: Message,
        message_class: Class,
        attributes: dict[str, Any],
        *,
        now: float,
        signed: bool,
        key: bytes | None = None,
    ) -> bytes:
        message = Message(
            request.message_method, message_class, request.transaction_id, dict(attributes)
        )
        if signed:
            if self.sha256:
                message.add_message_integrity_sha256(key or self.key)
            else:
                message.add_message_integrity(key or self.key)  # adds FINGERPRINT too
        data = bytes(message)
        self.client.receive(data, now=now)
        return data

    def succeed(
        self,
        request: Message,
        attributes: dict[str, Any] | None = None,
        *,
        now: float,
        signed: bool = True,
    ) -> bytes:
        return self.answer(request, Class.RESPONSE, attributes or {}, now=now, signed=signed)

    def fail(
        self,
        request: Message,
        code: int,
        attributes: dict[str, Any] | None = None,
        *,
        now: float,
        signed: bool = True,
    ) -> bytes:
        error = {"ERROR-CODE": (code, f"Error {code}"), **(attributes or {})}
        return self.answer(request, Class.ERROR, error, now=now, signed=signed)

    def challenge(
        self,
        request: Message,
        *,
        now: float,
        code: int = 401,
        nonce: bytes | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> bytes:
        """An unsigned 401 (or 438) with REALM and a NONCE, which becomes the server's."""
        if nonce is not None:
            self.nonce = nonce
        extra = {"REALM": self.realm, "NONCE": self.nonce, **(attributes or {})}
        return self.fail(request, code, extra, now=now, signed=False)

    def allocated(
        self,
        request: Message,
        *,
        now: float,
        lifetime: int = 600,
        relayed: list[Address] | None = None,
    ) -> bytes:
        attributes = {
            "XOR-RELAYED-ADDRESS": relayed or [RELAYED],
            "XOR-MAPPED-ADDRESS": MAPPED,
            "LIFETIME": lifetime,
        }
        return self.succeed(request, attributes, now=now)


def state(client: TurnClient) -> TurnState:
    # (A call, so that mypy does not narrow ``client.state`` across inputs.)
    return client.state


def make_client(config: TurnClientConfig = CONFIG, *, seed: int = 1) -> TurnClient:
    return TurnClient(SERVER, config, rng=random.Random(seed))


def drain_events(client: TurnClient) -> list[TurnEvent]:
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def allocated_client(
    config: TurnClientConfig = CONFIG, *, lifetime: int = 600, now: float = 0.0
) -> tuple[TurnClient, FakeTurnServer]:
    """A client whose Allocate went through a 401 and succeeded at ``now``."""
    client = make_client(config)
    server = FakeTurnServer(client)
    client.allocate(now=now)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=now)
    server.allocated(server.take(Method.ALLOCATE), now=now, lifetime=lifetime)
    assert [type(e) for e in drain_events(client)] == [AllocationSucceeded]
    assert state(client) is TurnState.ALLOCATED
    return client, server


def bind_channel(client: TurnClient, server: FakeTurnServer, peer: Address, *, now: float) -> int:
    """Send one datagram to ``peer`` and let its ChannelBind succeed; the channel number."""
    client.send(b"hello", peer, now=now)
    request = server.take(Method.CHANNEL_BIND)
    server.succeed(request, now=now)
    number: int = request.attributes["CHANNEL-NUMBER"]
    assert client.datagrams_to_send() == [channel_data(number, b"hello")]
    return number


def channel_data(number: int, payload: bytes) -> bytes:
    """ChannelData (RFC 8656 §12.4): channel number, length, then the application data."""
    return number.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def data_indication(peer: Address, data: bytes) -> bytes:
    message = Message(Method.DATA, Class.INDICATION, bytes(12), {"XOR-PEER-ADDRESS": peer})
    message.attributes["DATA"] = data
    return bytes(message)


def run_timers(client: TurnClient, until: float, max_steps: int = 100) -> list[tuple[float, bytes]]:
    """Follow ``get_timer()`` up to ``until``; the datagrams sent and when."""
    sent: list[tuple[float, bytes]] = []
    for _ in range(max_steps):
        timer = client.get_timer()
        if timer is None or timer > until:
            return sent
        client.handle_timer(now=timer)
        sent.extend((timer, data) for data in client.datagrams_to_send())
        if client.state is TurnState.CLOSED:
            return sent
    raise AssertionError(f"timers still running after {max_steps} steps")


# -- allocation and long-term credentials ---------------------------------------------


def test_long_term_key_is_md5_of_username_realm_password() -> None:
    # RFC 8489 §9.2.2, computed here from its definition.
    assert hashlib.md5(b"alice:example.org:secret").digest() == KEY
    assert hashlib.sha256(b"alice:example.org:secret").digest() == SHA256_KEY


def test_allocate_challenged_then_signed_retry_succeeds() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    assert state(client) is TurnState.NEW
    assert client.get_timer() is None

    client.allocate(now=0.0)
    assert state(client) is TurnState.ALLOCATING
    first = server.take(Method.ALLOCATE, signed=False)
    assert first.attributes == {"LIFETIME": 600, "REQUESTED-TRANSPORT": UDP}
    assert client.get_timer() == 0.5

    server.challenge(first, now=0.25)
    assert drain_events(client) == []
    assert client.stats.auth_retries == 1
    assert state(client) is TurnState.ALLOCATING
    retry = server.take(Method.ALLOCATE)  # checks USERNAME, REALM, NONCE, MESSAGE-INTEGRITY
    assert retry.transaction_id != first.transaction_id
    assert retry.attributes["LIFETIME"] == 600
    assert retry.attributes["REQUESTED-TRANSPORT"] == UDP
    assert "FINGERPRINT" in retry.attributes
    assert "PASSWORD-ALGORITHM" not in retry.attributes
    assert client.get_timer() == 0.75  # the retry's own retransmission timer

    server.allocated(retry, now=0.5)
    assert drain_events(client) == [
        AllocationSucceeded(relayed_addresses=(RELAYED,), mapped_address=MAPPED, lifetime=600)
    ]
    assert state(client) is TurnState.ALLOCATED
    assert client.relayed_address == RELAYED
    assert client.relayed_addresses == (RELAYED,)
    assert client.mapped_address == MAPPED
    assert client.lifetime == 600
    assert client.stats.auth_retries == 1
    assert client.stats.dropped == 0
    assert client.get_timer() == 540.5
    assert client.datagrams_to_send() == []


def test_allocate_without_authentication() -> None:
    client = make_client(TurnClientConfig())
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.allocated(server.take(Method.ALLOCATE, signed=False), now=0.0)
    assert [type(e) for e in drain_events(client)] == [AllocationSucceeded]
    assert client.stats.auth_retries == 0


def test_software_attribute_in_every_request() -> None:
    client = make_client(dataclasses.replace(CONFIG, software="aioice test"))
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    first = server.take(Method.ALLOCATE, signed=False)
    assert first.attributes["SOFTWARE"] == "aioice test"
    server.challenge(first, now=0.0)
    assert server.take(Method.ALLOCATE).attributes["SOFTWARE"] == "aioice test"


def test_401_without_credentials_fails_the_allocation() -> None:
    client = make_client(TurnClientConfig())
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == 401
    assert state(client) is TurnState.CLOSED
    assert client.stats.auth_retries == 0
    assert client.datagrams_to_send() == []


def test_repeated_401_with_the_same_nonce_fails() -> None:
    # The signed request was refused with the same nonce: the credentials are wrong.
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    server.challenge(server.take(Method.ALLOCATE), now=0.25)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == 401
    assert client.stats.auth_retries == 1
    assert state(client) is TurnState.CLOSED
    assert client.datagrams_to_send() == []
    assert client.get_timer() is None


def test_401_with_a_new_nonce_after_credentials_is_retried() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    server.challenge(server.take(Method.ALLOCATE), now=0.0, nonce=b"nonce-2")
    retry = server.take(Method.ALLOCATE)
    assert retry.attributes["NONCE"] == b"nonce-2"
    server.allocated(retry, now=0.0)
    assert [type(e) for e in drain_events(client)] == [AllocationSucceeded]
    assert client.stats.auth_retries == 2


def test_401_with_a_new_realm_changes_the_key() -> None:
    client, server = allocated_client()
    client.handle_timer(now=540.0)
    refresh = server.take(Method.REFRESH)
    server.realm = "other.org"
    server.key = long_term_key(USERNAME, "other.org", PASSWORD)
    server.challenge(refresh, now=540.0, nonce=b"nonce-2")
    retry = server.take(Method.REFRESH)  # REALM other.org, signed with its key
    assert not retry.check_message_integrity(KEY)
    server.succeed(retry, {"LIFETIME": 600}, now=540.0)
    assert drain_events(client) == []
    assert client.get_timer() == 1080.0


def test_auth_retries_are_bounded() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    requests = 1
    for i in range(10):
        request = server.take(Method.ALLOCATE)
        requests += 1
        server.challenge(request, now=0.0, code=438, nonce=f"stale-{i}".encode())
        if client.state is TurnState.CLOSED:
            break
    assert requests == MAX_AUTH_RETRIES + 1 == 4
    assert client.stats.auth_retries == MAX_AUTH_RETRIES
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == 438
    assert client.datagrams_to_send() == []


def test_stale_nonce_on_refresh_is_retried_with_the_new_nonce() -> None:
    client, server = allocated_client()
    client.handle_timer(now=540.0)
    refresh = server.take(Method.REFRESH)
    server.challenge(refresh, now=540.25, code=438, nonce=b"nonce-2")
    assert drain_events(client) == []
    retry = server.take(Method.REFRESH)  # verify() checks NONCE is nonce-2
    assert retry.attributes["NONCE"] == b"nonce-2"
    assert retry.attributes["LIFETIME"] == 600
    assert retry.transaction_id != refresh.transaction_id
    assert client.stats.auth_retries == 2
    server.succeed(retry, {"LIFETIME": 600}, now=540.5)
    assert drain_events(client) == []
    assert state(client) is TurnState.ALLOCATED
    assert client.get_timer() == 1080.5
    # Later requests use the new nonce.
    client.send(b"x", PEER, now=600.0)
    assert server.take(Method.CHANNEL_BIND).attributes["NONCE"] == b"nonce-2"


def test_stale_nonce_on_channel_bind_is_retried_and_data_still_flushed() -> None:
    client, server = allocated_client()
    client.send(b"first", PEER, now=10.0)
    bind = server.take(Method.CHANNEL_BIND)
    client.send(b"second", PEER, now=10.0)
    server.challenge(bind, now=10.25, code=438, nonce=b"nonce-3")
    retry = server.take(Method.CHANNEL_BIND)
    assert retry.attributes["CHANNEL-NUMBER"] == 0x4000
    assert retry.attributes["XOR-PEER-ADDRESS"] == PEER
    server.succeed(retry, now=10.5)
    assert client.datagrams_to_send() == [
        channel_data(0x4000, b"first"),
        channel_data(0x4000, b"second"),
    ]
    assert drain_events(client) == []


def test_realm_that_saslprep_refuses_fails_instead_of_raising() -> None:
    # A NUL in REALM is prohibited by SASLprep, so no key can be made from it.
    client = make_client()
    server = FakeTurnServer(client, realm="bad\x00realm")
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == 401
    assert state(client) is TurnState.CLOSED


# -- SHA-256 (RFC 8489 §9.2.4) ----------------------------------------------------------


# The server's order of preference: the client takes the first it supports (RFC 8489 §9.2.5).
ALGORITHMS = ((PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b""))


def test_sha256_chosen_when_the_nonce_cookie_announces_password_algorithms() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    nonce = make_nonce(SecurityFeature.PASSWORD_ALGORITHMS, b"opaque")
    assert nonce.startswith(b"obMatJos2")
    client.allocate(now=0.0)
    first = server.take(Method.ALLOCATE, signed=False)
    server.challenge(first, now=0.0, nonce=nonce, attributes={"PASSWORD-ALGORITHMS": ALGORITHMS})

    server.sha256 = True
    server.key = SHA256_KEY
    retry = server.take(Method.ALLOCATE)  # MESSAGE-INTEGRITY-SHA256 only, under SHA256_KEY
    assert retry.attributes["PASSWORD-ALGORITHM"] == (PasswordAlgorithm.SHA256, b"")
    assert retry.attributes["PASSWORD-ALGORITHMS"] == ALGORITHMS
    assert retry.attributes["NONCE"] == nonce
    assert not retry.check_message_integrity(KEY)

    server.allocated(retry, now=0.25)
    assert [type(e) for e in drain_events(client)] == [AllocationSucceeded]
    # Later requests are signed the same way.
    client.send(b"x", PEER, now=1.0)
    bind = server.take(Method.CHANNEL_BIND)
    assert bind.attributes["PASSWORD-ALGORITHM"] == (PasswordAlgorithm.SHA256, b"")
    assert bind.attributes["PASSWORD-ALGORITHMS"] == ALGORITHMS


@pytest.mark.parametrize(
    ("nonce", "algorithms"),
    [
        pytest.param(NONCE, ALGORITHMS, id="no-nonce-cookie"),
        pytest.param(
            make_nonce(SecurityFeature.USERNAME_ANONYMITY, b"opaque"),
            ALGORITHMS,
            id="cookie-without-password-algorithms-bit",
        ),
        pytest.param(
            make_nonce(SecurityFeature.PASSWORD_ALGORITHMS, b"opaque"),
            ((PasswordAlgorithm.MD5, b""),),
            id="md5-only",
        ),
        pytest.param(
            make_nonce(SecurityFeature.PASSWORD_ALGORITHMS, b"opaque"),
            ((99, b""), (PasswordAlgorithm.MD5, b""), (PasswordAlgorithm.SHA256, b"")),
            id="md5-preferred",
        ),
    ],
)
def test_md5_kept_unless_sha256_is_offered_with_the_cookie(
    nonce: bytes, algorithms: tuple[tuple[int, bytes], ...]
) -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    first = server.take(Method.ALLOCATE, signed=False)
    server.challenge(first, now=0.0, nonce=nonce, attributes={"PASSWORD-ALGORITHMS": algorithms})
    retry = server.take(Method.ALLOCATE)  # MESSAGE-INTEGRITY under the MD5 key
    assert "PASSWORD-ALGORITHM" not in retry.attributes
    assert not retry.check_message_integrity(SHA256_KEY)


# -- forged and unauthenticated responses -------------------------------------------------


def test_unauthenticated_responses_after_credentials_are_ignored() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    retry_data = client.datagrams_to_send()
    retry = parse_message(retry_data[0])
    good = {"XOR-RELAYED-ADDRESS": RELAYED, "XOR-MAPPED-ADDRESS": MAPPED, "LIFETIME": 600}

    # Unsigned success, success signed with another key, unsigned and forged errors.
    server.succeed(retry, good, now=0.1, signed=False)
    server.answer(retry, Class.RESPONSE, good, now=0.1, signed=True, key=b"forged key")
    server.fail(retry, 437, now=0.1, signed=False)
    server.answer(
        retry, Class.ERROR, {"ERROR-CODE": (486, "Quota")}, now=0.1, signed=True, key=b"forged"
    )
    server.fail(retry, 300, {"ALTERNATE-SERVER": ("192.0.2.66", 3478)}, now=0.1, signed=False)
    assert client.stats.dropped == 5
    assert drain_events(client) == []
    assert state(client) is TurnState.ALLOCATING

    # The transaction keeps retransmitting the same request.
    assert client.get_timer() == 0.5
    client.handle_timer(now=0.5)
    assert client.datagrams_to_send() == retry_data
    assert client.get_timer() == 1.5

    server.allocated(retry, now=0.75)
    assert [type(e) for e in drain_events(client)] == [AllocationSucceeded]


def test_signed_response_with_an_unknown_transaction_id_is_dropped() -> None:
    client, _ = allocated_client()
    stray = Message(Method.REFRESH, Class.RESPONSE, bytes(12), {"LIFETIME": 600})
    stray.add_message_integrity(KEY)
    client.receive(bytes(stray), now=1.0)
    assert client.stats.dropped == 1
    assert drain_events(client) == []
    assert client.get_timer() == 540.0


# -- allocation refresh ---------------------------------------------------------------


def test_refresh_follows_the_lifetime_the_server_grants() -> None:
    client, server = allocated_client()
    assert client.get_timer() == 540.0
    client.handle_timer(now=539.75)
    assert client.datagrams_to_send() == []

    client.handle_timer(now=540.0)
    refresh = server.take(Method.REFRESH)
    assert refresh.attributes["LIFETIME"] == 600
    assert client.get_timer() == 540.5  # its retransmission
    server.succeed(refresh, {"LIFETIME": 300}, now=540.25)
    assert client.lifetime == 300
    assert client.get_timer() == 780.25  # 300 - 60

    client.handle_timer(now=780.25)
    refresh = server.take(Method.REFRESH)
    assert refresh.attributes["LIFETIME"] == 600  # the client still asks for its lifetime
    server.succeed(refresh, {"LIFETIME": 100}, now=780.5)
    assert client.get_timer() == 830.5  # half of a short lifetime

    client.handle_timer(now=830.5)
    server.succeed(server.take(Method.REFRESH), {"LIFETIME": 3600}, now=831.0)
    assert client.get_timer() == 4371.0
    assert drain_events(client) == []
    assert state(client) is TurnState.ALLOCATED


@pytest.mark.parametrize(
    ("lifetime", "refresh_at"),
    [(600, 540.0), (3600, 3540.0), (300, 240.0), (121, 61.0), (120, 60.0), (100, 50.0), (1, 0.5)],
)
def test_first_refresh_time(lifetime: int, refresh_at: float) -> None:
    client, _ = allocated_client(lifetime=lifetime)
    assert client.lifetime == lifetime
    assert client.get_timer() == refresh_at


def test_refresh_asks_for_the_configured_lifetime() -> None:
    client, server = allocated_client(dataclasses.replace(CONFIG, lifetime=1200), lifetime=1200)
    client.handle_timer(now=1140.0)
    assert server.take(Method.REFRESH).attributes["LIFETIME"] == 1200


@pytest.mark.parametrize("code", [437, 403, 508])
def test_refresh_error_loses_the_allocation(code: int) -> None:
    client, server = allocated_client()
    client.handle_timer(now=540.0)
    server.fail(server.take(Method.REFRESH), code, now=541.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationLost)
    assert isinstance(event.error, TransactionFailed)
    assert event.error.response.error_code == code
    assert state(client) is TurnState.CLOSED
    assert client.get_timer() is None
    assert client.datagrams_to_send() == []
    with pytest.raises(TurnStateError):
        client.send(b"x", PEER, now=542.0)


def test_refresh_timeout_loses_the_allocation() -> None:
    client, _ = allocated_client()
    client.handle_timer(now=540.0)
    refresh = client.datagrams_to_send()
    sent = run_timers(client, until=1000.0)
    assert [t for t, _ in sent] == [540.0 + t for t in DEFAULT_SENDS[1:]]
    assert all(data == refresh[0] for _, data in sent)
    [event] = drain_events(client)
    assert isinstance(event, AllocationLost)
    assert isinstance(event.error, TransactionTimeout)
    assert state(client) is TurnState.CLOSED
    assert client.get_timer() is None


def test_refresh_timeout_is_at_the_exact_time() -> None:
    client, _ = allocated_client()
    client.handle_timer(now=540.0)
    sent = run_timers(client, until=540.0 + DEFAULT_TIMEOUT - 0.25)
    assert sent[-1][0] == 540.0 + DEFAULT_SENDS[-1]  # the last retransmission
    client.handle_timer(now=540.0 + DEFAULT_TIMEOUT - 0.25)
    assert state(client) is TurnState.ALLOCATED
    assert client.get_timer() == 540.0 + DEFAULT_TIMEOUT
    client.handle_timer(now=540.0 + DEFAULT_TIMEOUT)
    assert [type(e) for e in drain_events(client)] == [AllocationLost]


def test_refresh_success_without_lifetime_loses_the_allocation() -> None:
    client, server = allocated_client()
    client.handle_timer(now=540.0)
    server.succeed(server.take(Method.REFRESH), now=540.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationLost)
    assert state(client) is TurnState.CLOSED


# -- channels -------------------------------------------------------------------------


def test_send_binds_a_channel_and_flushes_the_queue_in_order() -> None:
    client, server = allocated_client(lifetime=3600)
    client.send(b"one", PEER, now=10.0)
    bind = server.take(Method.CHANNEL_BIND)
    assert bind.attributes["CHANNEL-NUMBER"] == 0x4000
    assert bind.attributes["XOR-PEER-ADDRESS"] == PEER
    assert bind.get_all("XOR-PEER-ADDRESS") == [PEER]
    assert client.get_timer() == 10.5

    client.send(b"two", PEER, now=10.25)
    client.send(b"three!", PEER, now=10.25)
    assert client.datagrams_to_send() == []  # queued, and no second ChannelBind

    server.succeed(bind, now=10.5)
    assert client.datagrams_to_send() == [
        b"\x40\x00\x00\x03one",
        b"\x40\x00\x00\x03two",
        b"\x40\x00\x00\x06three!",
    ]
    client.send(b"four", PEER, now=11.0)
    client.send(b"", PEER, now=11.0)
    assert client.datagrams_to_send() == [b"\x40\x00\x00\x04four", b"\x40\x00\x00\x00"]
    assert drain_events(client) == []
    assert client.stats.queue_overflow == 0


def test_each_peer_gets_its_own_channel_number() -> None:
    client, server = allocated_client()
    client.send(b"a", PEER, now=1.0)
    client.send(b"b", PEER2, now=1.0)
    client.send(b"c", PEER3, now=1.0)
    client.send(b"a2", PEER, now=1.0)  # queued behind the first bind
    client.send(b"a3", PEER_OTHER_PORT, now=1.0)  # another transport address
    binds = server.take_all()
    assert [m.message_method for m in binds] == [Method.CHANNEL_BIND] * 4
    for bind in binds:
        server.verify(bind)
    numbers = {m.attributes["XOR-PEER-ADDRESS"]: m.attributes["CHANNEL-NUMBER"] for m in binds}
    assert numbers == {PEER: 0x4000, PEER2: 0x4001, PEER3: 0x4002, PEER_OTHER_PORT: 0x4003}

    for bind in reversed(binds):
        server.succeed(bind, now=1.25)
    assert client.datagrams_to_send() == [
        channel_data(0x4003, b"a3"),
        channel_data(0x4002, b"c"),
        channel_data(0x4001, b"b"),
        channel_data(0x4000, b"a"),
        channel_data(0x4000, b"a2"),
    ]
    # The same peer keeps its number.
    client.send(b"d", PEER2, now=2.0)
    client.send(b"e", PEER, now=2.0)
    assert client.datagrams_to_send() == [channel_data(0x4001, b"d"), channel_data(0x4000, b"e")]


def test_channel_data_fast_lane_only_for_bound_channels() -> None:
    client, server = allocated_client()
    assert client.channel_data(b"x", PEER) is None  # no channel yet
    client.send(b"first", PEER, now=1.0)
    bind = server.take(Method.CHANNEL_BIND)
    assert client.channel_data(b"x", PEER) is None  # being bound
    server.succeed(bind, now=1.0)
    client.datagrams_to_send()
    assert client.channel_data(b"fast", PEER) == b"\x40\x00\x00\x04fast"
    assert client.channel_data(b"fast", PEER2) is None
    # The same bytes as send(), which it leaves alone: no datagram queued, no event.
    assert client.datagrams_to_send() == []
    client.send(b"fast", PEER, now=2.0)
    assert client.datagrams_to_send() == [client.channel_data(b"fast", PEER)]
    assert drain_events(client) == []


def test_channel_data_fast_lane_after_a_failed_bind() -> None:
    client, server = allocated_client()
    client.send(b"first", PEER, now=1.0)
    server.fail(server.take(Method.CHANNEL_BIND), 403, now=1.0)
    assert client.channel_data(b"x", PEER) is None
    client.close(now=2.0)
    assert client.channel_data(b"x", PEER) is None


def test_channel_and_permission_refresh_times() -> None:
    client, server = allocated_client(lifetime=3600)
    client.send(b"x", PEER, now=10.0)
    server.succeed(server.take(Method.CHANNEL_BIND), now=10.25)
    client.datagrams_to_send()
    # The binding installed a 300 s permission: CreatePermission a minute before it ends.
    assert client.get_timer() == 250.25
    client.handle_timer(now=250.0)
    assert client.datagrams_to_send() == []

    client.handle_timer(now=250.25)
    permission = server.take(Method.CREATE_PERMISSION)
    assert permission.get_all("XOR-PEER-ADDRESS") == [(PEER[0], 0)]
    assert client.get_timer() == 250.75
    server.succeed(permission, now=250.5)
    assert client.get_timer() == 490.5

    client.handle_timer(now=490.5)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=490.75)
    # The channel (600 s) is refreshed a minute before it ends: at 10.25 + 540.
    assert client.get_timer() == 550.25
    client.handle_timer(now=550.25)
    rebind = server.take(Method.CHANNEL_BIND)
    assert rebind.attributes["CHANNEL-NUMBER"] == 0x4000
    assert rebind.attributes["XOR-PEER-ADDRESS"] == PEER
    # Data keeps flowing as ChannelData while the refresh is in flight.
    client.send(b"y", PEER, now=550.25)
    assert client.datagrams_to_send() == [channel_data(0x4000, b"y")]
    assert client.get_timer() == 550.75

    server.succeed(rebind, now=550.5)
    # The binding refreshed the permission too: 550.5 + 240 comes before 550.5 + 540.
    assert client.get_timer() == 790.5
    client.handle_timer(now=790.5)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=790.5)
    assert client.get_timer() == 1030.5
    client.handle_timer(now=1030.5)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=1030.5)
    assert client.get_timer() == 1090.5  # the channel again
    assert drain_events(client) == []


def test_failed_channel_bind_keeps_the_number_for_its_peer() -> None:
    client, server = allocated_client()
    client.send(b"a", PEER, now=1.0)
    bind = server.take(Method.CHANNEL_BIND)
    client.send(b"b", PEER, now=1.0)
    client.send(b"c", PEER, now=1.0)
    server.fail(bind, 403, now=1.25)
    [event] = drain_events(client)
    assert isinstance(event, SendFailed)
    assert event.peer == PEER
    assert event.dropped == 3
    assert isinstance(event.error, TransactionFailed)
    assert event.error.response.error_code == 403
    assert client.datagrams_to_send() == []
    assert client.get_timer() == 540.0

    # The number stays with its peer (the server may hold the binding, and RFC 8656 §12
    # keeps a number from another peer for 5 minutes): another peer gets a new one.
    client.send(b"d", PEER2, now=2.0)
    assert server.take(Method.CHANNEL_BIND).attributes["CHANNEL-NUMBER"] == 0x4001
    client.send(b"e", PEER, now=2.0)
    assert server.take(Method.CHANNEL_BIND).attributes["CHANNEL-NUMBER"] == 0x4000


def test_channel_bind_timeout_reports_send_failed() -> None:
    client, _ = allocated_client(lifetime=3600)
    client.send(b"a", PEER, now=100.0)
    bind = client.datagrams_to_send()
    sent = run_timers(client, until=200.0)
    assert sent == [(100.0 + t, bind[0]) for t in DEFAULT_SENDS[1:]]
    [event] = drain_events(client)
    assert isinstance(event, SendFailed)
    assert isinstance(event.error, TransactionTimeout)
    assert event.dropped == 1
    assert client.get_timer() == 3540.0
    assert state(client) is TurnState.ALLOCATED


def test_failed_channel_refresh_reports_send_failed() -> None:
    client, server = allocated_client(lifetime=3600)
    bind_channel(client, server, PEER, now=0.0)
    for t in (240.0, 480.0):
        client.handle_timer(now=t)
        server.succeed(server.take(Method.CREATE_PERMISSION), now=t)
    client.handle_timer(now=540.0)
    server.fail(server.take(Method.CHANNEL_BIND), 400, now=540.0)
    [event] = drain_events(client)
    assert isinstance(event, SendFailed)
    assert event.peer == PEER
    assert event.dropped == 0
    # The next datagram binds a channel again.
    client.send(b"z", PEER, now=541.0)
    assert server.take(Method.CHANNEL_BIND).attributes["XOR-PEER-ADDRESS"] == PEER


def test_channel_queue_is_bounded() -> None:
    client, server = allocated_client()
    extra = 5
    for i in range(MAX_QUEUED + extra):
        client.send(i.to_bytes(2, "big"), PEER, now=1.0)
    assert client.stats.queue_overflow == extra
    server.succeed(server.take(Method.CHANNEL_BIND), now=1.25)
    flushed = client.datagrams_to_send()
    # The oldest went first.
    assert flushed == [
        channel_data(0x4000, i.to_bytes(2, "big")) for i in range(extra, MAX_QUEUED + extra)
    ]


def test_same_seed_gives_the_same_datagrams() -> None:
    runs = []
    for _ in range(2):
        client = make_client(seed=7)
        server = FakeTurnServer(client)
        client.allocate(now=0.0)
        first = client.datagrams_to_send()
        server.challenge(parse_message(first[0]), now=0.0)
        runs.append(first + client.datagrams_to_send())
    assert runs[0] == runs[1]
    other = make_client(seed=8)
    other.allocate(now=0.0)
    assert other.datagrams_to_send() != runs[0][:1]


# -- permissions and Send indications ---------------------------------------------------


NO_CHANNELS = dataclasses.replace(CONFIG, use_channels=False)


def parse_indications(datagrams: list[bytes]) -> list[tuple[Address, bytes]]:
    out = []
    for data in datagrams:
        message = parse_message(data)
        assert message.message_method == Method.SEND
        assert message.message_class == Class.INDICATION
        # RFC 8656 §10.1: indications are not authenticated.
        for name in ("MESSAGE-INTEGRITY", "USERNAME", "FINGERPRINT"):
            assert name not in message.attributes
        out.append((message.attributes["XOR-PEER-ADDRESS"], message.attributes["DATA"]))
    return out


def test_send_indications_after_create_permission() -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.send(b"a", PEER, now=1.0)
    permission = server.take(Method.CREATE_PERMISSION)
    assert permission.get_all("XOR-PEER-ADDRESS") == [PEER]
    assert client.get_timer() == 1.5
    client.send(b"b", PEER, now=1.0)
    client.send(b"c", PEER_OTHER_PORT, now=1.0)  # permissions are per IP address
    assert client.datagrams_to_send() == []

    server.succeed(permission, now=1.25)
    assert parse_indications(client.datagrams_to_send()) == [
        (PEER, b"a"),
        (PEER, b"b"),
        (PEER_OTHER_PORT, b"c"),
    ]
    client.send(b"d", PEER, now=2.0)
    assert parse_indications(client.datagrams_to_send()) == [(PEER, b"d")]
    assert client.get_timer() == 241.25

    client.handle_timer(now=241.25)
    refresh = server.take(Method.CREATE_PERMISSION)
    assert refresh.get_all("XOR-PEER-ADDRESS") == [(PEER[0], 0)]
    server.succeed(refresh, now=241.5)
    assert client.get_timer() == 481.5
    assert drain_events(client) == []


def test_data_keeps_flowing_while_a_permission_is_refreshed() -> None:
    # The permission holds for another minute while its refresh is in flight.
    client, server = allocated_client(NO_CHANNELS)
    client.send(b"a", PEER, now=1.0)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=1.0)
    assert parse_indications(client.datagrams_to_send()) == [(PEER, b"a")]
    client.handle_timer(now=241.0)
    refresh = server.take(Method.CREATE_PERMISSION)
    client.send(b"b", PEER, now=241.25)
    assert parse_indications(client.datagrams_to_send()) == [(PEER, b"b")]
    client.receive(data_indication(PEER, b"in"), now=241.25)
    assert drain_events(client) == [DataReceived(b"in", PEER)]
    # Not refreshed twice, and the answer schedules the next refresh.
    assert client.get_timer() == 241.5
    client.handle_timer(now=241.5)
    assert client.datagrams_to_send() == [bytes(refresh)]
    server.succeed(refresh, now=242.0)
    assert client.get_timer() == 482.0


def test_failed_permission_refresh_reports_send_failed() -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.create_permission([PEER], now=1.0)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=1.0)
    client.handle_timer(now=241.0)
    server.fail(server.take(Method.CREATE_PERMISSION), 403, now=241.0)
    [event] = drain_events(client)
    assert isinstance(event, SendFailed)
    assert (event.peer, event.dropped) == ((PEER[0], 0), 0)
    client.receive(data_indication(PEER, b"in"), now=242.0)
    assert drain_events(client) == []
    client.send(b"b", PEER, now=242.0)
    assert server.take(Method.CREATE_PERMISSION).get_all("XOR-PEER-ADDRESS") == [PEER]


def test_create_permission_explicitly() -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.create_permission([PEER, PEER2], now=1.0)
    permission = server.take(Method.CREATE_PERMISSION)
    assert permission.get_all("XOR-PEER-ADDRESS") == [PEER, PEER2]
    client.create_permission([PEER], now=1.0)  # already asked for
    assert client.datagrams_to_send() == []
    server.succeed(permission, now=1.25)
    assert client.datagrams_to_send() == []
    client.send(b"a", PEER2, now=2.0)
    assert parse_indications(client.datagrams_to_send()) == [(PEER2, b"a")]
    client.create_permission([PEER, PEER3], now=3.0)
    assert server.take(Method.CREATE_PERMISSION).get_all("XOR-PEER-ADDRESS") == [PEER3]


@pytest.mark.parametrize("code", [403, 400])
def test_permission_failure_reports_send_failed(code: int) -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.send(b"a", PEER, now=1.0)
    client.send(b"b", PEER, now=1.0)
    server.fail(server.take(Method.CREATE_PERMISSION), code, now=1.25)
    [event] = drain_events(client)
    assert isinstance(event, SendFailed)
    assert (event.peer, event.dropped) == (PEER, 2)
    assert isinstance(event.error, TransactionFailed)
    assert event.error.response.error_code == code
    assert client.datagrams_to_send() == []
    # The next datagram asks again.
    client.send(b"c", PEER, now=2.0)
    assert server.take(Method.CREATE_PERMISSION).get_all("XOR-PEER-ADDRESS") == [PEER]


def test_explicit_permission_failure_reports_each_peer() -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.create_permission([PEER, PEER2], now=1.0)
    server.fail(server.take(Method.CREATE_PERMISSION), 403, now=1.0)
    events = drain_events(client)
    assert [(e.peer, e.dropped) for e in events if isinstance(e, SendFailed)] == [
        (PEER, 0),
        (PEER2, 0),
    ]
    assert len(events) == 2


def test_permission_queue_is_bounded() -> None:
    client, server = allocated_client(NO_CHANNELS)
    for i in range(MAX_QUEUED + 3):
        client.send(i.to_bytes(2, "big"), PEER, now=1.0)
    assert client.stats.queue_overflow == 3
    server.succeed(server.take(Method.CREATE_PERMISSION), now=1.0)
    sent = parse_indications(client.datagrams_to_send())
    assert sent == [(PEER, i.to_bytes(2, "big")) for i in range(3, MAX_QUEUED + 3)]


# -- receive() ---------------------------------------------------------------------------


def test_channel_data_from_a_bound_channel() -> None:
    client, server = allocated_client()
    assert bind_channel(client, server, PEER, now=1.0) == 0x4000
    assert bind_channel(client, server, PEER2, now=1.0) == 0x4001
    client.receive(channel_data(0x4000, b"hello"), now=2.0)
    client.receive(channel_data(0x4001, b"world"), now=2.0)
    client.receive(channel_data(0x4000, b"abc") + b"\x00", now=2.0)  # padded (§12.5)
    client.receive(channel_data(0x4001, b""), now=2.0)
    assert drain_events(client) == [
        DataReceived(b"hello", PEER),
        DataReceived(b"world", PEER2),
        DataReceived(b"abc", PEER),
        DataReceived(b"", PEER2),
    ]
    assert client.stats.dropped == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(channel_data(0x4001, b"hello"), id="unknown-channel"),
        pytest.param(channel_data(0x7FFF, b"hello"), id="reserved-number"),
        pytest.param(b"\x40\x00\x00\x09hello", id="shorter-than-its-length"),
        pytest.param(b"\x40\x00\x00", id="three-bytes"),
        pytest.param(b"\x40", id="one-byte"),
    ],
)
def test_channel_data_dropped(data: bytes) -> None:
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=1.0)
    client.receive(data, now=2.0)
    assert drain_events(client) == []
    assert client.stats.dropped == 1


def test_channel_payload_fast_lane() -> None:
    client, server = allocated_client()
    client.send(b"first", PEER, now=1.0)
    bind = server.take(Method.CHANNEL_BIND)
    server.succeed(bind, now=1.0)
    assert client.channel_payload(channel_data(0x4000, b"hello")) == (b"hello", PEER)
    assert client.channel_payload(channel_data(0x4000, b"abc") + b"\x00") == (b"abc", PEER)
    assert client.channel_payload(channel_data(0x4000, b"")) == (b"", PEER)
    for other in (
        channel_data(0x4001, b"hello"),  # unknown channel
        b"\x40\x00\x00\x09hello",  # shorter than its length
        b"\x40\x00\x00",
        b"",
        data_indication(PEER, b"hello"),  # STUN: for receive()
        bytes(bind),
    ):
        assert client.channel_payload(other) is None
    # A fast lane: nothing counted, no event.
    assert client.stats.dropped == 0
    assert drain_events(client) == []


def test_data_indication_only_from_permitted_peers() -> None:
    client, server = allocated_client(NO_CHANNELS)
    client.create_permission([PEER], now=1.0)
    server.succeed(server.take(Method.CREATE_PERMISSION), now=1.0)
    client.receive(data_indication(PEER, b"hi"), now=2.0)
    client.receive(data_indication(PEER_OTHER_PORT, b"port"), now=2.0)  # same IP
    client.receive(data_indication(PEER2, b"nope"), now=2.0)
    assert drain_events(client) == [
        DataReceived(b"hi", PEER),
        DataReceived(b"port", PEER_OTHER_PORT),
    ]
    assert client.stats.dropped == 1


def test_data_indication_from_a_channel_peer() -> None:
    # A channel binding installs the permission too (RFC 8656 §12.2).
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=1.0)
    client.receive(data_indication(PEER, b"hi"), now=2.0)
    client.receive(data_indication(PEER2, b"no"), now=2.0)
    assert drain_events(client) == [DataReceived(b"hi", PEER)]
    assert client.stats.dropped == 1


def _garbage() -> list[Any]:
    request = Message(Method.ALLOCATE, Class.REQUEST, bytes(12), {"LIFETIME": 600})
    no_data = Message(Method.DATA, Class.INDICATION, bytes(12), {"XOR-PEER-ADDRESS": PEER})
    no_peer = Message(Method.DATA, Class.INDICATION, bytes(12), {"DATA": b"x"})
    send = Message(Method.SEND, Class.INDICATION, bytes(12), {"DATA": b"x"})
    send.attributes["XOR-PEER-ADDRESS"] = PEER
    response = Message(Method.BINDING, Class.RESPONSE, bytes(12), {"XOR-MAPPED-ADDRESS": MAPPED})
    return [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(bytes(20), id="zero-header"),
        pytest.param(bytes(range(256)), id="counting"),
        pytest.param(b"\x80" + bytes(30), id="top-bits"),
        pytest.param(bytes(request), id="request"),
        pytest.param(bytes(no_data), id="data-without-DATA"),
        pytest.param(bytes(no_peer), id="data-without-peer"),
        pytest.param(bytes(send), id="send-indication"),
        pytest.param(bytes(response), id="unknown-transaction"),
        pytest.param(bytes(response)[:-1], id="truncated"),
    ]


@pytest.mark.parametrize("data", _garbage())
def test_garbage_is_dropped(data: bytes) -> None:
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=1.0)
    client.receive(data, now=2.0)
    assert drain_events(client) == []
    assert client.stats.dropped == 1
    assert state(client) is TurnState.ALLOCATED
    assert client.get_timer() == 241.0


# -- dual allocations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(CONFIG, {}, id="default"),
        pytest.param(
            dataclasses.replace(CONFIG, requested_family=2),
            {"REQUESTED-ADDRESS-FAMILY": 2},
            id="ipv6",
        ),
        pytest.param(
            dataclasses.replace(CONFIG, additional_family=2),
            {"ADDITIONAL-ADDRESS-FAMILY": 2},
            id="dual",
        ),
    ],
)
def test_address_family_attributes(config: TurnClientConfig, expected: dict[str, int]) -> None:
    client = make_client(config)
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    first = server.take(Method.ALLOCATE, signed=False)
    server.challenge(first, now=0.0)
    retry = server.take(Method.ALLOCATE)
    for request in (first, retry):
        families = {name: value for name, value in request.attributes.items() if "FAMILY" in name}
        assert families == expected


def test_dual_allocation_reports_both_relayed_addresses() -> None:
    client = make_client(dataclasses.replace(CONFIG, additional_family=2))
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.0)
    server.allocated(server.take(Method.ALLOCATE), now=0.0, relayed=[RELAYED, RELAYED6])
    assert drain_events(client) == [AllocationSucceeded((RELAYED, RELAYED6), MAPPED, 600)]
    assert client.relayed_addresses == (RELAYED, RELAYED6)
    assert client.relayed_address == RELAYED


# -- allocation errors ------------------------------------------------------------------


def start_allocation(authenticated: bool) -> tuple[TurnClient, FakeTurnServer, Message]:
    """A client with its Allocate in flight: unsigned, or signed after a 401."""
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    request = server.take(Method.ALLOCATE, signed=False)
    if authenticated:
        server.challenge(request, now=0.0)
        request = server.take(Method.ALLOCATE)
    return client, server, request


def assert_closed_for_good(client: TurnClient) -> None:
    assert state(client) is TurnState.CLOSED
    assert client.get_timer() is None
    assert client.datagrams_to_send() == []
    client.handle_timer(now=10_000.0)
    assert client.datagrams_to_send() == []
    assert client.next_event() is None
    with pytest.raises(TurnStateError):
        client.allocate(now=10_000.0)
    with pytest.raises(TurnStateError):
        client.send(b"x", PEER, now=10_000.0)


@pytest.mark.parametrize("authenticated", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("code", [437, 486, 508, 403, 420, 500])
def test_allocate_error_response_fails_the_allocation(code: int, authenticated: bool) -> None:
    client, server, request = start_allocation(authenticated)
    data = server.fail(request, code, now=1.0, signed=authenticated)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == code
    assert isinstance(event.error, TransactionFailed)
    assert event.error.response == parse_message(data)
    assert event.alternate_server is None
    assert_closed_for_good(client)


@pytest.mark.parametrize("authenticated", [False, True], ids=["unsigned", "signed"])
def test_try_alternate_reports_the_alternate_server(authenticated: bool) -> None:
    alternate: Address = ("192.0.2.99", 3479)
    client, server, request = start_allocation(authenticated)
    server.fail(request, 300, {"ALTERNATE-SERVER": alternate}, now=1.0, signed=authenticated)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error_code == 300
    assert event.alternate_server == alternate
    assert_closed_for_good(client)


def test_alternate_server_only_with_300() -> None:
    client, server, request = start_allocation(authenticated=True)
    server.fail(request, 437, {"ALTERNATE-SERVER": ("192.0.2.99", 3479)}, now=1.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.alternate_server is None


def follow_until_closed(client: TurnClient, now: float) -> tuple[list[float], float]:
    """Follow ``get_timer()`` until the client closes; the send times and the end time."""
    sends: list[float] = []
    for _ in range(100):
        sends.extend(now for _ in client.datagrams_to_send())
        if client.state is TurnState.CLOSED:
            return sends, now
        timer = client.get_timer()
        assert timer is not None
        assert timer > now
        now = timer
        client.handle_timer(now=now)
    raise AssertionError("client still open after 100 timers")


def test_allocate_timeout_at_the_rfc_time() -> None:
    client = make_client()
    client.allocate(now=0.0)
    sends, end = follow_until_closed(client, 0.0)
    assert sends == DEFAULT_SENDS
    assert end == DEFAULT_TIMEOUT
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert isinstance(event.error, TransactionTimeout)
    assert event.error_code is None
    assert_closed_for_good(client)


def test_allocate_timeout_counts_from_the_signed_retry() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    server.challenge(server.take(Method.ALLOCATE, signed=False), now=0.25)
    sends, end = follow_until_closed(client, 0.25)
    assert sends == [0.25 + t for t in DEFAULT_SENDS]
    assert end == 0.25 + DEFAULT_TIMEOUT
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert isinstance(event.error, TransactionTimeout)


def test_allocate_timeout_over_a_reliable_transport() -> None:
    client = make_client(dataclasses.replace(CONFIG, reliable=True))
    client.allocate(now=0.0)
    sends, end = follow_until_closed(client, 0.0)
    assert sends == [0.0]  # RFC 8489 §6.2.2: no retransmissions over TCP/TLS
    assert end == DEFAULT_TIMEOUT
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert isinstance(event.error, TransactionTimeout)


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({"XOR-MAPPED-ADDRESS": MAPPED, "LIFETIME": 600}, id="no-relayed-address"),
        pytest.param({"XOR-RELAYED-ADDRESS": RELAYED}, id="no-lifetime"),
        pytest.param({"XOR-RELAYED-ADDRESS": RELAYED, "LIFETIME": 0}, id="zero-lifetime"),
    ],
)
def test_allocate_success_missing_attributes_fails(attributes: dict[str, Any]) -> None:
    client, server, request = start_allocation(authenticated=True)
    data = server.succeed(request, attributes, now=1.0)
    [event] = drain_events(client)
    assert isinstance(event, AllocationFailed)
    assert event.error.response == parse_message(data)
    assert event.error_code is None
    assert_closed_for_good(client)


# -- close() and states -----------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["success", "error", "timeout", "stale-nonce"])
def test_close_deletes_the_allocation(outcome: str) -> None:
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=1.0)
    client.send(b"pending", PEER2, now=1.0)
    bind = server.take(Method.CHANNEL_BIND)

    client.close(now=100.0)
    assert state(client) is TurnState.CLOSING
    delete = server.take(Method.REFRESH)
    assert delete.attributes["LIFETIME"] == 0
    assert client.get_timer() == 100.5  # only the deletion is left
    assert drain_events(client) == []
    with pytest.raises(TurnStateError):
        client.send(b"x", PEER, now=100.0)
    client.close(now=100.0)  # already closing
    assert client.datagrams_to_send() == []
    server.succeed(bind, now=100.0)  # the ChannelBind was given up
    assert client.datagrams_to_send() == []
    assert client.stats.dropped == 1

    if outcome == "success":
        server.succeed(delete, {"LIFETIME": 0}, now=100.25)
        end = 100.25
    elif outcome == "error":
        server.fail(delete, 437, now=100.25)
        end = 100.25
    elif outcome == "stale-nonce":
        server.challenge(delete, now=100.25, code=438, nonce=b"nonce-2")
        assert state(client) is TurnState.CLOSING
        retry = server.take(Method.REFRESH)
        assert retry.attributes["LIFETIME"] == 0
        server.succeed(retry, {"LIFETIME": 0}, now=100.5)
        end = 100.5
    else:
        sends, end = follow_until_closed(client, 100.0)
        assert sends == [100.0 + t for t in DEFAULT_SENDS[1:]]
        assert end == 100.0 + DEFAULT_TIMEOUT
    assert state(client) is TurnState.CLOSED
    assert drain_events(client) == [Closed()]
    assert end > 100.0
    assert_closed_for_good(client)
    client.close(now=end)
    assert client.next_event() is None


def test_close_before_allocating() -> None:
    client = make_client()
    client.close(now=0.0)
    assert drain_events(client) == [Closed()]
    assert client.datagrams_to_send() == []
    assert_closed_for_good(client)


def test_close_while_allocating() -> None:
    client = make_client()
    server = FakeTurnServer(client)
    client.allocate(now=0.0)
    request = server.take(Method.ALLOCATE, signed=False)
    client.close(now=0.25)
    assert drain_events(client) == [Closed()]
    assert client.datagrams_to_send() == []
    server.allocated(request, now=0.3)  # too late
    assert drain_events(client) == []
    assert client.stats.dropped == 1
    assert_closed_for_good(client)


def test_state_errors() -> None:
    client = make_client()
    with pytest.raises(TurnStateError, match="cannot send in state new"):
        client.send(b"x", PEER, now=0.0)
    with pytest.raises(TurnStateError):
        client.create_permission([PEER], now=0.0)
    client.allocate(now=0.0)
    with pytest.raises(TurnStateError, match="cannot allocate in state allocating"):
        client.allocate(now=0.0)
    with pytest.raises(TurnStateError, match="cannot send in state allocating"):
        client.send(b"x", PEER, now=0.0)
    assert state(client) is TurnState.ALLOCATING
    assert len(client.datagrams_to_send()) == 1  # the misuse sent nothing

    allocated, _ = allocated_client()
    with pytest.raises(TurnStateError, match="cannot allocate in state allocated"):
        allocated.allocate(now=1.0)
    assert issubclass(TurnStateError, RuntimeError)


# -- REST credentials -------------------------------------------------------------------


def rest_password(secret: bytes, username: str) -> str:
    """The definition: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_rest_credentials_known_vector() -> None:
    username, password = rest_credentials("north", now=1_700_000_000.75, ttl=3600, user="alice")
    assert username == f"{int(1_700_000_000.75 + 3600)}:alice" == "1700003600:alice"
    assert password == rest_password(b"north", username)
    assert password == "wjwSXO2ch1B6VaLTLMy2Avn5O9o="  # openssl dgst -sha1 -hmac north


def test_rest_credentials_defaults_and_separator() -> None:
    assert rest_credentials(b"north", now=1_700_000_000.0) == (
        "1700086400",  # one day
        "K+RlgFj3QLvB7WAVHfjfgMgyBeA=",
    )
    username, password = rest_credentials("north", now=10.0, ttl=5.5, user="bob", separator="-")
    assert username == "15-bob"
    assert password == rest_password(b"north", "15-bob")


@pytest.mark.parametrize("ttl", [0.0, -1.0, -86400.0])
def test_rest_credentials_reject_non_positive_ttl(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        rest_credentials("north", now=1_700_000_000.0, ttl=ttl)


# -- fuzzing receive() ------------------------------------------------------------------

FUZZ_SEED = 0x7475726E
FUZZ_STEPS = 20_000
ERROR_CODES = [300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 500, 508, 699]
# Includes characters that SASLprep prohibits (NUL, DEL, zero-width space, private use).
ALPHABET = "abcXYZ09.-_ \x00\x01\x7f\u00e9\u200b\u0627\ue000\U0001f600"


def random_address(rng: random.Random) -> Address:
    if rng.random() < 0.7:
        return f"203.0.113.{rng.randrange(256)}", rng.randrange(65536)
    return f"2001:db8::{rng.randrange(65536):x}", rng.randrange(65536)


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12)))


def random_attributes(rng: random.Random, peers: list[Address]) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "ERROR-CODE": lambda: (rng.choice(ERROR_CODES), random_string(rng)),
        "REALM": lambda: rng.choice([REALM, REALM, random_string(rng)]),
        "NONCE": lambda: rng.choice(
            [
                NONCE,
                rng.randbytes(rng.randrange(1, 24)),
                make_nonce(SecurityFeature(rng.randrange(4)), rng.randbytes(4)),
                b"obMatJos2" + rng.randbytes(rng.randrange(6)),
            ]
        ),
        "PASSWORD-ALGORITHMS": lambda: tuple(
            (rng.choice([1, 2, 3, 0xFFFF]), rng.randbytes(rng.randrange(3)))
            for _ in range(rng.randrange(4))
        ),
        "LIFETIME": lambda: rng.choice([0, 1, 2, 59, 60, 120, 600, 2**32 - 1]),
        "XOR-RELAYED-ADDRESS": lambda: [random_address(rng) for _ in range(rng.randrange(1, 3))],
        "XOR-MAPPED-ADDRESS": lambda: random_address(rng),
        "ALTERNATE-SERVER": lambda: random_address(rng),
        "XOR-PEER-ADDRESS": lambda: rng.choice([*peers, random_address(rng)]),
        "DATA": lambda: rng.randbytes(rng.randrange(40)),
        "CHANNEL-NUMBER": lambda: rng.choice([0x4000, 0x4001, rng.randrange(65536)]),
        "SOFTWARE": lambda: random_string(rng),
    }
    names = rng.sample(list(pool), rng.randrange(len(pool) + 1))
    return {name: pool[name]() for name in names}


def sensible_answer(rng: random.Random, request: Message) -> dict[str, Any]:
    """What a server would answer, so that the client gets deep into its states."""
    method = request.message_method
    if rng.random() < 0.3:
        nonce = rng.choice([NONCE, b"nonce-2", make_nonce(SecurityFeature(1), b"x")])
        code = rng.choice([401, 438])
        realm = rng.choice([REALM, REALM, "other realm", random_string(rng)])
        return {"ERROR-CODE": (code, ""), "REALM": realm, "NONCE": nonce}
    if method == Method.ALLOCATE:
        return {"XOR-RELAYED-ADDRESS": RELAYED, "XOR-MAPPED-ADDRESS": MAPPED, "LIFETIME": 600}
    if method == Method.REFRESH:
        return {"LIFETIME": rng.choice([0, 60, 600])}
    return {}


def server_message(rng: random.Random, requests: list[Message], peers: list[Address]) -> bytes:
    """A response to one of the client's requests (or a stray message), signed or not."""
    if requests and rng.random() < 0.85:
        request = rng.choice(requests)
        method, tid = request.message_method, request.transaction_id
        attributes = sensible_answer(rng, request) if rng.random() < 0.7 else {}
        attributes.update(random_attributes(rng, peers) if rng.random() < 0.3 else {})
        message_class = Class.ERROR if "ERROR-CODE" in attributes else Class.RESPONSE
        if rng.random() < 0.1:
            message_class = rng.choice(list(Class))
    else:
        method, tid = rng.choice(list(Method)), rng.randbytes(12)
        attributes = random_attributes(rng, peers)
        message_class = rng.choice(list(Class))
    message = Message(method, message_class, tid, attributes)
    fingerprint = rng.random() < 0.5
    signing = rng.randrange(5)
    if signing == 0:
        message.add_message_integrity(KEY, fingerprint=fingerprint)
    elif signing == 1:
        message.add_message_integrity_sha256(rng.choice([KEY, SHA256_KEY]), fingerprint=fingerprint)
    elif signing == 2:
        message.add_message_integrity(rng.randbytes(16), fingerprint=fingerprint)
    elif fingerprint:
        message.add_fingerprint()
    return bytes(message)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(5)
        if action == 0 and buffer:
            buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
        elif action == 1 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF])
        elif action == 2:
            del buffer[rng.randrange(len(buffer) + 1) :]
        elif action == 3:
            buffer += rng.randbytes(rng.choice([1, 4, 8]))
        elif len(buffer) >= 20:
            # Keep the header length consistent, so that parsing goes past the header.
            buffer[2:4] = (len(buffer) - 20).to_bytes(2, "big")
    return bytes(buffer)


def random_input(rng: random.Random, requests: list[Message], peers: list[Address]) -> bytes:
    kind = rng.random()
    if kind < 0.05:
        return rng.randbytes(rng.randrange(48))
    if kind < 0.15:
        number = rng.choice([0x4000, 0x4001, 0x4002, rng.randrange(0x4000, 0x8000)])
        payload = rng.randbytes(rng.randrange(20))
        length = rng.choice([len(payload), len(payload), rng.randrange(65536)])
        return number.to_bytes(2, "big") + length.to_bytes(2, "big") + payload
    if kind < 0.25:
        return data_indication(rng.choice([*peers, random_address(rng)]), rng.randbytes(8))
    data = server_message(rng, requests, peers)
    return mutate(rng, data) if rng.random() < 0.4 else data


def check_output(client: TurnClient, requests: list[Message]) -> None:
    """Everything the client sends is ChannelData or a STUN message that parses."""
    for data in client.datagrams_to_send():
        if data[0] & 0xC0 == 0x40:
            assert int.from_bytes(data[2:4], "big") == len(data) - 4
            continue
        message = parse_message(data)
        if message.message_class == Class.REQUEST:
            requests.append(message)
        else:
            assert (message.message_method, message.message_class) == (
                Method.SEND,
                Class.INDICATION,
            )
    del requests[:-12]


def new_fuzz_client(rng: random.Random) -> TurnClient:
    """An allocated client (with a channel or not), or one whose Allocate is in flight."""
    config = dataclasses.replace(
        CONFIG, use_channels=rng.random() < 0.7, reliable=rng.random() < 0.2
    )
    if rng.random() < 0.6:
        client, server = allocated_client(config)
        if config.use_channels:
            bind_channel(client, server, PEER, now=0.0)
        drain_events(client)
    else:
        client = make_client(config, seed=rng.randrange(1000))
        client.allocate(now=0.0)
    return client


def fuzz_steps(rng: random.Random, steps: int) -> Counter[str]:
    """Random inputs at random times into a client, a new one each time one closes.

    Returns how often each state received an input, to check that the run went deep.
    """
    peers = [PEER, PEER2, PEER3]
    seen: Counter[str] = Counter()
    client = new_fuzz_client(rng)
    requests: list[Message] = []
    check_output(client, requests)
    now = 0.0
    closed = False
    for _ in range(steps):
        if client.state is TurnState.CLOSED:
            client = new_fuzz_client(rng)
            requests.clear()
            check_output(client, requests)
            now = 0.0
            closed = False
        # Time passes: fire every timer that is due, at its deadline, as an adapter would.
        target = now + rng.choice([0.0, 0.001, 0.25, 0.5, 0.5, 5.0, 60.0, 300.0])
        for _ in range(1000):
            timer = client.get_timer()
            if timer is None or timer > target:
                break
            assert timer >= now
            now = timer
            client.handle_timer(now=now)
            check_output(client, requests)
        else:
            raise AssertionError("the client keeps asking for timers")
        now = target

        seen[client.state.value] += 1
        fast = None
        if client.state is TurnState.ALLOCATED and rng.random() < 0.1:
            action = rng.randrange(3)
            peer = rng.choice([*peers, random_address(rng)])
            if action == 0:
                client.send(rng.randbytes(rng.randrange(10)), peer, now=now)
            elif action == 1:
                client.create_permission([peer], now=now)
            elif rng.random() < 0.2:
                client.close(now=now)
        else:
            data = random_input(rng, requests, peers)
            fast = client.channel_payload(data)
            client.receive(data, now=now)
        check_output(client, requests)

        events = drain_events(client)
        if fast is not None:
            # The fast lane agrees with receive().
            assert events[-1] == DataReceived(*fast)
        for event in events:
            assert isinstance(event, TurnEvent)
            seen[type(event).__name__] += 1
            if isinstance(event, AllocationFailed | AllocationLost | Closed):
                assert not closed, "two terminal events"
                closed = True
                assert state(client) is TurnState.CLOSED
        timer = client.get_timer()
        assert timer is None or timer > now
        if client.state is TurnState.CLOSED:
            assert closed
            assert timer is None
            assert client.datagrams_to_send() == []
    return seen


def test_receive_never_raises_on_random_and_mutated_input() -> None:
    seen = fuzz_steps(random.Random(FUZZ_SEED), FUZZ_STEPS)
    # The run went through every state and produced every kind of event.
    assert min(seen[state.value] for state in TurnState if state is not TurnState.NEW) >= 50
    for name in ("AllocationSucceeded", "AllocationFailed", "AllocationLost", "Closed"):
        assert seen[name] >= 10, seen
    for name in ("DataReceived", "SendFailed"):
        assert seen[name] >= 10, seen


STUN_HEADER = st.builds(
    lambda message_type, tid, body: (
        (message_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + tid)
        + body
    ),
    st.sampled_from([int(m) | int(c) for m in Method for c in Class]),
    st.binary(min_size=12, max_size=12),
    st.binary(max_size=48).map(lambda b: b[: len(b) & ~3]),
)
CHANNEL_DATA = st.builds(
    lambda number, length, body: number.to_bytes(2, "big") + length.to_bytes(2, "big") + body,
    st.integers(0x4000, 0x7FFF) | st.sampled_from([0x4000, 0x4001]),
    st.integers(0, 0xFFFF),
    st.binary(max_size=32),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    inputs=st.lists(
        st.tuples(st.binary(max_size=64) | STUN_HEADER | CHANNEL_DATA, st.floats(0.0, 600.0)),
        max_size=12,
    )
)
def test_receive_never_raises_hypothesis(inputs: list[tuple[bytes, float]]) -> None:
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=0.0)
    now = 0.0
    for data, delay in inputs:
        now += delay
        client.handle_timer(now=now)
        client.receive(data, now=now)
        for event in drain_events(client):
            assert isinstance(event, TurnEvent)
        client.datagrams_to_send()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requested_family": 1, "additional_family": 2},  # RFC 8656 §7.2: 400 anyway
        {"username": "alice"},
        {"password": "secret"},
    ],
)
def test_config_refuses_contradictions(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"exclude each other|go together"):
        TurnClientConfig(**kwargs)


def test_send_refuses_more_than_a_channel_can_carry() -> None:
    client, server = allocated_client()
    bind_channel(client, server, PEER, now=0.0)
    assert client.channel_data(bytes(0x10000), PEER) is None
    with pytest.raises(ValueError, match="65535"):
        client.send(bytes(0x10000), PEER, now=1.0)
    client.send(bytes(0xFFFF), PEER, now=1.0)
    [frame] = client.datagrams_to_send()
    assert len(frame) == 4 + 0xFFFF
