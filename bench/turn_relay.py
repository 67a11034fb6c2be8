"""TURN relay benchmark: client CPU per packet, direct UDP vs via TURN, ours vs upstream 0.13.

Run it with ``hatch run bench:turn [--quick] [--json PATH]`` from the repository root.

One run starts everything it needs on 127.0.0.1 and stops it again, by PID:

``coturn``
    ``turnserver`` with long-term credentials, on free ports, relaying to loopback peers.
``echo peer``
    A separate process (its CPU is not counted) that sends every datagram back to its sender.
``one child per implementation and round``
    ``ours`` (``aioice.turn.asyncio`` from ``packages/turn/src``, in the ``bench`` hatch
    environment) and ``upstream`` (aioice 0.13.0, only ever in ``bench/.upstream-venv`` under
    ``python -I`` and a cleaned environment), run round-robin. Each child exchanges ``--count``
    datagrams of ``--size`` bytes with the echo peer, ``--window`` in flight, first directly
    from an asyncio UDP socket, then through ``create_turn_endpoint()``, and measures its own
    CPU time (``time.process_time()``) and the wall time of each exchange.

CPU per packet is the child's CPU time over the number of round trips (one ``sendto()`` and
one ``datagram_received()`` each); what the relay adds is the TURN figure minus the direct one.

Each child then runs the same two exchanges "in memory": the direct socket, and the TURN
client's socket to the server, are swapped for a :class:`MemoryEcho` that hands every datagram
straight back (ChannelData included) one loop callback later. Without the kernel, whose share
of the end-to-end figures is large and noisy, what the relay adds is the TURN client's Python
alone, measured to a few ns.
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
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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
    stop_process,
)
from upstream_venv import (
    check_upstream_child,
    clean_env,
    ensure_upstream_venv,
    is_within,
    our_src_dirs,
)

SCRIPT: Final = Path(__file__).resolve()

IMPLS: Final = ("ours", "upstream")
PATHS: Final = ("direct", "turn", "direct_mem", "turn_mem")
PATH_LABELS: Final = {
    "direct": "direct UDP",
    "turn": "via TURN/UDP",
    "direct_mem": "direct",
    "turn_mem": "via TURN",
}
SECTION_LABELS: Final = {
    "direct": "[end to end]",
    "turn": "[end to end]",
    "direct_mem": "[in memory]",
    "turn_mem": "[in memory]",
}

RELAY_PORTS: Final = 16
"How many relay ports coturn may use (one allocation per child at a time is enough)."

SOCKET_BUFFER: Final = 262144
STALL_SECONDS: Final = 0.25
"No echo for this long with datagrams in flight: count them as lost and fill the window again."
MAX_STALLS: Final = 4
"Give up after this many stalls in a row without a single echo in between."
BUSY_CPUS: Final = 0.15
"Other processes using more CPUs than this during a child: warn that the machine is not quiet."
TARGET_ADDED_NS: Final = 1000.0
"The target: the relay adds at most 1 µs of client CPU per packet on our side."


# --- The child: one implementation, direct and via TURN. --------------------------------------


class Exchange(asyncio.DatagramProtocol):
    """Keeps ``window`` datagrams in flight to the echo peer until ``count`` have come back.

    The same protocol (and the same few lines per datagram) serves the direct socket and the
    TURN transport, so the difference between the two is what the transport costs. An echo
    that does not come back within :data:`STALL_SECONDS` is counted as lost and the window is
    filled again; an echo of another phase (a late one) does not match the payload and is
    counted as stale.
    """

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.transport: Any = None
        self.payload = b""
        self.count = 0
        self.sent = 0
        self.received = 0
        self.lost = 0
        self.stale = 0
        self.errors: list[str] = []
        self.done: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._seen = 0
        self._stalls = 0

    # -- asyncio.DatagramProtocol ---------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.closed = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data != self.payload:
            self.stale += 1
            return
        self.received += 1
        if self.sent < self.count:
            self.sent += 1
            self.transport.sendto(self.payload, self.peer)
        elif self.received + self.lost >= self.count:
            self._finish(None)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        self._finish(ConnectionError(f"transport lost: {exc}"))

    # -- the exchange ---------------------------------------------------------------------

    def start(self, count: int, window: int, payload: bytes) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self.payload = payload
        self.count = count
        self.sent = self.received = self.lost = self.stale = 0
        self._seen = self._stalls = 0
        self.done = loop.create_future()
        self._watchdog = loop.call_later(STALL_SECONDS, self._check)
        self._fill(window)
        return self.done

    def _fill(self, window: int) -> None:
        for _ in range(min(window, self.count - self.sent)):
            self.sent += 1
            self.transport.sendto(self.payload, self.peer)

    def _check(self) -> None:
        self._watchdog = None
        if self.done is None or self.done.done():
            return
        if self.received != self._seen:
            self._seen = self.received
            self._stalls = 0
        else:
            self._stalls += 1
            if self._stalls > MAX_STALLS:
                self._finish(TimeoutError(f"no echo for {MAX_STALLS * STALL_SECONDS:g} s"))
                return
            in_flight = self.sent - self.received - self.lost
            if in_flight > 0:
                self.lost += in_flight
            if self.sent >= self.count:
                self._finish(None)
                return
            self._fill(min(in_flight, self.count - self.sent) or 1)
        self._watchdog = asyncio.get_running_loop().call_later(STALL_SECONDS, self._check)

    def _finish(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.done is None or self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


def load_turn(impl: str) -> tuple[Callable[..., Any], dict[str, str]]:
    """``create_turn_endpoint`` of ``impl``, checked to come from where it must."""
    src_dirs = our_src_dirs()
    if impl == "upstream":
        leaked = []
        for entry in sys.path:
            with contextlib.suppress(OSError):
                if Path(entry or os.getcwd()).resolve() in src_dirs:
                    leaked.append(entry)
        if leaked:
            raise RuntimeError(f"the upstream child sees our sources on sys.path: {leaked}")
        module = importlib.import_module("aioice.turn")
    else:
        module = importlib.import_module("aioice.turn.asyncio")
    module_file = Path(module.__file__ or "").resolve()
    ours = any(is_within(module_file, src) for src in src_dirs)
    if impl == "ours":
        if not ours:
            raise RuntimeError(f"aioice.turn comes from {module_file}, not packages/turn/src")
        try:
            version = importlib.metadata.version("aioice-turn")
        except importlib.metadata.PackageNotFoundError:
            version = str(getattr(importlib.import_module("aioice.turn"), "__version__", "?"))
    else:
        version = check_upstream_child("aioice.turn", module_file, ours)
    create: Callable[..., Any] = module.create_turn_endpoint
    return create, {"module": str(module_file), "version": version}


def make_payload(size: int, phase: int) -> bytes:
    """``size`` bytes, different in every phase so that a late echo never matches."""
    return phase.to_bytes(4, "big")[-min(4, size) :] + bytes(max(0, size - 4))


async def run_exchange(
    exchange: Exchange, count: int, window: int, payload: bytes, timeout: float
) -> dict[str, Any]:
    gc.collect()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    await asyncio.wait_for(exchange.start(count, window, payload), timeout)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "count": count,
        "received": exchange.received,
        "lost": exchange.lost,
        "stale": exchange.stale,
        "errors": list(exchange.errors),
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ns_per_packet": cpu / count * 1e9,
        # Split by the kernel's tick sampling (250 Hz here): coarse, but shows the share.
        "user_ns_per_packet": (usage.ru_utime - usage0.ru_utime) / count * 1e9,
        "sys_ns_per_packet": (usage.ru_stime - usage0.ru_stime) / count * 1e9,
        "voluntary_switches": usage.ru_nvcsw - usage0.ru_nvcsw,
        "involuntary_switches": usage.ru_nivcsw - usage0.ru_nivcsw,
        "packets_per_s": exchange.received / wall if wall > 0 else 0.0,
    }


class MemoryEcho(asyncio.DatagramTransport):
    """Stands in for a UDP socket: every datagram sent comes back one loop callback later.

    Under the direct exchange it echoes the payload, under a TURN client the ChannelData (which
    is what coturn sends back when the peer echoes the payload on a bound channel). So the
    kernel, coturn and the echo peer are out of the picture, and what remains of the client's
    CPU is Python: the event loop, the exchange, and the TURN client.
    """

    def __init__(self, deliver: Callable[[bytes, Any], None], addr: Any) -> None:
        super().__init__()
        self._call_soon = asyncio.get_running_loop().call_soon
        self._deliver = deliver
        self._addr = addr

    def sendto(self, data: Any, addr: Any = None) -> None:
        self._call_soon(self._deliver, data, self._addr)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


@contextlib.contextmanager
def turn_in_memory(impl: str, turn: Any, server: tuple[str, int]) -> Iterator[None]:
    """Swap the TURN client's socket to the server for a :class:`MemoryEcho`, then back.

    This reaches into each implementation's privates: ours' ``TurnTransport._link`` (the
    ``_ServerLink``) and upstream's ``TurnTransport.__inner_protocol`` (its
    ``TurnClientUdpProtocol``); both send with ``.transport.sendto(data)`` (ours' data path
    with ``.send_raw``, the same method bound once) and take data from the server in
    ``.datagram_received(data, addr)``.
    """
    name = "_link" if impl == "ours" else "_TurnTransport__inner_protocol"
    holder = getattr(turn, name, None)
    real = getattr(holder, "transport", None)
    if holder is None or real is None or not hasattr(holder, "datagram_received"):
        raise RuntimeError(f"{impl}: no {name}.transport to swap for the in-memory run")
    echo = MemoryEcho(holder.datagram_received, server)
    raw = getattr(holder, "send_raw", None)
    holder.transport = echo
    if raw is not None:
        # Ours sends its data path with the transport's own sendto, bound at connection.
        holder.send_raw = echo.sendto
    try:
        yield
    finally:
        holder.transport = real
        if raw is not None:
            holder.send_raw = raw


class Child:
    """The transports of one child, and the phases that run over them."""

    def __init__(self, impl: str, args: argparse.Namespace) -> None:
        self.impl = impl
        self.args = args
        self.peer = (HOST, args.echo_port)
        self.server = (HOST, args.turn_port)
        self.phase = 0
        self.direct = Exchange(self.peer)
        self.turn = Exchange(self.peer)
        self.direct_mem = Exchange(self.peer)

    def next_payload(self) -> bytes:
        self.phase += 1
        return make_payload(self.args.size, self.phase)

    def timeout(self, count: int) -> float:
        return 30.0 + count * 0.002

    async def open(self, create_turn_endpoint: Callable[..., Any]) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.direct, local_addr=(HOST, 0)
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # As both TURN clients do for their socket to the server.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        await asyncio.wait_for(
            create_turn_endpoint(lambda: self.turn, self.server, TURN_USER, TURN_PASSWORD),
            10.0,
        )
        self.direct_mem.transport = MemoryEcho(self.direct_mem.datagram_received, self.peer)

    async def warm_up(self) -> dict[str, Any]:
        """Exchange a few datagrams on each path (the TURN channel gets bound) and check them."""
        count = self.args.warmup
        results: dict[str, Any] = {}
        for path in PATHS:
            result = await self.measure(path, count)
            if result["received"] == 0:
                raise RuntimeError(f"{path}: no echo came back during the warm-up")
            results[path] = result
        relayed = self.turn.transport.get_extra_info("sockname")
        results["relayed_address"] = list(relayed) if relayed is not None else None
        return results

    def exchange(self, path: str) -> Exchange:
        """The exchange of ``path``: both TURN paths share one (and the TURN transport)."""
        return {"direct": self.direct, "direct_mem": self.direct_mem}.get(path, self.turn)

    def start(self, path: str, count: int) -> asyncio.Future[None]:
        """Start an exchange on ``path`` (the TURN socket must be swapped for ``turn_mem``)."""
        return self.exchange(path).start(count, self.args.window, self.next_payload())

    async def measure(self, path: str, count: int | None = None) -> dict[str, Any]:
        exchange = self.exchange(path)
        count = count or self.args.count
        payload = self.next_payload()
        timeout = self.timeout(count)
        if path != "turn_mem":
            return await run_exchange(exchange, count, self.args.window, payload, timeout)
        with turn_in_memory(self.impl, self.turn.transport, self.server):
            return await run_exchange(exchange, count, self.args.window, payload, timeout)

    async def close(self) -> None:
        for exchange in (self.turn, self.direct):
            if exchange.transport is None:
                continue
            exchange.transport.close()
            if exchange.closed is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exchange.closed), 5.0)


async def child_measure(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    create_turn_endpoint, info = load_turn(impl)
    child = Child(impl, args)
    try:
        await child.open(create_turn_endpoint)
        warmup = await child.warm_up()
        results: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
        for _ in range(args.repeat):
            for path in PATHS:
                results[path].append(await child.measure(path))
    finally:
        await child.close()
    return {
        "impl": impl,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "base_prefix": sys.base_prefix,
        "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **info,
        "warmup": warmup,
        "results": results,
    }


async def child_profile(impl: str, args: argparse.Namespace) -> str:
    """cProfile of one exchange per path, per packet; the unprofiled one for scale."""
    create_turn_endpoint, info = load_turn(impl)
    child = Child(impl, args)
    out = io.StringIO()
    out.write(f"== cProfile of {impl} ({info['module']}, {info['version']}) ==\n")
    out.write(
        f"{args.count:,} round trips of {args.size} bytes, window {args.window}; cProfile"
        " slows every Python call, so read the shares, not the absolute ns\n"
    )
    try:
        await child.open(create_turn_endpoint)
        await child.warm_up()
        for path in PATHS:
            plain = await child.measure(path)
            profiler = cProfile.Profile()
            with contextlib.ExitStack() as stack:
                if path == "turn_mem":
                    stack.enter_context(turn_in_memory(impl, child.turn.transport, child.server))
                done = child.start(path, args.count)
                profiler.enable()
                await asyncio.wait_for(done, child.timeout(args.count))
                profiler.disable()
            out.write(
                f"\n--- {SECTION_LABELS[path]} {PATH_LABELS[path]}:"
                f" {plain['cpu_ns_per_packet']:,.0f} ns/pkt unprofiled,"
                f" top {args.top} by own time under cProfile ---\n"
            )
            out.write(profile_table(profiler, args.count, args.top) + "\n")
    finally:
        await child.close()
    return out.getvalue()


def child_main(args: argparse.Namespace) -> int:
    impl = args.child
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.profile:
        print(asyncio.run(child_profile(impl, args)))
    else:
        print(json.dumps(asyncio.run(child_measure(impl, args))))
    return 0


# --- The echo peer: a process of its own, so that its CPU is not the child's. -----------------


def echo_main() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.bind((HOST, 0))
    print(sock.getsockname()[1], flush=True)
    buffer = bytearray(65536)
    view = memoryview(buffer)
    recvfrom_into = sock.recvfrom_into
    sendto = sock.sendto
    try:
        while True:
            size, addr = recvfrom_into(buffer)
            with contextlib.suppress(OSError):
                sendto(view[:size], addr)
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()


# --- Orchestration: coturn, the echo peer, and the children round-robin. ----------------------


@contextlib.contextmanager
def echo_peer() -> Iterator[dict[str, Any]]:
    """The echo peer in a process of its own; stopped by PID afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-I", str(SCRIPT), "--echo"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the echo peer did not start (status {proc.poll()})")
        yield {"pid": proc.pid, "address": [HOST, int(line)]}
    finally:
        stop_process(proc, "echo peer")
        if proc.stdout is not None:
            proc.stdout.close()


