"""Our agent (in-process) against libnice, the GLib ICE library (GStreamer's webrtcbin,
Farstream, ...), driven through ``peers/libnice_peer.py`` under the system python (PyGObject
and ``gir1.2-nice-0.1``), over JSON lines (``protocol.md``). Candidates travel as SDP:
libnice's ``generate_local_candidate_sdp`` lines parsed by our ``Candidate.from_sdp``, our
``to_sdp()`` lines parsed by libnice's ``parse_remote_candidate_sdp``.

The matrix, each case on one host address of both sides, ours controlling and libnice
controlling:

- ``host-ipv4`` (127.0.0.1), ``host-ipv6`` (::1, skipped when unusable): host candidates
  (libnice also offers its ICE-TCP candidates, which we parse and do not pair), libnice
  in its default aggressive nomination;
- ``host-ipv4-webrtcbin``: the same with libnice's options as GStreamer's webrtcbin sets
  them: ``REGULAR_NOMINATION``, ``ICE_TRICKLE`` and ``CONSENT_FRESHNESS``;
- ``relay-udp``, ``relay-tcp``, ``relay-tls``: both sides relay-only through the
  ``coturn`` fixture. For TLS we verify coturn's self-signed certificate
  (``SSL_CERT_FILE``); libnice in RFC 5245 mode does not do TLS at all for
  ``NICE_RELAY_TYPE_TURN_TLS`` (plain TURN over TCP to the TLS port, which coturn
  accepts): the case checks coturn's log to say which it was.

Each case connects, sends a datagram each way (we send and libnice echoes; libnice sends
and we receive), checks the selected pair's types on both sides and records the connect
times (ours: ``connect()`` until it returns; libnice's: remote candidates until READY). The
table is printed when the module ends (visible with ``-s``);
with ``AIOICE_WRITE_DOCS=1`` it goes to ``docs/interop-libnice.md``. A failure shows both
sides: our check list (``conn.agent``) and libnice's trace (its events and debug lines).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Literal

import pytest
from aioice import Candidate, Connection, TransportPolicy

from tests.conftest import PEERS, Coturn, Peer, PeerError, ipv6_loopback_usable, report_results

SYSTEM_PYTHON = "/usr/bin/python3"
"The python with PyGObject (``python3-gi``) and libnice's bindings (``gir1.2-nice-0.1``)."
CONNECT_TIMEOUT = 10.0
"Seconds each side gets to connect (loopback: tens of milliseconds are expected)."
DATA_TIMEOUT = 5.0
"Seconds a datagram (or a protocol answer) gets to arrive."


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    host: str
    "The only host address either side gathers on."
    relay: Literal["udp", "tcp", "tls"] | None = None
    "TURN transport to coturn, both sides relay-only; ``None``: host candidates."
    webrtcbin: bool = False
    "libnice as GStreamer's webrtcbin makes it (regular nomination, trickle, consent "
    "freshness); otherwise ``nice_agent_new``'s defaults (aggressive nomination)."

    @property
    def pair(self) -> str:
        """The selected pair's ``local/remote`` candidate types expected on each side."""
        kind = "relay" if self.relay else "host"
        return f"{kind}/{kind}"


CASES = [
    Case("host-ipv4", "127.0.0.1"),
    Case("host-ipv6", "::1"),
    Case("host-ipv4-webrtcbin", "127.0.0.1", webrtcbin=True),
    Case("relay-udp", "127.0.0.1", "udp"),
    Case("relay-tcp", "127.0.0.1", "tcp"),
    Case("relay-tls", "127.0.0.1", "tls"),
]


@dataclasses.dataclass
class Result:
    case: str
    controlling: Literal["ours", "libnice"]
    pairs: dict[str, str]
    "Side (``ours``, ``libnice``) -> selected pair as ``local/remote`` types."
    addresses: dict[str, str]
    "Side -> selected pair as ``local -> remote`` addresses."
    connect_ms: dict[str, float]
    "Side -> milliseconds to connect."
    note: str = ""


RESULTS: list[Result] = []


