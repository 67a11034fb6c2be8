"""Shared fixtures. A real TURN server (coturn's ``turnserver``) on loopback, for the TURN
integration tests, the ICE interop tests and the NAT lab.

Two fixtures:

- ``coturn`` (session scope): one server shared by every test, long-term credentials,
  default lifetimes. Tests must not break it (no ``--stale-nonce`` games there).
- ``coturn_factory`` (function scope): a :class:`CoturnFactory` that starts servers of
  their own with other options (a short ``stale_nonce`` to force a 438, short permission
  or channel lifetimes, the TURN REST API shared secret), stopped when the test ends.

Both skip when ``turnserver`` or ``openssl`` is not installed. See :func:`coturn` for the
command line and why each flag is there, and :class:`Coturn` for what a test gets.

Only loopback is involved: coturn listens and relays on 127.0.0.1 (and ::1 when usable),
and refuses peers outside loopback, so no test can make it send anything elsewhere. The one
exception is :func:`run_coturn` given a :class:`CoturnNamespace`: the kernel NAT lab
(``tests/netns``) runs coturn inside a network namespace of its own, on its address there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import random
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    TransactionConfig,
    TransactionError,
)
from aioice.stun import asyncio as stun_asyncio
from aioice.turn import rest_credentials

REALM = "aioice.test"
USERNAME = "aioice"
PASSWORD = "coturn-password"
STALE_NONCE = 600
"Seconds a nonce lives on the shared server (coturn's own default for ``--stale-nonce``)."
PERMISSION_LIFETIME = 300
"coturn's default (RFC 8656 §9: 300 s)."
CHANNEL_LIFETIME = 600
"coturn's default (RFC 8656 §12: 10 minutes)."
RELAY_PORT_COUNT = 32
"Relay ports per server: a small range, checked free at start."
RELAY_PORT_FLOOR = 20000
"Relay ranges are picked below the kernel's ephemeral range, above this port."
READY_TIMEOUT = 5.0
"Seconds one start attempt has to answer a Binding and accept TCP and TLS connections."
START_ATTEMPTS = 3
"Attempts with fresh ports, in case another process took a picked port meanwhile."
TERMINATE_TIMEOUT = 5.0
"Seconds coturn gets to exit after SIGTERM before SIGKILL."
_ALERT = re.compile(
    r"Unknown argument|CONFIGURATION ALERT|CONFIG ERROR|cannot start TLS|cannot find"
)
"coturn log lines that mean it is not the server the command line describes (it goes on)."
_BIND_FAILED = re.compile(r"Cannot bind")
"coturn could not bind a listener (and retries forever): start again on other ports."
PROBE = TransactionConfig(rto=0.05, retransmissions=1, rm=2)
"The readiness Binding: sent at 0 and 0.05 s, given up at 0.15 s, then sent again."


@dataclasses.dataclass(frozen=True)
class Coturn:
    """A running coturn, as a test sees it.

    UDP and TCP share a port (coturn's ``--listening-port``); TLS (and DTLS, on UDP) use
    another (``--tls-listening-port``). Addresses are ``(host, port)`` tuples.
    """

    udp: Address
    "``('127.0.0.1', port)`` (or a :class:`CoturnNamespace`'s address): STUN/TURN over UDP."
    tcp: Address
    "The same address as :attr:`udp`, over TCP."
    tls: Address
    "``('127.0.0.1', tls_port)``: TURN over TLS (see :attr:`cert`)."
    udp6: Address | None
    "``('::1', port)`` when ::1 is usable here, else ``None``."
    tcp6: Address | None
    "``('::1', port)`` over TCP, or ``None``."
    tls6: Address | None
    "``('::1', tls_port)`` over TLS, or ``None``."
    realm: str
    "The realm coturn sends in 401 responses (``--realm``)."
    username: str
    "The long-term credential's username (with :attr:`auth_secret`: ``expiry:aioice``)."
    password: str
    "Its password (with :attr:`auth_secret`: the REST API's HMAC of the username)."
    auth_secret: str | None
    "The TURN REST API shared secret (``--static-auth-secret``), or ``None``."
    cert: Path
    "Self-signed PEM certificate of the TLS listener (SAN IP:127.0.0.1, IP:::1, localhost)."
    key: Path
    "Its private key (PEM)."
    relay_ports: tuple[int, int]
    "``(min, max)`` of the relayed ports, both included (``--min-port``, ``--max-port``)."
    stale_nonce: int
    "Seconds a nonce is valid (``--stale-nonce``); then requests get 438 Stale Nonce."
    permission_lifetime: int
    "``--permission-lifetime`` in seconds."
    channel_lifetime: int
    "``--channel-lifetime`` in seconds."
    pid: int
    "The ``turnserver`` process (started directly, never daemonized)."
    log: Path
    "coturn's log file (``-v``); :meth:`read_log` for assertion messages."
    argv: tuple[str, ...]
    "The whole command line."

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts :attr:`cert` only (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def read_log(self) -> str:
        """coturn's log so far, and what it wrote on stdout / stderr."""
        parts = []
        for path in (self.log, self.log.with_suffix(".out")):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


@dataclasses.dataclass(frozen=True)
class CoturnNamespace:
    """Where :func:`run_coturn` runs coturn instead of the test's own loopback: inside a
    network namespace (the kernel NAT lab's public segment, ``tests/netns``)."""

    prefix: tuple[str, ...]
    """The command prefix that enters it, ``("ip", "netns", "exec", NAME)``: for
    ``turnserver`` and for its readiness probe (a child python, :func:`_probe_through`)."""
    address: str
    "The IPv4 address coturn listens and relays on (``--listening-ip``, ``--relay-ip``)."
    allowed_peers: tuple[str, ...]
    """Peer ranges ``"FIRST-LAST"`` coturn relays to (``--allowed-peer-ip``); every other
    IPv4 and IPv6 address is denied, loopback included."""
    port: int = 3478
    "The listening port (UDP and TCP)."
    tls_port: int = 5349
    "The TLS (and DTLS) port."
    relay_min: int = 49152
    """The first relayed port. The namespace is fresh, so the ports are used as they are
    rather than picked free (the free-port checks would bind in the test's namespace)."""


# -- ports ------------------------------------------------------------------------------


def ipv6_loopback_usable() -> bool:
    """Whether a socket can bind ::1 (IPv6 may be disabled in containers)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _port_free(port: int, hosts: Sequence[str]) -> bool:
    """Whether ``port`` can be bound on every host, over both UDP and TCP."""
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def _free_port(hosts: Sequence[str], taken: set[int]) -> int:
    """A port the kernel hands out as free, and free on every host over UDP and TCP."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((hosts[0], 0))
            port: int = sock.getsockname()[1]
        if port not in taken and _port_free(port, hosts):
            return port
    raise RuntimeError("no free port on loopback")


def _free_range(hosts: Sequence[str], count: int, taken: set[int]) -> tuple[int, int]:
    """``count`` consecutive ports, free over UDP and TCP, below the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ceiling = max(low, RELAY_PORT_FLOOR + 10 * count)
    rng = random.Random()
    for _ in range(100):
        start = rng.randrange(RELAY_PORT_FLOOR, ceiling - count)
        ports = range(start, start + count)
        if taken.isdisjoint(ports) and all(_port_free(port, hosts) for port in ports):
            return start, start + count - 1
    raise RuntimeError(f"no {count} consecutive free ports on loopback")


# -- tools, certificate and credentials ---------------------------------------------------------


def require_turnserver() -> str:
    """The ``turnserver`` command's path; skips the test when coturn is not installed."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.skip("coturn is not installed (no turnserver command): apt-get install coturn")
    return turnserver


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed P-256 certificate and key for 127.0.0.1, ::1 and localhost."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make coturn's TLS certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


# -- the process --------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` by its PID (SIGTERM, then SIGKILL) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=TERMINATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TERMINATE_TIMEOUT)


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a reaped child does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listeners(server: Coturn) -> tuple[list[Address], list[Address]]:
    """``(udp, tcp)``: the addresses the readiness probe tries (TLS ones accept TCP)."""
    udp = [address for address in (server.udp, server.udp6) if address is not None]
    tcp = [server.tcp, server.tls, server.tcp6, server.tls6]
    return udp, [address for address in tcp if address is not None]


async def _probe(server: Coturn) -> str | None:
    """``None`` when every listener answers, else what does not."""
    return await _probe_addresses(*_listeners(server))


async def _probe_addresses(udp: Sequence[Address], tcp: Sequence[Address]) -> str | None:
    """``None`` when a Binding over UDP is answered at each of ``udp`` and a TCP connection
    is accepted at each of ``tcp``, else what does not."""
    binding = Message(Method.BINDING, Class.REQUEST)
    for address in udp:
        try:
            await stun_asyncio.request(binding, address, config=PROBE)
        except (TransactionError, OSError) as exc:
            return f"UDP Binding to {address}: {exc!r}"
    for address in tcp:
        try:
            _, writer = await asyncio.open_connection(*address)
        except OSError as exc:
            return f"TCP connect to {address}: {exc!r}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return None


_PROBE_CHILD = """
import asyncio, json, sys
from tests.conftest import _probe_addresses
udp, tcp = ([tuple(address) for address in part] for part in json.loads(sys.argv[1]))
print(asyncio.run(_probe_addresses(udp, tcp)) or "")
"""
"The readiness probe in a child (run from the repository root, so ``tests`` imports)."


def _probe_through(prefix: Sequence[str], server: Coturn) -> str | None:
    """:func:`_probe`, run by a child python through ``prefix`` (in coturn's namespace)."""
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-c", _PROBE_CHILD, json.dumps(_listeners(server))],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the probe did not end within {READY_TIMEOUT} s"
    if result.returncode != 0:
        return f"the probe exited with {result.returncode}: {result.stderr.strip()}"
    return result.stdout.strip() or None


def _check_log(server: Coturn) -> str | None:
    """Fail on a configuration alert; return a bind failure (worth a retry), else ``None``."""
    lines = server.read_log().splitlines()
    alerts = [line for line in lines if _ALERT.search(line)]
    if alerts:
        pytest.fail(f"coturn did not take its command line {server.argv}: {alerts}")
    # Another process took a picked port; what answers there may not be coturn.
    bind_failures = [line for line in lines if _BIND_FAILED.search(line)]
    return f"a port is taken: {bind_failures[0]}" if bind_failures else None


def _wait_ready(
    process: subprocess.Popen[bytes], server: Coturn, prefix: Sequence[str] = ()
) -> str | None:
    """Poll until coturn answers on every listener; ``None`` when ready, else why not.
    With a command ``prefix`` (coturn in a namespace), the probe runs through it."""
    deadline = time.monotonic() + READY_TIMEOUT
    problem: str | None = "not probed"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"turnserver exited with {process.returncode}"
        problem = _check_log(server) or (
            _probe_through(prefix, server) if prefix else asyncio.run(_probe(server))
        )
        if problem is None:
            # Listeners open one by one: read the log again now that all of them answered.
            return _check_log(server)
        if problem.startswith("a port is taken"):
            return problem
        time.sleep(0.02)
    return f"not ready within {READY_TIMEOUT} s: {problem}"


@contextlib.contextmanager
def run_coturn(
    workdir: Path,
    cert: Path,
    key: Path,
    *,
    stale_nonce: int = STALE_NONCE,
    permission_lifetime: int = PERMISSION_LIFETIME,
    channel_lifetime: int = CHANNEL_LIFETIME,
    auth_secret: str | None = None,
    relay_port_count: int = RELAY_PORT_COUNT,
    extra_args: Sequence[str] = (),
    namespace: CoturnNamespace | None = None,
) -> Iterator[Coturn]:
    """Start coturn in ``workdir``, wait until it answers, stop it on exit (see :func:`coturn`).

    ``namespace``: run it inside a network namespace instead (see :class:`CoturnNamespace`):
    its address, fixed ports and peer ranges replace the loopback ones; everything else on
    the command line is the same.
    """
    turnserver = require_turnserver()
    if namespace is None:
        hosts = ["127.0.0.1", "::1"] if ipv6_loopback_usable() else ["127.0.0.1"]
        prefix: list[str] = []
        peers = [
            "--allow-loopback-peers",
            "--allowed-peer-ip", "127.0.0.0-127.255.255.255",
            "--denied-peer-ip", "0.0.0.0-255.255.255.255",
            "--allowed-peer-ip", "::1",
            "--denied-peer-ip", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]  # fmt: skip
    else:
        hosts = [namespace.address]
        prefix = list(namespace.prefix)
        peers = [
            *(arg for peer in namespace.allowed_peers for arg in ("--allowed-peer-ip", peer)),
            "--denied-peer-ip", "0.0.0.0-255.255.255.255",
            "--denied-peer-ip", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]  # fmt: skip
    failures: list[str] = []
    for attempt in range(START_ATTEMPTS):
        if namespace is None:
            taken: set[int] = set()
            port = _free_port(hosts, taken)
            taken.add(port)
            tls_port = _free_port(hosts, taken)
            taken.add(tls_port)
            min_port, max_port = _free_range(hosts, relay_port_count, taken)
        else:
            port, tls_port = namespace.port, namespace.tls_port
            min_port, max_port = namespace.relay_min, namespace.relay_min + relay_port_count - 1
        log = workdir / f"turnserver-{attempt + 1}.log"
        if auth_secret is None:
            username, password = USERNAME, PASSWORD
            auth = ["--lt-cred-mech", "--user", f"{USERNAME}:{PASSWORD}"]
        else:
            username, password = rest_credentials(auth_secret, now=time.time(), user=USERNAME)
            auth = ["--use-auth-secret", "--static-auth-secret", auth_secret]
        argv = [
            *prefix,
            turnserver,
            "-n",
            *(arg for host in hosts for arg in ("--listening-ip", host)),
            *(arg for host in hosts for arg in ("--relay-ip", host)),
            "--listening-port", str(port),
            "--tls-listening-port", str(tls_port),
            "--cert", str(cert),
            "--pkey", str(key),
            "--min-port", str(min_port),
            "--max-port", str(max_port),
            *auth,
            "--realm", REALM,
            *peers,
            "--no-multicast-peers",
            "--fingerprint",
            "--no-software-attribute",
            "--no-rfc5780",
            f"--stale-nonce={stale_nonce}",
            # (These two take their value only after "=", like --stale-nonce.)
            f"--permission-lifetime={permission_lifetime}",
            f"--channel-lifetime={channel_lifetime}",
            "--relay-threads", "1",
            "--no-cli",
            "--userdb", str(workdir / "turndb"),
            "--pidfile", str(workdir / "turnserver.pid"),
            "--log-file", str(log),
            "--simple-log",
            "--no-stdout-log",
            "-v",
            *extra_args,
        ]  # fmt: skip
        server = Coturn(
            udp=(hosts[0], port),
            tcp=(hosts[0], port),
            tls=(hosts[0], tls_port),
            udp6=("::1", port) if len(hosts) > 1 else None,
            tcp6=("::1", port) if len(hosts) > 1 else None,
            tls6=("::1", tls_port) if len(hosts) > 1 else None,
            realm=REALM,
            username=username,
            password=password,
            auth_secret=auth_secret,
            cert=cert,
            key=key,
            relay_ports=(min_port, max_port),
            stale_nonce=stale_nonce,
            permission_lifetime=permission_lifetime,
            channel_lifetime=channel_lifetime,
            pid=0,
            log=log,
            argv=tuple(argv),
        )
        with log.with_suffix(".out").open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            server = dataclasses.replace(server, pid=process.pid)
            problem = _wait_ready(process, server, prefix)
            if problem is None:
                yield server
                return
            failures.append(f"attempt {attempt + 1}: {problem}\n{server.read_log()}")
        finally:
            _stop(process)
            # A reaped child no longer exists: nothing of this coturn is left running.
            assert process.returncode is not None, f"turnserver {process.pid} still running"
            assert not pid_exists(process.pid), f"turnserver {process.pid} still exists"
    pytest.fail(f"coturn did not start ({' '.join(argv)}):\n" + "\n".join(failures))


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def coturn_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(cert, key)``: the self-signed pair every coturn here serves."""
    require_turnserver()  # the first reason to skip, before openssl's
    return make_certificate(tmp_path_factory.mktemp("coturn-tls"))


@pytest.fixture(scope="session")
def coturn(
    tmp_path_factory: pytest.TempPathFactory, coturn_certificate: tuple[Path, Path]
) -> Iterator[Coturn]:
    """coturn on loopback, shared by the session; yields a :class:`Coturn`.

    Skips when ``turnserver`` (package ``coturn``) or ``openssl`` is missing. Ports are
    picked free (listening, TLS and a relay range of :data:`RELAY_PORT_COUNT`), and the
    start is retried with new ports if a race took one. Readiness: a Binding answered on
    UDP (127.0.0.1 and ::1) and a TCP connection accepted on the TCP and TLS ports. On
    teardown coturn is terminated by its PID (SIGKILL after :data:`TERMINATE_TIMEOUT`) and
    the fixture asserts the process is gone.

    The command line, and why:

    - ``-n``: ignore ``/etc/turnserver.conf`` (the Debian one logs to syslog, for one).
    - ``--listening-ip 127.0.0.1 [--listening-ip ::1]``: listen on loopback only; ::1 only
      when it can be bound here. Without it coturn listens on every interface.
    - ``--relay-ip 127.0.0.1 [--relay-ip ::1]``: relayed addresses on loopback only.
    - ``--listening-port P``, ``--tls-listening-port T``: free ports, not 3478 / 5349, so
      tests can run next to a system coturn or in parallel. UDP and TCP share P; TLS and
      DTLS share T. ``--no-rfc5780`` keeps coturn off the alternate ports P+1 and T+1
      (the RFC 5780 ones) and off the CHANGE-REQUEST machinery.
    - ``--cert``, ``--pkey``: the throwaway self-signed certificate (SAN IP:127.0.0.1,
      IP:::1 and DNS:localhost), made with the openssl CLI in a temporary directory.
    - ``--min-port`` / ``--max-port``: a small range of :data:`RELAY_PORT_COUNT` ports found
      free below the ephemeral range, so relayed ports are predictable and assertable.
    - ``--lt-cred-mech --user aioice:coturn-password --realm aioice.test``: long-term
      credentials (a 401 with REALM and NONCE first). The REST API variant
      (``auth_secret``) uses ``--use-auth-secret --static-auth-secret`` instead: coturn
      lets a shared secret override static users, so the two never run together.
    - ``--allow-loopback-peers``: peers are other loopback sockets (coturn refuses them by
      default). ``--allowed-peer-ip`` 127.0.0.0/8 and ::1 with ``--denied-peer-ip`` for
      every other address: coturn checks the allow list first, so only loopback peers are
      accepted (403 otherwise), and no test can make it send a packet elsewhere.
      ``--no-multicast-peers`` on top. TCP relays (RFC 6062) stay enabled for future tests:
      they are bound to the loopback relay IP and under the same peer rules.
    - ``--fingerprint``: FINGERPRINT on every response, as RFC 8656 clients expect.
    - ``--no-software-attribute``: no SOFTWARE in responses (nothing version-dependent).
    - ``--stale-nonce=N``: nonces expire after N s (438 Stale Nonce); 600 on the shared
      server, configurable through :class:`CoturnFactory` to force a 438. Note that coturn
      binds a nonce to the session (the 5-tuple): a request from another socket or another
      TCP connection gets 438 too.
    - ``--permission-lifetime``, ``--channel-lifetime``: explicit (coturn's defaults, 300 s
      and 600 s), configurable through the factory to test expiry.
    - ``--relay-threads 1``: one relay thread whatever the CPU count (fast start).
    - ``--no-cli``: no telnet CLI on 127.0.0.1:5766 (the web admin is off by default).
    - ``--userdb DIR/turndb``: coturn opens an SQLite database anyway: keep it in the
      temporary directory rather than /var/lib/turn/turndb.
    - ``--pidfile DIR/turnserver.pid``: rather than /var/run/turnserver.pid.
    - ``--log-file DIR/turnserver-N.log --simple-log --no-stdout-log -v``: a moderately
      verbose log in a file of its own per start attempt N (``--simple-log``: the name as
      given, no PID or date added); stdout and stderr go to ``DIR/turnserver-N.out``. See
      :meth:`Coturn.read_log`. Readiness fails fast on a configuration alert in the log
      (coturn ignores an unknown argument and goes on) and retries on a bind failure.
    """
    workdir = tmp_path_factory.mktemp("coturn")
    with run_coturn(workdir, *coturn_certificate) as server:
        yield server


class CoturnFactory:
    """Starts coturn servers with other options than the shared one; see :func:`run_coturn`."""

    def __init__(self, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
        self._tmp_path = tmp_path
        self._certificate = certificate
        self._running: dict[int, contextlib.ExitStack] = {}
        self._count = 0

    def __call__(
        self,
        *,
        stale_nonce: int = STALE_NONCE,
        permission_lifetime: int = PERMISSION_LIFETIME,
        channel_lifetime: int = CHANNEL_LIFETIME,
        auth_secret: str | None = None,
        relay_port_count: int = RELAY_PORT_COUNT,
        extra_args: Sequence[str] = (),
    ) -> Coturn:
        """Start a server and return once it answers; it stops at the end of the test.

        ``relay_port_count``: the size of the relay port range. coturn frees a UDP relay
        port only on its next one-second tick after a Refresh with LIFETIME 0, so many
        allocate / close cycles a second need more than :data:`RELAY_PORT_COUNT`.
        """
        self._count += 1
        workdir = self._tmp_path / f"coturn-{self._count}"
        workdir.mkdir()
        stack = contextlib.ExitStack()
        server = stack.enter_context(
            run_coturn(
                workdir,
                *self._certificate,
                stale_nonce=stale_nonce,
                permission_lifetime=permission_lifetime,
                channel_lifetime=channel_lifetime,
                auth_secret=auth_secret,
                relay_port_count=relay_port_count,
                extra_args=extra_args,
            )
        )
        self._running[server.pid] = stack
        return server

    def stop(self, server: Coturn) -> None:
        """Stop ``server`` now (by its PID, asserting it is gone)."""
        self._running.pop(server.pid).close()

    def close(self) -> None:
        """Stop every server still running, the last started first."""
        errors: list[BaseException] = []
        for pid in reversed(list(self._running)):
            try:
                self._running.pop(pid).close()
            except BaseException as exc:  # stop the others, then raise the first
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def coturn_factory(
    tmp_path: Path, coturn_certificate: tuple[Path, Path]
) -> Iterator[CoturnFactory]:
    """A :class:`CoturnFactory`; its servers are stopped (by PID) when the test ends."""
    factory = CoturnFactory(tmp_path, coturn_certificate)
    try:
        yield factory
    finally:
        factory.close()


# -- ICE peers over JSON lines (interop tests and the NAT lab) ---------------------------

PEERS = Path(__file__).resolve().parent / "interop" / "peers"
"Peer scripts: ``aioice_peer.py`` (ours or upstream aioice), ``libnice_peer.py``."
PEER_TIMEOUT = 60.0
"Seconds a peer gets to answer one step of the protocol."


class PeerError(RuntimeError):
    """A peer exited or did not answer in time; carries its stderr."""


class Peer:
    """An ICE peer in a subprocess, speaking the JSON-lines protocol of
    ``tests/interop/protocol.md``; stopped by PID (:meth:`stop`) whatever happens."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.events: list[dict[str, object]] = []
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._buffer = b""

    def send(self, **command: object) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise PeerError(f"peer exited: {self.stderr()}") from exc

    def expect(self, *names: str, timeout: float = PEER_TIMEOUT) -> dict[str, object]:
        """The next event whose name is in ``names`` (others are kept in :attr:`events`)."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                event = json.loads(line)
                self.events.append(event)
                if event.get("event") in names:
                    return dict(event)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerError(f"no {names} within {timeout} s; stderr: {self.stderr()}")
            if self._selector.select(remaining):
                chunk = self.process.stdout.read()
                if not chunk:
                    raise PeerError(f"peer exited ({self.process.wait()}): {self.stderr()}")
                self._buffer += chunk

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(running)"
        return self.process.stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """Close politely, then terminate and kill by PID."""
        if self.process.poll() is None:
            with contextlib.suppress(PeerError, OSError):
                self.send(cmd="close")
            try:
                self.process.wait(TERMINATE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(TERMINATE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self._selector.close()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """A list to put :class:`Peer` objects in; each is stopped when the test ends."""
    started: list[Peer] = []
    try:
        yield started
    finally:
        for peer in started:
            peer.stop()


# -- upstream aioice (PyPI) in a venv of its own --------------------------------------------

BENCH = Path(__file__).resolve().parent.parent / "bench"
"The benchmarks: ``upstream_venv.py`` makes ``bench/.upstream-venv``, shared with the tests."


def _load_bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` loaded from its path (``bench`` is neither a package nor on
    ``sys.path``); only for stdlib-only helpers."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import upstream_venv  # mypy finds it through mypy_path
else:
    upstream_venv = _load_bench_module("upstream_venv")


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """The python of ``bench/.upstream-venv``: upstream aioice 0.13.0 from PyPI, which
    shares our import name and so only runs there, in a subprocess (``python -I`` with
    :func:`upstream_env`). The benchmarks' venv: made once (``python -m venv`` and
    ``pip install aioice==0.13.0``, a few seconds), then reused; gitignored. Skips when it
    cannot be made (no access to PyPI)."""
    python, why = upstream_venv.ensure_upstream_venv()
    if python is None:
        pytest.skip(f"no venv with aioice {upstream_venv.UPSTREAM_VERSION}: {why}")
    return python


def upstream_env(**extra: str) -> dict[str, str]:
    """The environment of an upstream child: ours without what could put our sources on
    its ``sys.path`` (``PYTHONPATH``, ``VIRTUAL_ENV``, ...), plus ``extra``."""
    return {**upstream_venv.clean_env(), **extra}


# -- generated result pages ----------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"
WRITE_DOCS = os.environ.get("AIOICE_WRITE_DOCS") == "1"
"""Result pages in docs/ are rewritten only when asked (``AIOICE_WRITE_DOCS=1``), so that a
test run leaves the tree as it found it."""


def write_generated_doc(name: str, text: str) -> bool:
    """Write ``docs/<name>`` when :data:`WRITE_DOCS`; return whether it was written."""
    if not WRITE_DOCS:
        return False
    (DOCS / name).write_text(text)
    return True


def report_results(title: str, doc: str, module: str, table: str) -> None:
    """Print a module's results table; with :data:`WRITE_DOCS`, also make it
    ``docs/<doc>`` (a page generated by ``module``)."""
    if not table:
        return
    print("\n" + table)
    write_generated_doc(
        doc,
        f"# {title}\n\n<!-- Generated by {module}; do not edit by hand. -->\n\n"
        f"Generated by `{module.replace('.', '/')}.py` (regenerate with `AIOICE_WRITE_DOCS=1"
        f" hatch test {module.replace('.', '/')}.py`). Times are each side's `connect()`"
        " in milliseconds, on loopback, on the machine and in the run below.\n\n"
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}.\n\n```text\n{table}\n```\n",
    )
