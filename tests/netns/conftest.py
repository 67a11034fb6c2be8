"""Network namespace lab: throw-away namespaces, veth links and nftables NAT (needs root).

Three fixtures:

- ``netlab``: a :class:`NetnsLab` to build any topology from namespaces and veth links and
  to run processes inside them. It skips the test when it cannot work here (not root, no
  ``ip`` or ``nft``, namespaces not permitted) and, on teardown, terminates every process
  it started (by PID) and deletes every namespace it created, then asserts that
  ``ip netns list`` shows none of them.
- ``nat_lab``: a :class:`NatLab`, the client / router / server topology below, with the
  NAT mode given by indirect parametrization (see :data:`NatMode`)::

      client 192.0.2.2 --- 192.0.2.1 router 198.51.100.1 --- server 198.51.100.2 (A1)
            (default route via router)   (nftables NAT on pub0)        198.51.100.3 (A2)

- ``ice_lab``: an :class:`IceLab`, the kernel NAT lab of ``test_netns_ice.py``: hosts A
  and B, each behind a router of its own with a :data:`KernelNat` (none, full cone,
  restricted, port-restricted, symmetric, UDP blocked; see :func:`kernel_nat_ruleset`)
  and optional loss, and a public segment where coturn runs (:meth:`IceLab.coturn_namespace`
  for :func:`tests.conftest.run_coturn`). Given ``(nat_a, nat_b[, loss])`` by indirect
  parametrization. :func:`netns_lab` and :func:`netns_unavailable` serve tests that build
  several labs at once (the matrix runs a few in threads).

Everything happens inside namespaces created here; the host's root namespace is never
touched (no link, route, sysctl or nft rule) and the addresses are documentation ranges
(RFC 5737) that exist only in the lab.
"""

from __future__ import annotations

import contextlib
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

from tests.conftest import CoturnNamespace

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
        left: tuple[str, str, str | None],
        right: tuple[str, str, str | None],
        *,
        master: str | None = None,
    ) -> None:
        """Link two namespaces, each side given as ``(namespace, ifname, address/prefix)``
        (address ``None``: none, e.g. for a bridge port).

        The pair is created inside ``left``'s namespace and its peer is placed directly in
        ``right``'s, so no interface ever appears in the root namespace. ``master``: a
        bridge in ``right``'s namespace (see :meth:`bridge`) that ``right``'s end joins.
        """
        (left_ns, left_if, _), (right_ns, right_if, _) = left, right
        self.ip(
            left_ns, "link", "add", left_if, "type", "veth", "peer", "name", right_if,
            "netns", right_ns,
        )  # fmt: skip
        if master is not None:
            self.ip(right_ns, "link", "set", right_if, "master", master)
        for namespace, ifname, address in (left, right):
            if address is not None:
                self.ip(namespace, "addr", "add", address, "dev", ifname)
            self.ip(namespace, "link", "set", ifname, "up")

    def bridge(self, namespace: str, name: str, address: str) -> None:
        """A bridge ``name`` inside ``namespace`` with ``address/prefix``, up: a segment
        that several namespaces join (:meth:`veth` with ``master``)."""
        self.ip(namespace, "link", "add", name, "type", "bridge")
        self.ip(namespace, "addr", "add", address, "dev", name)
        self.ip(namespace, "link", "set", name, "up")

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


def netns_unavailable() -> str | None:
    """Why namespaces and nftables cannot be used here (not root, a tool missing, creation
    refused), or ``None`` when they can. Checked with a throw-away namespace."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (iproute2, nftables)"
    lab = NetnsLab()
    try:
        try:
            check = lab.add_namespace("check")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"cannot create a network namespace: {exc}"
        try:
            lab.exec(check, "nft", "list", "ruleset")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"nftables unusable in a network namespace: {exc}"
    finally:
        leftovers = lab.close()
        assert not leftovers, f"namespaces left behind: {leftovers}"
    return None


@contextlib.contextmanager
def netns_lab() -> Iterator[NetnsLab]:
    """A :class:`NetnsLab`, closed on exit (processes stopped by PID, namespaces deleted),
    asserting that none of its namespaces is left. Check :func:`netns_unavailable` first."""
    lab = NetnsLab()
    try:
        yield lab
    finally:
        leftovers = lab.close()
        assert not leftovers, f"namespaces left behind: {leftovers}"


@pytest.fixture
def netlab() -> Iterator[NetnsLab]:
    """A :class:`NetnsLab`, cleaned up after the test; skips where namespaces are unavailable."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns_lab() as lab:
        yield lab


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


