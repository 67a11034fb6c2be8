"""The asyncio adapters of aioice.stun on real loopback sockets (127.0.0.1, 127.0.0.2, ::1).

Each test runs its own event loop with ``asyncio.run`` under a timeout guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from aioice import stun
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    NatDiscoveryError,
    StreamFramer,
    StunServer,
    TransactionConfig,
    TransactionFailed,
    TransactionTimeout,
    parse_message,
)
from aioice.stun import asyncio as stun_asyncio

T = TypeVar("T")

GUARD = 10.0  # seconds: no test may take longer than this
FAST = TransactionConfig(rto=0.01, retransmissions=1, rm=2)  # sends at 0, 0.01; ends at 0.03


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a new event loop, cancelling it if it takes longer than GUARD.

    (No wrapper task, so that ``main`` can check it is the only task left.)
    """

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        guard = asyncio.get_running_loop().call_later(GUARD, task.cancel)
        try:
            return await main()
        finally:
            guard.cancel()

    return asyncio.run(guarded())


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


LOOPBACKS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not ipv6_available(), reason="::1 is not available")
    ),
]


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # Unclosed transports warn (ResourceWarning, an error here) when collected.
    yield
    gc.collect()


def closed_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def binding() -> Message:
    return Message(Method.BINDING, Class.REQUEST)


def sockname(client: stun_asyncio.StunClientProtocol) -> Address:
    assert client.transport is not None
    name = client.transport.get_extra_info("sockname")
    return (name[0], name[1])


def live_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    # The loop's heap of call_at handles (private, but the point is to see leaks).
    scheduled: list[asyncio.TimerHandle] = getattr(loop, "_scheduled", [])
    return [handle for handle in scheduled if not handle.cancelled()]


