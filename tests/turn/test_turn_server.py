"""The sans-I/O TURN test server (RFC 8656 over UDP, RFC 6156 IPv6 relays).

Every test drives :class:`aioice.turn.server.TurnServer` with hand-built STUN messages
from ``now = 0.0``, through :class:`Client`, a minimal long-term-credential client.
"""

from __future__ import annotations

import base64
import hmac
import random
import struct
from typing import Any

import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    SecurityFeature,
    Transmit,
    long_term_key,
    message_integrity,
    nonce_security_features,
    parse_message,
)
from aioice.turn.server import (
    CHANNEL_LIFETIME,
    PERMISSION_LIFETIME,
    UDP_TRANSPORT,
    AllocationInfo,
    RelayAllocated,
    RelayReleased,
    TurnServer,
    TurnServerEvent,
    TurnServerStats,
)

LISTEN = ("192.0.2.1", 3478)
RELAY_IP = "192.0.2.1"
RELAY_IP6 = "2001:db8::1"
CLIENT = ("198.51.100.7", 40000)
CLIENT2 = ("198.51.100.8", 40000)
PEER = ("203.0.113.5", 5000)
PEER_OTHER_PORT = ("203.0.113.5", 6000)
PEER2 = ("203.0.113.6", 5000)
PEER6 = ("2001:db8::5", 5000)
REALM = "aioice.test"
USERS = {"alice": "secret", "bob": "hunter2"}
SEED = 1234


def make_server(**overrides: Any) -> TurnServer:
    options: dict[str, Any] = {
        "realm": REALM,
        "users": USERS,
        "relay_ip": RELAY_IP,
        "rng": random.Random(SEED),
    }
    options.update(overrides)
    return TurnServer(LISTEN, **options)


class Client:
    """A minimal TURN client over one 5-tuple: learns REALM and NONCE from 401/438 and
    signs every request with the long-term key (MD5, RFC 8489 §9.2.2)."""

    def __init__(
        self,
        server: TurnServer,
        address: Address = CLIENT,
        username: str = "alice",
        password: str = "secret",
    ) -> None:
        self.server = server
        self.address = address
        self.username = username
        self.password = password
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.key: bytes | None = None
        self._tid = 0

    def tid(self) -> bytes:
        self._tid += 1
        return self.address[1].to_bytes(4, "big") + self._tid.to_bytes(8, "big")

    def learn(self, response: Message) -> None:
        self.realm = response.attributes["REALM"]
        self.nonce = response.attributes["NONCE"]
        assert self.realm is not None
        self.key = long_term_key(self.username, self.realm, self.password)

    def build(
        self,
        method: Method,
        attributes: dict[str, Any] | None = None,
        *,
        message_class: Class = Class.REQUEST,
        sign: bool = True,
        fingerprint: bool = True,
    ) -> bytes:
        message = Message(method, message_class, self.tid(), dict(attributes or {}))
        if sign and self.key is not None:
            message.attributes["USERNAME"] = self.username
            message.attributes["REALM"] = self.realm
            message.attributes["NONCE"] = self.nonce
            return message.encode(self.key, fingerprint=fingerprint)
        return message.encode(fingerprint=fingerprint)

    def exchange(self, data: bytes, *, now: float) -> Message:
        """Send one datagram to the server; return its one answer, parsed."""
        transmits = send(self.server, data, remote=self.address, now=now)
        assert len(transmits) == 1, transmits
        [transmit] = transmits
        assert transmit.remote == self.address
        assert transmit.local == self.server.listen
        response = parse_message(transmit.data)
        assert response.transaction_id == data[8:20]
        return response

    def request(
        self, method: Method, attributes: dict[str, Any] | None = None, *, now: float = 0.0
    ) -> Message:
        """A signed request; retried once after a 401 (no credentials yet) or a 438."""
        response = self.exchange(self.build(method, attributes), now=now)
        code = response.error_code
        if code == 438 or (code == 401 and self.key is None):
            self.learn(response)
            response = self.exchange(self.build(method, attributes), now=now)
        if response.error_code not in (400, 401, 438):
            assert self.key is not None
            assert response.check_message_integrity(self.key)
        return response

    def allocate(self, attributes: dict[str, Any] | None = None, *, now: float = 0.0) -> Address:
        response = self.request(
            Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT, **(attributes or {})}, now=now
        )
        assert response.message_class == Class.RESPONSE, response
        relayed: Address = response.attributes["XOR-RELAYED-ADDRESS"]
        return relayed

    def succeeds(
        self, method: Method, attributes: dict[str, Any] | None = None, *, now: float = 0.0
    ) -> Message:
        response = self.request(method, attributes, now=now)
        assert response.message_class == Class.RESPONSE, response
        return response

    def fails(
        self, method: Method, attributes: dict[str, Any] | None = None, *, now: float = 0.0
    ) -> int:
        response = self.request(method, attributes, now=now)
        assert response.message_class == Class.ERROR, response
        code = response.error_code
        assert code is not None
        return code

    def send_indication(self, peer: Address, data: bytes, *, now: float) -> list[Transmit]:
        message = self.build(
            Method.SEND, {"XOR-PEER-ADDRESS": peer, "DATA": data}, message_class=Class.INDICATION
        )
        return send(self.server, message, remote=self.address, now=now)

    def channel_data(self, number: int, data: bytes, *, now: float) -> list[Transmit]:
        message = struct.pack("!HH", number, len(data)) + data
        return send(self.server, message, remote=self.address, now=now)


def send(
    server: TurnServer,
    data: bytes,
    *,
    remote: Address,
    now: float,
    local: Address | None = None,
) -> list[Transmit]:
    server.receive_datagram(data, local=local or server.listen, remote=remote, now=now)
    return server.datagrams_to_send()


def from_peer(
    server: TurnServer, data: bytes, *, relayed: Address, peer: Address, now: float
) -> list[Transmit]:
    return send(server, data, local=relayed, remote=peer, now=now)