def table(results: list[Result]) -> str:
    lines = [
        "ours against libnice: connect ms (ours / libnice), selected pair local/remote types",
        f"{'case':<21} {'controlling':<12} {'ours ms':>8} {'libnice ms':>10}"
        "  pairs (ours; libnice)",
    ]
    for r in results:
        lines.append(
            f"{r.case:<21} {r.controlling:<12} {r.connect_ms['ours']:8.1f}"
            f" {r.connect_ms['libnice']:10.1f}  {r.pairs['ours']}; {r.pairs['libnice']}"
            + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Print the table of :data:`RESULTS` once the module ran; write it to
    ``docs/interop-libnice.md`` with ``AIOICE_WRITE_DOCS=1``."""
    yield
    report_results(
        "Interop with libnice", "interop-libnice.md", __name__, table(RESULTS) if RESULTS else ""
    )


@pytest.fixture(scope="module")
def libnice() -> None:
    """Skips unless the system python has PyGObject and libnice's GObject bindings."""
    check = "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", check], capture_output=True, text=True, timeout=30
        )
    except OSError as exc:
        pytest.skip(f"no {SYSTEM_PYTHON} to run libnice through PyGObject: {exc}")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"{SYSTEM_PYTHON} cannot load libnice's bindings (apt-get install python3-gi"
            f" gir1.2-nice-0.1): {last}"
        )


# -- the two sides --------------------------------------------------------------------------


def start_libnice(case: Case, role: str, turn: Coturn | None) -> Peer:
    argv = [
        SYSTEM_PYTHON,
        "-I",  # no PYTHONPATH or user site from the test environment
        str(PEERS / "libnice_peer.py"),
        "--role", role,
        "--address", case.host,
        "--timeout", str(CONNECT_TIMEOUT),
    ]  # fmt: skip
    if case.webrtcbin:
        argv += ["--nomination", "regular", "--trickle", "--consent-freshness"]
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
    return Peer(argv)


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
    event = peer.expect("gathered", timeout=CONNECT_TIMEOUT)
    assert event["implementation"] == "libnice", event
    return event


def connected(peer: Peer) -> tuple[str, str, float, bool]:
    """libnice's selected pair as ``local/remote`` types and addresses, its connect time
    and its role once connected."""
    event = peer.expect("connected", "failed", timeout=CONNECT_TIMEOUT + 5)
    assert event["event"] == "connected", event
    local, remote = event["local"], event["remote"]
    assert isinstance(local, dict), event
    assert isinstance(remote, dict), event
    elapsed, controlling = event["elapsed_ms"], event["controlling"]
    assert isinstance(elapsed, float), event
    assert isinstance(controlling, bool), event
    addresses = f"{local['address']} -> {remote['address']}"
    return f"{local['type']}/{remote['type']}", addresses, elapsed, controlling


def received(peer: Peer) -> bytes:
    return base64.b64decode(str(peer.expect("received", timeout=DATA_TIMEOUT)["data"]))


def close(peer: Peer) -> None:
    peer.send(cmd="close")
    peer.expect("closed", timeout=DATA_TIMEOUT)
    assert peer.process.wait(DATA_TIMEOUT) == 0, peer.stderr()


def peer_diagnosis(peer: Peer) -> str:
    """libnice's events, its trace (its own on failure, or asked for) and its stderr."""
    traces = [e for e in peer.events if e.get("event") == "trace"]
    if not traces and peer.process.poll() is None:
        with contextlib.suppress(PeerError, OSError):
            peer.send(cmd="trace")
        with contextlib.suppress(PeerError, OSError, ValueError):
            traces.append(peer.expect("trace", timeout=DATA_TIMEOUT))
    lines = [f"-- libnice (pid {peer.process.pid}): {' '.join(peer.argv)}"]
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


# -- the test -------------------------------------------------------------------------------


