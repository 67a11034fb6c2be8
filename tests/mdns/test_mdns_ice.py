"""A remote ``.local`` ICE candidate resolved through aioice.mdns (real multicast, in a
namespace): the Connection's default resolver, published from the other namespace."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aioice import Candidate, Connection
from aioice.mdns import create_mdns_hostname

if TYPE_CHECKING:
    from tests.mdns.conftest import MdnsLab

pytestmark = pytest.mark.netns


def test_connection_resolves_a_remote_mdns_candidate(mdns_lab: MdnsLab) -> None:
    name = create_mdns_hostname()
    # B's address is published from namespace b, by another process.
    publisher = mdns_lab.mdns(mdns_lab.b, "publish", name, mdns_lab.a_ipv4)
    mdns_lab.wait_for_line(publisher, "published", timeout=10)

    async def main() -> tuple[str, str, list[str]]:
        # Both agents live in namespace a; B's candidate is signalled by name only.
        a = Connection(ice_controlling=True, host_addresses=[mdns_lab.a_ipv4])
        b = Connection(ice_controlling=False, host_addresses=[mdns_lab.a_ipv4])
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        (hidden,) = b.local_candidates
        sdp = hidden.to_sdp().replace(mdns_lab.a_ipv4, name)
        await a.add_remote_candidate(Candidate.from_sdp(sdp))
        await a.add_remote_candidate(None)
        # Resolution runs in the background; connect once it is done, so that the
        # signalled candidate (not a peer-reflexive one) is what B's checks meet.
        for _ in range(100):
            if a.remote_candidates:
                break
            await asyncio.sleep(0.05)
        for candidate in a.local_candidates:
            await b.add_remote_candidate(candidate)
        await b.add_remote_candidate(None)
        await asyncio.gather(a.connect(), b.connect())
        pair = a.selected_pair
        assert pair is not None
        await asyncio.gather(a.close(), b.close())
        return pair.remote.type, pair.remote.host, [c.host for c in a.remote_candidates]

    try:
        kind, host, remotes = mdns_lab.call_in(mdns_lab.a, main)
    finally:
        mdns_lab.stop(publisher)
    # Resolved: the signalled host candidate is used (not a peer-reflexive one), and it
    # keeps its name (the address stays private to the agent).
    assert (kind, host) == ("host", name)
    assert remotes == [name]