# -- the ICE lab: hosts A and B behind routers of their own, coturn on the public segment --

KernelNat = Literal[
    "none", "full-cone", "restricted", "port-restricted", "symmetric", "udp-blocked"
]
"""A router's behaviour, each made of nftables rules by :func:`kernel_nat_ruleset`."""

ICE_SERVER = "198.51.100.2"
"coturn (STUN and TURN) in the public namespace, on its bridge ``br0``."
ICE_SERVER_ALTERNATE = "198.51.100.3"
"A second address on ``br0``, for the RFC 5780 probe's alternate server."
ICE_PEER_RANGES = (
    "192.0.2.0-192.0.2.255",
    "198.51.100.0-198.51.100.255",
    "203.0.113.0-203.0.113.255",
)
"The lab's addresses, the only peers coturn relays to (as ``--allowed-peer-ip`` ranges)."
WAN_IF = "wan0"
"A router's interface on the public segment."
LAN_IF = "lan0"
"A router's interface towards its host."

_MAPPED_SET = """    set mapped {
        type inet_service
        flags dynamic,timeout
        timeout 2m
    }
"""
_PEERS_SET = """    set peers {
        type ipv4_addr . inet_service
        flags dynamic,timeout
        timeout 2m
    }
"""


def kernel_nat_ruleset(nat: KernelNat, host: str, *, loss: int = 0) -> str | None:
    """The nftables ruleset of a router with NAT type ``nat`` in front of its one host
    ``host``, dropping ``loss`` % of forwarded packets; ``None`` when it needs no rule.

    - ``none``: plain routing, the host has a public address.
    - ``port-restricted`` (endpoint-independent mapping, address-and-port-dependent
      filtering): ``masquerade``. It keeps the source port whenever the translated tuple is
      unique (always here: one host), so every destination sees the same mapping; inbound
      packets are translated back only as replies of a conntrack entry, which matches the
      remote address *and* port.
    - ``symmetric``: ``masquerade fully-random``, a random port for every new conntrack
      entry, that is for every new remote address or port; filtering as above.
    - ``full-cone`` (endpoint-independent filtering): ``masquerade``, and every port the
      host sent from is put in the dynamic set ``@mapped`` (from the forward chain, so the
      host's port, which masquerade keeps); a new inbound flow to a port in it is DNATed to
      the host, port unchanged, whatever its source. Conntrack does the rest: the host's
      replies leave through the reverse of that entry.
    - ``restricted`` (address-dependent filtering): the same with the set ``@peers`` of
      (remote address, port) pairs: a new inbound flow is DNATed only from an address the
      host sent to from that port, whatever the remote port.
    - ``udp-blocked``: ``masquerade`` (for TCP) and every forwarded UDP packet dropped: only
      TURN over TCP gets through.

    Every NAT type drops unsolicited UDP to the router itself rather than answering ICMP
    port unreachable, as NATs usually do. ``loss``: ``numgen random mod 100 < loss drop``
    first in the forward chain, so both directions lose ``loss`` % (the lab puts it on both
    routers: a packet from A to B crosses two lossy hops, one to the server only one, as in
    the virtual network where each LAN link is lossy).
    """
    if nat == "none" and not loss:
        return None
    sets: list[str] = []
    prerouting: list[str] = []
    forward: list[str] = []
    if loss:
        forward.append(f"numgen random mod 100 < {loss} drop")
    if nat == "udp-blocked":
        forward.append("meta l4proto udp drop")
    elif nat == "full-cone":
        sets.append(_MAPPED_SET)
        forward.append(f'iifname "{LAN_IF}" meta l4proto udp update @mapped {{ udp sport }}')
        prerouting.append(f'iifname "{WAN_IF}" udp dport @mapped dnat to {host}')
    elif nat == "restricted":
        sets.append(_PEERS_SET)
        forward.append(
            f'iifname "{LAN_IF}" meta l4proto udp update @peers {{ ip daddr . udp sport }}'
        )
        prerouting.append(f'iifname "{WAN_IF}" ip saddr . udp dport @peers dnat to {host}')
    chains = []
    if prerouting:
        chains.append(("prerouting", "nat", "dstnat", prerouting))
    if forward:
        chains.append(("forward", "filter", "filter", forward))
    if nat != "none":
        fully_random = " fully-random" if nat == "symmetric" else ""
        unsolicited = f'iifname "{WAN_IF}" meta l4proto udp drop'
        chains.append(("input", "filter", "filter", [unsolicited]))
        masquerade = f'oifname "{WAN_IF}" masquerade{fully_random}'
        chains.append(("postrouting", "nat", "srcnat", [masquerade]))
    body = "".join(sets)
    for hook, kind, priority, rules in chains:
        body += f"    chain {hook} {{\n"
        body += f"        type {kind} hook {hook} priority {priority}; policy accept;\n"
        body += "".join(f"        {rule}\n" for rule in rules)
        body += "    }\n"
    return f"table ip lab {{\n{body}}}\n"


