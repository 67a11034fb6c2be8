"""Our agent (in-process) against upstream aioice 0.13.0 from PyPI, and upstream against
itself as a baseline measured in the same run.

Upstream shares our import name, so it only runs in a venv of its own (the
``upstream_python`` fixture: ``bench/.upstream-venv``), as ``python -I`` running
``peers/aioice_peer.py``, driven over JSON lines (``protocol.md``). Candidates travel as
each implementation's own ``to_sdp()`` lines and are parsed by the other's ``from_sdp()``.

The matrix, each case on one host address of both sides:

- ``host-ipv4`` (127.0.0.1), ``host-ipv6`` (::1, skipped when unusable): host candidates;
- ``relay-udp``, ``relay-tcp``, ``relay-tls``: both sides ``--relay-only`` through the
  ``coturn`` fixture; for TLS both verify coturn's certificate (``SSL_CERT_FILE``);

ours controlling and upstream controlling, then upstream against upstream. Each case
connects, sends a datagram each way (we send and the peer echoes; the peer sends and we
receive), checks the selected pair's types on both sides and records each side's connect
time (``connect()`` until it returns). The times are printed as a table when the module
ends (visible with ``-s``); with ``AIOICE_WRITE_DOCS=1`` it goes to ``docs/interop-upstream.md``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from aioice import Candidate, Connection, TransportPolicy

from tests.conftest import (
    PEERS,
    Coturn,
    Peer,
    PeerError,
    ipv6_loopback_usable,
    report_results,
    upstream_env,
)

CONNECT_TIMEOUT = 10.0
"Seconds each side's ``connect()`` gets (loopback: tens of milliseconds are expected)."
DATA_TIMEOUT = 5.0
"Seconds a datagram gets to arrive."


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    host: str
    "The only host address either side gathers on."
    relay: Literal["udp", "tcp", "tls"] | None = None
    "TURN transport to coturn, both sides relay-only; ``None``: host candidates."

    @property
    def pair(self) -> str:
        """The selected pair's ``local/remote`` candidate types expected on each side."""
        kind = "relay" if self.relay else "host"
        return f"{kind}/{kind}"


CASES = [
    Case("host-ipv4", "127.0.0.1"),
    Case("host-ipv6", "::1"),
    Case("relay-udp", "127.0.0.1", "udp"),
    Case("relay-tcp", "127.0.0.1", "tcp"),
    Case("relay-tls", "127.0.0.1", "tls"),
]


@dataclasses.dataclass
class Result:
    matchup: Literal["ours-upstream", "upstream-upstream"]
    case: str
    controlling: Literal["ours", "upstream"]
    pairs: dict[str, str]
    "Side (``ours``, ``upstream``; ``controlling``, ``controlled``) -> ``local/remote`` types."
    connect_ms: dict[str, float]
    "Side -> milliseconds its ``connect()`` took."


RESULTS: list[Result] = []


def _cell(result: Result | None, first: str, second: str) -> str:
    if result is None:
        return "-"
    return f"{result.connect_ms[first]:7.1f} / {result.connect_ms[second]:7.1f}"


