"""The main job: two ICE agents connect, then exchange a datagram.

Default: on loopback, through the embedded STUN server (on 127.0.0.1, a free port).
``--nat``: on the virtual network (in virtual time), each agent behind its own NAT
(port-restricted cone and symmetric, which STUN alone cannot traverse), with a STUN and a
TURN server on the virtual internet.

Prints the selected pair, the time to connect and a round-trip time.
"""

from __future__ import annotations

import argparse
import asyncio

from aioice import Connection
from aioice.stun.asyncio import serve


async def connect_and_ping(a: Connection, b: Connection) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    # Signalling: each side learns the other's credentials and candidates.
    for x, y in ((a, b), (b, a)):
        x.remote_username, x.remote_password = y.local_username, y.local_password
        for candidate in y.local_candidates:
            await x.add_remote_candidate(candidate)
        await x.add_remote_candidate(None)
    started = loop.time()
    await asyncio.gather(a.connect(), b.connect())
    connected = loop.time() - started
    pair = a.selected_pair
    assert pair is not None
    print(f"selected pair: {pair.local.type} {pair.base[0]}:{pair.base[1]}", end=" -> ")
    print(f"{pair.remote.type} {pair.remote_address[0]}:{pair.remote_address[1]}")
    print(f"time to connect: {connected * 1000:.2f} ms")
    started = loop.time()
    await a.send(b"ping")
    assert await b.recv() == b"ping"
    await b.send(b"pong")
    assert await a.recv() == b"pong"
    print(f"round-trip time: {(loop.time() - started) * 1000:.3f} ms")
    await asyncio.gather(a.close(), b.close())


async def on_loopback() -> None:
    async with await serve(("127.0.0.1", 0), software="aioice demo") as server:
        stun = server.addresses[0]
        print(f"STUN server listening on {stun[0]}:{stun[1]}")
        a, b = (
            Connection(ice_controlling=i == 0, stun_server=stun, host_addresses=["127.0.0.1"])
            for i in range(2)
        )
        await connect_and_ping(a, b)


def through_nats() -> None:
    from aioice.vnet import (
        PORT_RESTRICTED_CONE,
        SYMMETRIC,
        LinkConditions,
        Network,
        stun_server,
        turn_server,
    )
    from aioice.vnet.asyncio import VirtualNet, run

    net = Network(seed=1)
    stun_host, turn_host = net.add_host("stun"), net.add_host("turn")
    stun_server(stun_host)
    turn_server(turn_host, users={"demo": "secret"})
    hosts = []
    for i, nat in enumerate((PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", nat, link=LinkConditions(latency=0.02))
        hosts.append(net.add_host(f"host{i}", lan))
        print(f"agent {'ab'[i]}: {hosts[i].ip} behind a {('port-restricted', 'symmetric')[i]} NAT")
    print("(virtual network, virtual time: 20 ms from each LAN to the internet)")
    a, b = (
        Connection(
            ice_controlling=i == 0,
            stun_server=(stun_host.ip, 3478),
            turn_server=(turn_host.ip, 3478),
            turn_username="demo",
            turn_password="secret",
            host_addresses=[host.ip],
            net=VirtualNet(host),
        )
        for i, host in enumerate(hosts)
    )
    run(connect_and_ping(a, b), net)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nat", action="store_true", help="through two NATs and TURN (vnet)")
    args = parser.parse_args()
    if args.nat:
        through_nats()
    else:
        asyncio.run(on_loopback())


if __name__ == "__main__":
    main()
