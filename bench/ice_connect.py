"""ICE Connection benchmark: connect time and data throughput, ours vs upstream aioice 0.13.

Run it with ``hatch run bench:ice [--quick] [--json PATH]`` from the repository root.

Three measurements, everything on 127.0.0.1, each in child processes (one per
implementation, task and round, run round-robin) with the same code for both:

``host connect``
    Two ``Connection`` objects in one process (controlling and controlled), host
    candidates on 127.0.0.1 only; gathering and the candidate exchange are done first,
    then the time of ``asyncio.gather(a.connect(), b.connect())`` is taken.
``relay connect``
    The same with ``transport_policy=RELAY`` and coturn on 127.0.0.1 (started by the
    orchestrator, long-term credentials, peers restricted to 127.0.0.1): the only pair is
    relay to relay, through coturn.
``throughput``
    After a host connect, A sends ``--count`` datagrams of ``--size`` bytes with
    ``await a.send(data)`` while B reads them with ``await b.recv()``, at most ``--window``
    in flight; the same exchange between two raw asyncio datagram endpoints
    (``transport.sendto`` and an ``asyncio.Queue`` filled by ``datagram_received``) in the
    same child is the reference. Under the default asyncio loop and under uvloop.

Upstream aioice has no ``host_addresses`` parameter: its child replaces
``aioice.ice.get_host_addresses`` by a function returning ``["127.0.0.1"]``. Both children
refuse to connect if a local candidate is not a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import importlib
import importlib.metadata
import io
import ipaddress
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

# The bench helpers sit beside this script; children run as ``python -I``, which leaves
# the script's folder off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HOST,
    TURN_PASSWORD,
    TURN_USER,
    BackgroundLoad,
    coturn,
    profile_table,
    run_child,
)
from upstream_venv import (
    check_upstream_child,
    ensure_upstream_extra,
    ensure_upstream_venv,
    is_within,
    our_src_dirs,
)

SCRIPT: Final = Path(__file__).resolve()

IMPLS: Final = ("ours", "upstream")
LOOPS: Final = ("asyncio", "uvloop")
TASKS: Final = ("host", "relay", "throughput")

RELAY_PORTS: Final = 128
"""coturn's relay port range. Every relay run allocates two and frees them on close, but
coturn only reuses a port on its next one-second tick, and a run takes tens of ms."""
COTURN_PEER_RULES: Final = (
    # Only loopback peers (the relays themselves): coturn checks the allow list first.
    f"--allowed-peer-ip={HOST}",
    "--denied-peer-ip=0.0.0.0-255.255.255.255",
    "--denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "--no-multicast-peers",
)

CONNECT_TIMEOUT: Final = 15.0
"A connect that takes longer than this fails the run."
MAX_FAILURES: Final = 3
"A child gives up on a task after this many failed connects."
STALL_SECONDS: Final = 0.25
"Throughput: no datagram for this long with some in flight counts those as lost."
BUSY_CPUS: Final = 0.15
"Other processes using more CPUs than this during a child: warn that the machine is not quiet."

TARGET_HOST_MS: Final = 2.0
TARGET_RELAY_MS: Final = 50.0
TARGET_RATIO: Final = {"asyncio": 0.97, "uvloop": 0.95}
UPSTREAM_REFERENCE: Final = {
    "host": "~21 ms",
    "relay": "~500 ms",
    "asyncio": "0.91",
    "uvloop": "0.78",
}


# --- The child: one implementation, one task. ---------------------------------------------


def load_connection(impl: str) -> tuple[Any, Any, dict[str, str]]:
    """``(Connection, TransportPolicy, info)`` of ``impl``, checked to come from where it must.

    Upstream's interface enumeration is replaced by ``["127.0.0.1"]`` (the traffic of this
    benchmark stays on loopback); ours is given ``host_addresses`` instead.
    """
    src_dirs = our_src_dirs()
    if impl == "upstream":
        leaked = []
        for entry in sys.path:
            with contextlib.suppress(OSError):
                if Path(entry or os.getcwd()).resolve() in src_dirs:
                    leaked.append(entry)
        if leaked:
            raise RuntimeError(f"the upstream child sees our sources on sys.path: {leaked}")
        module = importlib.import_module("aioice.ice")

        def loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
            return [HOST] if use_ipv4 else []

        vars(module)["get_host_addresses"] = loopback_only  # aioice.ice.get_host_addresses
    else:
        module = importlib.import_module("aioice.ice.connection")
    module_file = Path(module.__file__ or "").resolve()
    ours = any(is_within(module_file, src) for src in src_dirs)
    if impl == "ours":
        if not ours:
            raise RuntimeError(f"aioice.ice comes from {module_file}, not packages/ice/src")
        try:
            version = importlib.metadata.version("aioice")
        except importlib.metadata.PackageNotFoundError:
            version = str(getattr(importlib.import_module("aioice.ice"), "__version__", "?"))
    else:
        version = check_upstream_child("aioice.ice", module_file, ours)
    aioice = importlib.import_module("aioice")
    return (
        aioice.Connection,
        aioice.TransportPolicy,
        {"module": str(module_file), "version": version},
    )


class Pair:
    """Two connected ``Connection`` objects of one implementation, in one process."""

    def __init__(self, impl: str, api: tuple[Any, Any], turn_port: int | None) -> None:
        connection, policy = api
        kwargs: dict[str, Any] = {"use_ipv4": True, "use_ipv6": False}
        if turn_port is not None:
            kwargs.update(
                turn_server=(HOST, turn_port),
                turn_username=TURN_USER,
                turn_password=TURN_PASSWORD,
                transport_policy=policy.RELAY,
            )
        if impl == "ours":
            kwargs["host_addresses"] = [HOST]
        self.a: Any = connection(ice_controlling=True, **kwargs)
        self.b: Any = connection(ice_controlling=False, **kwargs)

    async def prepare(self) -> None:
        """Gather, check that every candidate is on loopback, exchange candidates."""
        a, b = self.a, self.b
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for conn in (a, b):
            if not conn.local_candidates:
                raise RuntimeError("no local candidate was gathered")
            for candidate in conn.local_candidates:
                if not ipaddress.ip_address(candidate.host).is_loopback:
                    raise RuntimeError(f"a candidate is not on loopback: {candidate}")
        for local, remote in ((a, b), (b, a)):
            for candidate in local.local_candidates:
                await remote.add_remote_candidate(candidate)
            await remote.add_remote_candidate(None)
            remote.remote_username = local.local_username
            remote.remote_password = local.local_password

    async def connect(self) -> float:
        """Connect both; the seconds from the start of both connect() to both done."""
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(self.a.connect(), self.b.connect()), CONNECT_TIMEOUT)
        return time.perf_counter() - start

    async def check(self) -> str:
        """A datagram each way (not timed): the connection carries data. Returns the
        candidate types of the selected pairs, ``"relay-relay"`` say."""
        for sender, receiver in ((self.a, self.b), (self.b, self.a)):
            await sender.send(b"\x80ping")
            data = await asyncio.wait_for(receiver.recv(), 5.0)
            if data != b"\x80ping":
                raise RuntimeError(f"received {data!r}, not b'\\x80ping'")
        return "/".join(sorted({"-".join(selected_types(conn)) for conn in (self.a, self.b)}))

    async def close(self) -> None:
        await asyncio.gather(self.a.close(), self.b.close(), return_exceptions=True)


def selected_types(conn: Any) -> tuple[str, str]:
    """The local and remote candidate types of component 1's selected pair."""
    pair = getattr(conn, "selected_pair", None)
    if pair is not None:  # ours
        return pair.local.type, pair.remote.type
    nominated = conn._nominated[1]  # upstream 0.13
    return nominated.local_candidate.type, nominated.remote_candidate.type