@dataclass(frozen=True)
class IceSide:
    """One side of the :class:`IceLab`: a host behind its router."""

    name: str
    "``a`` or ``b``."
    nat: KernelNat
    host: str
    "The host's namespace."
    router: str
    "The router's namespace."
    address: str
    "The host's address: public (203.0.113.0/24) with ``none``, else private (192.0.2.0/24)."
    lan: str
    "The host's network, ``prefix/25``."
    gateway: str
    "The router's address on the LAN."
    wan: str
    "The router's address on the public segment: the mapped address behind a NAT."
    ruleset: str | None
    "The router's nftables ruleset (:func:`kernel_nat_ruleset`)."


class IceLab:
    """Hosts A and B, each behind a router of its own (with its :data:`KernelNat`), and a
    public segment (a bridge) with coturn, the STUN and TURN server::

        a 192.0.2.10   -- 192.0.2.1   ra 198.51.100.11 --+
                                                         br0 198.51.100.2 pub (coturn)
        b 192.0.2.138  -- 192.0.2.129 rb 198.51.100.12 --+

    A side with NAT ``none`` has public addresses instead (203.0.113.10 behind .1, and
    203.0.113.138 behind .129), routed from the public namespace and the other router; the
    private LANs are routed nowhere, so a private host candidate is unreachable from the
    other side. Routers have no default route: the public segment is all they reach. The
    public namespace only bridges (no forwarding) and runs the servers.
    """

    def __init__(self, lab: NetnsLab, nat_a: KernelNat, nat_b: KernelNat, *, loss: int = 0):
        self.lab = lab
        self.pub = lab.add_namespace("pub")
        lab.bridge(self.pub, "br0", f"{ICE_SERVER}/24")
        lab.ip(self.pub, "addr", "add", f"{ICE_SERVER_ALTERNATE}/24", "dev", "br0")
        # The internet drops what it cannot route, silently: the default route goes to a
        # sink, a veth pair with both ends here (no ARP on the sending end, so the frames
        # reach the other end addressed to no one, and are dropped there: nothing leaves
        # the namespace). Without it coturn's sendto to a private host candidate fails with
        # ENETUNREACH, and coturn (4.6) then closes the whole allocation.
        lab.ip(self.pub, "link", "add", "sink0", "type", "veth", "peer", "name", "sink1")
        lab.ip(self.pub, "link", "set", "sink0", "arp", "off", "up")
        lab.ip(self.pub, "link", "set", "sink1", "up")
        lab.ip(self.pub, "route", "add", "default", "dev", "sink0")
        self.a = self._side("a", nat_a, 0, loss)
        self.b = self._side("b", nat_b, 128, loss)
        for side, other in ((self.a, self.b), (self.b, self.a)):
            if side.nat == "none":
                lab.ip(self.pub, "route", "add", side.lan, "via", side.wan)
                lab.ip(other.router, "route", "add", side.lan, "via", side.wan)

    def _side(self, name: str, nat: KernelNat, offset: int, loss: int) -> IceSide:
        lab = self.lab
        net = "203.0.113" if nat == "none" else "192.0.2"
        side = IceSide(
            name=name,
            nat=nat,
            router=lab.add_namespace(f"r{name}"),
            host=lab.add_namespace(name),
            address=f"{net}.{offset + 10}",
            lan=f"{net}.{offset}/25",
            gateway=f"{net}.{offset + 1}",
            wan=f"198.51.100.{11 if name == 'a' else 12}",
            ruleset=kernel_nat_ruleset(nat, f"{net}.{offset + 10}", loss=loss),
        )
        wan = (side.router, WAN_IF, f"{side.wan}/24")
        lab.veth(wan, (self.pub, f"{name}0", None), master="br0")
        lan = (side.router, LAN_IF, f"{side.gateway}/25")
        lab.veth(lan, (side.host, "eth0", f"{side.address}/25"))
        lab.ip(side.host, "route", "add", "default", "via", side.gateway)
        lab.enable_forwarding(side.router)
        if side.ruleset is not None:
            lab.nft(side.router, side.ruleset)
        return side

    @property
    def sides(self) -> tuple[IceSide, IceSide]:
        return self.a, self.b

    def coturn_namespace(self) -> CoturnNamespace:
        """Where :func:`tests.conftest.run_coturn` runs coturn: the public namespace."""
        return CoturnNamespace(
            prefix=("ip", "netns", "exec", self.pub),
            address=ICE_SERVER,
            allowed_peers=ICE_PEER_RANGES,
        )

    def rulesets(self) -> str:
        """Both routers' rulesets as loaded now (sets included), for failure messages."""
        return "".join(
            f"router {side.name} ({side.nat}):\n"
            + (self.lab.exec(side.router, "nft", "list", "ruleset") or "(empty)\n")
            for side in self.sides
        )

    def probe(self, side: IceSide, timeout: float = 20.0) -> ProbeReport:
        """The RFC 5780 probe from ``side``'s host against a STUN server in the public
        namespace on ICE_SERVER:3480 / ICE_SERVER_ALTERNATE:3481 (started and stopped here)."""
        server = self.lab.spawn(
            self.pub, sys.executable, "-m", "aioice.stun", "serve",
            "--listen", f"{ICE_SERVER}:3480", "--alternate", f"{ICE_SERVER_ALTERNATE}:3481",
        )  # fmt: skip
        try:
            wait_for_lines(server, "listening on udp ", 4, timeout)
            code, output = self.lab.run(
                side.host, sys.executable, "-m", "aioice.stun", "probe", f"{ICE_SERVER}:3480",
                timeout=timeout,
            )  # fmt: skip
        finally:
            self.lab.stop(server)
        assert code == 0, f"probe exited with {code}:\n{output}\n{self.rulesets()}"
        return ProbeReport.parse(output)


@pytest.fixture
def ice_lab(request: pytest.FixtureRequest, netlab: NetnsLab) -> IceLab:
    """An :class:`IceLab`; parametrize indirectly with ``(nat_a, nat_b)`` or ``(nat_a,
    nat_b, loss)`` (default: port-restricted on both sides, no loss)."""
    param: tuple[KernelNat, KernelNat] | tuple[KernelNat, KernelNat, int] = getattr(
        request, "param", ("port-restricted", "port-restricted")
    )
    for nat in param[:2]:
        assert nat in get_args(KernelNat), f"unknown NAT type {nat!r}"
    return IceLab(netlab, param[0], param[1], loss=param[2] if len(param) > 2 else 0)
