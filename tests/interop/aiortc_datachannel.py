"""aiortc over our aioice: run by ``tests/interop/test_aiortc.py`` with the Python of a
virtual environment that holds aiortc (from PyPI) and our four wheels, never upstream
aioice. Not a pytest module: it prints one JSON line (the last line of stdout) that the
test asserts on.

Scenarios (each in its own event loop, one after the other):

- ``datachannel``: two ``RTCPeerConnection`` in this process, offer and answer handed
  over in-process, a data channel; messages both ways, a 64 KiB message each way (SCTP
  fragmentation), integrity checked; both closed.
- ``datachannel_fast_timers``: the same with the module tunables aiortc's own tests
  patch (``aioice.ice.CONSENT_FAILURES = 1``, ``CONSENT_INTERVAL = 1``,
  ``aioice.stun.RETRY_MAX = 1``, ``RETRY_RTO = 0.1``), held idle across a few consent
  checks, then one side closed, as aiortc's "close one side" test does.
- ``ice_transport``: aiortc's ``RTCIceTransportTest`` setup (the same patched tunables)
  with ``RTCIceGatherer`` / ``RTCIceTransport`` alone: connect, connect to a stopped
  peer (fails), consent expiry after one side stops, start after stop.

Test-only network restriction: aiortc gives ``Connection`` no host addresses, so our
``Connection`` would enumerate the machine's interfaces with ifaddr and gather on real
addresses. :func:`restrict_to_loopback` wraps ``aioice.ice.connection.host_addresses``
(the name ``Connection._gather`` calls) so that gathering uses 127.0.0.1 alone, makes
interface enumeration (``SystemNet.interfaces``) an error, and takes aiortc's default
STUN server away. Every candidate, every selected pair and every ``Connection``'s
server list is then checked: only loopback is ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import aioice.ice
import aioice.stun
from aioice.ice import Connection
from aioice.ice import connection as ice_connection_module
from aioice.ice import gather as ice_gather_module
from aioice.ice.gather import AddressFilter, HostNet, SystemNet
from aiortc import (  # type: ignore[import-not-found]
    RTCConfiguration,
    RTCPeerConnection,
)
from aiortc.exceptions import InvalidStateError  # type: ignore[import-not-found]
from aiortc.rtcicetransport import (  # type: ignore[import-not-found]
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
)

LOOPBACK = "127.0.0.1"
MESSAGES = 100
BIG_SIZE = 64 * 1024
IDLE = 4.0
"Seconds the fast-timer connection stays idle: four consent intervals of 1 s."
STEP_TIMEOUT = 15.0
"Seconds any one step (connect, a message, close) may take."

FAST_TIMERS = {
    ("aioice.ice", "CONSENT_FAILURES"): 1,
    ("aioice.ice", "CONSENT_INTERVAL"): 1,
    ("aioice.stun", "RETRY_MAX"): 1,
    ("aioice.stun", "RETRY_RTO"): 0.1,
}
"What aiortc's RTCIceTransportTest.setUp patches."

MODULES = {"aioice.ice": aioice.ice, "aioice.stun": aioice.stun}

# -- the loopback-only restriction (test-only) --------------------------------------------

CONNECTIONS: list[Connection] = []
"Every Connection aiortc created, to check after each scenario."


def restrict_to_loopback() -> None:
    """Gather on 127.0.0.1 only, never enumerate interfaces, never a default STUN server."""
    original = ice_gather_module.host_addresses
    # The hook: Connection._gather calls the name it imported from .gather.
    hook = getattr(ice_connection_module, "host_addresses", None)
    assert id(hook) == id(original), "aioice.ice.connection.host_addresses: not the hook"

    def loopback_host_addresses(
        net: HostNet,
        *,
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        explicit: Iterable[str] | None = None,
        address_filter: AddressFilter | None = None,
    ) -> list[str]:
        return original(
            net,
            use_ipv4=use_ipv4,
            use_ipv6=use_ipv6,
            explicit=[LOOPBACK] if explicit is None else explicit,
            address_filter=address_filter,
        )

    def no_interfaces(self: SystemNet) -> list[tuple[str, list[str]]]:
        raise AssertionError("test-only restriction: interfaces must not be enumerated")

    ice_connection_module.host_addresses = loopback_host_addresses  # type: ignore[attr-defined]
    SystemNet.interfaces = no_interfaces  # type: ignore[method-assign]

    def no_default_servers(cls: type[Any]) -> list[Any]:
        return []

    RTCIceGatherer.getDefaultIceServers = classmethod(no_default_servers)

    init = Connection.__init__

    def recording_init(self: Connection, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        CONNECTIONS.append(self)

    Connection.__init__ = recording_init  # type: ignore[method-assign]


def loopback_problems() -> list[str]:
    """What, in the Connections created so far, is not on loopback (nothing, we hope)."""
    problems: list[str] = []
    for index, conn in enumerate(CONNECTIONS):
        if conn.stun_servers or conn.turn_servers:
            problems.append(f"connection {index}: servers {conn.stun_servers} {conn.turn_servers}")
        for candidate in conn.local_candidates + conn.remote_candidates:
            if candidate.host != LOOPBACK:
                problems.append(f"connection {index}: candidate {candidate.to_sdp()}")
        for component in (1, 2):
            pair = conn.get_selected_pair(component)
            if pair is not None and (pair.local.host, pair.remote.host) != (LOOPBACK, LOOPBACK):
                problems.append(f"connection {index}: selected pair {describe_pair(conn)}")
    return problems


def describe_pair(conn: Connection) -> dict[str, Any] | None:
    pair = conn.selected_pair
    if pair is None:
        return None
    return {
        "local": [pair.local.host, pair.local.port, pair.local.type],
        "remote": [pair.remote.host, pair.remote.port, pair.remote.type],
        "rtt": pair.stats.rtt,
        "requests_sent": pair.stats.requests_sent,
        "responses_received": pair.stats.responses_received,
    }


def sdp_candidates(sdp: str) -> list[str]:
    return [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]


@contextlib.contextmanager
def patched(values: dict[tuple[str, str], float]) -> Iterator[None]:
    saved = {key: getattr(MODULES[key[0]], key[1]) for key in values}
    for (module, name), value in values.items():
        setattr(MODULES[module], name, value)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(MODULES[module], name, value)


# -- problems the event loop and the loggers saw ------------------------------------------


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.levelname}: {record.getMessage()}")


async def wait_for(awaitable: Awaitable[Any], what: str, timeout: float = STEP_TIMEOUT) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out ({timeout} s): {what}") from None


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def ice_connection(pc: Any) -> Connection:
    """The aioice Connection under a peer connection's data channel transport."""
    conn = pc.sctp.transport.transport._connection
    assert isinstance(conn, Connection), type(conn)
    return conn