def events(server: TurnServer) -> list[TurnServerEvent]:
    out = []
    while (event := server.next_event()) is not None:
        out.append(event)
    return out


def allocated(lifetime: int = 3600, **overrides: Any) -> tuple[TurnServer, Client, Address]:
    """A server, a client and its relayed address, allocated at now = 0."""
    server = make_server(**overrides)
    client = Client(server)
    relayed = client.allocate({"LIFETIME": lifetime})
    events(server)
    return server, client, relayed


# -- Binding, authentication ---------------------------------------------------------------------


def test_binding_needs_no_credentials() -> None:
    server = make_server(software="test-turn")
    client = Client(server)
    response = client.exchange(client.build(Method.BINDING), now=0.0)
    assert response.message_class == Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert response.attributes["SOFTWARE"] == "test-turn"
    assert "FINGERPRINT" in response.attributes
    assert server.stats.bindings == 1
    assert server.get_timer() is None


def test_allocate_without_credentials_gets_401_with_realm_and_nonce() -> None:
    server = make_server()
    client = Client(server)
    response = client.exchange(client.build(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0}), now=0.0)
    assert response.message_class == Class.ERROR
    assert response.attributes["ERROR-CODE"] == (401, "Unauthorized")
    assert response.attributes["REALM"] == REALM
    assert isinstance(response.attributes["NONCE"], bytes)
    assert nonce_security_features(response.attributes["NONCE"]) is None  # no cookie: MD5
    assert "MESSAGE-INTEGRITY" not in response.attributes
    assert server.stats.error_codes == {401: 1}
    assert server.relayed_addresses == []


def test_allocate_success() -> None:
    server = make_server()
    client = Client(server)
    response = client.succeeds(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT})
    assert client.key == long_term_key("alice", REALM, "secret")
    assert response.check_message_integrity(client.key)
    assert "FINGERPRINT" in response.attributes
    relayed = response.attributes["XOR-RELAYED-ADDRESS"]
    assert relayed[0] == RELAY_IP
    assert 49152 <= relayed[1] <= 65535
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert response.attributes["LIFETIME"] == 600
    assert server.relayed_addresses == [relayed]
    assert events(server) == [RelayAllocated(relayed=relayed, client=CLIENT, username="alice")]
    assert server.get_timer() == 600.0
    assert server.allocations == [
        AllocationInfo(
            client=CLIENT,
            server=LISTEN,
            username="alice",
            relayed=(relayed,),
            expires=600.0,
            permissions={},
            channels={},
        )
    ]
    assert server.stats == TurnServerStats(allocations=1, errors_sent=1, error_codes={401: 1})


def test_allocate_response_mirrors_fingerprint() -> None:
    server = make_server()
    client = Client(server)
    client.learn(client.exchange(client.build(Method.ALLOCATE), now=0.0))  # the 401
    request = client.build(
        Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}, fingerprint=False
    )
    response = client.exchange(request, now=0.0)
    assert response.message_class == Class.RESPONSE
    assert "FINGERPRINT" not in response.attributes
    assert client.key is not None
    assert response.check_message_integrity(client.key)


def test_deterministic_with_a_seeded_rng() -> None:
    def run() -> list[bytes]:
        server = make_server()
        client = Client(server)
        client.allocate()
        client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
        [relayed] = server.relayed_addresses
        out = from_peer(server, b"hello", relayed=relayed, peer=PEER, now=1.0)
        return [t.data for t in out] + [str(relayed).encode()]

    assert run() == run()


@pytest.mark.parametrize(
    ("username", "password", "realm"),
    [
        ("alice", "wrong", None),  # bad integrity
        ("mallory", "secret", None),  # unknown user
        ("alice", "secret", "other.realm"),  # the key of another realm
    ],
)
def test_bad_credentials_get_401(username: str, password: str, realm: str | None) -> None:
    server = make_server()
    client = Client(server, username=username, password=password)
    client.learn(client.exchange(client.build(Method.ALLOCATE), now=0.0))
    if realm is not None:
        client.realm = realm
        client.key = long_term_key(username, realm, password)
    response = client.exchange(
        client.build(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}), now=0.0
    )
    assert response.error_code == 401
    assert response.attributes["REALM"] == REALM
    assert "NONCE" in response.attributes
    assert "MESSAGE-INTEGRITY" not in response.attributes
    assert server.relayed_addresses == []
    assert server.stats.error_codes == {401: 2}


def test_integrity_without_username_gets_400() -> None:
    server = make_server()
    client = Client(server)
    client.learn(client.exchange(client.build(Method.ALLOCATE), now=0.0))
    assert client.key is not None
    message = Message(
        Method.ALLOCATE,
        Class.REQUEST,
        client.tid(),
        {"REQUESTED-TRANSPORT": UDP_TRANSPORT, "REALM": REALM, "NONCE": client.nonce},
    )
    response = client.exchange(message.encode(client.key), now=0.0)
    assert response.error_code == 400
    assert "REALM" not in response.attributes
    assert "MESSAGE-INTEGRITY" not in response.attributes


def test_stale_nonce_gets_438_with_a_new_nonce() -> None:
    server, client, _ = allocated(nonce_lifetime=100.0)
    first = client.nonce
    # Valid until just before its expiry, whatever the allocation does.
    client.succeeds(Method.REFRESH, {"LIFETIME": 3600}, now=99.999)
    response = client.exchange(client.build(Method.REFRESH, {"LIFETIME": 3600}), now=100.0)
    assert response.attributes["ERROR-CODE"] == (438, "Stale Nonce")
    assert response.attributes["REALM"] == REALM
    assert response.attributes["NONCE"] != first
    assert "MESSAGE-INTEGRITY" not in response.attributes
    client.learn(response)
    response = client.exchange(client.build(Method.REFRESH, {"LIFETIME": 3600}), now=100.0)
    assert response.message_class == Class.RESPONSE
    assert server.stats.error_codes == {401: 1, 438: 1}
    # The new nonce lives nonce_lifetime from when it was given.
    client.succeeds(Method.REFRESH, {"LIFETIME": 3600}, now=199.999)
    assert server.stats.error_codes == {401: 1, 438: 1}
    response = client.exchange(client.build(Method.REFRESH), now=200.0)
    assert response.error_code == 438
    assert server.stats.error_codes == {401: 1, 438: 2}
    assert server.get_timer() == 3799.999  # nonces are stateless: no timer of their own


