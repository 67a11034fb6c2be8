"""The coturn fixtures work: real coturn answers STUN and TURN on loopback as documented.

Requests are built by hand with :mod:`aioice.stun` (not the TURN client), so these tests
check the fixture, not ``aioice.turn``. Each test runs its own event loop under a guard.

coturn binds a nonce to the session (the 5-tuple): the 401 and the signed retry must use
the same UDP socket or the same TCP / TLS connection (see
``test_nonce_from_another_socket_is_438``), hence :class:`Session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    StreamFramer,
    TransactionConfig,
    TransactionFailed,
    TransactionTimeout,
    long_term_key,
    parse_message,
)
from aioice.stun import asyncio as stun_asyncio

if TYPE_CHECKING:
    from tests.conftest import Coturn, CoturnFactory

T = TypeVar("T")
Transport = Literal["udp", "tcp", "tls", "udp6", "tcp6", "tls6"]

GUARD = 10.0
"Seconds any test's event loop may run."
REPLY_TIMEOUT = 5.0
"Seconds to wait for one response over TCP / TLS."
UDP = 0x11000000
"REQUESTED-TRANSPORT: UDP (17) in the top byte."
FAST = TransactionConfig(rto=0.05, retransmissions=2, rm=4)
"Over UDP on loopback: sends at 0, 0.05, 0.15 s, gives up at 0.35 s."


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a new event loop, failing if it takes longer than GUARD."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), GUARD)

    return asyncio.run(guarded())


def allocate_request(**attributes: Any) -> Message:
    return Message(
        Method.ALLOCATE,
        Class.REQUEST,
        attributes={"REQUESTED-TRANSPORT": UDP, "LIFETIME": 600, **attributes},
    )


def sign(message: Message, username: str, realm: str, nonce: bytes, key: bytes) -> Message:
    message.attributes.update({"USERNAME": username, "REALM": realm, "NONCE": nonce})
    message.add_message_integrity(key)
    return message


def address_of(server: Coturn, transport: Transport) -> Address:
    address: Address | None = getattr(server, transport)
    if address is None:
        pytest.skip("::1 is not usable here")
    return address


class Session:
    """Requests on one UDP socket or one TCP / TLS connection, one at a time."""

    def __init__(self, server: Coturn, transport: Transport) -> None:
        self.server = server
        self.transport = transport
        self.address = address_of(server, transport)
        self.client: stun_asyncio.StunClientProtocol | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = StreamFramer()
        self.local: Address = ("", 0)
        self.realm, self.nonce, self.key = "", b"", b""

    async def __aenter__(self) -> Session:
        host = self.address[0]
        if self.transport.startswith("udp"):
            self.client = await stun_asyncio.create_client((host, 0))
            assert self.client.transport is not None
            name = self.client.transport.get_extra_info("sockname")
        else:
            context = self.server.ssl_context() if self.transport.startswith("tls") else None
            self.reader, self.writer = await asyncio.open_connection(
                *self.address, ssl=context, server_hostname="localhost" if context else None
            )
            name = self.writer.get_extra_info("sockname")
        self.local = (name[0], name[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.client is not None:
            self.client.close()
            await self.client.wait_closed()
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await self.writer.wait_closed()

    async def request(self, message: Message, key: bytes | None = None) -> Message:
        """Send ``message``; return the success response, raise TransactionFailed on an error.

        With ``key``, a success response must carry a valid MESSAGE-INTEGRITY.
        """
        if self.client is not None:
            response, remote = await self.client.request(
                message, self.address, integrity_key=key, long_term_credential=True, config=FAST
            )
            assert remote == self.address
        else:
            response = await asyncio.wait_for(self._stream_request(message), REPLY_TIMEOUT)
        if key is not None:
            assert response.check_message_integrity(key), response
        return response

    async def _stream_request(self, message: Message) -> Message:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.framer.frame(bytes(message)))
        await self.writer.drain()
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("coturn closed the connection")
            for frame in self.framer.feed(chunk):
                response = parse_message(frame)
                if response.transaction_id != message.transaction_id:
                    continue
                if response.message_class == Class.ERROR:
                    raise TransactionFailed(response)
                return response

    async def challenge(self) -> tuple[str, bytes]:
        """An unauthenticated Allocate: assert the 401; return its realm and nonce."""
        with pytest.raises(TransactionFailed) as failed:
            await self.request(allocate_request())
        response = failed.value.response
        assert response.error_code == 401, response
        return response.attributes["REALM"], response.attributes["NONCE"]

    async def allocate(self, **attributes: Any) -> Message:
        """The 401, then the signed Allocate; return the success response.

        The realm, nonce and key are kept for :meth:`signed` requests that follow.
        """
        self.realm, self.nonce = await self.challenge()
        self.key = long_term_key(self.server.username, self.realm, self.server.password)
        return await self.request(self.signed(allocate_request(**attributes)), self.key)

    def signed(self, message: Message) -> Message:
        """``message`` with the credentials of the last :meth:`allocate`."""
        return sign(message, self.server.username, self.realm, self.nonce, self.key)


# -- the listeners ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "udp6"])
def test_binding_over_udp(coturn: Coturn, transport: Transport) -> None:
    async def main() -> None:
        async with Session(coturn, transport) as session:
            response = await session.request(Message(Method.BINDING, Class.REQUEST))
            assert response.message_class == Class.RESPONSE
            assert response.attributes["XOR-MAPPED-ADDRESS"] == session.local
            assert "SOFTWARE" not in response.attributes  # --no-software-attribute
            assert "FINGERPRINT" in response.attributes

    run(main)


def test_allocate_without_credentials_is_401(coturn: Coturn) -> None:
    async def main() -> None:
        with pytest.raises(TransactionFailed) as failed:
            await stun_asyncio.request(allocate_request(), coturn.udp, config=FAST)
        response = failed.value.response
        assert response.message_method == Method.ALLOCATE
        assert response.error_code == 401
        assert response.attributes["REALM"] == coturn.realm
        assert isinstance(response.attributes["NONCE"], bytes)
        assert response.attributes["NONCE"]

    run(main)


@pytest.mark.parametrize(
    ("transport", "server_hostname"),
    [("tcp", None), ("tls", None), ("tls", "localhost"), ("tcp6", None), ("tls6", None)],
)
def test_stream_request_allocate_is_401(
    coturn: Coturn, transport: Transport, server_hostname: str | None
) -> None:
    """One request per connection (``stream_request``): enough for the 401 challenge."""
    address = address_of(coturn, transport)
    context = coturn.ssl_context() if transport.startswith("tls") else None

    async def main() -> None:
        with pytest.raises(TransactionFailed) as failed:
            await stun_asyncio.stream_request(
                allocate_request(),
                address,
                ssl=context,
                server_hostname=server_hostname,
                timeout=REPLY_TIMEOUT,
            )
        assert failed.value.response.error_code == 401
        assert failed.value.response.attributes["REALM"] == coturn.realm
        assert failed.value.response.attributes["NONCE"]

    run(main)


def test_tls_certificate_is_the_fixtures(coturn: Coturn) -> None:
    """A context that does not trust ``coturn.cert`` refuses the TLS listener."""

    async def main() -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            await stun_asyncio.stream_request(
                allocate_request(), coturn.tls, ssl=ssl.create_default_context()
            )

    run(main)
    assert "BEGIN CERTIFICATE" in coturn.cert.read_text()


# -- allocations ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls", "udp6", "tcp6", "tls6"])
def test_allocate_with_long_term_credentials(coturn: Coturn, transport: Transport) -> None:
    """401, then a signed Allocate on the same socket or connection: a relayed address.

    Over ::1 the client asks for an IPv6 relay (RFC 6156's default is IPv4).
    """
    ipv6 = transport.endswith("6")
    family = {"REQUESTED-ADDRESS-FAMILY": 0x02} if ipv6 else {}

    async def main() -> None:
        async with Session(coturn, transport) as session:
            response = await session.allocate(**family)
            assert response.message_class == Class.RESPONSE
            relayed_host, relayed_port = response.attributes["XOR-RELAYED-ADDRESS"]
            assert relayed_host == ("::1" if ipv6 else "127.0.0.1")
            low, high = coturn.relay_ports
            assert low <= relayed_port <= high
            assert response.attributes["XOR-MAPPED-ADDRESS"] == session.local
            assert 0 < response.attributes["LIFETIME"] <= 600

    run(main)


def test_allocate_with_a_wrong_password_is_401(coturn: Coturn) -> None:
    async def main() -> None:
        async with Session(coturn, "udp") as session:
            realm, nonce = await session.challenge()
            key = long_term_key(coturn.username, realm, coturn.password + "x")
            with pytest.raises(TransactionFailed) as failed:
                await session.request(sign(allocate_request(), coturn.username, realm, nonce, key))
            assert failed.value.response.error_code == 401

    run(main)


def test_nonce_from_another_socket_is_438(coturn: Coturn) -> None:
    """coturn keeps the nonce per session: a TURN client must not switch sockets."""

    async def main() -> None:
        async with Session(coturn, "udp") as first:
            realm, nonce = await first.challenge()
        key = long_term_key(coturn.username, realm, coturn.password)
        async with Session(coturn, "udp") as second:
            with pytest.raises(TransactionFailed) as failed:
                await second.request(sign(allocate_request(), coturn.username, realm, nonce, key))
        assert failed.value.response.error_code == 438
        assert failed.value.response.attributes["NONCE"] != nonce

    run(main)


def test_only_loopback_peers_are_permitted(coturn: Coturn) -> None:
    """--allowed-peer-ip 127.0.0.0/8 before --denied-peer-ip everything: 403 elsewhere."""

    def create_permission(peer: str) -> Message:
        return Message(
            Method.CREATE_PERMISSION, Class.REQUEST, attributes={"XOR-PEER-ADDRESS": (peer, 9)}
        )

    async def main() -> None:
        async with Session(coturn, "udp") as session:
            await session.allocate()
            ok = await session.request(session.signed(create_permission("127.0.0.1")), session.key)
            assert ok.message_class == Class.RESPONSE
            for peer in ("192.0.2.1", "10.0.0.1"):
                with pytest.raises(TransactionFailed) as failed:
                    await session.request(session.signed(create_permission(peer)), session.key)
                assert failed.value.response.error_code == 403, peer

    run(main)


# -- the factory ----------------------------------------------------------------------------


def test_stale_nonce_is_438(coturn_factory: CoturnFactory) -> None:
    """With ``stale_nonce=1`` a Refresh gets 438 once the nonce is over a second old.

    The nonce is accepted at first; then Refreshes are sent until the 438 (coturn counts
    whole seconds on a coarse clock); the new nonce it carries is accepted again.
    """
    server = coturn_factory(stale_nonce=1)
    assert server.stale_nonce == 1
    assert "--stale-nonce=1" in server.argv

    def refresh() -> Message:
        return Message(Method.REFRESH, Class.REQUEST, attributes={"LIFETIME": 600})

    async def main() -> None:
        async with Session(server, "udp") as session:
            await session.allocate()
            issued = time.monotonic()
            fresh = await session.request(session.signed(refresh()), session.key)
            assert fresh.message_class == Class.RESPONSE  # the nonce is not stale yet
            while True:
                await asyncio.sleep(0.25)
                try:
                    await session.request(session.signed(refresh()), session.key)
                except TransactionFailed as exc:
                    response = exc.response
                    break
                assert time.monotonic() - issued < 5, "no 438 within 5 s"
            assert time.monotonic() - issued >= 0.9
            assert response.error_code == 438, response
            assert response.attributes["NONCE"] != session.nonce
            session.nonce = response.attributes["NONCE"]
            again = await session.request(session.signed(refresh()), session.key)
            assert again.message_class == Class.RESPONSE

    run(main)


class Peer(asyncio.DatagramProtocol):
    """A UDP peer on loopback that records what reaches it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))


