"""Our agent against our own agent in another process, through the peer protocol: the
smoke test of the interop harness (peers, JSON lines, echo, trace, clean stop)."""

from __future__ import annotations

import asyncio
import base64
import sys

from aioice import Candidate, Connection

from tests.conftest import PEERS, Peer


def test_in_process_agent_against_a_peer_process(peers: list[Peer]) -> None:
    peer = Peer(
        [
            sys.executable,
            str(PEERS / "aioice_peer.py"),
            "--role",
            "controlled",
            "--address",
            "127.0.0.1",
        ]
    )
    peers.append(peer)
    gathered = peer.expect("gathered")
    assert gathered["implementation"] == "ours"

    async def main() -> bytes:
        conn = Connection(ice_controlling=True, host_addresses=["127.0.0.1"])
        await conn.gather_candidates()
        conn.remote_username = str(gathered["ufrag"])
        conn.remote_password = str(gathered["pwd"])
        candidates = gathered["candidates"]
        assert isinstance(candidates, list)
        for sdp in candidates:
            await conn.add_remote_candidate(Candidate.from_sdp(sdp))
        await conn.add_remote_candidate(None)
        peer.send(
            cmd="remote",
            ufrag=conn.local_username,
            pwd=conn.local_password,
            candidates=[c.to_sdp() for c in conn.local_candidates],
        )
        await asyncio.wait_for(conn.connect(), 10)
        await conn.send(b"hello")
        echoed = await asyncio.wait_for(conn.recv(), 10)
        await conn.close()
        return echoed

    assert asyncio.run(main()) == b"echo:hello"
    connected = peer.expect("connected")
    local = connected["local"]
    assert isinstance(local, dict)
    assert local["type"] == "host"
    received = peer.expect("received")
    assert base64.b64decode(str(received["data"])) == b"hello"
    peer.send(cmd="trace")
    assert peer.expect("trace")["lines"]
    peer.send(cmd="close")
    peer.expect("closed")
    assert peer.process.wait(10) == 0