def test_nonce_is_bound_to_the_client_address() -> None:
    server, client, _ = allocated()
    other = Client(server, address=CLIENT2)
    other.realm, other.nonce, other.key = client.realm, client.nonce, client.key
    response = other.exchange(
        other.build(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}), now=1.0
    )
    assert response.error_code == 438


def test_forged_nonce_gets_438() -> None:
    _, client, _ = allocated()
    client.nonce = b"ffffffffff.0123456789abcdef"
    response = client.exchange(client.build(Method.REFRESH), now=1.0)
    assert response.error_code == 438


def test_unknown_comprehension_required_attribute_gets_signed_420() -> None:
    _, client, _ = allocated()
    assert client.key is not None
    message = Message(
        Method.REFRESH,
        Class.REQUEST,
        client.tid(),
        {"USERNAME": "alice", "REALM": REALM, "NONCE": client.nonce},
    )
    data = bytes(message) + struct.pack("!HH", 0x7FFE, 4) + b"\x00" * 4
    data = data[:2] + struct.pack("!H", len(data) - 20) + data[4:]
    data += struct.pack("!HH", 0x0008, 20) + message_integrity(data, client.key)
    data = data[:2] + struct.pack("!H", len(data) - 20) + data[4:]
    response = client.exchange(data, now=1.0)
    assert response.error_code == 420
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x7FFE,)
    assert response.check_message_integrity(client.key)


def test_unsupported_method_gets_400() -> None:
    _, client, _ = allocated()
    assert client.fails(Method.CONNECT, {"XOR-PEER-ADDRESS": PEER}) == 400


# -- Allocate --------------------------------------------------------------------------------------


def test_second_allocate_on_the_5_tuple_gets_437_and_retransmission_the_same_answer() -> None:
    server = make_server()
    client = Client(server)
    client.learn(client.exchange(client.build(Method.ALLOCATE), now=0.0))
    request = client.build(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT})
    [first] = send(server, request, remote=CLIENT, now=0.0)
    [again] = send(server, request, remote=CLIENT, now=0.5)
    assert again == first
    assert server.stats.retransmissions == 1
    assert client.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}, now=1.0) == 437
    assert len(server.relayed_addresses) == 1


def test_allocate_without_requested_transport_gets_400() -> None:
    server = make_server()
    assert Client(server).fails(Method.ALLOCATE, {"LIFETIME": 600}) == 400


def test_allocate_for_tcp_gets_442() -> None:
    server = make_server()
    assert Client(server).fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 6 << 24}) == 442
    assert server.stats.error_codes == {401: 1, 442: 1}


@pytest.mark.parametrize(
    ("requested", "granted"),
    [(None, 600), (0, 600), (10, 600), (1200, 1200), (3600, 3600), (99999, 3600)],
)
def test_allocate_lifetime(requested: int | None, granted: int) -> None:
    server = make_server()
    attributes: dict[str, Any] = {"REQUESTED-TRANSPORT": UDP_TRANSPORT}
    if requested is not None:
        attributes["LIFETIME"] = requested
    response = Client(server).succeeds(Method.ALLOCATE, attributes, now=10.0)
    assert response.attributes["LIFETIME"] == granted
    assert server.get_timer() == 10.0 + granted


def test_ipv6_relay() -> None:
    server = make_server(relay_ip6=RELAY_IP6)
    client = Client(server)
    relayed = client.allocate({"REQUESTED-ADDRESS-FAMILY": 0x02})
    assert relayed[0] == RELAY_IP6
    assert server.relayed_addresses == [relayed]
    # Peers must be of the relay's family (RFC 8656 §10.2).
    assert client.fails(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}) == 443
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER6})
    assert client.send_indication(PEER6, b"six", now=1.0) == [Transmit(b"six", PEER6, relayed)]
    [out] = from_peer(server, b"back", relayed=relayed, peer=PEER6, now=2.0)
    indication = parse_message(out.data)
    assert indication.attributes["XOR-PEER-ADDRESS"] == PEER6
    assert indication.attributes["DATA"] == b"back"


def test_ipv6_only_server() -> None:
    listen = ("2001:db8::1", 3478)
    server = TurnServer(listen, realm=REALM, users=USERS, rng=random.Random(SEED))
    assert server.relay_ip is None
    assert server.relay_ip6 == "2001:db8::1"
    client = Client(server, address=("2001:db8::7", 40000))
    # The default family is IPv4 whatever the client's own family (RFC 8656 §7.2).
    assert client.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}) == 440
    relayed = client.allocate({"REQUESTED-ADDRESS-FAMILY": 0x02})
    assert relayed[0] == "2001:db8::1"


@pytest.mark.parametrize("family", [0x01, 0x02, 0x03])
def test_unsupported_address_family_gets_440(family: int) -> None:
    server = make_server() if family != 0x01 else make_server(relay_ip=None, relay_ip6=RELAY_IP6)
    code = Client(server).fails(
        Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT, "REQUESTED-ADDRESS-FAMILY": family}
    )
    assert code == 440
    assert server.relayed_addresses == []