def test_relay_and_permission_lifetime(coturn_factory: CoturnFactory) -> None:
    """A Send indication reaches a loopback peer from the relayed address; once the
    permission (``permission_lifetime=1``) has expired, one does not."""
    server = coturn_factory(permission_lifetime=1)
    assert "--permission-lifetime=1" in server.argv

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
        try:
            name = transport.get_extra_info("sockname")
            peer_address: Address = (name[0], name[1])

            def send(data: bytes) -> Message:
                return Message(
                    Method.SEND,
                    Class.INDICATION,
                    attributes={"XOR-PEER-ADDRESS": peer_address, "DATA": data},
                )

            async with Session(server, "udp") as session:
                allocation = await session.allocate()
                relayed = allocation.attributes["XOR-RELAYED-ADDRESS"]
                permission = Message(
                    Method.CREATE_PERMISSION,
                    Class.REQUEST,
                    attributes={"XOR-PEER-ADDRESS": peer_address},
                )
                await session.request(session.signed(permission), session.key)
                granted = time.monotonic()
                assert session.client is not None
                session.client.send(send(b"first"), session.address)
                data, source = await asyncio.wait_for(peer.received.get(), REPLY_TIMEOUT)
                assert (data, source) == (b"first", relayed)
                # No traffic until coturn logs the expiry (it counts whole seconds; traffic
                # every 0.25 s was seen to keep the permission alive).
                deleted = f"peer {peer_address[0]} deleted"
                while deleted not in server.read_log():
                    assert time.monotonic() - granted < 5, "the permission did not expire in 5 s"
                    await asyncio.sleep(0.1)
                assert time.monotonic() - granted >= 0.9
                session.client.send(send(b"late"), session.address)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(peer.received.get(), 0.5)
        finally:
            transport.close()

    run(main)