# -- scenarios ------------------------------------------------------------------------------


async def datachannel(*, idle: float = 0.0, close_one_side: bool = False) -> dict[str, Any]:
    config = RTCConfiguration(iceServers=[])
    pc1 = RTCPeerConnection(configuration=config)
    pc2 = RTCPeerConnection(configuration=config)
    peers = {"pc1": pc1, "pc2": pc2}
    timeline: dict[str, list[str]] = {}
    connection_states: dict[str, list[str]] = {}
    completed = {name: asyncio.Event() for name in peers}
    failed_at: dict[str, float] = {}
    start = time.monotonic()
    for name, pc in peers.items():
        timeline[name] = [pc.iceConnectionState]
        connection_states[name] = [pc.connectionState]

        def on_ice(name: str = name, pc: Any = pc) -> None:
            timeline[name].append(pc.iceConnectionState)
            if pc.iceConnectionState == "completed":
                completed[name].set()
            if pc.iceConnectionState == "failed":
                failed_at.setdefault(name, round(time.monotonic() - start, 4))

        def on_connection(name: str = name, pc: Any = pc) -> None:
            connection_states[name].append(pc.connectionState)

        pc.on("iceconnectionstatechange", on_ice)
        pc.on("connectionstatechange", on_connection)

    received: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in peers}
    dc1 = pc1.createDataChannel("interop")
    dc1.on("message", received["pc1"].put_nowait)
    opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_datachannel(channel: Any) -> None:
        channel.on("message", received["pc2"].put_nowait)
        if not opened.done():
            opened.set_result(channel)

    pc2.on("datachannel", on_datachannel)

    await pc1.setLocalDescription(await pc1.createOffer())
    await pc2.setRemoteDescription(pc1.localDescription)
    await pc2.setLocalDescription(await pc2.createAnswer())
    await pc1.setRemoteDescription(pc2.localDescription)
    signalled = time.monotonic() - start
    candidates = {
        "pc1": sdp_candidates(pc1.localDescription.sdp),
        "pc2": sdp_candidates(pc2.localDescription.sdp),
    }

    await wait_for(asyncio.gather(*(e.wait() for e in completed.values())), "ICE completed")
    ice_done = time.monotonic() - start
    dc2 = await wait_for(opened, "data channel at pc2")
    await wait_until(lambda: dc1.readyState == "open", STEP_TIMEOUT)
    open_done = time.monotonic() - start
    pairs = {name: describe_pair(ice_connection(pc)) for name, pc in peers.items()}

    async def exchange(tag: str) -> dict[str, Any]:
        """MESSAGES small messages and one BIG_SIZE message each way, then compare."""
        rng = random.Random(tag)
        sent: dict[str, list[bytes]] = {"pc1": [], "pc2": []}
        for i in range(MESSAGES):
            for sender, channel in (("pc1", dc1), ("pc2", dc2)):
                data = f"{tag} {sender} {i} ".encode() + rng.randbytes(rng.randrange(1, 1200))
                sent[sender].append(data)
                channel.send(data)
        for sender, channel in (("pc1", dc1), ("pc2", dc2)):
            data = rng.randbytes(BIG_SIZE)
            sent[sender].append(data)
            channel.send(data)
        result: dict[str, Any] = {}
        for sender, receiver in (("pc1", "pc2"), ("pc2", "pc1")):
            got = []
            for _ in sent[sender]:
                got.append(await wait_for(received[receiver].get(), f"{tag}: {receiver} recv"))
            result[f"{sender}_to_{receiver}"] = {
                "sent": len(sent[sender]),
                "received": len(got),
                "in_order_and_intact": got == sent[sender],
                "big_sha256_ok": hashlib.sha256(got[-1]).digest()
                == hashlib.sha256(sent[sender][-1]).digest(),
                "bytes": sum(len(m) for m in got),
            }
        return result

    traffic_start = time.monotonic()
    exchanges = {"first": await exchange("first")}
    traffic_time = time.monotonic() - traffic_start
    stats = {name: describe_pair(ice_connection(pc)) for name, pc in peers.items()}
    survived_idle: bool | None = None
    if idle:
        # Idle across several consent checks: on loopback consent must hold.
        await asyncio.sleep(idle)
        survived_idle = all(pc.connectionState == "connected" for pc in peers.values())
        if survived_idle:
            exchanges["after_idle"] = await exchange("after-idle")

    closed_by_peer: bool | None = None
    if close_one_side and survived_idle is not False:
        # As aiortc's test: closing one side shuts the other down (SCTP ABORT, DTLS alert).
        await wait_for(pc1.close(), "pc1.close()")
        closed_by_peer = await wait_until(lambda: pc2.connectionState == "closed", 5.0)
        await wait_for(pc2.close(), "pc2.close()")
    else:
        await wait_for(pc1.close(), "pc1.close()")
        await wait_for(pc2.close(), "pc2.close()")

    return {
        "connected": all(e.is_set() for e in completed.values()),
        "time_to_signal_s": round(signalled, 4),
        "time_to_ice_completed_s": round(ice_done, 4),
        "time_to_datachannel_open_s": round(open_done, 4),
        "traffic_time_s": round(traffic_time, 4),
        "ice_connection_states": timeline,
        "connection_states": connection_states,
        "candidates": candidates,
        "selected_pairs": pairs,
        "pair_stats_before_close": stats,
        "exchanges": exchanges,
        "idle_s": idle,
        "survived_idle": survived_idle,
        "ice_failed_at_s": failed_at,
        "closed_by_peer": closed_by_peer,
        "final_states": {
            name: [pc.iceConnectionState, pc.connectionState, pc.signalingState]
            for name, pc in peers.items()
        },
    }