async def connect_runs(
    impl: str, args: argparse.Namespace, profiler: cProfile.Profile | None
) -> dict[str, Any]:
    """``args.runs`` timed connects (after ``args.connect_warmup`` untimed ones), a new pair
    each."""
    connection, policy, info = load_connection(impl)
    turn_port = args.turn_port if args.task == "relay" else None
    times: list[float] = []
    errors: list[str] = []
    pairs: dict[str, int] = {}
    expected = "relay-relay" if args.task == "relay" else "host-host"
    warmup = args.connect_warmup
    for index in range(warmup + args.runs):
        pair = Pair(impl, (connection, policy), turn_port)
        try:
            await pair.prepare()
            gc.collect()
            if profiler is not None and index >= warmup:
                profiler.enable()
            try:
                elapsed = await pair.connect()
            finally:
                if profiler is not None:
                    profiler.disable()
            types = await pair.check()
            pairs[types] = pairs.get(types, 0) + 1
            if types != expected:
                raise RuntimeError(f"selected pair {types}, not {expected}")
        except (ConnectionError, OSError, asyncio.TimeoutError, RuntimeError) as exc:
            errors.append(f"run {index + 1}: {exc!r}")
            if len(errors) >= MAX_FAILURES:
                break
            continue
        finally:
            await pair.close()
        if index >= warmup:
            times.append(elapsed)
    return {**info, "times": times, "errors": errors, "pairs": pairs}