def table(results: list[Result]) -> str:
    """One line per case: connect times (ms) of both sides, for each matchup."""
    found = {(r.matchup, r.case, r.controlling): r for r in results}
    lines = [
        "connect ms (each side's connect() until it returns) against upstream aioice 0.13.0",
        f"{'case':<10} {'pair':<12} {'ours ctl: ours / upstream':>26}"
        f" {'upstream ctl: ours / upstream':>30} {'upstream-upstream: ctl / ctd':>30}",
    ]
    for case in CASES:
        ours = found.get(("ours-upstream", case.name, "ours"))
        theirs = found.get(("ours-upstream", case.name, "upstream"))
        baseline = found.get(("upstream-upstream", case.name, "upstream"))
        if ours is theirs is baseline is None:
            continue
        lines.append(
            f"{case.name:<10} {case.pair:<12} {_cell(ours, 'ours', 'upstream'):>26}"
            f" {_cell(theirs, 'ours', 'upstream'):>30}"
            f" {_cell(baseline, 'controlling', 'controlled'):>30}"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Print the table of :data:`RESULTS` once the module ran; write it to
    ``docs/interop-upstream.md`` with ``AIOICE_WRITE_DOCS=1``."""
    yield
    report_results(
        "Interop with upstream aioice 0.13",
        "interop-upstream.md",
        __name__,
        table(RESULTS) if RESULTS else "",
    )


# -- the two sides --------------------------------------------------------------------------


def prepare(case: Case, request: pytest.FixtureRequest) -> tuple[Coturn | None, dict[str, str]]:
    """Skip what cannot run here; the TURN server (for relay cases) and the environment
    for TLS verification (``SSL_CERT_FILE``: coturn's self-signed certificate)."""
    if case.host == "::1" and not ipv6_loopback_usable():
        pytest.skip("::1 cannot be bound here")
    if case.relay is None:
        return None, {}
    turn: Coturn = request.getfixturevalue("coturn")
    return turn, {"SSL_CERT_FILE": str(turn.cert)} if case.relay == "tls" else {}


def start_upstream(
    python: Path, case: Case, role: str, turn: Coturn | None, env: dict[str, str]
) -> Peer:
    argv = [
        str(python),
        "-I",  # no user site, no PYTHON* variables, no script directory on sys.path
        str(PEERS / "aioice_peer.py"),
        "--role", role,
        "--address", case.host,
        "--timeout", str(CONNECT_TIMEOUT),
    ]  # fmt: skip
    if case.relay is not None:
        assert turn is not None
        server = turn.tls if case.relay == "tls" else turn.udp
        argv += [
            "--turn", f"{server[0]}:{server[1]}",
            "--turn-username", turn.username,
            "--turn-password", turn.password,
            "--turn-transport", case.relay,
            "--relay-only",
        ]  # fmt: skip
    return Peer(argv, env=upstream_env(**env))


def our_connection(case: Case, controlling: bool, turn: Coturn | None) -> Connection:
    if case.relay is None:
        return Connection(ice_controlling=controlling, host_addresses=[case.host])
    assert turn is not None
    return Connection(
        ice_controlling=controlling,
        host_addresses=[case.host],
        turn_server=turn.tls if case.relay == "tls" else turn.udp,
        turn_username=turn.username,
        turn_password=turn.password,
        turn_transport="udp" if case.relay == "udp" else "tcp",
        turn_ssl=case.relay == "tls",
        transport_policy=TransportPolicy.RELAY,
    )


def gathered(peer: Peer) -> dict[str, object]:
    event = peer.expect("gathered")
    assert str(event["implementation"]).startswith("upstream "), event
    return event


def connected(peer: Peer) -> tuple[str, float]:
    """The peer's selected pair as ``local/remote`` types, and its connect time."""
    event = peer.expect("connected", "failed", timeout=CONNECT_TIMEOUT + 5)
    assert event["event"] == "connected", event
    local, remote = event["local"], event["remote"]
    assert isinstance(local, dict)
    assert isinstance(remote, dict)
    elapsed = event["elapsed_ms"]
    assert isinstance(elapsed, float)
    return f"{local['type']}/{remote['type']}", elapsed


def received(peer: Peer) -> bytes:
    return base64.b64decode(str(peer.expect("received", timeout=DATA_TIMEOUT)["data"]))


def send(peer: Peer, data: bytes) -> None:
    peer.send(cmd="send", data=base64.b64encode(data).decode())


def close(peer: Peer) -> None:
    peer.send(cmd="close")
    peer.expect("closed", timeout=DATA_TIMEOUT)
    assert peer.process.wait(DATA_TIMEOUT) == 0, peer.stderr()


def peer_diagnosis(peer: Peer, name: str) -> str:
    """The peer's events, its check list (its own trace, or asked for) and its stderr."""
    traces = [e for e in peer.events if e.get("event") == "trace"]
    if not traces and peer.process.poll() is None:
        # A peer answers "trace" once connected; one that fails sends its trace itself.
        with contextlib.suppress(PeerError, OSError):
            peer.send(cmd="trace")
        with contextlib.suppress(PeerError, OSError, ValueError):
            traces.append(peer.expect("trace", timeout=CONNECT_TIMEOUT + 5))
    lines = [f"-- {name} (pid {peer.process.pid}): {' '.join(peer.argv)}"]
    lines += [json.dumps(e) for e in peer.events if e.get("event") != "trace"]
    for event in traces:
        trace = event.get("lines")
        lines += [f"  {line}" for line in trace] if isinstance(trace, list) else [str(event)]
    if peer.process.poll() is None:  # its stderr is readable once it exited
        with contextlib.suppress(PeerError, OSError):
            peer.send(cmd="close")
        try:
            peer.process.wait(DATA_TIMEOUT)
        except subprocess.TimeoutExpired:
            peer.process.terminate()
            peer.process.wait(DATA_TIMEOUT)
    lines.append(f"stderr: {peer.stderr()}")
    return "\n".join(lines)


def our_diagnosis(conn: Connection) -> str:
    agent = conn.agent
    lines = [f"-- ours: state {agent.state.value} {agent.failure_reason or ''}"]
    lines += [f"local  {c.to_sdp()}" for c in conn.local_candidates]
    lines += [f"remote {c.to_sdp()}" for c in conn.remote_candidates]
    for pair in agent.pairs:
        s = pair.stats
        lines.append(
            f"  {pair!r} sent={s.requests_sent} recv={s.requests_received}"
            f" responses={s.responses_received} rtt={s.rtt}"
        )
    lines.append(f"dropped {dict(agent.dropped)}")
    return "\n".join(lines)


# -- ours against upstream ---------------------------------------------------------------


async def ours_against(peer: Peer, case: Case, conn: Connection) -> Result:
    await conn.gather_candidates()
    remote = await asyncio.to_thread(gathered, peer)
    conn.remote_username = str(remote["ufrag"])
    conn.remote_password = str(remote["pwd"])
    candidates = remote["candidates"]
    assert isinstance(candidates, list)
    assert candidates, remote
    for sdp in candidates:
        await conn.add_remote_candidate(Candidate.from_sdp(sdp))
    await conn.add_remote_candidate(None)
    peer.send(
        cmd="remote",
        ufrag=conn.local_username,
        pwd=conn.local_password,
        candidates=[c.to_sdp() for c in conn.local_candidates],
    )
    started = time.perf_counter()
    await asyncio.wait_for(conn.connect(), CONNECT_TIMEOUT)
    ours_ms = (time.perf_counter() - started) * 1000
    # The peer is read in a thread: our agent goes on answering its checks meanwhile.
    upstream_pair, upstream_ms = await asyncio.to_thread(connected, peer)
    selected = conn.selected_pair
    assert selected is not None
    ours_pair = f"{selected.local.type}/{selected.remote.type}"
    assert (ours_pair, upstream_pair) == (case.pair, case.pair)

    await conn.send(b"ping from ours")
    assert await asyncio.wait_for(conn.recv(), DATA_TIMEOUT) == b"echo:ping from ours"
    assert await asyncio.to_thread(received, peer) == b"ping from ours"
    send(peer, b"hello from upstream")
    assert await asyncio.wait_for(conn.recv(), DATA_TIMEOUT) == b"hello from upstream"

    await asyncio.to_thread(close, peer)
    return Result(
        matchup="ours-upstream",
        case=case.name,
        controlling="ours" if conn.ice_controlling else "upstream",
        pairs={"ours": ours_pair, "upstream": upstream_pair},
        connect_ms={"ours": ours_ms, "upstream": upstream_ms},
    )


async def ours_against_diagnosed(peer: Peer, case: Case, conn: Connection) -> Result:
    try:
        return await ours_against(peer, case, conn)
    except Exception as exc:
        ours = our_diagnosis(conn)
        theirs = await asyncio.to_thread(peer_diagnosis, peer, "upstream")
        raise AssertionError(f"{case.name}: {exc!r}\n{ours}\n{theirs}") from exc
    finally:
        await conn.close()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize(
    "ours_controlling", [True, False], ids=["ours-controlling", "upstream-controlling"]
)
def test_ours_against_upstream(
    case: Case,
    ours_controlling: bool,
    upstream_python: Path,
    peers: list[Peer],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turn, env = prepare(case, request)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # our TURN client's TLS context reads it too
    role = "controlled" if ours_controlling else "controlling"
    peer = start_upstream(upstream_python, case, role, turn, env)
    peers.append(peer)
    conn = our_connection(case, ours_controlling, turn)
    RESULTS.append(asyncio.run(ours_against_diagnosed(peer, case, conn)))


# -- upstream against upstream (the baseline) --------------------------------------------


def upstream_against_upstream(case: Case, controlling: Peer, controlled: Peer) -> Result:
    offer, answer = gathered(controlling), gathered(controlled)
    for peer, remote in ((controlling, answer), (controlled, offer)):
        peer.send(
            cmd="remote", ufrag=remote["ufrag"], pwd=remote["pwd"], candidates=remote["candidates"]
        )
    controlling_pair, controlling_ms = connected(controlling)
    controlled_pair, controlled_ms = connected(controlled)
    assert (controlling_pair, controlled_pair) == (case.pair, case.pair)

    send(controlling, b"ping from controlling")
    assert received(controlled) == b"ping from controlling"
    assert received(controlling) == b"echo:ping from controlling"
    send(controlled, b"hello from controlled")
    assert received(controlling) == b"hello from controlled"
    assert received(controlled) == b"echo:hello from controlled"

    close(controlling)
    close(controlled)
    return Result(
        matchup="upstream-upstream",
        case=case.name,
        controlling="upstream",
        pairs={"controlling": controlling_pair, "controlled": controlled_pair},
        connect_ms={"controlling": controlling_ms, "controlled": controlled_ms},
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_upstream_against_upstream(
    case: Case, upstream_python: Path, peers: list[Peer], request: pytest.FixtureRequest
) -> None:
    turn, env = prepare(case, request)
    controlling = start_upstream(upstream_python, case, "controlling", turn, env)
    peers.append(controlling)
    controlled = start_upstream(upstream_python, case, "controlled", turn, env)
    peers.append(controlled)
    try:
        result = upstream_against_upstream(case, controlling, controlled)
    except Exception as exc:
        diagnosis = "\n".join(
            peer_diagnosis(peer, name)
            for peer, name in ((controlling, "controlling"), (controlled, "controlled"))
        )
        raise AssertionError(f"{case.name}: {exc!r}\n{diagnosis}") from exc
    RESULTS.append(result)