def test_start_that_cannot_bind_fails_and_leaves_no_process(
    coturn_factory: CoturnFactory, tmp_path: Path
) -> None:
    """A taken listening port: every attempt is stopped and the start fails with the log."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(pytest.fail.Exception, match="a port is taken"):
            coturn_factory(extra_args=["--listening-port", str(port)])
    mine = [
        cmdline
        for cmdline in (path.read_bytes() for path in Path("/proc").glob("[0-9]*/cmdline"))
        if str(tmp_path).encode() in cmdline
    ]
    assert not mine, mine


def test_rest_api_shared_secret(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(auth_secret="rest-secret")
    assert server.auth_secret == "rest-secret"
    assert re.fullmatch(r"\d+:aioice", server.username), server.username
    assert int(server.username.split(":")[0]) > time.time()

    async def main() -> None:
        async with Session(server, "udp") as session:
            response = await session.allocate()
            assert response.attributes["XOR-RELAYED-ADDRESS"][0] == "127.0.0.1"
        # A static long-term user is not accepted when the shared secret is on (on a new
        # socket: this one has an allocation, a second Allocate would be a 437).
        async with Session(server, "udp") as session:
            realm, nonce = await session.challenge()
            key = long_term_key("aioice", realm, "coturn-password")
            with pytest.raises(TransactionFailed) as failed:
                await session.request(sign(allocate_request(), "aioice", realm, nonce, key))
            assert failed.value.response.error_code == 401

    run(main)


def test_stop_terminates_the_process(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory()
    assert Path(f"/proc/{server.pid}").exists()
    coturn_factory.stop(server)
    assert not Path(f"/proc/{server.pid}").exists()

    async def main() -> None:
        with pytest.raises(TransactionTimeout):
            await stun_asyncio.request(
                Message(Method.BINDING, Class.REQUEST), server.udp, config=FAST
            )

    run(main)


# -- the network rule ------------------------------------------------------------------------


def _decode_address(hex_address: str) -> tuple[str, int]:
    """A ``/proc/net/{tcp,udp}[6]`` local address: host-order 32-bit words, then the port."""
    host, port = hex_address.split(":")
    raw = b"".join(bytes.fromhex(host[i : i + 8])[::-1] for i in range(0, len(host), 8))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def process_sockets(pid: int) -> list[tuple[str, str, int]]:
    """``(protocol, local host, local port)`` of every inet socket ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    sockets = []
    for protocol in ("tcp", "udp", "tcp6", "udp6"):
        lines = Path(f"/proc/{pid}/net/{protocol}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                sockets.append((protocol, *_decode_address(fields[1])))
    return sockets


def test_coturn_listens_on_loopback_only(coturn: Coturn) -> None:
    sockets = process_sockets(coturn.pid)
    expected = {("udp", *coturn.udp), ("tcp", *coturn.tcp), ("tcp", *coturn.tls)}
    if coturn.udp6 is not None and coturn.tls6 is not None:
        expected |= {("udp6", *coturn.udp6), ("tcp6", *coturn.udp6), ("tcp6", *coturn.tls6)}
    assert expected <= set(sockets), sockets
    elsewhere = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
    assert not elsewhere, f"coturn sockets off loopback: {elsewhere}\n{coturn.argv}"