async def ours_against_libnice(peer: Peer, case: Case, conn: Connection) -> Result:
    await conn.gather_candidates()
    remote = await asyncio.to_thread(gathered, peer)
    conn.remote_username = str(remote["ufrag"])
    conn.remote_password = str(remote["pwd"])
    candidates = remote["candidates"]
    assert isinstance(candidates, list), remote
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
    libnice_pair, libnice_addresses, libnice_ms, libnice_controlling = await asyncio.to_thread(
        connected, peer
    )
    assert conn.ice_controlling != libnice_controlling, "both sides in the same role"
    selected = conn.selected_pair
    assert selected is not None
    ours_pair = f"{selected.local.type}/{selected.remote.type}"
    ours_addresses = f"{list(selected.base)} -> {list(selected.remote_address)}"
    assert (ours_pair, libnice_pair) == (case.pair, case.pair)

    await conn.send(b"ping from ours")
    assert await asyncio.wait_for(conn.recv(), DATA_TIMEOUT) == b"echo:ping from ours"
    assert await asyncio.to_thread(received, peer) == b"ping from ours"
    # Every byte value (libnice's side sends through ctypes, binary-safe), starting at 0x80:
    # a first byte of 0 to 3 is STUN for the receiver (RFC 7983) and never reaches recv().
    binary = bytes((i + 0x80) % 256 for i in range(256))
    peer.send(cmd="send", data=base64.b64encode(binary).decode())
    assert await asyncio.wait_for(conn.recv(), DATA_TIMEOUT) == binary

    await asyncio.to_thread(close, peer)
    return Result(
        case=case.name,
        controlling="ours" if conn.ice_controlling else "libnice",
        pairs={"ours": ours_pair, "libnice": libnice_pair},
        addresses={"ours": ours_addresses, "libnice": libnice_addresses},
        connect_ms={"ours": ours_ms, "libnice": libnice_ms},
    )


async def ours_against_libnice_diagnosed(peer: Peer, case: Case, conn: Connection) -> Result:
    try:
        return await ours_against_libnice(peer, case, conn)
    except Exception as exc:
        ours = our_diagnosis(conn)
        theirs = await asyncio.to_thread(peer_diagnosis, peer)
        raise AssertionError(f"{case.name}: {exc!r}\n{ours}\n{theirs}") from exc
    finally:
        await conn.close()


async def check_certificate(turn: Coturn) -> None:
    """What our TURN client will do: the default context (``SSL_CERT_FILE``) verifies
    coturn's certificate for the IP address 127.0.0.1 (an IP SAN)."""
    host, port = turn.tls
    _, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context(), server_hostname=host
    )
    try:
        cert = writer.get_extra_info("peercert")
        assert ("IP Address", host) in cert.get("subjectAltName", ()), cert
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def tls_sessions(turn: Coturn, log_before: int) -> str:
    """How coturn saw this case's TURN sessions, from its log: ours must be TLS (a
    ``method=TLS...`` session); libnice's ``NICE_RELAY_TYPE_TURN_TLS`` is plain TCP in RFC
    5245 mode (no cipher), on the TLS port all the same."""
    log = turn.read_log()[log_before:]
    sessions = re.findall(r"session \d+: new, .*", log)
    tls = [line for line in sessions if "method=TLS" in line]
    assert tls, f"no TLS session in coturn's log: {sessions}"
    plain = len(sessions) - len(tls)
    return f"coturn sessions: {len(tls)} TLS, {plain} plain TCP"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize(
    "ours_controlling", [True, False], ids=["ours-controlling", "libnice-controlling"]
)
@pytest.mark.usefixtures("libnice")
def test_ours_against_libnice(
    case: Case,
    ours_controlling: bool,
    peers: list[Peer],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.host == "::1" and not ipv6_loopback_usable():
        pytest.skip("::1 cannot be bound here")
    turn: Coturn | None = None
    log_before = 0
    if case.relay is not None:
        turn = request.getfixturevalue("coturn")
        log_before = len(turn.read_log())
    if case.relay == "tls":
        assert turn is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))  # read by our TURN client
        asyncio.run(check_certificate(turn))
    peer = start_libnice(case, "controlled" if ours_controlling else "controlling", turn)
    peers.append(peer)
    conn = our_connection(case, ours_controlling, turn)
    result = asyncio.run(ours_against_libnice_diagnosed(peer, case, conn))
    if case.relay == "tls":
        assert turn is not None
        result.note = tls_sessions(turn, log_before)
    RESULTS.append(result)


@pytest.mark.parametrize("role", ["controlling", "controlled"])
@pytest.mark.usefixtures("libnice")
def test_role_conflict_with_libnice(role: str, peers: list[Peer]) -> None:
    """Both sides start in the same role: the 487 Role Conflict and the tie-breakers
    (RFC 8445 section 7.3.1.1, 7.2.5.1) leave exactly one controlling side, either way."""
    case = Case(f"conflict-{role}", "127.0.0.1")
    peer = start_libnice(case, role, None)
    peers.append(peer)
    conn = our_connection(case, role == "controlling", None)
    result = asyncio.run(ours_against_libnice_diagnosed(peer, case, conn))
    result.note = f"both started {role}"
    RESULTS.append(result)