def test_dual_allocation() -> None:
    server = make_server(relay_ip6=RELAY_IP6)
    client = Client(server)
    response = client.succeeds(
        Method.ALLOCATE,
        {"REQUESTED-TRANSPORT": UDP_TRANSPORT, "ADDITIONAL-ADDRESS-FAMILY": 0x02},
    )
    relayed4, relayed6 = response.get_all("XOR-RELAYED-ADDRESS")
    assert relayed4[0] == RELAY_IP
    assert relayed6[0] == RELAY_IP6
    assert "ADDRESS-ERROR-CODE" not in response.attributes
    assert server.relayed_addresses == [relayed4, relayed6]
    assert [e.relayed for e in events(server) if isinstance(e, RelayAllocated)] == [
        relayed4,
        relayed6,
    ]
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": [PEER, PEER6]})
    assert client.send_indication(PEER, b"4", now=1.0) == [Transmit(b"4", PEER, relayed4)]
    assert client.send_indication(PEER6, b"6", now=1.0) == [Transmit(b"6", PEER6, relayed6)]
    # A mismatching family in a Refresh gets 443; LIFETIME 0 with a family drops that one.
    assert client.fails(Method.REFRESH, {"REQUESTED-ADDRESS-FAMILY": 0x03}) == 443
    response = client.succeeds(
        Method.REFRESH, {"REQUESTED-ADDRESS-FAMILY": 0x02, "LIFETIME": 0}, now=2.0
    )
    assert response.attributes["LIFETIME"] == 0
    assert server.relayed_addresses == [relayed4]
    assert events(server) == [RelayReleased(relayed=relayed6, client=CLIENT, reason="deleted")]
    assert client.send_indication(PEER6, b"6", now=3.0) == []
    assert server.allocations[0].permissions == {PEER[0]: 300.0}
    assert client.fails(Method.REFRESH, {"REQUESTED-ADDRESS-FAMILY": 0x02}) == 443


def test_dual_allocation_without_ipv6_relay_reports_address_error() -> None:
    server = make_server()
    response = Client(server).succeeds(
        Method.ALLOCATE,
        {"REQUESTED-TRANSPORT": UDP_TRANSPORT, "ADDITIONAL-ADDRESS-FAMILY": 0x02},
    )
    assert response.get_all("XOR-RELAYED-ADDRESS") == server.relayed_addresses
    assert len(server.relayed_addresses) == 1
    assert response.attributes["ADDRESS-ERROR-CODE"] == (0x02, 440, "Address Family not Supported")


@pytest.mark.parametrize(
    "attributes",
    [
        {"ADDITIONAL-ADDRESS-FAMILY": 0x01},
        {"ADDITIONAL-ADDRESS-FAMILY": 0x02, "REQUESTED-ADDRESS-FAMILY": 0x01},
        {"RESERVATION-TOKEN": b"12345678", "REQUESTED-ADDRESS-FAMILY": 0x01},
        {"RESERVATION-TOKEN": b"12345678", "EVEN-PORT": False},
        {"EVEN-PORT": True, "ADDITIONAL-ADDRESS-FAMILY": 0x02},
    ],
)
def test_conflicting_allocate_attributes_get_400(attributes: dict[str, Any]) -> None:
    server = make_server(relay_ip6=RELAY_IP6)
    code = Client(server).fails(
        Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT, **attributes}
    )
    assert code == 400


@pytest.mark.parametrize("attributes", [{"RESERVATION-TOKEN": b"12345678"}, {"EVEN-PORT": True}])
def test_reservations_are_not_supported(attributes: dict[str, Any]) -> None:
    server = make_server()
    code = Client(server).fails(
        Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT, **attributes}
    )
    assert code == 508


def test_even_port_without_reservation() -> None:
    server = make_server()
    for i in range(8):
        relayed = Client(server, address=("198.51.100.9", 1000 + i)).allocate({"EVEN-PORT": False})
        assert relayed[1] % 2 == 0


def test_relay_ports_run_out_with_508() -> None:
    server = make_server(port_range=(50000, 50001))
    first = Client(server, address=CLIENT).allocate()
    second = Client(server, address=CLIENT2).allocate()
    assert {first[1], second[1]} == {50000, 50001}
    third = Client(server, address=("198.51.100.9", 1))
    assert third.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}) == 508
    # A port comes back when its allocation goes.
    Client(server, address=CLIENT).succeeds(Method.REFRESH, {"LIFETIME": 0})
    assert third.allocate()[1] == first[1]


def test_relay_port_never_the_listening_port() -> None:
    server = make_server(port_range=(3478, 3479))
    assert Client(server).allocate() == (RELAY_IP, 3479)
    assert (
        Client(server, address=CLIENT2).fails(
            Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}
        )
        == 508
    )


def test_user_quota_gets_486() -> None:
    server = make_server(user_quota=1)
    Client(server, address=CLIENT).allocate()
    other = Client(server, address=CLIENT2)
    assert other.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}) == 486
    Client(server, address=("198.51.100.9", 1), username="bob", password="hunter2").allocate()


def test_software_attribute() -> None:
    server = make_server(software="aioice test server")
    response = Client(server).succeeds(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT})
    assert response.attributes["SOFTWARE"] == "aioice test server"


# -- Refresh and expiry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "granted"), [(None, 600), (10, 600), (1200, 1200), (99999, 3600)]
)
def test_refresh(requested: int | None, granted: int) -> None:
    server, client, _ = allocated(lifetime=600)
    attributes = {} if requested is None else {"LIFETIME": requested}
    response = client.succeeds(Method.REFRESH, attributes, now=100.0)
    assert response.attributes["LIFETIME"] == granted
    assert server.get_timer() == 100.0 + granted
    assert server.stats.refreshes == 1


def test_refresh_with_lifetime_0_deletes() -> None:
    server, client, relayed = allocated()
    response = client.succeeds(Method.REFRESH, {"LIFETIME": 0}, now=5.0)
    assert response.attributes["LIFETIME"] == 0
    assert server.relayed_addresses == []
    assert server.allocations == []
    assert events(server) == [RelayReleased(relayed=relayed, client=CLIENT, reason="deleted")]
    assert server.get_timer() is None
    # A retransmission now finds no allocation (RFC 8656 §8.2 note).
    assert client.fails(Method.REFRESH, {"LIFETIME": 0}, now=5.5) == 437
    assert from_peer(server, b"late", relayed=relayed, peer=PEER, now=6.0) == []
    # The 5-tuple may allocate again.
    client.allocate(now=7.0)


