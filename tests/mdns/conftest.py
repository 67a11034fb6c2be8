"""Two throw-away network namespaces joined by a veth pair, for real multicast (needs root).

Every multicast packet of these tests stays inside the namespaces created here::

    a: mdns0 192.0.2.1/24 2001:db8::1/64 fe80::…  ===  b: mdns1 192.0.2.2/24 2001:db8::2/64

- ``mdns_lab``: the :class:`MdnsLab`; it skips when this host cannot (not root, no ``ip``,
  namespaces not permitted) and on teardown terminates its processes by PID, deletes its
  namespaces and asserts that none is left.
- :meth:`MdnsLab.call_in` runs a coroutine function in-process, on a thread that entered
  a namespace with ``setns(2)`` (a network namespace is per thread), so adapter tests can
  look at sockets, tasks and file descriptors without touching the host's interfaces.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")

COMMAND_TIMEOUT = 10.0
TERMINATE_TIMEOUT = 5.0
CLONE_NEWNET = 0x40000000
A_IPV4, B_IPV4 = "192.0.2.1", "192.0.2.2"
A_IPV6, B_IPV6 = "2001:db8::1", "2001:db8::2"

_labs = itertools.count()


def _run(*argv: str) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {detail}")
    return result.stdout


def list_namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()]


class MdnsLab:
    """Namespaces ``aioice-mdns-<pid>-<n>-{a,b}`` and the processes started in them."""

    a_ipv4, b_ipv4, a_ipv6, b_ipv6 = A_IPV4, B_IPV4, A_IPV6, B_IPV6

    def __init__(self) -> None:
        self.prefix = f"aioice-mdns-{os.getpid()}-{next(_labs)}-"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.a = self.prefix + "a"
        self.b = self.prefix + "b"

    def build(self) -> None:
        for name in (self.a, self.b):
            self.namespaces.append(name)  # first: a half-created one is deleted too
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
            # No duplicate address detection: link-local addresses usable at once.
            code = (
                "for c in ('all', 'default'):"
                " open(f'/proc/sys/net/ipv6/conf/{c}/accept_dad', 'w').write('0')"
            )
            _run("ip", "netns", "exec", name, sys.executable, "-c", code)
        # Created in a, peer moved straight to b: nothing ever appears in the root namespace.
        _run("ip", "-n", self.a, "link", "add", "mdns0", "type", "veth",
             "peer", "name", "mdns1", "netns", self.b)  # fmt: skip
        for name, ifname, v4, v6 in (
            (self.a, "mdns0", A_IPV4, A_IPV6),
            (self.b, "mdns1", B_IPV4, B_IPV6),
        ):
            _run("ip", "-n", name, "link", "set", "dev", ifname, "multicast", "on")
            _run("ip", "-n", name, "addr", "add", f"{v4}/24", "dev", ifname)
            _run("ip", "-n", name, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            _run("ip", "-n", name, "link", "set", "dev", ifname, "up")
        deadline = time.monotonic() + 5.0
        for name, ifname in ((self.a, "mdns0"), (self.b, "mdns1")):
            while True:
                show = _run("ip", "-n", name, "-6", "addr", "show", "dev", ifname, "scope", "link")
                if "fe80::" in show and "tentative" not in show:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no usable link-local address on {ifname}:\n{show}")
                time.sleep(0.05)

    # -- processes --------------------------------------------------------------------

    def spawn(self, namespace: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``namespace`` (``ip netns exec`` execs it: the PID is its own)."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.processes.append(process)
        return process

    def mdns(self, namespace: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(namespace, sys.executable, "-m", "aioice.mdns", *args)

    def run_mdns(self, namespace: str, *args: str, timeout: float) -> tuple[int, str]:
        process = self.mdns(namespace, *args)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            last = self.stop(process).decode(errors="replace")
            raise AssertionError(f"{args} did not end within {timeout} s:\n{last}") from None
        return process.returncode, output.decode(errors="replace")

    def stop(self, process: subprocess.Popen[bytes]) -> bytes:
        """SIGTERM by PID, then SIGKILL; return the last output."""
        if process.poll() is None:
            process.terminate()
        try:
            output, _ = process.communicate(timeout=TERMINATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        return output or b""

    def wait_for_line(self, process: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
        """Read ``process``'s output until a line starts with ``prefix``; return it."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {prefix!r} line in {timeout} s:\n{buffer!r}")
                if not selector.select(remaining):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(
                        f"exited ({process.wait()}) before {prefix!r}:\n{buffer!r}"
                    )
                buffer += chunk

    # -- in-process -------------------------------------------------------------------

    def call_in(
        self,
        namespace: str,
        main: Callable[[], Awaitable[T]],
        timeout: float = 30,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> T:
        """``main()`` on a new event loop (``loop_factory``'s, e.g. uvloop's) on a thread
        inside ``namespace``; return its result."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)

                async def wrapper() -> T:
                    return await main()

                loop = (loop_factory or asyncio.new_event_loop)()
                try:
                    outcome.append(loop.run_until_complete(wrapper()))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=target, name=f"netns-{namespace}")
        thread.start()
        thread.join(timeout)
        assert not thread.is_alive(), f"in-namespace call did not end within {timeout} s"
        if failure:
            raise failure[0]
        return outcome[0]

    def close(self) -> list[str]:
        for process in reversed(self.processes):
            self.stop(process)
        for name in reversed(self.namespaces):
            subprocess.run(
                ["ip", "netns", "delete", name],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        return [name for name in list_namespaces() if name.startswith(self.prefix)]


@pytest.fixture
def mdns_lab() -> Iterator[MdnsLab]:
    """Namespaces a and b linked by veth; skips where that cannot work."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("not installed: ip (iproute2)")
    lab = MdnsLab()
    try:
        try:
            lab.build()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot build the namespace lab: {exc}")
        yield lab
    finally:
        leftovers = lab.close()
    assert not leftovers, f"namespaces left behind: {leftovers}"
