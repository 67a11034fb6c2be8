"""``python -m aioice.stun``: serve, binding and probe, as subprocesses on loopback."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aioice.stun.__main__ import main
from aioice.stun.transmit import parse_address

TIMEOUT = 30.0
LISTENING = re.compile(r"^listening on udp (\S+):(\d+)$")


class Server:
    """A ``python -m aioice.stun serve`` subprocess and the addresses it printed."""

    def __init__(self, process: subprocess.Popen[str], addresses: list[tuple[str, int]]) -> None:
        self.process = process
        self.addresses = addresses


def read_lines(process: subprocess.Popen[str], count: int) -> list[str]:
    """Read ``count`` lines of stdout, failing after TIMEOUT seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def reader() -> None:
        for _ in range(count):
            line = stdout.readline()
            lines.put(line)
            if not line:
                return

    threading.Thread(target=reader, daemon=True).start()
    out: list[str] = []
    for _ in range(count):
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"server printed {out!r}, then nothing") from None
        assert line, f"server exited early after printing {out!r}"
        out.append(line.rstrip("\n"))
    return out


@contextmanager
def serve(*args: str, count: int = 1) -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aioice.stun", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        addresses = []
        for line in read_lines(process, count):
            match = LISTENING.match(line)
            assert match, line
            addresses.append((match[1], int(match[2])))
        yield Server(process, addresses)
        # SIGTERM, to this PID only; the server shuts down cleanly.
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr
        assert stderr == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioice.stun", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_serve_and_binding() -> None:
    with serve("--listen", "127.0.0.1:0") as server:
        [(host, port)] = server.addresses
        assert host == "127.0.0.1"
        assert port != 0
        result = cli("binding", f"{host}:{port}", "--local", "127.0.0.1:0")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"mapped address: 127\.0\.0\.1:\d+", lines[0]), lines
        assert re.fullmatch(r"rtt: \d+\.\d\d ms", lines[1]), lines
        assert result.stderr == ""


def test_serve_with_alternate_and_probe() -> None:
    with serve("--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0", count=4) as server:
        a1p1, a1p2, a2p1, a2p2 = server.addresses
        assert a1p1[0] == a1p2[0] == "127.0.0.1"
        assert a2p1[0] == a2p2[0] == "127.0.0.2"
        assert a1p1[1] == a2p1[1] != a1p2[1] == a2p2[1]
        result = cli("probe", f"127.0.0.1:{a1p1[1]}", "--local", "127.0.0.1")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"mapped address: 127\.0\.0\.1:\d+", lines[0]), lines
        assert lines[1:] == [
            "behind NAT: no",
            "mapping: endpoint-independent",
            "filtering: endpoint-independent",
        ]


def test_probe_needs_an_rfc5780_server() -> None:
    with serve("--listen", "127.0.0.1:0") as server:
        [(host, port)] = server.addresses
        result = cli("probe", f"{host}:{port}", "--local", "127.0.0.1:0")
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("error: ")
        assert "RFC 5780" in result.stderr


def test_serve_tcp() -> None:
    with serve("--listen", "127.0.0.1:0", "--tcp") as server:
        [(host, port)] = server.addresses
        result = cli("binding", f"{host}:{port}", "--local", "127.0.0.1:0")
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 3478)),
        ("192.0.2.1:5000", ("192.0.2.1", 5000)),
        ("stun.example.org:19302", ("stun.example.org", 19302)),
        ("[::1]", ("::1", 3478)),
        ("[::1]:5000", ("::1", 5000)),
        ("[2001:db8::1]:0", ("2001:db8::1", 0)),
        ("::1", ("::1", 3478)),
    ],
)
def test_parse_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


def test_parse_address_default_port() -> None:
    assert parse_address("127.0.0.1", 0) == ("127.0.0.1", 0)
    assert parse_address("[::1]", 0) == ("::1", 0)


@pytest.mark.parametrize("argv", [[], ["bogus"], ["binding"], ["serve", "--nope"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: python -m aioice.stun" in capsys.readouterr().err