@pytest.mark.parametrize("method", [Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND])
def test_request_without_allocation_gets_437(method: Method) -> None:
    server = make_server()
    assert Client(server).fails(method, {"XOR-PEER-ADDRESS": PEER, "CHANNEL-NUMBER": 0x4000}) == 437


def test_request_from_another_user_gets_441() -> None:
    server, _, _ = allocated()
    bob = Client(server, username="bob", password="hunter2")
    assert bob.fails(Method.REFRESH) == 441
    assert bob.fails(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}) == 441


def test_allocation_expires() -> None:
    server, _, relayed = allocated(lifetime=600)
    assert server.get_timer() == 600.0
    server.handle_timer(now=599.999)
    assert server.relayed_addresses == [relayed]
    assert events(server) == []
    server.handle_timer(now=600.0)
    assert server.relayed_addresses == []
    assert events(server) == [RelayReleased(relayed=relayed, client=CLIENT, reason="expired")]
    assert server.get_timer() is None
    assert server.stats.expired_allocations == 1
    assert server.datagrams_to_send() == []


def test_expired_allocation_is_gone_before_the_timer_runs() -> None:
    server, client, relayed = allocated(lifetime=600)
    assert client.fails(Method.REFRESH, now=600.0) == 437
    assert events(server) == [RelayReleased(relayed=relayed, client=CLIENT, reason="expired")]


def test_refresh_moves_the_expiry() -> None:
    server, client, relayed = allocated(lifetime=600)
    client.succeeds(Method.REFRESH, {"LIFETIME": 600}, now=500.0)
    assert server.get_timer() == 1100.0
    server.handle_timer(now=600.0)
    assert server.relayed_addresses == [relayed]
    server.handle_timer(now=1100.0)
    assert server.relayed_addresses == []


# -- permissions -----------------------------------------------------------------------------------


def test_create_permission_lasts_300_seconds() -> None:
    server, client, relayed = allocated()
    assert PERMISSION_LIFETIME == 300.0
    response = client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": [PEER, PEER2]})
    assert response.attributes.keys() <= {"MESSAGE-INTEGRITY", "FINGERPRINT"}
    assert server.allocations[0].permissions == {PEER[0]: 300.0, PEER2[0]: 300.0}
    assert server.get_timer() == 300.0
    assert client.send_indication(PEER, b"a", now=299.999) == [Transmit(b"a", PEER, relayed)]
    assert client.send_indication(PEER2, b"b", now=299.999) == [Transmit(b"b", PEER2, relayed)]
    server.handle_timer(now=299.999)
    assert server.stats.expired_permissions == 0
    server.handle_timer(now=300.0)
    assert server.stats.expired_permissions == 2
    assert server.allocations[0].permissions == {}
    assert server.get_timer() == 3600.0
    assert client.send_indication(PEER, b"a", now=300.0) == []
    assert from_peer(server, b"x", relayed=relayed, peer=PEER, now=300.0) == []
    assert server.stats.no_permission == 2
    assert server.stats.to_peer == 2


def test_permission_expires_before_the_timer_runs() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    assert from_peer(server, b"x", relayed=relayed, peer=PEER, now=300.0) == []
    assert server.stats.no_permission == 1


def test_create_permission_refreshes() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": ("203.0.113.5", 1)}, now=100.0)
    assert server.get_timer() == 400.0
    server.handle_timer(now=300.0)
    assert client.send_indication(PEER, b"a", now=399.0) == [Transmit(b"a", PEER, relayed)]
    server.handle_timer(now=400.0)
    assert client.send_indication(PEER, b"a", now=400.0) == []


def test_create_permission_without_peer_gets_400() -> None:
    _, client, _ = allocated()
    assert client.fails(Method.CREATE_PERMISSION) == 400


def test_create_permission_is_all_or_nothing() -> None:
    server, client, _ = allocated()
    code = client.fails(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": [PEER, PEER6]})
    assert code == 443
    assert server.allocations[0].permissions == {}


# -- data: Send and Data indications ---------------------------------------------------------------


def test_send_indication_is_relayed_from_the_relayed_address() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    # Any port of the permitted IP (RFC 8656 §9).
    out = client.send_indication(PEER_OTHER_PORT, b"payload", now=1.0)
    assert out == [Transmit(b"payload", PEER_OTHER_PORT, relayed)]
    assert client.send_indication(PEER, b"", now=1.0) == [Transmit(b"", PEER, relayed)]
    assert server.stats.to_peer == 2
    # A Send never refreshes the permission.
    assert server.get_timer() == 300.0


def test_send_indication_to_unpermitted_peer_is_dropped() -> None:
    server, client, _ = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    dropped = server.stats.dropped
    assert client.send_indication(PEER2, b"no", now=1.0) == []
    assert server.stats.no_permission == 1
    assert server.stats.dropped == dropped + 1


@pytest.mark.parametrize("attributes", [{"XOR-PEER-ADDRESS": PEER}, {"DATA": b"x"}, {}])
def test_incomplete_send_indication_is_dropped(attributes: dict[str, Any]) -> None:
    server, client, _ = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    message = client.build(Method.SEND, attributes, message_class=Class.INDICATION)
    assert send(server, message, remote=CLIENT, now=1.0) == []
    assert server.stats.dropped == 1


def test_send_indication_without_allocation_is_dropped() -> None:
    server = make_server()
    assert Client(server).send_indication(PEER, b"x", now=0.0) == []
    assert server.stats.dropped == 1


def test_peer_datagram_becomes_data_indication() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    [out] = from_peer(server, b"from peer", relayed=relayed, peer=PEER_OTHER_PORT, now=1.0)
    assert out.remote == CLIENT
    assert out.local == LISTEN
    indication = parse_message(out.data)
    assert indication.message_method == Method.DATA
    assert indication.message_class == Class.INDICATION
    assert indication.attributes == {"XOR-PEER-ADDRESS": PEER_OTHER_PORT, "DATA": b"from peer"}
    assert server.stats.to_client == 1


def test_unpermitted_peer_is_dropped() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    assert from_peer(server, b"spam", relayed=relayed, peer=PEER2, now=1.0) == []
    assert server.stats.no_permission == 1
    assert server.stats.to_client == 0


# -- channels --------------------------------------------------------------------------------------


def test_channel_bind_installs_permission_and_relays_both_ways() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER})
    info = server.allocations[0]
    assert info.channels == {0x4000: (PEER, 600.0)}
    assert info.permissions == {PEER[0]: 300.0}
    assert server.stats.channel_binds == 1
    # Peer -> client: ChannelData for the bound peer, a Data indication for another port.
    [out] = from_peer(server, b"hello", relayed=relayed, peer=PEER, now=1.0)
    assert out == Transmit(struct.pack("!HH", 0x4000, 5) + b"hello", CLIENT, LISTEN)
    [out] = from_peer(server, b"other", relayed=relayed, peer=PEER_OTHER_PORT, now=1.0)
    assert parse_message(out.data).message_method == Method.DATA
    # Client -> peer.
    assert client.channel_data(0x4000, b"hi", now=1.0) == [Transmit(b"hi", PEER, relayed)]
    assert client.channel_data(0x4000, b"", now=1.0) == [Transmit(b"", PEER, relayed)]
    assert server.stats.to_peer == 2
    assert server.stats.to_client == 2


