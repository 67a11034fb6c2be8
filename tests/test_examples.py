"""The examples run: the demo (the README's main job) and the sans-I/O loop."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from aioice.stun import asyncio as stun_asyncio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*argv: str) -> str:
    return subprocess.run(
        [sys.executable, *argv], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_demo_connects_two_agents_on_loopback() -> None:
    out = run(str(EXAMPLES / "demo.py"))
    assert "STUN server listening on 127.0.0.1:" in out
    assert re.search(r"selected pair: host 127\.0\.0\.1:\d+ -> host 127\.0\.0\.1:\d+", out)
    assert "time to connect: " in out
    assert "round-trip time: " in out


def test_demo_through_two_nats_uses_the_relay() -> None:
    out = run(str(EXAMPLES / "demo.py"), "--nat")
    assert "behind a symmetric NAT" in out
    # Port-restricted facing symmetric: only the TURN relay can carry the data.
    assert re.search(r"selected pair: \w+ [\d.]+:\d+ -> relay ", out) or re.search(
        r"selected pair: relay ", out
    )
    assert "round-trip time: 80.000 ms" in out  # virtual time: 4 hops of 20 ms


def test_sansio_example_against_our_server() -> None:
    async def scenario() -> str:
        async with await stun_asyncio.serve(("127.0.0.1", 0)) as server:
            host, port = server.addresses[0]
            # The example blocks on its socket: run it beside the server's loop.
            return await asyncio.to_thread(run, str(EXAMPLES / "stun_sansio.py"), f"{host}:{port}")

    out = asyncio.run(scenario())
    assert "mapped address: 127.0.0.1:" in out
    assert "round-trip time: " in out
