"""Network namespace lab: throw-away namespaces, veth links and nftables NAT (needs root).

Two fixtures:

- ``netlab``: a :class:`NetnsLab` to build any topology from namespaces and veth links and
  to run processes inside them. It skips the test when it cannot work here (not root, no
  ``ip`` or ``nft``, namespaces not permitted) and, on teardown, terminates every process
  it started (by PID) and deletes every namespace it created, then asserts that
  ``ip netns list`` shows none of them.
- ``nat_lab``: a :class:`NatLab`, the client / router / server topology below, with the
  NAT mode given by indirect parametrization (see :data:`NatMode`)::

      client 192.0.2.2 --- 192.0.2.1 router 198.51.100.1 --- server 198.51.100.2 (A1)
            (default route via router)   (nftables NAT on pub0)        198.51.100.3 (A2)

Everything happens inside namespaces created here; the host's root namespace is never
touched (no link, route, sysctl or nft rule) and the addresses are documentation ranges
(RFC 5737) that exist only in the lab.
"""

from __future__ import annotations

import itertools
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import pytest

NatMode = Literal["masquerade", "random-fully", "none"]
"""The router's NAT: ``masquerade``, ``masquerade fully-random`` (iptables' ``--random-fully``)
or plain routing."""

COMMAND_TIMEOUT = 10.0
"Seconds for one ``ip`` / ``nft`` command."
TERMINATE_TIMEOUT = 5.0
"Seconds a process gets to exit after SIGTERM before SIGKILL."

_labs = itertools.count()