def test_channel_data_padding_and_truncation() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER})
    padded = struct.pack("!HH", 0x4001, 5) + b"hello" + b"\x00" * 3
    assert send(server, padded, remote=CLIENT, now=1.0) == [Transmit(b"hello", PEER, relayed)]
    truncated = struct.pack("!HH", 0x4001, 6) + b"hello"
    assert send(server, truncated, remote=CLIENT, now=1.0) == []
    assert send(server, b"\x40\x01\x00", remote=CLIENT, now=1.0) == []
    assert server.stats.dropped == 2


def test_channel_data_on_unbound_channel_or_without_allocation_is_dropped() -> None:
    server, client, _ = allocated()
    assert client.channel_data(0x4000, b"x", now=1.0) == []
    assert Client(server, address=CLIENT2).channel_data(0x4000, b"x", now=1.0) == []
    # 0x5000-0x7FFF are reserved (RFC 8656 §12).
    assert send(server, struct.pack("!HH", 0x5000, 1) + b"x", remote=CLIENT, now=1.0) == []
    assert server.stats.dropped == 3


@pytest.mark.parametrize(
    "attributes",
    [
        {"CHANNEL-NUMBER": 0x3FFF, "XOR-PEER-ADDRESS": PEER},
        {"CHANNEL-NUMBER": 0x5000, "XOR-PEER-ADDRESS": PEER},
        {"CHANNEL-NUMBER": 0x7FFE, "XOR-PEER-ADDRESS": PEER},
        {"XOR-PEER-ADDRESS": PEER},
        {"CHANNEL-NUMBER": 0x4000},
    ],
)
def test_bad_channel_bind_gets_400(attributes: dict[str, Any]) -> None:
    server, client, _ = allocated()
    assert client.fails(Method.CHANNEL_BIND, attributes) == 400
    assert server.allocations[0].channels == {}
    assert server.allocations[0].permissions == {}


def test_channel_bind_of_another_family_gets_443() -> None:
    _, client, _ = allocated()
    code = client.fails(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER6})
    assert code == 443


def test_channel_rebinding_rules() -> None:
    server, client, _ = allocated()
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER})
    # The number to another peer, or another number to the peer: 400.
    bind = Method.CHANNEL_BIND
    assert client.fails(bind, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER2}) == 400
    assert client.fails(bind, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER}) == 400
    assert (
        client.fails(bind, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER_OTHER_PORT}) == 400
    )
    # The same binding again refreshes it, and another number for another peer is fine.
    client.succeeds(bind, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER}, now=100.0)
    client.succeeds(bind, {"CHANNEL-NUMBER": 0x4FFF, "XOR-PEER-ADDRESS": PEER2}, now=100.0)
    assert server.allocations[0].channels == {
        0x4000: (PEER, 700.0),
        0x4FFF: (PEER2, 700.0),
    }
    assert server.stats.channel_binds == 3


def test_channel_lasts_600_seconds() -> None:
    server, client, relayed = allocated()
    assert CHANNEL_LIFETIME == 600.0
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER})
    assert server.get_timer() == 300.0  # the permission the binding installed
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}, now=290.0)
    assert server.get_timer() == 590.0
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}, now=580.0)
    assert server.get_timer() == 600.0
    server.handle_timer(now=599.999)
    assert client.channel_data(0x4000, b"x", now=599.999) == [Transmit(b"x", PEER, relayed)]
    [out] = from_peer(server, b"y", relayed=relayed, peer=PEER, now=599.999)
    assert out.data[:2] == b"\x40\x00"
    server.handle_timer(now=600.0)
    assert server.stats.expired_channels == 1
    assert server.allocations[0].channels == {}
    assert server.get_timer() == 880.0
    assert client.channel_data(0x4000, b"x", now=600.0) == []
    [out] = from_peer(server, b"y", relayed=relayed, peer=PEER, now=600.0)
    assert parse_message(out.data).attributes["DATA"] == b"y"  # a Data indication now
    # Once expired, the number may go to another peer.
    client.succeeds(
        Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER2}, now=600.0
    )


# -- dropped input ---------------------------------------------------------------------------------