async def ice_transport() -> dict[str, Any]:
    """aiortc's RTCIceTransportTest cases, with its patched timers, without STUN servers."""

    def pair() -> tuple[Any, Any, Any, Any]:
        gatherer_1 = RTCIceGatherer(iceServers=[])
        gatherer_2 = RTCIceGatherer(iceServers=[])
        return gatherer_1, RTCIceTransport(gatherer_1), gatherer_2, RTCIceTransport(gatherer_2)

    async def exchange(g1: Any, t1: Any, g2: Any, t2: Any) -> None:
        await asyncio.gather(g1.gather(), g2.gather())
        for candidate in g2.getLocalCandidates():
            await t1.addRemoteCandidate(candidate)
        await t1.addRemoteCandidate(None)
        for candidate in g1.getLocalCandidates():
            await t2.addRemoteCandidate(candidate)
        await t2.addRemoteCandidate(None)

    def track(transport: Any) -> list[str]:
        states = [transport.state]
        transport.on("statechange", lambda: states.append(transport.state))
        return states

    result: dict[str, Any] = {}

    # test_connect
    g1, t1, g2, t2 = pair()
    await exchange(g1, t1, g2, t2)
    start = time.monotonic()
    await wait_for(
        asyncio.gather(t1.start(g2.getLocalParameters()), t2.start(g1.getLocalParameters())),
        "RTCIceTransport.start",
    )
    result["connect"] = {
        "states": [t1.state, t2.state],
        "roles": [t1.role, t2.role],
        "time_s": round(time.monotonic() - start, 4),
        "selected_pair": describe_pair(t1._connection),
    }
    await asyncio.gather(t1.stop(), t2.stop())
    result["connect"]["closed"] = [t1.state, t2.state]

    # test_connect_fail: the peer is stopped before the checks start
    g1, t1, g2, t2 = pair()
    await exchange(g1, t1, g2, t2)
    await t2.stop()
    start = time.monotonic()
    await wait_for(t1.start(g2.getLocalParameters()), "start against a stopped peer", 30)
    result["connect_fail"] = {
        "states": [t1.state, t2.state],
        "time_s": round(time.monotonic() - start, 4),
    }
    await asyncio.gather(t1.stop(), t2.stop())
    result["connect_fail"]["closed"] = [t1.state, t2.state]

    # test_connect_then_consent_expires: one side stops, the other loses consent
    g1, t1, g2, t2 = pair()
    states_2 = track(t2)
    await exchange(g1, t1, g2, t2)
    await wait_for(
        asyncio.gather(t1.start(g2.getLocalParameters()), t2.start(g1.getLocalParameters())),
        "RTCIceTransport.start",
    )
    await t1.stop()
    start = time.monotonic()
    failed = await wait_until(lambda: t2.state == "failed", 5.0)
    result["consent_expires"] = {
        "failed": failed,
        "time_to_failed_s": round(time.monotonic() - start, 4),
    }
    await t2.stop()
    result["consent_expires"]["states"] = states_2

    # test_connect_when_closed
    gatherer = RTCIceGatherer(iceServers=[])
    transport = RTCIceTransport(gatherer)
    await transport.stop()
    try:
        await transport.start(RTCIceParameters(usernameFragment="foo", password="bar"))
    except InvalidStateError as exc:
        result["start_when_closed"] = str(exc)
    else:
        result["start_when_closed"] = None
    return result


