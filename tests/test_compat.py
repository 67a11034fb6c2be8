"""aiortc's use of aioice (aiortc/rtcicetransport.py and its tests), reproduced."""

from __future__ import annotations

import asyncio

import aioice.ice
import aioice.stun
import pytest
from aioice import Candidate, Connection, ConnectionClosed


def test_root_reexports_are_the_ice_classes() -> None:
    import aioice as root

    assert root.Connection is aioice.ice.Connection
    assert root.Candidate is aioice.ice.Candidate
    assert root.ConnectionClosed is aioice.ice.ConnectionClosed
    assert issubclass(ConnectionClosed, aioice.ice.ConnectionEvent)
    assert root.TransportPolicy is aioice.ice.TransportPolicy
    assert isinstance(aioice.ice.CONSENT_FAILURES, int)
    assert isinstance(aioice.ice.CONSENT_INTERVAL, int)
    assert isinstance(aioice.stun.RETRY_MAX, int)
    assert isinstance(aioice.stun.RETRY_RTO, float)


def test_aiortc_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Role set after construction, candidates converted through keywords, end of
    candidates, connect, data, close, ConnectionClosed; and ConnectionError on failure
    with aiortc's shortened test timers."""
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 1)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)

    def convert(c: Candidate) -> Candidate:
        # aiortc's candidate_to_aioice(candidate_from_aioice(c))
        return Candidate(
            component=c.component,
            foundation=c.foundation,
            host=c.host,
            port=c.port,
            priority=c.priority,
            related_address=c.related_address,
            related_port=c.related_port,
            transport=c.transport,
            tcptype=c.tcptype,
            type=c.type,
        )

    async def main() -> None:
        a = Connection(ice_controlling=False, host_addresses=["127.0.0.1"])
        b = Connection(ice_controlling=False, host_addresses=["127.0.0.1"])
        await a.gather_candidates()
        await b.gather_candidates()
        a.ice_controlling = True  # RTCIceTransport.start() sets the role
        for x, y in ((a, b), (b, a)):
            x.remote_username = y.local_username
            x.remote_password = y.local_password
            x.remote_is_lite = False
            for candidate in y.local_candidates:
                await x.add_remote_candidate(convert(candidate))
            await x.add_remote_candidate(None)
        await asyncio.gather(a.connect(), b.connect())
        assert a.ice_controlling
        assert not b.ice_controlling
        await a.send(b"data")
        assert await b.recv() == b"data"
        await a.close()
        assert isinstance(await a.get_event(), ConnectionClosed)
        await b.close()

        # Failure: the peer is gone before connect().
        c = Connection(ice_controlling=True, host_addresses=["127.0.0.1"])
        await c.gather_candidates()
        c.remote_username, c.remote_password = b.local_username, b.local_password
        for candidate in b.local_candidates or a.local_candidates:
            await c.add_remote_candidate(convert(candidate))
        await c.add_remote_candidate(Candidate.from_sdp("1 1 udp 2130706431 127.0.0.1 9 typ host"))
        await c.add_remote_candidate(None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectionError):
            await c.connect()
        assert loop.time() - started < 2.0  # RETRY_MAX=1, RETRY_RTO=0.1 took effect
        await c.close()

    asyncio.run(asyncio.wait_for(main(), 30))