def test_what_is_dropped() -> None:
    server, _, _ = allocated()
    response = Message(Method.BINDING, Class.RESPONSE, b"x" * 12, {"XOR-MAPPED-ADDRESS": CLIENT})
    data_indication = Message(Method.DATA, Class.INDICATION, b"y" * 12, {"DATA": b"x"})
    for data in [
        b"",
        b"\x00\x01",
        b"\x80junk",
        b"\x50\x00\x00\x00",
        bytes(20),
        bytes(response),
        bytes(data_indication),
    ]:
        assert send(server, data, remote=CLIENT, now=1.0) == []
    assert send(server, b"x", local=("192.0.2.99", 3478), remote=CLIENT, now=1.0) == []
    assert server.stats.dropped == 8
    assert server.stats.errors_sent == 1  # the 401 of the allocation
    assert events(server) == []


def test_bytes_like_input() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    server.receive_datagram(bytearray(b"peer"), local=relayed, remote=PEER, now=1.0)
    server.receive_datagram(memoryview(b"peer"), local=relayed, remote=PEER, now=1.0)
    assert len(server.datagrams_to_send()) == 2


def test_binding_with_unknown_attribute_gets_unsigned_420() -> None:
    server = make_server()
    client = Client(server)
    data = bytes(Message(Method.BINDING, Class.REQUEST, client.tid()))
    data = data[:2] + struct.pack("!H", 8) + data[4:] + struct.pack("!HHI", 0x7FFE, 4, 0)
    response = client.exchange(data, now=0.0)
    assert response.error_code == 420
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x7FFE,)
    assert "MESSAGE-INTEGRITY" not in response.attributes
    assert server.stats.bindings == 0


def test_send_indication_with_unknown_attribute_or_to_port_0_is_dropped() -> None:
    server, client, _ = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    message = Message(
        Method.SEND, Class.INDICATION, client.tid(), {"XOR-PEER-ADDRESS": PEER, "DATA": b"x"}
    )
    data = bytes(message)
    data = (
        data[:2] + struct.pack("!H", len(data) - 12) + data[4:] + struct.pack("!HHI", 0x7FFE, 4, 0)
    )
    assert send(server, data, remote=CLIENT, now=1.0) == []
    assert client.send_indication(("203.0.113.5", 0), b"x", now=1.0) == []
    assert server.stats.dropped == 2
    assert server.stats.to_peer == 0


def test_peer_datagram_after_expiry_before_the_timer_runs() -> None:
    server, client, relayed = allocated(lifetime=600)
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER})
    assert from_peer(server, b"x", relayed=relayed, peer=PEER, now=600.0) == []
    assert events(server) == [RelayReleased(relayed=relayed, client=CLIENT, reason="expired")]
    assert server.stats.expired_allocations == 1


def test_peer_of_another_family_or_too_large_is_dropped() -> None:
    server, client, relayed = allocated()
    client.succeeds(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": [PEER, PEER2]})
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER2})
    assert from_peer(server, b"x", relayed=relayed, peer=PEER6, now=1.0) == []
    # What a 16-bit length cannot carry (no real UDP datagram is that large).
    assert from_peer(server, bytes(0xFFFF - 31), relayed=relayed, peer=PEER, now=1.0) == []
    [out] = from_peer(server, bytes(0xFFFF - 32), relayed=relayed, peer=PEER, now=1.0)
    assert len(parse_message(out.data).attributes["DATA"]) == 0xFFFF - 32
    assert from_peer(server, bytes(0x10000), relayed=relayed, peer=PEER2, now=1.0) == []
    [out] = from_peer(server, bytes(0xFFFF), relayed=relayed, peer=PEER2, now=1.0)
    assert len(out.data) == 4 + 0xFFFF
    assert server.stats.dropped == 3
    assert server.stats.to_client == 2


def test_releasing_one_family_drops_its_channels() -> None:
    server = make_server(relay_ip6=RELAY_IP6)
    client = Client(server)
    client.allocate({"ADDITIONAL-ADDRESS-FAMILY": 0x02})
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER})
    client.succeeds(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER6})
    client.succeeds(Method.REFRESH, {"REQUESTED-ADDRESS-FAMILY": 0x02, "LIFETIME": 0})
    [info] = server.allocations
    assert info.channels == {0x4000: (PEER, 600.0)}
    assert info.permissions == {PEER[0]: 300.0}
    assert client.channel_data(0x4001, b"x", now=1.0) == []
    # The number is free again, but not for a peer of the released family.
    code = client.fails(Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER6})
    assert code == 443


def test_ports_are_found_when_the_range_is_nearly_full() -> None:
    server = make_server(port_range=(50000, 50031))
    ports = {Client(server, address=("198.51.100.9", 1 + i)).allocate()[1] for i in range(32)}
    assert ports == set(range(50000, 50032))


def test_drops_are_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    with caplog.at_level("DEBUG", logger="aioice.turn.server"):
        send(server, b"\x80junk", remote=CLIENT, now=0.0)
    assert "dropped datagram from ('198.51.100.7', 40000): first byte 0x80" in caplog.text


# -- optional authentication schemes ---------------------------------------------------------------