class Flow:
    """Moves ``count`` datagrams from a sender to a receiver, at most ``window`` in flight.

    The receiver task only counts what ``recv()`` returns; the sender sends until
    ``window`` are in flight, then waits until half of them have arrived (one future per
    half window). Both run on one event loop, in one process, so the window costs no
    datagram. Datagrams still in flight after :data:`STALL_SECONDS` without any arriving
    are counted as lost (never on loopback with these windows, so far; the count is
    reported). The same class, with the same code per datagram, serves the raw endpoints
    and the connections.
    """

    def __init__(self, recv: Callable[[], Awaitable[Any]], count: int, window: int) -> None:
        self.recv = recv
        self.count = count
        self.window = window
        self.sent = 0
        self.received = 0
        self.lost = 0
        self.target = 0
        self.waiter: asyncio.Future[None] | None = None

    async def receive(self) -> None:
        recv = self.recv
        while True:
            await recv()
            self.received += 1
            waiter = self.waiter
            if waiter is not None and self.sent - self.received - self.lost <= self.target:
                self.waiter = None
                waiter.set_result(None)

    async def wait(self, target: int) -> None:
        """Until at most ``target`` datagrams are in flight (or the rest is lost)."""
        loop = asyncio.get_running_loop()
        while self.sent - self.received - self.lost > target:
            self.target = target
            before = self.received
            self.waiter = loop.create_future()
            try:
                await asyncio.wait_for(self.waiter, STALL_SECONDS)
            except asyncio.TimeoutError:
                self.waiter = None
                if self.received == before:
                    self.lost = self.sent - self.received

    async def send_sync(self, sendto: Callable[[bytes, Any], None], addr: Any, data: bytes) -> None:
        """The raw sender: ``transport.sendto(data, addr)``, what an application writes."""
        low = self.window // 2
        for _ in range(self.count):
            if self.sent - self.received - self.lost >= self.window:
                await self.wait(low)
            sendto(data, addr)
            self.sent += 1
        await self.wait(0)

    async def send_async(self, send: Callable[[bytes], Awaitable[None]], data: bytes) -> None:
        """The Connection sender: ``await conn.send(data)``; otherwise as :meth:`send_sync`."""
        low = self.window // 2
        for _ in range(self.count):
            if self.sent - self.received - self.lost >= self.window:
                await self.wait(low)
            await send(data)
            self.sent += 1
        await self.wait(0)