class TrackTransports:
    """Record the datagram transports a loop creates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        original = loop.create_datagram_endpoint

        async def create_datagram_endpoint(*args: Any, **kwargs: Any) -> Any:
            transport, protocol = await original(*args, **kwargs)
            self.transports.append(transport)
            return transport, protocol

        monkeypatch.setattr(loop, "create_datagram_endpoint", create_datagram_endpoint)

    def all_closed(self) -> bool:
        return all(t.is_closing() for t in self.transports)


# -- UDP client and server --------------------------------------------------------------------


@pytest.mark.parametrize("host", LOOPBACKS)
def test_serve_and_request(host: str) -> None:
    async def main() -> None:
        async with await stun_asyncio.serve((host, 0), software="test server") as runner:
            [server] = runner.addresses
            assert server[0] == host
            assert server[1] != 0
            client = await stun_asyncio.create_client((host, 0))
            try:
                response, remote = await client.request(binding(), server)
                assert remote == server
                assert response.message_class == Class.RESPONSE
                assert response.attributes["XOR-MAPPED-ADDRESS"] == sockname(client)
                assert response.attributes["RESPONSE-ORIGIN"] == server
                assert response.attributes["SOFTWARE"] == "test server"
            finally:
                client.close()
                await client.wait_closed()
            # The one-shot helper, on a socket of its own.
            response, remote = await stun_asyncio.request(binding(), server, local_addr=(host, 0))
            assert remote == server
            assert response.attributes["XOR-MAPPED-ADDRESS"][0] == host
            assert runner.server.stats.requests == 2

    run(main)


def test_request_picks_the_family_of_the_server() -> None:
    # request() without local_addr binds a wildcard of the server's family; the
    # request itself only travels over loopback.
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as runner:
            response, _ = await stun_asyncio.request(binding(), runner.addresses[0])
            assert response.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"

    run(main)


def test_concurrent_requests_on_one_client() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as runner:
            server = runner.addresses[0]
            client = await stun_asyncio.create_client(("127.0.0.1", 0))
            try:
                requests = [binding() for _ in range(8)]
                results = await asyncio.gather(*(client.request(r, server) for r in requests))
                for request, (response, remote) in zip(requests, results, strict=True):
                    assert response.transaction_id == request.transaction_id
                    assert remote == server
                    assert response.attributes["XOR-MAPPED-ADDRESS"] == sockname(client)
                assert runner.server.stats.requests == 8
                assert client.dropped == 0
                # One that times out alongside ones that succeed.
                lost = ("127.0.0.1", closed_udp_port())
                outcomes = await asyncio.gather(
                    client.request(binding(), lost, config=FAST),
                    client.request(binding(), server),
                    return_exceptions=True,
                )
                assert isinstance(outcomes[0], TransactionTimeout)
                assert isinstance(outcomes[1], tuple)
            finally:
                client.close()
                await client.wait_closed()

    run(main)


def test_duplicate_transaction_id_is_refused() -> None:
    async def main() -> None:
        client = await stun_asyncio.create_client(("127.0.0.1", 0))
        try:
            message = binding()
            lost = ("127.0.0.1", closed_udp_port())
            first = asyncio.ensure_future(client.request(message, lost, config=FAST))
            await asyncio.sleep(0)
            with pytest.raises(ValueError, match="already running"):
                await client.request(message, lost)
            with pytest.raises(TransactionTimeout):
                await first
        finally:
            client.close()
            await client.wait_closed()

    run(main)


def test_timeout_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        tracker = TrackTransports(monkeypatch, loop)
        timers_before = live_timers(loop)
        server = ("127.0.0.1", closed_udp_port())
        start = loop.time()
        with pytest.raises(TransactionTimeout):
            await stun_asyncio.request(binding(), server, local_addr=("127.0.0.1", 0), config=FAST)
        assert loop.time() - start >= 0.03
        assert len(tracker.transports) == 1
        assert tracker.all_closed()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert live_timers(loop) == timers_before

    run(main)


def test_patched_tunables_apply_to_the_next_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stun, "RETRY_MAX", 1)
    monkeypatch.setattr(stun, "RETRY_RTO", 0.01)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransactionTimeout):
            await stun_asyncio.request(
                binding(), ("127.0.0.1", closed_udp_port()), local_addr=("127.0.0.1", 0)
            )
        # Sends at 0 and 0.01, then Rm (16) x 0.01: 0.17 s, not the default 39.5 s.
        elapsed = loop.time() - start
        assert 0.17 <= elapsed < 5.0

    run(main)


def test_cancelling_a_request_forgets_its_transaction() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = await stun_asyncio.create_client(("127.0.0.1", 0))
        try:
            timers_before = live_timers(loop)
            lost = ("127.0.0.1", closed_udp_port())
            message = binding()
            task = asyncio.ensure_future(client.request(message, lost))
            await asyncio.sleep(0)
            assert len(live_timers(loop)) == len(timers_before) + 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The retransmission timer is gone, and the ID can be used again.
            assert live_timers(loop) == timers_before
            with pytest.raises(TransactionTimeout):
                await client.request(message, lost, config=FAST)
        finally:
            client.close()
            await client.wait_closed()

    run(main)


def test_closing_the_client_fails_pending_requests() -> None:
    async def main() -> None:
        client = await stun_asyncio.create_client(("127.0.0.1", 0))
        lost = ("127.0.0.1", closed_udp_port())
        pending = [asyncio.ensure_future(client.request(binding(), lost)) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(p.done() for p in pending)
        client.close()
        for future in pending:
            with pytest.raises(ConnectionError, match="closed"):
                await future
        await client.wait_closed()
        assert client.transport is None
        with pytest.raises(ConnectionError, match="not open"):
            await client.request(binding(), lost)
        with pytest.raises(ConnectionError, match="not open"):
            client.send(binding(), lost)
        client.close()  # idempotent
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(main)


def test_client_routes_other_messages() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()
        data: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        receiver = await stun_asyncio.create_client(
            ("127.0.0.1", 0),
            on_message=lambda m, a: messages.put_nowait((m, a)),
            on_data=lambda d, a: data.put_nowait((d, a)),
        )
        plain = await stun_asyncio.create_client(("127.0.0.1", 0))
        sender = await stun_asyncio.create_client(("127.0.0.1", 0))
        try:
            indication = Message(Method.BINDING, Class.INDICATION)
            stray = Message(Method.BINDING, Class.RESPONSE)
            for target in (receiver, plain):
                sender.send(stray, sockname(target))  # response to no transaction
                assert sender.transport is not None
                sender.transport.sendto(b"\x00\x01junk", sockname(target))  # malformed
                sender.transport.sendto(b"\x80\x00rtp", sockname(target))  # not STUN
                sender.send(indication, sockname(target))
            message, remote = await messages.get()
            assert message == indication
            assert remote == sockname(sender)
            assert await data.get() == (b"\x80\x00rtp", sockname(sender))
            assert receiver.dropped == 2
            # ``plain`` has no callbacks: all but the indication are dropped.
            for _ in range(100):
                if plain.dropped == 3:
                    break
                await asyncio.sleep(0.001)
            assert plain.dropped == 3
            assert loop.is_running()
        finally:
            for client in (receiver, plain, sender):
                client.close()
                await client.wait_closed()

    run(main)


def test_error_response_over_udp() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as runner:
            request = Message(Method.ALLOCATE, Class.REQUEST)
            with pytest.raises(TransactionFailed) as info:
                await stun_asyncio.request(
                    request, runner.addresses[0], local_addr=("127.0.0.1", 0)
                )
            assert info.value.response.error_code == 400
            assert runner.server.stats.errors_sent == 1

    run(main)


# -- TCP and TLS ------------------------------------------------------------------------------


def test_serve_tcp_and_stream_request() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0), tcp=True) as runner:
            server = runner.addresses[0]
            response, remote = await stun_asyncio.stream_request(binding(), server)
            assert remote == server
            mapped = response.attributes["XOR-MAPPED-ADDRESS"]
            assert mapped[0] == "127.0.0.1"
            assert mapped[1] != 0
            assert response.attributes["RESPONSE-ORIGIN"] == server
            # Several requests, one connection each.
            results = await asyncio.gather(
                *(stun_asyncio.stream_request(binding(), server) for _ in range(4))
            )
            assert len({r.attributes["XOR-MAPPED-ADDRESS"] for r, _ in results}) == 4
            assert runner.server.stats.requests == 5
            # UDP still works on the same port.
            response, _ = await stun_asyncio.request(binding(), server, local_addr=("127.0.0.1", 0))
            assert response.message_class == Class.RESPONSE

    run(main)


def test_close_ends_open_tcp_connections_quietly() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        runner = await stun_asyncio.serve(("127.0.0.1", 0), tcp=True)
        connections = [await asyncio.open_connection(*runner.addresses[0]) for _ in range(3)]
        # A complete request on each, so the server side is known to be running.
        for reader, writer in connections:
            writer.write(bytes(binding()))
            header = await reader.readexactly(20)
            body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
            assert parse_message(header + body).message_class == Class.RESPONSE
        await runner.close()
        for reader, writer in connections:
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
        assert errors == []
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(main)


def test_tcp_on_a_wildcard_core_answers_on_the_stream() -> None:
    # A server listening on 0.0.0.0 sees connections on 127.0.0.1; the core answers
    # from its primary (0.0.0.0) address. The answer must still go down the stream.
    # Built by hand so that nothing listens beyond loopback.
    async def main() -> None:
        runner = stun_asyncio.StunServerRunner(StunServer(("0.0.0.0", 0)))
        tcp = await asyncio.start_server(runner._serve_stream, "127.0.0.1", 0)
        runner._tcp.append(tcp)
        async with runner:
            port = tcp.sockets[0].getsockname()[1]
            runner.server = StunServer(("0.0.0.0", port))
            response, _ = await stun_asyncio.stream_request(
                binding(), ("127.0.0.1", port), timeout=2.0
            )
            assert response.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"
            assert "RESPONSE-ORIGIN" not in response.attributes

    run(main)


async def silent_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, Address]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    name = server.sockets[0].getsockname()
    return server, (name[0], name[1])


def test_stream_request_timeout() -> None:
    async def main() -> None:
        finished = asyncio.Event()

        async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client goes away
            writer.close()
            await writer.wait_closed()
            finished.set()

        server, addr = await silent_server(ignore)
        async with server:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(TransactionTimeout):
                await stun_asyncio.stream_request(binding(), addr, timeout=0.05)
            assert loop.time() - start >= 0.05
            await finished.wait()

    run(main)


@pytest.mark.parametrize(
    ("reply", "match"),
    [(b"", "closed the connection"), (b"\xff" * 8, "framing lost")],
    ids=["eof", "garbage"],
)
def test_stream_request_connection_errors(reply: bytes, match: str) -> None:
    async def main() -> None:
        finished = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(20)
            writer.write(reply)
            writer.close()
            await writer.wait_closed()
            finished.set()

        server, addr = await silent_server(answer)
        async with server:
            with pytest.raises(ConnectionError, match=match):
                await stun_asyncio.stream_request(binding(), addr, timeout=2.0)
            await finished.wait()

    run(main)


def test_stream_request_skips_frames_that_are_not_stun() -> None:
    async def main() -> None:
        finished = asyncio.Event()
        core = StunServer(("127.0.0.1", 0))

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readexactly(20)
            peer = writer.get_extra_info("peername")
            core.receive_datagram(request, local=core.primary, remote=peer[:2], now=0.0)
            [transmit] = core.datagrams_to_send()
            # A well-framed message without the magic cookie, then the answer.
            writer.write(b"\x01\x01\x00\x00" + bytes(16) + transmit.data)
            await reader.read()
            writer.close()
            await writer.wait_closed()
            finished.set()

        server, addr = await silent_server(answer)
        async with server:
            response, _ = await stun_asyncio.stream_request(binding(), addr, timeout=2.0)
            assert response.message_class == Class.RESPONSE
            await finished.wait()

    run(main)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("framing", ["stun", "rfc4571"])
@pytest.mark.parametrize("server_hostname", [None, "localhost"])
def test_stream_request_over_tls(
    certificate: tuple[Path, Path],
    framing: Literal["stun", "rfc4571"],
    server_hostname: str | None,
) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        cores: list[StunServer] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            name = writer.get_extra_info("sockname")
            peer = writer.get_extra_info("peername")
            local, remote = (name[0], name[1]), (peer[0], peer[1])
            core = StunServer(local, software="tls")
            cores.append(core)
            framer = StreamFramer(framing)
            try:
                for _ in range(100):
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    for frame in framer.feed(chunk):
                        core.receive_datagram(frame, local=local, remote=remote, now=loop.time())
                        for transmit in core.datagrams_to_send():
                            writer.write(framer.frame(transmit.data))
                    await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
                finished.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        async with server:
            name = server.sockets[0].getsockname()
            addr = (name[0], name[1])
            response, remote = await stun_asyncio.stream_request(
                binding(),
                addr,
                ssl=client_context,
                server_hostname=server_hostname,
                framing=framing,
                timeout=5.0,
            )
            assert remote == addr
            assert response.attributes["SOFTWARE"] == "tls"
            assert response.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"
            await finished.wait()
            assert cores[0].stats.requests == 1

    run(main)


def test_tls_refuses_an_unknown_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        async with server:
            name = server.sockets[0].getsockname()
            # ssl=True verifies against the system store, which does not know this one.
            with pytest.raises(ssl.SSLCertVerificationError):
                await stun_asyncio.stream_request(binding(), (name[0], name[1]), ssl=True)

    run(main)


# -- RFC 5780 ---------------------------------------------------------------------------------


def test_serve_with_alternate_and_discover() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0), ("127.0.0.2", 0)) as runner:
            a1p1, a1p2, a2p1, a2p2 = runner.addresses
            assert a1p1[0] == a1p2[0] == "127.0.0.1"
            assert a2p1[0] == a2p2[0] == "127.0.0.2"
            assert a1p1[1] == a2p1[1] != a1p2[1] == a2p2[1]
            assert runner.server.alternate == a2p2
            behavior = await stun_asyncio.discover_nat_behavior(a1p1, local_addr=("127.0.0.1", 0))
            assert behavior.behind_nat is False
            assert behavior.mapping is stun.MappingBehavior.ENDPOINT_INDEPENDENT
            assert behavior.filtering is stun.FilteringBehavior.ENDPOINT_INDEPENDENT
            assert behavior.mapped_address[0] == "127.0.0.1"
            # Test I, filtering test II, mapping test II.
            assert runner.server.stats.requests == 3

    run(main)


def test_change_request_over_udp_with_alternate() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0), ("127.0.0.2", 0)) as runner:
            a1p1, a1p2, a2p1, a2p2 = runner.addresses
            client = await stun_asyncio.create_client(("127.0.0.1", 0))
            try:
                for flags, origin in ((0x04, a2p1), (0x02, a1p2), (0x06, a2p2)):
                    request = Message(
                        Method.BINDING, Class.REQUEST, None, {"CHANGE-REQUEST": flags}
                    )
                    response, remote = await client.request(request, a1p1)
                    assert remote == origin
                    assert response.attributes["RESPONSE-ORIGIN"] == origin
                    assert response.attributes["OTHER-ADDRESS"] == a2p2
            finally:
                client.close()
                await client.wait_closed()

    run(main)


def test_discover_against_a_single_address_server() -> None:
    async def main() -> None:
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as runner:
            with pytest.raises(NatDiscoveryError, match="RFC 5780"):
                await stun_asyncio.discover_nat_behavior(
                    runner.addresses[0], local_addr=("127.0.0.1", 0)
                )
            assert asyncio.all_tasks() == {asyncio.current_task()}

    run(main)


def test_discover_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        tracker = TrackTransports(monkeypatch, loop)
        start = loop.time()
        with pytest.raises(NatDiscoveryError, match="no answer"):
            await stun_asyncio.discover_nat_behavior(
                ("127.0.0.1", closed_udp_port()), local_addr=("127.0.0.1", 0), config=FAST
            )
        assert loop.time() - start >= 0.03
        assert len(tracker.transports) == 1
        assert tracker.all_closed()

    run(main)


def test_serve_on_a_busy_port_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        tracker = TrackTransports(monkeypatch, asyncio.get_running_loop())
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as runner:
            busy = runner.addresses[0]
            with pytest.raises(OSError, match="in use"):
                await stun_asyncio.serve(busy)
            with pytest.raises(OSError, match="in use"):
                await stun_asyncio.serve(busy, ("127.0.0.2", busy[1] + 1))
        assert tracker.all_closed()

    run(main)