def test_password_algorithms_sha256() -> None:
    server = make_server(password_algorithms=True)
    client = Client(server)
    challenge = client.exchange(client.build(Method.ALLOCATE), now=0.0)
    nonce = challenge.attributes["NONCE"]
    assert nonce_security_features(nonce) == SecurityFeature.PASSWORD_ALGORITHMS
    algorithms = challenge.attributes["PASSWORD-ALGORITHMS"]
    assert algorithms == ((PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b""))
    key = long_term_key("alice", REALM, "secret", algorithm=PasswordAlgorithm.SHA256)
    attributes: dict[str, Any] = {
        "REQUESTED-TRANSPORT": UDP_TRANSPORT,
        "USERNAME": "alice",
        "REALM": REALM,
        "NONCE": nonce,
        "PASSWORD-ALGORITHMS": algorithms,
        "PASSWORD-ALGORITHM": (PasswordAlgorithm.SHA256, b""),
    }
    request = Message(Method.ALLOCATE, Class.REQUEST, client.tid(), dict(attributes))
    request.add_message_integrity_sha256(key)
    response = client.exchange(bytes(request), now=0.0)
    assert response.message_class == Class.RESPONSE
    assert "MESSAGE-INTEGRITY-SHA256" in response.attributes
    assert response.check_message_integrity(key)
    # PASSWORD-ALGORITHMS without the choice: 400 (RFC 8489 §9.2.4).
    del attributes["PASSWORD-ALGORITHM"]
    request = Message(Method.REFRESH, Class.REQUEST, client.tid(), attributes)
    request.add_message_integrity_sha256(key)
    assert client.exchange(bytes(request), now=0.0).error_code == 400
    # Without either attribute the key is MD5, as in RFC 5389.
    md5 = Client(server, address=CLIENT2)
    md5.allocate()
    assert md5.key == long_term_key("alice", REALM, "secret")
    # A nonce without the cookie is not one of this server's.
    md5.nonce = md5.nonce[13:] if md5.nonce is not None else None
    assert md5.exchange(md5.build(Method.REFRESH), now=1.0).error_code == 438


def test_rest_api_shared_secret() -> None:
    epoch = 1_700_000_000.0
    server = make_server(auth_secret="s3cret", rest_epoch=epoch)

    def credentials(expiry: int) -> tuple[str, str]:
        username = f"{expiry}:carol"
        mac = hmac.digest(b"s3cret", username.encode(), "sha1")
        return username, base64.b64encode(mac).decode()

    username, password = credentials(int(epoch) + 3600)
    Client(server, username=username, password=password).allocate(now=10.0)
    username, password = credentials(int(epoch) + 3600)
    late = Client(server, address=CLIENT2, username=username, password=password)
    assert late.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}, now=3600.0) == 401
    wrong = Client(server, address=CLIENT2, username=username, password="guess")
    assert wrong.fails(Method.ALLOCATE, {"REQUESTED-TRANSPORT": UDP_TRANSPORT}, now=10.0) == 401
    # Static users still work.
    Client(server, address=CLIENT2).allocate(now=10.0)


# -- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"relay_ip": "2001:db8::1"}, "relay_ip must be an IPv4"),
        ({"relay_ip6": "192.0.2.1"}, "relay_ip6 must be an IPv6"),
        ({"relay_ip": "0.0.0.0"}, "specific address"),
        ({"relay_ip": "not an ip"}, "not an IP address"),
        ({"port_range": (0, 10)}, "port range"),
        ({"port_range": (2000, 1000)}, "port range"),
        ({"default_lifetime": 7200}, "default_lifetime"),
        ({"nonce_lifetime": 0.0}, "nonce_lifetime"),
        ({"user_quota": 0}, "user_quota"),
    ],
)
def test_invalid_configuration(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_server(**options)


def test_relay_ip_defaults_to_the_listening_address() -> None:
    server = TurnServer(LISTEN, realm=REALM, users=USERS, rng=random.Random(SEED))
    assert server.relay_ip == LISTEN[0]
    with pytest.raises(ValueError, match="relay_ip"):
        TurnServer(("0.0.0.0", 3478), realm=REALM, users=USERS)


# -- interoperability with aioice.turn.TurnClient --------------------------------------------------


def test_turn_client_interop_over_two_hours() -> None:
    """The package's own client against this server, refreshing everything by itself."""
    from aioice.turn import (
        AllocationSucceeded,
        Closed,
        DataReceived,
        TurnClient,
        TurnClientConfig,
        TurnEvent,
    )

    server = make_server()
    client = TurnClient(
        LISTEN, TurnClientConfig(username="alice", password="secret"), rng=random.Random(7)
    )
    client_events: list[TurnEvent] = []
    now = 0.0

    def pump() -> list[Transmit]:
        """Deliver datagrams between client and server until both are quiet."""
        to_peers: list[Transmit] = []
        moved = True
        while moved:
            moved = False
            for data in client.datagrams_to_send():
                moved = True
                server.receive_datagram(data, local=LISTEN, remote=CLIENT, now=now)
            for transmit in server.datagrams_to_send():
                moved = True
                if transmit.remote == CLIENT:
                    assert transmit.local == LISTEN
                    client.receive(transmit.data, now=now)
                else:
                    to_peers.append(transmit)
            while (event := client.next_event()) is not None:
                client_events.append(event)
        return to_peers

    client.allocate(now=now)
    assert pump() == []
    [succeeded] = client_events
    assert isinstance(succeeded, AllocationSucceeded)
    [relayed] = succeeded.relayed_addresses
    assert server.relayed_addresses == [relayed]
    assert succeeded.mapped_address == CLIENT

    def round_trip(n: int) -> None:
        client_events.clear()
        client.send(b"ping %d" % n, PEER, now=now)
        assert pump() == [Transmit(b"ping %d" % n, PEER, relayed)]
        server.receive_datagram(b"pong %d" % n, local=relayed, remote=PEER, now=now)
        assert pump() == []
        assert client_events == [DataReceived(b"pong %d" % n, PEER)]

    round_trip(0)
    checkpoint = 100.0
    while now < 7200.0:
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        now = min([*timers, checkpoint])
        client.handle_timer(now=now)
        server.handle_timer(now=now)
        assert pump() == []
        if now == checkpoint:
            round_trip(int(now))
            checkpoint += 100.0
    assert server.stats.expired_allocations == 0
    assert server.stats.expired_permissions == 0
    assert server.stats.expired_channels == 0
    assert server.stats.refreshes >= 7200 // 600
    assert server.stats.dropped == 0
    events(server)

    client_events.clear()
    client.close(now=now)
    pump()
    assert any(isinstance(e, Closed) for e in client_events)
    assert server.relayed_addresses == []
    assert events(server) == [RelayReleased(relayed=relayed, client=CLIENT, reason="deleted")]