def _run(argv: Sequence[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command; raise :class:`RuntimeError` with its stderr when it fails."""
    result = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {detail}")
    return result


def list_namespaces() -> list[str]:
    """The names ``ip netns list`` shows (one per line, maybe followed by ``(id: N)``)."""
    output = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


class NetnsLab:
    """Network namespaces owned by one test, each named ``aioice-<pid>-<n>-<role>``."""

    def __init__(self) -> None:
        self.prefix = f"aioice-{os.getpid()}-{next(_labs)}-"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    # -- topology ---------------------------------------------------------------------

    def add_namespace(self, role: str) -> str:
        """Create the namespace ``<prefix><role>`` with ``lo`` up; return its name."""
        name = self.prefix + role
        # Recorded first: a half-created namespace must be deleted too.
        self.namespaces.append(name)
        _run(["ip", "netns", "add", name])
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, namespace: str, *args: str) -> str:
        """Run ``ip -n NAMESPACE ARGS...``; return its stdout."""
        return _run(["ip", "-n", namespace, *args]).stdout

    def exec(self, namespace: str, *argv: str, stdin: str | None = None) -> str:
        """Run a short command inside ``namespace``; return its stdout."""
        return _run(["ip", "netns", "exec", namespace, *argv], stdin=stdin).stdout

    def veth(
        self,
        left: tuple[str, str, str],
        right: tuple[str, str, str],
    ) -> None:
        """Link two namespaces, each side given as ``(namespace, ifname, address/prefix)``.

        The pair is created inside ``left``'s namespace and its peer is placed directly in
        ``right``'s, so no interface ever appears in the root namespace.
        """
        (left_ns, left_if, _), (right_ns, right_if, _) = left, right
        self.ip(
            left_ns, "link", "add", left_if, "type", "veth", "peer", "name", right_if,
            "netns", right_ns,
        )  # fmt: skip
        for namespace, ifname, address in (left, right):
            self.ip(namespace, "addr", "add", address, "dev", ifname)
            self.ip(namespace, "link", "set", ifname, "up")

    def enable_forwarding(self, namespace: str) -> None:
        """``net.ipv4.ip_forward=1`` inside ``namespace`` (``/proc/sys/net`` is per namespace)."""
        # Written by Python rather than sysctl(8), which procps may not provide.
        code = "open('/proc/sys/net/ipv4/ip_forward', 'w').write('1')"
        self.exec(namespace, sys.executable, "-c", code)
        value = self.exec(namespace, "cat", "/proc/sys/net/ipv4/ip_forward").strip()
        assert value == "1", f"ip_forward is {value!r} in {namespace}"

    def nft(self, namespace: str, ruleset: str) -> None:
        """Load an nftables ruleset inside ``namespace``."""
        self.exec(namespace, "nft", "-f", "-", stdin=ruleset)

    # -- processes --------------------------------------------------------------------

    def spawn(self, namespace: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``namespace``, stdout and stderr on one pipe.

        ``ip netns exec`` execs the command, so the PID is the command's own. The
        environment is passed on, so ``sys.executable`` imports the workspace packages.
        """
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.processes.append(process)
        return process

    def run(self, namespace: str, *argv: str, timeout: float) -> tuple[int, str]:
        """Run ``argv`` inside ``namespace`` to completion; return (exit code, output)."""
        process = self.spawn(namespace, *argv)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            last = self.stop(process).decode(errors="replace")
            raise AssertionError(
                f"{' '.join(argv)} did not end within {timeout} s; output:\n{last}"
            ) from None
        return process.returncode, output.decode(errors="replace")

    def stop(self, process: subprocess.Popen[bytes]) -> bytes:
        """Terminate ``process`` by its PID (SIGTERM, then SIGKILL); return its last output."""
        if process.poll() is None:
            process.terminate()
        try:
            output, _ = process.communicate(timeout=TERMINATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        return output or b""

    def close(self) -> list[str]:
        """Stop every process, delete every namespace; return the names still listed."""
        for process in reversed(self.processes):
            self.stop(process)
        for name in reversed(self.namespaces):
            # A namespace lives on while a process is in it: processes go first.
            subprocess.run(
                ["ip", "netns", "delete", name],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        return [name for name in list_namespaces() if name.startswith(self.prefix)]


def wait_for_lines(
    process: subprocess.Popen[bytes], prefix: str, count: int, timeout: float
) -> list[str]:
    """Read ``process``'s output until ``count`` lines start with ``prefix``; return them."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            lines = buffer.decode(errors="replace").splitlines()
            matching = [line for line in lines if line.startswith(prefix)]
            if len(matching) >= count:
                return matching
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {count} {prefix!r} lines within {timeout} s; output:\n"
                    + buffer.decode(errors="replace")
                )
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(
                    f"process exited ({process.wait()}) before {count} {prefix!r} lines;"
                    " output:\n" + buffer.decode(errors="replace")
                )
            buffer += chunk


@pytest.fixture
def netlab() -> Iterator[NetnsLab]:
    """A :class:`NetnsLab`, cleaned up after the test; skips where namespaces are unavailable."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (iproute2, nftables)")
    lab = NetnsLab()
    try:
        try:
            check = lab.add_namespace("check")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot create a network namespace: {exc}")
        try:
            lab.exec(check, "nft", "list", "ruleset")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"nftables unusable in a network namespace: {exc}")
        _run(["ip", "netns", "delete", check])
        lab.namespaces.remove(check)
        yield lab
    finally:
        leftovers = lab.close()
    assert not leftovers, f"namespaces left behind: {leftovers}"


# -- the NAT lab ------------------------------------------------------------------------

LAN_ROUTER = "192.0.2.1"
LAN_CLIENT = "192.0.2.2"
PUBLIC_ROUTER = "198.51.100.1"
SERVER_A1 = "198.51.100.2"
SERVER_A2 = "198.51.100.3"
SERVER_P1 = 3478
SERVER_P2 = 3479
PUBLIC_IF = "pub0"

NAT_RULESETS: dict[NatMode, str | None] = {
    mode: None
    if mode == "none"
    else f"""
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{PUBLIC_IF}" masquerade{" fully-random" if mode == "random-fully" else ""}
    }}
}}
"""
    for mode in get_args(NatMode)
}


@dataclass(frozen=True)
class ProbeReport:
    """What ``python -m aioice.stun probe`` printed."""

    mapped_address: str
    behind_nat: str
    mapping: str
    filtering: str
    output: str
    "The whole output, for assertion messages."

    @classmethod
    def parse(cls, output: str) -> ProbeReport:
        fields = dict(
            (key.strip(), value.strip())
            for key, sep, value in (line.partition(":") for line in output.splitlines())
            if sep
        )
        try:
            return cls(
                mapped_address=fields["mapped address"],
                behind_nat=fields["behind NAT"],
                mapping=fields["mapping"],
                filtering=fields["filtering"],
                output=output,
            )
        except KeyError as exc:
            raise AssertionError(f"probe output lacks {exc}:\n{output}") from None


class NatLab:
    """A client behind a router doing ``nat`` towards an RFC 5780 server."""

    client_address = LAN_CLIENT
    "The client's own address, on the LAN."
    public_address = PUBLIC_ROUTER
    "The router's address on the public segment: the masquerade address."

    def __init__(self, lab: NetnsLab, nat: NatMode) -> None:
        self.lab = lab
        self.nat = nat
        self.client = lab.add_namespace("client")
        self.router = lab.add_namespace("router")
        self.server = lab.add_namespace("server")
        lan, public = f"{LAN_ROUTER}/24", f"{PUBLIC_ROUTER}/24"
        lab.veth((self.router, "lan0", lan), (self.client, "eth0", f"{LAN_CLIENT}/24"))
        lab.veth((self.router, PUBLIC_IF, public), (self.server, "eth0", f"{SERVER_A1}/24"))
        lab.ip(self.server, "addr", "add", f"{SERVER_A2}/24", "dev", "eth0")
        lab.ip(self.client, "route", "add", "default", "via", LAN_ROUTER)
        lab.enable_forwarding(self.router)
        ruleset = NAT_RULESETS[nat]
        if ruleset is None:
            # Plain routing: the server needs the way back to the LAN.
            lab.ip(self.server, "route", "add", "192.0.2.0/24", "via", PUBLIC_ROUTER)
        else:
            # An error here is a failure, not a skip: the netlab fixture checked nftables.
            lab.nft(self.router, ruleset)

    def ruleset(self) -> str:
        """The router's nftables ruleset, for assertion messages."""
        return self.lab.exec(self.router, "nft", "list", "ruleset")

    def start_server(self, timeout: float = 10.0) -> subprocess.Popen[bytes]:
        """Run the RFC 5780 server on A1:P1 / A2:P2; return once it listens on all four."""
        process = self.lab.spawn(
            self.server, sys.executable, "-m", "aioice.stun", "serve",
            "--listen", f"{SERVER_A1}:{SERVER_P1}", "--alternate", f"{SERVER_A2}:{SERVER_P2}",
        )  # fmt: skip
        wait_for_lines(process, "listening on udp ", 4, timeout)
        return process

    def probe(self, timeout: float = 20.0) -> ProbeReport:
        """Run the NAT probe in the client namespace against A1:P1."""
        code, output = self.lab.run(
            self.client, sys.executable, "-m", "aioice.stun", "probe", f"{SERVER_A1}:{SERVER_P1}",
            timeout=timeout,
        )  # fmt: skip
        assert code == 0, f"probe exited with {code}:\n{output}\nrouter ruleset:\n{self.ruleset()}"
        return ProbeReport.parse(output)


@pytest.fixture
def nat_lab(request: pytest.FixtureRequest, netlab: NetnsLab) -> NatLab:
    """The client / router / server lab; parametrize indirectly with a :data:`NatMode`."""
    nat: NatMode = getattr(request, "param", "masquerade")
    assert nat in NAT_RULESETS, f"unknown NAT mode {nat!r}"
    return NatLab(netlab, nat)
