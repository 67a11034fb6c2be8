"""Helpers shared by the benchmarks that run servers and children on loopback.

- :func:`coturn`: ``turnserver`` on 127.0.0.1 (free ports, long-term credentials), stopped
  by its PID afterwards.
- :func:`stop_process`: SIGTERM, then SIGKILL, a process we started.
- :func:`run_child`: run one benchmark child (cleaned environment) and capture its output.
- :class:`BackgroundLoad`: how much CPU other processes (and virtual machines) took meanwhile.
- :func:`profile_table`: a cProfile's top functions by own time, per packet (or per run).
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from upstream_venv import clean_env

HOST: Final = "127.0.0.1"
TURN_USER: Final = "bench"
TURN_PASSWORD: Final = "bench-password"
TURN_REALM: Final = "bench.invalid"

STUN_MAGIC_COOKIE: Final = 0x2112A442
STUN_BINDING_REQUEST: Final = 0x0001
STUN_BINDING_SUCCESS: Final = 0x0101
STUN_HEADER: Final = struct.Struct("!HHI12s")


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def free_port_range(size: int) -> tuple[int, int]:
    for _ in range(200):
        low = random.randrange(20000, 60000 - size)
        if all(udp_port_free(port) for port in range(low, low + size)):
            return low, low + size - 1
    raise RuntimeError(f"found no {size} free UDP ports in a row")


def stun_binding_answered(port: int, timeout: float) -> bool:
    """Whether a STUN Binding request to ``HOST:port`` gets a success response."""
    transaction_id = os.urandom(12)
    request = STUN_HEADER.pack(STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE, transaction_id)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (HOST, port))
            data = sock.recv(2048)
        except OSError:
            return False
    if len(data) < STUN_HEADER.size:
        return False
    message_type, _length, cookie, tid = STUN_HEADER.unpack_from(data)
    return bool(
        message_type == STUN_BINDING_SUCCESS
        and cookie == STUN_MAGIC_COOKIE
        and tid == transaction_id
    )


def stop_process(proc: subprocess.Popen[Any], name: str) -> None:
    """SIGTERM the process we started (by its PID), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print(f"{name} (pid {proc.pid}) ignored SIGTERM: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def turnserver_version(binary: str) -> str:
    try:
        proc = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (proc.stdout.strip() or proc.stderr.strip() or "?").splitlines()[-1]


@contextlib.contextmanager
def coturn(
    workdir: Path, relay_ports: int = 16, extra_args: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """Start ``turnserver`` on loopback, wait until it answers; stop it by PID afterwards.

    ``relay_ports``: how many relay ports coturn may use (a free range of them);
    ``extra_args``: more options for its command line.
    """
    binary = shutil.which("turnserver")
    if binary is None:
        raise RuntimeError("coturn's `turnserver` is not on PATH")
    port = free_udp_port()
    min_port, max_port = free_port_range(relay_ports)
    log_file = workdir / "turnserver.log"
    pid_file = workdir / "turnserver.pid"
    command = [
        binary,
        "-n",  # no configuration file: these options only
        "--listening-ip", HOST,
        "--listening-port", str(port),
        "--relay-ip", HOST,
        "--min-port", str(min_port),
        "--max-port", str(max_port),
        "--allow-loopback-peers",
        "--lt-cred-mech",
        "--user", f"{TURN_USER}:{TURN_PASSWORD}",
        "--realm", TURN_REALM,
        "--fingerprint",
        "--no-tcp", "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780",
        "--db", str(workdir / "turndb"),
        "--pidfile", str(pid_file),
        "--log-file", str(log_file),
        "--simple-log",
        "--no-stdout-log",
        *extra_args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 15.0
        while not stun_binding_answered(port, 0.2):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"turnserver exited with status {proc.returncode}:\n{log_tail(log_file)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver does not answer on {HOST}:{port}")
        yield {
            "binary": binary,
            "version": turnserver_version(binary),
            "pid": proc.pid,
            "address": [HOST, port],
            "relay_ports": [min_port, max_port],
            "command": command,
        }
    finally:
        stop_process(proc, "turnserver")


def run_child(command: list[str], label: str, timeout: float) -> tuple[str, str]:
    """Run one child; (stdout, "") or ("", why it failed)."""
    print(f"running {label} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "", f"timed out after {timeout:g} s (killed)"
    except OSError as exc:
        return "", str(exc)
    if proc.returncode != 0:
        return "", proc.stderr.strip() or f"exit status {proc.returncode}"
    return proc.stdout, ""


def profile_table(profiler: cProfile.Profile, packets: int, top: int) -> str:
    """The ``top`` functions by own time, per packet: calls, own ns, cumulative ns."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [
        f"{'calls/pkt':>9} {'own ns/pkt':>10} {'cum ns/pkt':>10}  function",
        f"{'':>9} {total / packets * 1e9:>10,.0f} {'':>10}  (all profiled functions)",
    ]
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in rows:
        where = f"{Path(filename).name}:{line}" if line else filename
        lines.append(
            f"{calls / packets:>9.2f} {own / packets * 1e9:>10,.0f}"
            f" {cumulative / packets * 1e9:>10,.0f}  {name} ({where})"
        )
    return "\n".join(lines)


def machine_seconds() -> tuple[float, float] | None:
    """(busy, stolen) CPU seconds of all CPUs since boot (``/proc/stat``); ``None`` off Linux.

    Stolen is the time the hypervisor ran something else while a CPU of this machine had
    work to do.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a running process, from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class BackgroundLoad:
    """How many CPUs' worth of time went to other processes, and to other virtual machines.

    Other processes: the machine's busy time (``/proc/stat``) minus the CPU time of the
    orchestrator, its finished children, coturn and the echo peer. Other virtual machines: the
    steal time. Either makes the figures slower and noisier (a shared CPU, its caches, more
    wake-ups), so both are reported.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start: tuple[float, float, float, float] | None = None

    def _ours(self) -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total + sum(process_seconds(pid) for pid in self.pids)

    def start(self) -> None:
        machine = machine_seconds()
        self._start = None if machine is None else (time.perf_counter(), *machine, self._ours())

    def stop(self) -> dict[str, float] | None:
        """CPUs used by other processes, and stolen, since :meth:`start`; ``None`` if unknown."""
        machine = machine_seconds()
        if self._start is None or machine is None:
            return None
        wall0, busy0, steal0, ours0 = self._start
        wall = time.perf_counter() - wall0
        if wall <= 0:
            return None
        busy, steal = machine
        return {
            "other_cpus": max(0.0, ((busy - busy0) - (self._ours() - ours0)) / wall),
            "steal_cpus": (steal - steal0) / wall,
        }
