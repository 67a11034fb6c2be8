"""The sans-I/O STUN server: Binding (RFC 8489) and RFC 5780 support."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aioice.stun import (
    COOKIE,
    Address,
    Class,
    Message,
    Method,
    StunServer,
    StunServerStats,
    Transmit,
    parse_message,
)
from aioice.stun.server import CHANGE_IP, CHANGE_PORT

A1P1 = ("192.0.2.1", 3478)
A1P2 = ("192.0.2.1", 3479)
A2P1 = ("192.0.2.2", 3478)
A2P2 = ("192.0.2.2", 3479)
CLIENT = ("198.51.100.7", 40000)
TID = b"0123456789ab"


def binding(attributes: dict[str, Any] | None = None, *, fingerprint: bool = False) -> bytes:
    message = Message(Method.BINDING, Class.REQUEST, TID, attributes or {})
    if fingerprint:
        message.add_fingerprint()
    return bytes(message)


def ask(
    server: StunServer, data: bytes, *, local: Address = A1P1, remote: Address = CLIENT
) -> tuple[Message, Transmit]:
    """Feed one datagram; return the single answer, parsed, and its Transmit."""
    server.receive_datagram(data, local=local, remote=remote, now=0.0)
    [transmit] = server.datagrams_to_send()
    response = parse_message(transmit.data)
    assert response.transaction_id == data[8:20]
    assert server.datagrams_to_send() == []
    return response, transmit


def raw_request(method: int, *attributes: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attributes)
    return struct.pack("!HHI", method, len(body), COOKIE) + TID + body


# -- one address ----------------------------------------------------------------------------


def test_binding_single_address() -> None:
    server = StunServer(A1P1)
    assert server.addresses == [A1P1]
    assert server.get_timer() is None
    response, transmit = ask(server, binding())
    assert transmit.remote == CLIENT
    assert transmit.local == A1P1
    assert response.message_method == Method.BINDING
    assert response.message_class == Class.RESPONSE
    assert response.attributes == {
        "XOR-MAPPED-ADDRESS": CLIENT,
        "RESPONSE-ORIGIN": A1P1,
    }
    assert server.stats == StunServerStats(requests=1, errors_sent=0, indications=0, dropped=0)


def test_binding_ipv6() -> None:
    local = ("2001:db8::1", 3478)
    remote = ("2001:db8::7", 5000)
    server = StunServer(local)
    response, transmit = ask(server, binding(), local=local, remote=remote)
    assert transmit == Transmit(transmit.data, remote, local)
    assert response.attributes["XOR-MAPPED-ADDRESS"] == remote
    assert response.attributes["RESPONSE-ORIGIN"] == local


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_no_response_origin_for_a_wildcard_address(host: str) -> None:
    server = StunServer((host, 3478))
    response, transmit = ask(server, binding(), local=(host, 3478))
    assert "RESPONSE-ORIGIN" not in response.attributes
    assert "OTHER-ADDRESS" not in response.attributes
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert transmit.local == (host, 3478)


def test_unknown_local_address_answers_from_primary() -> None:
    server = StunServer(A1P1)
    response, transmit = ask(server, binding(), local=("203.0.113.9", 1))
    assert transmit.local == A1P1
    assert response.attributes["RESPONSE-ORIGIN"] == A1P1


def test_fingerprint_is_mirrored_and_software_added() -> None:
    server = StunServer(A1P1, software="aioice test")
    response, _ = ask(server, binding(fingerprint=True))
    assert response.attributes["SOFTWARE"] == "aioice test"
    assert "FINGERPRINT" in response.attributes
    # FINGERPRINT is last (parse_message verifies its value and position).
    assert list(response.attributes)[-1] == "FINGERPRINT"

    response, _ = ask(server, binding())
    assert "FINGERPRINT" not in response.attributes
    assert response.attributes["SOFTWARE"] == "aioice test"


def test_fingerprint_is_mirrored_on_errors() -> None:
    server = StunServer(A1P1, software="sw")
    response, _ = ask(server, binding({"CHANGE-REQUEST": CHANGE_PORT}, fingerprint=True))
    assert response.message_class == Class.ERROR
    assert response.attributes["SOFTWARE"] == "sw"
    assert list(response.attributes)[-1] == "FINGERPRINT"


def test_indications_are_counted_not_answered() -> None:
    server = StunServer(A1P1)
    for _ in range(3):
        indication = Message(Method.BINDING, Class.INDICATION)
        server.receive_datagram(bytes(indication), local=A1P1, remote=CLIENT, now=0.0)
    assert server.datagrams_to_send() == []
    assert server.stats == StunServerStats(indications=3)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"hello world, this is not STUN",
        b"\x40\x00\x00\x04data",  # TURN ChannelData
        bytes(20),  # no magic cookie
        binding()[:-1],  # shorter than a header
        binding() + b"\x00\x00\x00\x00",  # length mismatch
        raw_request(0x0FFF),  # unknown method
        binding(fingerprint=True)[:-1] + b"\x00",  # bad fingerprint
        bytes(Message(Method.BINDING, Class.RESPONSE, TID)),
        bytes(Message(Method.BINDING, Class.ERROR, TID, {"ERROR-CODE": (400, "Bad")})),
    ],
    ids=[
        "empty",
        "one-byte",
        "text",
        "channeldata",
        "no-cookie",
        "truncated",
        "too-long",
        "unknown-method",
        "bad-fingerprint",
        "response",
        "error-response",
    ],
)
def test_garbage_and_responses_are_dropped(data: bytes) -> None:
    server = StunServer(A1P1)
    server.receive_datagram(data, local=A1P1, remote=CLIENT, now=0.0)
    assert server.datagrams_to_send() == []
    assert server.stats == StunServerStats(dropped=1)


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    server = StunServer(A1P1)
    data = raw_request(0x0001, (0x7777, b"abcd"), (0x0006, b"user"), (0x8777, b"ok"))
    response, transmit = ask(server, data)
    assert transmit.local == A1P1
    assert transmit.remote == CLIENT
    assert response.message_class == Class.ERROR
    assert response.error_code == 420
    # Only the comprehension-required one (< 0x8000) is listed.
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x7777,)
    assert server.stats == StunServerStats(errors_sent=1)


def test_unknown_attribute_takes_precedence_over_method() -> None:
    server = StunServer(A1P1)
    response, _ = ask(server, raw_request(0x0003, (0x7001, b""), (0x7002, b"x")))
    assert response.message_method == Method.ALLOCATE
    assert response.error_code == 420
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x7001, 0x7002)


@pytest.mark.parametrize("method", [Method.ALLOCATE, Method.REFRESH, Method.SHARED_SECRET])
def test_other_methods_get_400(method: Method) -> None:
    server = StunServer(A1P1)
    data = bytes(Message(method, Class.REQUEST, TID))
    response, transmit = ask(server, data)
    assert response.message_method == method
    assert response.message_class == Class.ERROR
    assert response.error_code == 400
    assert "UNKNOWN-ATTRIBUTES" not in response.attributes
    assert transmit.local == A1P1
    assert server.stats == StunServerStats(errors_sent=1)


@pytest.mark.parametrize("flags", [CHANGE_IP, CHANGE_PORT, CHANGE_IP | CHANGE_PORT])
def test_change_request_without_alternate_gets_420(flags: int) -> None:
    server = StunServer(A1P1)
    response, transmit = ask(server, binding({"CHANGE-REQUEST": flags}))
    assert transmit.local == A1P1
    assert response.error_code == 420
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x0003,)
    assert server.stats == StunServerStats(errors_sent=1)


def test_change_request_without_flags_is_a_plain_binding() -> None:
    server = StunServer(A1P1)
    response, transmit = ask(server, binding({"CHANGE-REQUEST": 0}))
    assert response.message_class == Class.RESPONSE
    assert transmit.local == A1P1


def test_response_port_single_address() -> None:
    server = StunServer(A1P1)
    response, transmit = ask(server, binding({"RESPONSE-PORT": 5555}))
    assert transmit.remote == (CLIENT[0], 5555)
    assert transmit.local == A1P1
    # XOR-MAPPED-ADDRESS is still where the request came from.
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT


def test_exact_stats_over_a_mixed_sequence() -> None:
    server = StunServer(A1P1)
    inputs = [
        binding(),
        b"junk",
        bytes(Message(Method.BINDING, Class.INDICATION)),
        binding({"CHANGE-REQUEST": CHANGE_IP}),
        bytes(Message(Method.ALLOCATE, Class.REQUEST)),
        binding(fingerprint=True),
        bytes(Message(Method.BINDING, Class.RESPONSE)),
    ]
    for data in inputs:
        server.receive_datagram(data, local=A1P1, remote=CLIENT, now=0.0)
    sent = server.datagrams_to_send()
    assert [parse_message(t.data).message_class for t in sent] == [
        Class.RESPONSE,
        Class.ERROR,
        Class.ERROR,
        Class.RESPONSE,
    ]
    assert server.stats == StunServerStats(requests=2, errors_sent=2, indications=1, dropped=2)


# -- RFC 5780: primary and alternate --------------------------------------------------------


OTHER = {A1P1: A2P2, A1P2: A2P1, A2P1: A1P2, A2P2: A1P1}


def rfc5780_server() -> StunServer:
    return StunServer(A1P1, A2P2, software="rfc5780")


def test_alternate_addresses_are_the_four_combinations() -> None:
    server = rfc5780_server()
    assert server.primary == A1P1
    assert server.alternate == A2P2
    assert server.addresses == [A1P1, A1P2, A2P1, A2P2]


@pytest.mark.parametrize(
    ("local", "other"),
    [(A1P1, A2P2), (A1P2, A2P1), (A2P1, A1P2), (A2P2, A1P1)],
)
def test_other_address_and_response_origin(local: Address, other: Address) -> None:
    server = rfc5780_server()
    response, transmit = ask(server, binding(), local=local)
    assert transmit.local == local
    assert transmit.remote == CLIENT
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert response.attributes["RESPONSE-ORIGIN"] == local
    assert response.attributes["OTHER-ADDRESS"] == other
    assert response.attributes["SOFTWARE"] == "rfc5780"


@pytest.mark.parametrize(
    ("local", "flags", "source"),
    [
        (A1P1, CHANGE_IP, A2P1),
        (A1P1, CHANGE_PORT, A1P2),
        (A1P1, CHANGE_IP | CHANGE_PORT, A2P2),
        (A2P2, CHANGE_IP, A1P2),
        (A2P2, CHANGE_PORT, A2P1),
        (A2P2, CHANGE_IP | CHANGE_PORT, A1P1),
        (A1P2, CHANGE_IP | CHANGE_PORT, A2P1),
        (A2P1, CHANGE_PORT, A2P2),
        # Bits other than change-IP and change-port are ignored.
        (A1P1, 0x01 | 0x08, A1P1),
    ],
)
def test_change_request(local: Address, flags: int, source: Address) -> None:
    server = rfc5780_server()
    response, transmit = ask(server, binding({"CHANGE-REQUEST": flags}), local=local)
    assert response.message_class == Class.RESPONSE
    assert transmit.local == source
    assert transmit.remote == CLIENT
    assert response.attributes["RESPONSE-ORIGIN"] == source
    # OTHER-ADDRESS is relative to where the request arrived.
    assert response.attributes["OTHER-ADDRESS"] == OTHER[local]
    assert server.stats == StunServerStats(requests=1)


def test_response_port_with_change_request() -> None:
    server = rfc5780_server()
    request = binding({"CHANGE-REQUEST": CHANGE_IP | CHANGE_PORT, "RESPONSE-PORT": 6000})
    response, transmit = ask(server, request)
    assert transmit.remote == (CLIENT[0], 6000)
    assert transmit.local == A2P2
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert response.attributes["RESPONSE-ORIGIN"] == A2P2


def test_unknown_local_address_with_alternate_answers_from_primary() -> None:
    server = rfc5780_server()
    response, transmit = ask(server, binding({"CHANGE-REQUEST": CHANGE_PORT}), local=CLIENT)
    assert transmit.local == A1P2
    assert response.attributes["OTHER-ADDRESS"] == A2P2


@pytest.mark.parametrize(
    "alternate",
    [("192.0.2.1", 3479), ("192.0.2.2", 3478), A1P1],
    ids=["same-ip", "same-port", "same-address"],
)
def test_alternate_needs_another_ip_and_port(alternate: Address) -> None:
    with pytest.raises(ValueError, match="another IP address and another port"):
        StunServer(A1P1, alternate)


def test_rfc5780_exact_stats() -> None:
    server = rfc5780_server()
    for local in server.addresses:
        for flags in (0, CHANGE_IP, CHANGE_PORT, CHANGE_IP | CHANGE_PORT):
            server.receive_datagram(
                binding({"CHANGE-REQUEST": flags}), local=local, remote=CLIENT, now=0.0
            )
    server.receive_datagram(b"\xff" * 24, local=A2P2, remote=CLIENT, now=0.0)
    sent = server.datagrams_to_send()
    assert len(sent) == 16
    # Every combination answers from each of the four addresses four times.
    assert sorted(t.local for t in sent if t.local) == sorted(server.addresses * 4)
    assert server.stats == StunServerStats(requests=16, dropped=1)


def test_change_request_over_a_stream_is_refused() -> None:
    """RFC 5780 §7.2: the answer to CHANGE-REQUEST leaves from another address, which a
    TCP connection cannot do, so the server refuses it with 400."""
    server = StunServer(("192.0.2.1", 3478), ("192.0.2.2", 3479))
    request = Message(Method.BINDING, Class.REQUEST, attributes={"CHANGE-REQUEST": 0x06})
    server.receive_datagram(
        bytes(request),
        local=("192.0.2.1", 3478),
        remote=("198.51.100.1", 5000),
        now=0.0,
        stream=True,
    )
    (transmit,) = server.datagrams_to_send()
    response = parse_message(transmit.data)
    assert response.message_class == Class.ERROR
    assert response.attributes["ERROR-CODE"] == (400, "CHANGE-REQUEST needs UDP")
    assert transmit.local == ("192.0.2.1", 3478)
    assert server.stats.errors_sent == 1


def test_link_local_remote_with_scope_is_answered() -> None:
    """recvfrom() gives link-local IPv6 addresses with their scope ("fe80::1%eth0")."""
    server = StunServer(("fe80::2", 3478))
    request = Message(Method.BINDING, Class.REQUEST)
    server.receive_datagram(
        bytes(request), local=("fe80::2", 3478), remote=("fe80::1%eth0", 5000), now=0.0
    )
    (transmit,) = server.datagrams_to_send()
    assert transmit.remote == ("fe80::1%eth0", 5000)
    response = parse_message(transmit.data)
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("fe80::1", 5000)