async def run_flow(
    recv: Callable[[], Awaitable[Any]],
    sender: Callable[[Flow], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
    count: int,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    flow = Flow(recv, count, args.window)
    receiver = asyncio.ensure_future(flow.receive())
    await asyncio.sleep(0)  # the receiver is waiting in recv()
    gc.collect()
    try:
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        cpu = time.process_time()
        await sender(flow)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    if flow.received + flow.lost != count:
        raise RuntimeError(f"sent {count}, received {flow.received}, lost {flow.lost}")
    return {
        "packets_per_s": flow.received / elapsed,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "received": flow.received,
        "lost": flow.lost,
    }


class RawEndpoint(asyncio.DatagramProtocol):
    """The reference: what an application writes on a bare asyncio datagram endpoint."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def throughput(
    impl: str, args: argparse.Namespace, profiler: cProfile.Profile | None
) -> dict[str, Any]:
    """Raw endpoints and connections, alternately, ``args.repeat`` times each."""
    connection, policy, info = load_connection(impl)
    loop = asyncio.get_running_loop()
    # RFC 7983: a first byte of 128 to 191 is RTP / RTCP; 0 to 3 would be taken for STUN.
    data = b"\x80" + bytes(args.size - 1)
    _, sender = await loop.create_datagram_endpoint(RawEndpoint, local_addr=(HOST, 0))
    _, receiver = await loop.create_datagram_endpoint(RawEndpoint, local_addr=(HOST, 0))
    assert sender.transport is not None
    assert receiver.transport is not None
    raw_sendto = sender.transport.sendto
    raw_addr = receiver.transport.get_extra_info("sockname")
    pair = Pair(impl, (connection, policy), None)
    results: dict[str, list[dict[str, Any]]] = {"raw": [], "conn": []}
    try:
        await pair.prepare()
        await pair.connect()
        types = await pair.check()
        if types != "host-host":
            raise RuntimeError(f"selected pair {types}, not host-host")

        async def measure(which: str, count: int, prof: cProfile.Profile | None = None) -> Any:
            if which == "raw":
                return await run_flow(
                    receiver.queue.get,
                    lambda flow: flow.send_sync(raw_sendto, raw_addr, data),
                    args,
                    count,
                )
            return await run_flow(
                pair.b.recv, lambda flow: flow.send_async(pair.a.send, data), args, count, prof
            )

        for which in ("raw", "conn"):  # warm-up
            await measure(which, args.warmup)
        if profiler is not None:
            results["conn"].append(await measure("conn", args.count, profiler))
        else:
            for repeat in range(args.repeat):
                order = ("raw", "conn") if repeat % 2 == 0 else ("conn", "raw")
                for which in order:
                    results[which].append(await measure(which, args.count))
    finally:
        await pair.close()
        sender.transport.close()
        receiver.transport.close()
    loop_name = type(loop).__module__ + "." + type(loop).__qualname__
    return {**info, "loop": loop_name, **results}


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_in_loop(name: str, main: Coroutine[Any, Any, Any]) -> Any:
    """``main`` on a new loop of kind ``name``, closed afterwards (the same for both)."""
    loop = event_loop_factory(name)()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def child_main(args: argparse.Namespace) -> int:
    impl = args.child
    profiler = cProfile.Profile() if args.profile else None
    if args.task == "throughput":
        result = run_in_loop(args.loop, throughput(impl, args, profiler))
        units = args.count
        unit = "packet"
    else:
        result = run_in_loop("asyncio", connect_runs(impl, args, profiler))
        units = max(1, len(result["times"]))
        unit = "connect"
    result.update(
        impl=impl,
        task=args.task,
        python=sys.version,
        executable=sys.executable,
        base_prefix=sys.base_prefix,
    )
    if profiler is None:
        print(json.dumps(result))
        return 0
    out = io.StringIO()
    out.write(f"== cProfile of {impl} ({result['module']}, {result['version']}): {args.task}")
    out.write(f" on {args.loop} ==\n" if args.task == "throughput" else " ==\n")
    if args.task == "throughput":
        run = result["conn"][0]
        out.write(
            f"{args.count:,} datagrams of {args.size} bytes: {run['packets_per_s']:,.0f} pkt/s"
            " under cProfile; per packet, both sides (send and recv):\n"
        )
    else:
        median = statistics.median(result["times"]) * 1e3 if result["times"] else math.nan
        out.write(
            f"{units} connects, median {median:.2f} ms under cProfile; per connect, both agents:\n"
        )
    out.write(profile_table(profiler, units, args.top).replace("pkt", unit[:3]) + "\n")
    print(out.getvalue())
    return 0


# --- Orchestration: coturn, and the children round-robin. ---------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile, linear between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def child_command(
    python: Path | str, impl: str, task: str, loop: str, runs: int, args: argparse.Namespace
) -> list[str]:
    command = [str(python), "-I", str(SCRIPT), "--child", impl, "--task", task, "--loop", loop]
    command += ["--runs", str(runs), "--count", str(args.count), "--size", str(args.size)]
    command += ["--window", str(args.window), "--repeat", str(args.repeat)]
    command += ["--warmup", str(args.warmup), "--connect-warmup", str(args.connect_warmup)]
    if args.turn_port is not None:
        command += ["--turn-port", str(args.turn_port)]
    if args.profile:
        command += ["--profile", args.profile, "--top", str(args.top)]
    return command


def fmt(value: float | None, spec: str = ",.2f", suffix: str = "") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec) + suffix


def summarize_connect(times: list[float]) -> dict[str, Any]:
    ms = [t * 1e3 for t in times]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms) if ms else None,
        "p90_ms": percentile(ms, 0.9) if ms else None,
        "min_ms": min(ms) if ms else None,
        "max_ms": max(ms) if ms else None,
    }


def summarize_throughput(raw: list[dict[str, Any]], impl: list[dict[str, Any]]) -> dict[str, Any]:
    raw_best = max(r["packets_per_s"] for r in raw)
    impl_best = max(r["packets_per_s"] for r in impl)
    paired = [i["packets_per_s"] / r["packets_per_s"] for r, i in zip(raw, impl, strict=True)]
    return {
        "raw_pps": raw_best,
        "impl_pps": impl_best,
        "ratio": impl_best / raw_best,
        "paired_median": statistics.median(paired),
        "paired_min": min(paired),
        "paired_max": max(paired),
        "n": len(paired),
        "lost": sum(r["lost"] for r in raw + impl),
        "raw_cpu_ns": min(r["cpu_s"] / r["received"] for r in raw) * 1e9,
        "impl_cpu_ns": min(r["cpu_s"] / r["received"] for r in impl) * 1e9,
    }


def render(report: dict[str, Any]) -> list[str]:
    impls = report["impls"]
    connect = report["connect"]
    tput = report["throughput"]
    lines: list[str] = []

    header = (
        f"{'measurement':<34} {'ours':>10} {'upstream':>10} {'upstream/ours':>14}"
        f"  {'target (ours)':<28} {'met':<8}"
    )
    lines += [header, "-" * len(header)]
    for task, label, target in (
        ("host", "host connect", TARGET_HOST_MS),
        ("relay", "relay-to-relay connect", TARGET_RELAY_MS),
    ):
        if task in report["skipped"]:
            lines.append(f"{label:<34} skipped: {report['skipped'][task]}")
            continue
        ours = connect.get("ours", {}).get(task)
        upstream = connect.get("upstream", {}).get(task)
        for stat, name in (("median_ms", "median ms"), ("p90_ms", "p90 ms")):
            o = None if ours is None else ours[stat]
            u = None if upstream is None else upstream[stat]
            ratio = u / o if o and u is not None else None
            met = "-"
            target_text = ""
            if stat == "median_ms":
                target_text = f"<= {target:g} ms (upstream {UPSTREAM_REFERENCE[task]})"
                met = "-" if o is None else ("MET" if o <= target else "NOT MET")
            lines.append(
                f"{label + ', ' + name:<34} {fmt(o):>10} {fmt(u):>10}"
                f" {fmt(ratio, '.1f', 'x'):>14}  {target_text:<28} {met:<8}"
            )
        counts = "; ".join(
            f"{impl} n={entry[task]['n']} ("
            + ", ".join(f"{count} {kind}" for kind, count in sorted(entry[task]["pairs"].items()))
            + " incl. warm-ups"
            + (f"; {len(entry[task]['errors'])} failed" if entry[task]["errors"] else "")
            + ")"
            for impl, entry in connect.items()
            if task in entry
        )
        lines.append(f"{'  (runs, selected pairs)':<34} {counts}")

    lines.append("")
    header = (
        f"{'throughput':<10} {'raw pkt/s':>10} {'ours pkt/s':>11} {'ours/raw':>9}"
        f" {'upstream pkt/s':>15} {'upstream/raw':>13} {'ours/upstream':>14}"
        f"  {'target (ours/raw)':<26} {'met':<8}"
    )
    lines += [header, "-" * len(header)]
    for loop in LOOPS:
        if loop in report["skipped"]:
            lines.append(f"{loop:<10} skipped: {report['skipped'][loop]}")
            continue
        ours = tput.get("ours", {}).get(loop)
        upstream = tput.get("upstream", {}).get(loop)
        raw = ours["raw_pps"] if ours else (upstream["raw_pps"] if upstream else None)
        op = ours["impl_pps"] if ours else None
        up = upstream["impl_pps"] if upstream else None
        target = TARGET_RATIO[loop]
        met = "-" if ours is None else ("MET" if ours["ratio"] >= target else "NOT MET")
        lines.append(
            f"{loop:<10} {fmt(raw, ',.0f'):>10} {fmt(op, ',.0f'):>11}"
            f" {fmt(ours['ratio'] if ours else None):>9}"
            f" {fmt(up, ',.0f'):>15} {fmt(upstream['ratio'] if upstream else None):>13}"
            f" {fmt(op / up if op and up else None, '.2f', 'x'):>14}"
            f"  {f'>= {target:g} (upstream {UPSTREAM_REFERENCE[loop]})':<26} {met:<8}"
        )
    lines.append("")
    for impl in IMPLS:
        for loop in LOOPS:
            entry = tput.get(impl, {}).get(loop)
            if entry is None:
                continue
            lines.append(
                f"{impl} on {loop}: {impl}/raw per pair of runs (same child, back to back):"
                f" median {entry['paired_median']:.3f}, range {entry['paired_min']:.3f}"
                f" to {entry['paired_max']:.3f} (n={entry['n']}); raw in {impl}'s children"
                f" {entry['raw_pps']:,.0f} pkt/s; CPU per packet (both sides) raw"
                f" {entry['raw_cpu_ns']:,.0f} ns, {impl} {entry['impl_cpu_ns']:,.0f} ns;"
                f" lost {entry['lost']}"
            )
    for impl in IMPLS:
        entry = impls.get(impl, {})
        if "skipped" in entry:
            lines.append(f"upstream SKIPPED: {entry['skipped']}")
        for error in entry.get("errors", []):
            lines.append(f"{impl} FAILED: {error}")
    return lines


def orchestrate(args: argparse.Namespace) -> int:
    pythons: dict[str, Path | str] = {"ours": sys.executable}
    impls: dict[str, dict[str, Any]] = {"ours": {}}
    skipped: dict[str, str] = {}
    uvloop_version: str | None = None
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        skipped["uvloop"] = "uvloop not installed"
    if args.skip_upstream:
        impls["upstream"] = {"skipped": "--skip-upstream"}
    else:
        python, why = ensure_upstream_venv()
        if python is not None and uvloop_version is not None:
            problem = ensure_upstream_extra(python, "uvloop", uvloop_version)
            if problem:
                print(f"upstream on uvloop SKIPPED: {problem}", file=sys.stderr, flush=True)
                impls["upstream"] = {"no_uvloop": problem}
        if python is None:
            impls["upstream"] = {"skipped": why}
            print(f"upstream SKIPPED: {why}", file=sys.stderr, flush=True)
        else:
            pythons["upstream"] = python
            impls.setdefault("upstream", {})
    wanted = [impl for impl in IMPLS if impl in pythons]
    if args.profile and not args.profile_upstream:
        wanted = ["ours"]
    tasks = [task for task in TASKS if task in args.only]
    loops = [loop for loop in LOOPS if loop not in skipped]
    if args.profile:
        # One child per implementation for what --profile names.
        if args.profile in ("host", "relay"):
            tasks, loops = [args.profile], ["asyncio"]
        else:
            tasks, loops = ["throughput"], [args.profile.split("-", 1)[1]]
    if "relay" in tasks and not args.skip_relay and not _have_turnserver():
        skipped["relay"] = "coturn not installed (no `turnserver` on PATH)"
    if args.skip_relay:
        skipped["relay"] = "--skip-relay"
    rounds = 1 if args.profile else args.rounds

    results: dict[str, dict[str, Any]] = {impl: {} for impl in wanted}
    loads: list[dict[str, float]] = []
    started = time.perf_counter()
    server: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        if "relay" in tasks and "relay" not in skipped:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ice-bench-"))
            try:
                server = stack.enter_context(
                    coturn(Path(tmp), relay_ports=RELAY_PORTS, extra_args=COTURN_PEER_RULES)
                )
            except RuntimeError as exc:
                skipped["relay"] = f"coturn did not start: {exc}"
            else:
                args.turn_port = server["address"][1]
                print(
                    f"coturn pid {server['pid']} on {HOST}:{args.turn_port}",
                    file=sys.stderr,
                    flush=True,
                )
        background = BackgroundLoad([server["pid"]] if server is not None else [])
        jobs: list[tuple[str, str]] = []
        for task in tasks:
            if task == "throughput":
                jobs += [(task, loop) for loop in loops]
            elif task not in skipped:
                jobs.append((task, "asyncio"))
        for round_number in range(1, rounds + 1):
            for task, loop in jobs:
                for impl in wanted:
                    if loop == "uvloop" and "no_uvloop" in impls.get(impl, {}):
                        continue
                    runs = args.runs_host if task == "host" else args.runs_relay
                    per_child = math.ceil(runs / rounds)
                    command = child_command(pythons[impl], impl, task, loop, per_child, args)
                    name = task if task != "throughput" else f"throughput on {loop}"
                    label = f"{impl} {name}"
                    if rounds > 1:
                        label += f" (round {round_number}/{rounds})"
                    timeout = 120.0 + per_child * (CONNECT_TIMEOUT if task != "throughput" else 0)
                    timeout += args.repeat * args.count * 2e-4 * 2
                    background.start()
                    stdout, error = run_child(command, label, timeout)
                    other = background.stop()
                    if other is not None:
                        loads.append(other)
                        if max(other.values()) > BUSY_CPUS:
                            print(
                                f"  meanwhile other processes used {other['other_cpus']:.2f}"
                                f" CPUs, other virtual machines {other['steal_cpus']:.2f}",
                                file=sys.stderr,
                                flush=True,
                            )
                    if error:
                        impls[impl].setdefault("errors", []).append(f"{label}: {error}")
                        continue
                    if args.profile:
                        print(stdout)
                        continue
                    result = json.loads(stdout)
                    for key in ("module", "version", "python", "executable", "base_prefix"):
                        impls[impl][key] = result[key]
                    slot = results[impl].setdefault(f"{task}/{loop}", {})
                    if task == "throughput":
                        for which in ("raw", "conn"):
                            slot.setdefault(which, []).extend(result[which])
                        slot["loop_class"] = result["loop"]
                    else:
                        slot.setdefault("times", []).extend(result["times"])
                        slot.setdefault("errors", []).extend(result["errors"])
                        pairs = slot.setdefault("pairs", {})
                        for kind, count in result["pairs"].items():
                            pairs[kind] = pairs.get(kind, 0) + count
    elapsed = time.perf_counter() - started
    failed = any("errors" in entry for entry in impls.values())
    if args.profile:
        for name, entry in impls.items():
            for error in entry.get("errors", []):
                print(f"{name}: {error}", file=sys.stderr)
        return 1 if failed else 0

    connect: dict[str, dict[str, Any]] = {}
    throughput_summary: dict[str, dict[str, Any]] = {}
    for impl in wanted:
        for key, slot in results[impl].items():
            task, loop = key.split("/")
            if task == "throughput":
                if slot.get("raw") and slot.get("conn"):
                    throughput_summary.setdefault(impl, {})[loop] = summarize_throughput(
                        slot["raw"], slot["conn"]
                    )
            else:
                connect.setdefault(impl, {})[task] = {
                    **summarize_connect(slot["times"]),
                    "errors": slot["errors"],
                    "pairs": slot["pairs"],
                }
                for error in slot["errors"]:
                    print(f"{impl} {task}: {error}", file=sys.stderr)
    for task in ("host", "relay"):
        if task not in tasks and task not in skipped:
            skipped[task] = "not in --only"
    if "throughput" not in tasks:
        for loop in LOOPS:
            skipped.setdefault(loop, "not in --only")

    report: dict[str, Any] = {
        "settings": {
            key: getattr(args, key)
            for key in (
                "runs_host",
                "runs_relay",
                "connect_warmup",
                "count",
                "size",
                "window",
                "warmup",
                "repeat",
                "rounds",
                "quick",
            )
        },
        "python": sys.version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "coturn": server,
        "uvloop": uvloop_version,
        "elapsed_s": elapsed,
        "background_cpus": loads,
        "skipped": skipped,
        "impls": impls,
        "connect": connect,
        "throughput": throughput_summary,
        "raw": results,
    }

    print()
    print(
        "ICE Connection benchmark: ours vs upstream aioice 0.13.0, on 127.0.0.1"
        f"{' (--quick: rough numbers)' if args.quick else ''}"
    )
    runtime = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"{runtime} on {platform.platform()}, {os.cpu_count()} CPUs; uvloop {uvloop_version}")
    if server is not None:
        print(f"coturn {server['version']}")
    for impl in IMPLS:
        entry = impls.get(impl, {})
        if "module" in entry:
            print(f"  {impl:<9} {entry['module']} ({entry['version']})")
    bases = {entry["base_prefix"] for entry in impls.values() if "base_prefix" in entry}
    if len(bases) > 1:
        print(f"  warning: the children ran on different base interpreters: {sorted(bases)}")
    print(
        f"connect: ms from the start of gather(a.connect(), b.connect()) to both done, after"
        f" gathering and the candidate exchange; {args.runs_host} host and {args.runs_relay}"
        f" relay runs per implementation, in {rounds} round(s), after"
        f" {args.connect_warmup} untimed run(s) per child; median and p90 of all runs."
    )
    print(
        f"throughput: {args.count:,} datagrams of {args.size} bytes, A send() -> B recv(),"
        f" at most {args.window} in flight; best of {args.repeat * rounds} runs each"
        f" ({rounds} round(s) x {args.repeat}), raw and Connection alternately in each child."
    )
    print()
    for line in render(report):
        print(line)
    if loads:
        peak = max(max(load.values()) for load in loads)
        quiet = "quiet" if peak <= BUSY_CPUS else "NOT quiet: the figures are less reliable"
        load_text = "; ".join(
            f"{what} {statistics.fmean(load[key] for load in loads):.2f} CPUs on average,"
            f" {max(load[key] for load in loads):.2f} at most"
            for what, key in (
                ("other processes", "other_cpus"),
                ("other virtual machines (steal)", "steal_cpus"),
            )
        )
        print(f"during the children: {load_text} ({quiet})")
    print(f"(run took {elapsed:.0f} s)")
    if args.json is not None:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


def _have_turnserver() -> bool:
    return shutil.which("turnserver") is not None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ICE connect time (host, relay via coturn) and Connection"
        " throughput: ours vs upstream aioice 0.13.0, on loopback."
    )
    parser.add_argument("--quick", action="store_true", help="fast smoke run (rough numbers)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=TASKS,
        default=list(TASKS),
        help="measure only these (default: all)",
    )
    parser.add_argument(
        "--runs-host", type=int, help="host connects per implementation (default 200, quick 20)"
    )
    parser.add_argument(
        "--runs-relay", type=int, help="relay connects per implementation (default 50, quick 6)"
    )
    parser.add_argument(
        "--connect-warmup", type=int, help="untimed connects per child (default 3, quick 1)"
    )
    parser.add_argument(
        "--count", type=int, help="datagrams per throughput run (default 50000, quick 5000)"
    )
    parser.add_argument("--size", type=int, default=1000, help="datagram bytes (default 1000)")
    parser.add_argument(
        "--window", type=int, default=64, help="datagrams in flight at most (default 64)"
    )
    parser.add_argument(
        "--warmup", type=int, help="throughput: datagrams before measuring (default 5000)"
    )
    parser.add_argument(
        "--repeat", type=int, help="throughput runs per child, each kind (default 4, quick 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="run the children round-robin N times (default 2, quick 1); connect runs are"
        " split between rounds, throughput runs are repeated in each",
    )
    parser.add_argument("--skip-upstream", action="store_true", help="measure ours only")
    parser.add_argument("--skip-relay", action="store_true", help="do not start coturn")
    parser.add_argument(
        "--profile",
        choices=("host", "relay", "throughput-asyncio", "throughput-uvloop"),
        help="instead of the table, print a cProfile of ours for this measurement",
    )
    parser.add_argument(
        "--profile-upstream", action="store_true", help="with --profile, profile upstream too"
    )
    parser.add_argument("--top", type=int, default=30, help="--profile: functions shown")
    parser.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--turn-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs_host is None:
        args.runs_host = 20 if args.quick else 200
    if args.runs_relay is None:
        args.runs_relay = 6 if args.quick else 50
    if args.connect_warmup is None:
        args.connect_warmup = 1 if args.quick else 3
    if args.count is None:
        args.count = 5000 if args.quick else 50000
    if args.warmup is None:
        args.warmup = 1000 if args.quick else 5000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 4
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.child is None and args.task is not None:
        parser.error("--task needs --child")
    if args.child is not None and args.task == "relay" and args.turn_port is None:
        parser.error("--task relay needs --turn-port")
    positive = (args.runs_host, args.runs_relay, args.count, args.window, args.repeat)
    if min(*positive, args.rounds, args.warmup) < 1 or args.connect_warmup < 0:
        parser.error("counts must be >= 1 (--connect-warmup >= 0)")
    if args.window < 2:
        parser.error("--window must be >= 2")
    if not 1 <= args.size <= 1200:
        parser.error("--size must be between 1 and 1200 bytes")
    return args


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        if args.runs is not None:
            args.runs = max(1, args.runs)
        return child_main(args)
    # SIGTERM unwinds like Ctrl-C, so that coturn is stopped.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        print("interrupted: coturn was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