def run(scenario: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """One scenario in a loop of its own, with what the loop and the loggers complained of."""
    CONNECTIONS.clear()
    collector = Collector()
    logging.getLogger().addHandler(collector)
    loop_errors: list[str] = []
    leftover: list[str] = []

    async def main() -> dict[str, Any]:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: loop_errors.append(
                str(context.get("message")) + f": {context.get('exception')!r}"
            )
        )
        result = await scenario()
        await asyncio.sleep(0.2)  # let closing tasks finish
        current = asyncio.current_task()
        leftover.extend(repr(t.get_coro()) for t in asyncio.all_tasks() if t is not current)
        return result

    try:
        result = asyncio.run(main())
        result["ok"] = True
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        logging.getLogger().removeHandler(collector)
    result["loopback_problems"] = loopback_problems()
    result["connections"] = len(CONNECTIONS)
    result["loop_errors"] = loop_errors
    result["log_warnings"] = collector.records
    result["leftover_tasks"] = leftover
    return result


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    restrict_to_loopback()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("aiortc", "aioice", "aioice-stun", "aioice-turn", "aioice-mdns")
        },
        "aioice_file": aioice.ice.__file__,
        "ours": hasattr(aioice.ice, "IceAgent"),
    }
    report["datachannel"] = run(datachannel)
    with patched(FAST_TIMERS):
        report["datachannel_fast_timers"] = run(lambda: datachannel(idle=IDLE, close_one_side=True))
        report["ice_transport"] = run(ice_transport)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