def child_command(
    python: Path | str, impl: str, args: argparse.Namespace, turn_port: int, echo_port: int
) -> list[str]:
    command = [str(python), "-I", str(SCRIPT), "--child", impl]
    command += ["--turn-port", str(turn_port), "--echo-port", str(echo_port)]
    command += ["--count", str(args.count), "--size", str(args.size)]
    command += ["--window", str(args.window), "--warmup", str(args.warmup)]
    command += ["--repeat", str(args.repeat)]
    if args.profile:
        command += ["--profile", "--top", str(args.top)]
    return command


def best(runs: Sequence[dict[str, Any]], key: str, highest: bool = False) -> dict[str, Any]:
    return (max if highest else min)(runs, key=lambda run: float(run[key]))


#: (label, the TURN path, the direct path it is compared with)
COMPARISONS: Final = (("end to end", "turn", "direct"), ("in memory", "turn_mem", "direct_mem"))


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Best of all rounds: the lowest CPU per packet, the highest throughput, per path."""
    summary: dict[str, Any] = {}
    for path in PATHS:
        cheapest = best(runs[path], "cpu_ns_per_packet")
        fastest = best(runs[path], "packets_per_s", highest=True)
        summary[path] = {
            "cpu_ns_per_packet": cheapest["cpu_ns_per_packet"],
            "user_ns_per_packet": cheapest["user_ns_per_packet"],
            "sys_ns_per_packet": cheapest["sys_ns_per_packet"],
            "packets_per_s": fastest["packets_per_s"],
            "lost": sum(run["lost"] for run in runs[path]),
            "stale": sum(run["stale"] for run in runs[path]),
            "round_trips": sum(run["count"] for run in runs[path]),
        }
    added: dict[str, Any] = {}
    for label, turn, direct in COMPARISONS:
        # What the relay adds: best TURN - best direct; and, per run, TURN - direct in the
        # same child (paired), whose spread shows how far to trust the difference.
        paired = [
            t["cpu_ns_per_packet"] - d["cpu_ns_per_packet"]
            for d, t in zip(runs[direct], runs[turn], strict=True)
        ]
        added[label] = {
            "ns_per_packet": summary[turn]["cpu_ns_per_packet"]
            - summary[direct]["cpu_ns_per_packet"],
            "paired_median": statistics.median(paired),
            "paired_min": min(paired),
            "paired_max": max(paired),
            "paired_n": len(paired),
        }
    summary["added"] = added
    return summary


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def mbits(packets_per_s: float | None, size: int) -> float | None:
    return None if packets_per_s is None else packets_per_s * size * 8 / 1e6


def added_ns(impls: dict[str, dict[str, Any]], impl: str, label: str) -> float | None:
    summary = impls.get(impl, {}).get("summary")
    return None if summary is None else float(summary["added"][label]["ns_per_packet"])


def render_table(report: dict[str, Any]) -> str:
    impls: dict[str, dict[str, Any]] = report["impls"]
    size = report["settings"]["size"]

    def get(impl: str, path: str, key: str) -> float | None:
        summary = impls.get(impl, {}).get("summary")
        return None if summary is None else float(summary[path][key])

    header = (
        f"{'path':<16} {'ours ns':>8} {'upstream ns':>12} {'upstream/ours':>14}"
        f" {'ours pkt/s':>11} {'ours Mbit/s':>12} {'upstream pkt/s':>15}"
        f" {'upstream Mbit/s':>16}"
    )
    rule = "-" * len(header)
    lines = [header]
    sections = (
        ("end to end", "kernel UDP on loopback, coturn, echo peer", ("direct", "turn")),
        ("in memory", "no socket: each datagram sent comes back one loop callback later",
         ("direct_mem", "turn_mem")),
    )  # fmt: skip
    for label, note, paths in sections:
        lines += [rule, f"{label}: {note}"]
        for path in paths:
            ours = get("ours", path, "cpu_ns_per_packet")
            upstream = get("upstream", path, "cpu_ns_per_packet")
            ours_pps = get("ours", path, "packets_per_s")
            upstream_pps = get("upstream", path, "packets_per_s")
            ratio = upstream / ours if ours and upstream is not None else None
            lines.append(
                f"  {PATH_LABELS[path]:<14} {fmt(ours):>8} {fmt(upstream):>12}"
                f" {fmt(ratio, '.2f', 'x'):>14}"
                f" {fmt(ours_pps):>11} {fmt(mbits(ours_pps, size), '.1f'):>12}"
                f" {fmt(upstream_pps):>15} {fmt(mbits(upstream_pps, size), '.1f'):>16}"
            )
        ours_added = added_ns(impls, "ours", label)
        upstream_added = added_ns(impls, "upstream", label)
        ratio = report["added"][label]["upstream/ours"]
        lines.append(
            f"  {'relay adds':<14} {fmt(ours_added):>8} {fmt(upstream_added):>12}"
            f" {fmt(ratio, '.2f', 'x'):>14}"
        )
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> list[str]:
    lines = [
        f"target: the relay adds <= {TARGET_ADDED_NS / 1000:g} µs CPU per packet on our side"
        " (upstream adds about 4 µs)"
    ]
    for label, _turn, _direct in COMPARISONS:
        entry = report["added"][label]
        ours, upstream = entry["ours_ns"], entry["upstream_ns"]
        if ours is None:
            lines.append(f"  {label:<11} no result for ours")
            continue
        met = "MET" if ours <= TARGET_ADDED_NS else "NOT MET"
        text = f"  {label:<11} ours adds {ours / 1000:5.2f} µs: {met}"
        if not entry["ours_above_zero_in_every_round"]:
            text += " (not told apart from 0: TURN - direct <= 0 in some round)"
        if upstream is not None:
            text += f"; upstream adds {upstream / 1000:.2f} µs"
            if entry["ours/upstream"] is not None:
                text += f"; ours/upstream {entry['ours/upstream']:.2f} (target: 1/4 = 0.25)"
        lines.append(text)
    return lines


PIN_MODES: Final = ("one", "split", "none")


def pin_cpus(mode: str) -> tuple[int | None, list[int] | None, str]:
    """Place the processes: (the children's CPU, the affinity to restore, a description).

    ``one``: the children, coturn and the echo peer all on the first CPU. No wake-up needs an
    interrupt to another CPU (costly in a VM, and charged to the sender's CPU time), so the
    end-to-end figures vary least from run to run. ``split``: the children on the first CPU,
    coturn and the echo peer on the others. ``none``: wherever the scheduler puts them.
    The orchestrator sets its own affinity before it starts coturn and the echo peer, which
    inherit it; each child pins itself. Linux only (``os.sched_setaffinity``).
    """
    if mode == "none" or not hasattr(os, "sched_setaffinity"):
        return None, None, "not pinned to CPUs"
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "split" and len(cpus) > 1:
        os.sched_setaffinity(0, cpus[1:])
        return cpus[0], cpus, f"children on CPU {cpus[0]}, coturn and the echo peer on the others"
    os.sched_setaffinity(0, cpus[:1])
    return cpus[0], cpus, f"children, coturn and the echo peer all on CPU {cpus[0]}"


def orchestrate(args: argparse.Namespace) -> int:
    pythons: dict[str, Path | str] = {"ours": sys.executable}
    impls: dict[str, dict[str, Any]] = {}
    if args.skip_upstream:
        impls["upstream"] = {"skipped": "--skip-upstream"}
    else:
        python, why = ensure_upstream_venv()
        if python is None:
            impls["upstream"] = {"skipped": why}
            print(f"upstream SKIPPED: {why}", file=sys.stderr, flush=True)
        else:
            pythons["upstream"] = python
    wanted = ["ours"]
    if "upstream" in pythons and (not args.profile or args.profile_upstream):
        wanted.append("upstream")

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        impl: {path: [] for path in PATHS} for impl in wanted
    }
    failed = False
    loads: list[dict[str, float]] = []
    rounds = 1 if args.profile else args.rounds
    child_timeout = 120.0 + args.repeat * args.count * 0.02
    started = time.perf_counter()
    child_cpu, old_affinity, placement = pin_cpus(args.pin)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="turn-bench-") as tmp,
            coturn(Path(tmp), relay_ports=RELAY_PORTS) as server,
            echo_peer() as echo,
        ):
            background = BackgroundLoad([server["pid"], echo["pid"]])
            print(
                f"coturn pid {server['pid']} on {HOST}:{server['address'][1]}, echo peer pid"
                f" {echo['pid']} on {HOST}:{echo['address'][1]}",
                file=sys.stderr,
                flush=True,
            )
            for round_number in range(1, rounds + 1):
                for impl in wanted:
                    if "error" in impls.get(impl, {}):
                        continue
                    label = f"{impl} (round {round_number}/{rounds})" if rounds > 1 else impl
                    command = child_command(
                        pythons[impl], impl, args, server["address"][1], echo["address"][1]
                    )
                    if child_cpu is not None:
                        command += ["--cpu", str(child_cpu)]
                    background.start()
                    stdout, error = run_child(command, label, child_timeout)
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
                        impls[impl] = {"error": error}
                        failed = True
                    elif args.profile:
                        print(stdout)
                    else:
                        result = json.loads(stdout)
                        entry = impls.setdefault(impl, {})
                        for key in ("module", "version", "python", "executable", "base_prefix"):
                            entry[key] = result[key]
                        entry.setdefault("warmups", []).append(result["warmup"])
                        for path in PATHS:
                            for run in result["results"][path]:
                                run["background_cpus"] = other
                            runs[impl][path].extend(result["results"][path])
    finally:
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
    elapsed = time.perf_counter() - started
    if args.profile:
        for impl, entry in impls.items():
            if "error" in entry or "skipped" in entry:
                print(f"{impl}: {entry.get('error') or entry.get('skipped')}", file=sys.stderr)
        return 1 if failed else 0

    for impl in wanted:
        entry = impls.get(impl, {})
        if "error" not in entry and runs[impl]["direct"]:
            entry["runs"] = runs[impl]
            entry["summary"] = summarize(runs[impl])

    added: dict[str, Any] = {}
    for label, _turn, _direct in COMPARISONS:
        ours, upstream = added_ns(impls, "ours", label), added_ns(impls, "upstream", label)
        summary = impls.get("ours", {}).get("summary")
        # Ours' added cost is told apart from zero when TURN cost more than direct in every
        # round; else a ratio to it says nothing.
        above_zero = summary is not None and summary["added"][label]["paired_min"] > 0
        added[label] = {
            "ours_ns": ours,
            "upstream_ns": upstream,
            "ours_above_zero_in_every_round": above_zero,
            "upstream/ours": (
                upstream / ours
                if ours is not None and upstream is not None and ours > 0 and above_zero
                else None
            ),
            "ours/upstream": (
                ours / upstream
                if ours is not None and upstream is not None and upstream > 0
                else None
            ),
            "target_met": None if ours is None else ours <= TARGET_ADDED_NS,
        }
    report: dict[str, Any] = {
        "settings": {
            "count": args.count,
            "size": args.size,
            "window": args.window,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "rounds": args.rounds,
            "pin": args.pin,
            "placement": placement,
            "quick": args.quick,
        },
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "coturn": server,
        "elapsed_s": elapsed,
        "background_cpus": {
            key: {
                "mean": statistics.fmean(load[key] for load in loads),
                "max": max(load[key] for load in loads),
            }
            for key in ("other_cpus", "steal_cpus")
            if loads
        },
        "target_added_ns": TARGET_ADDED_NS,
        "added": added,
        "impls": impls,
    }

    print()
    per_child = f" x {args.repeat} per child" if args.repeat > 1 else ""
    print(
        f"TURN relay benchmark: client CPU ns per packet (1 sendto + 1 datagram_received),"
        f" best of {args.rounds} rounds{per_child}"
        f"{' (--quick: rough numbers)' if args.quick else ''}"
    )
    print(
        f"{args.count:,} round trips of {args.size}-byte payloads per measurement,"
        f" {args.window} in flight, to an echo peer on {HOST}"
    )
    runtime = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"{runtime} on {platform.platform()}, {os.cpu_count()} CPUs ({placement})")
    print(f"coturn {server['version']}")
    for impl in IMPLS:
        entry = impls.get(impl, {})
        if "summary" in entry:
            print(f"  {impl:<9} {entry['module']} ({entry['version']})")
        elif "skipped" in entry:
            print(f"  {impl:<9} SKIPPED: {entry['skipped']}")
        elif "error" in entry:
            first = entry["error"].strip().splitlines()[-1]
            print(f"  {impl:<9} FAILED: {first}")
    bases = {entry["base_prefix"] for entry in impls.values() if "base_prefix" in entry}
    if len(bases) > 1:
        print(f"  warning: the children ran on different base interpreters: {sorted(bases)}")
    print()
    print(render_table(report))
    print()
    print("ns: the client's CPU time (time.process_time: user + kernel) per round trip, lower")
    print("    is better; relay adds = via TURN - direct. pkt/s: echoed packets per second (wall")
    print("    time); Mbit/s: payload bits per second each way. Best of all rounds, each.")
    print("    upstream/ours on a relay-adds row: only if ours added > 0 in every round.")
    for impl in IMPLS:
        summary = impls.get(impl, {}).get("summary")
        if summary is None:
            continue
        for label, _turn, _direct in COMPARISONS:
            paired = summary["added"][label]
            print(
                f"{impl} {label}: relay adds per round (TURN - direct, same child): median"
                f" {paired['paired_median']:,.0f} ns, range {paired['paired_min']:,.0f}"
                f" to {paired['paired_max']:,.0f}"
            )
        kernel = ", ".join(
            f"{PATH_LABELS[path]} {summary[path]['sys_ns_per_packet']:,.0f}"
            f" of {summary[path]['cpu_ns_per_packet']:,.0f}"
            for path in ("direct", "turn")
        )
        losses = ", ".join(
            f"{PATH_LABELS[path]} {summary[path]['lost']}/{summary[path]['round_trips']:,}"
            for path in ("direct", "turn")
        )
        print(f"{impl} end to end: kernel ns (tick-sampled) {kernel}; lost {losses}")
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
    print()
    for line in verdict(report):
        print(line)
    print(f"(run took {elapsed:.0f} s)")
    for impl, entry in impls.items():
        if "error" in entry:
            print(f"\n{impl} FAILED:\n{entry['error']}", file=sys.stderr)

    if args.json is not None:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the client CPU that relaying through TURN adds per packet:"
        " ours vs upstream aioice 0.13.0, against coturn on loopback."
    )
    parser.add_argument("--quick", action="store_true", help="fast smoke run (rough numbers)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--count", type=int, help="round trips per measurement (default 20000, quick 2000)"
    )
    parser.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    parser.add_argument("--window", type=int, default=32, help="datagrams in flight (default 32)")
    parser.add_argument(
        "--warmup", type=int, help="round trips before measuring (default 1000, quick 200)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="run the implementation subprocesses round-robin N times and keep the best"
        " (default 5, quick 1)",
    )
    parser.add_argument(
        "--repeat", type=int, help="measurements per path in each child (default 2, quick 1)"
    )
    parser.add_argument("--skip-upstream", action="store_true", help="measure ours only")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table, print a cProfile of ours per path, per packet",
    )
    parser.add_argument(
        "--profile-upstream", action="store_true", help="with --profile, profile upstream too"
    )
    parser.add_argument("--top", type=int, default=25, help="--profile: functions shown per path")
    parser.add_argument(
        "--pin",
        choices=PIN_MODES,
        default="one",
        help="one: the children, coturn and the echo peer all on one CPU (default); split: the"
        " children on one CPU, the others elsewhere; none: no pinning",
    )
    parser.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--turn-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echo-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count is None:
        args.count = 2000 if args.quick else 20000
    if args.warmup is None:
        args.warmup = 200 if args.quick else 1000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    if min(args.count, args.window, args.warmup, args.rounds, args.repeat) < 1:
        parser.error("--count, --window, --warmup, --rounds and --repeat must be >= 1")
    if not 4 <= args.size <= 1200:
        parser.error("--size must be between 4 and 1200 bytes")
    if args.child is not None and (args.turn_port is None or args.echo_port is None):
        parser.error("--child needs --turn-port and --echo-port")
    return args


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo:
        return echo_main()
    if args.child is not None:
        return child_main(args)
    # SIGTERM unwinds like Ctrl-C, so that coturn and the echo peer are stopped.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        print("interrupted: coturn and the echo peer were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
