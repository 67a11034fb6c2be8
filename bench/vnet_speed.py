"""Real time taken by ten virtual minutes on the virtual network (issue: "a 10-minute
virtual scenario runs in well under a second of real time").

Three scenarios, each run ``--repeat`` times (best and median reported):

- ``keepalives``: 3 clients behind full cone, port-restricted and symmetric NATs send
  a datagram every 100 ms to an echo server (36,000 deliveries), trace on.
- ``stun``: the same with real STUN Binding transactions against the STUN server core
  (18,000 transactions, trace off): the STUN codec dominates.
- ``ice``: two asyncio ``Connection`` objects behind port-restricted and symmetric
  NATs, through the virtual TURN server, connected for ten minutes with consent checks
  and a datagram each way every second, on the virtual-time event loop.

Upstream aioice has no virtual network, so there is no side-by-side column here.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from aioice.ice import Connection
from aioice.stun import Address, Class, Message, Method
from aioice.vnet import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    SYMMETRIC,
    Endpoint,
    LinkConditions,
    Network,
    stun_server,
    turn_server,
)
from aioice.vnet.asyncio import VirtualNet, run

MINUTES = 10
LINK = LinkConditions(latency=0.02, jitter=0.005)


def keepalives() -> int:
    net = Network(seed=9)
    server = net.add_host("echo")
    echo = server.bind(3478, lambda data, remote: echo.send(data, remote))

    def client(endpoint: Endpoint) -> None:
        endpoint.send(b"keepalive", echo.address)
        if net.now + 0.1 < MINUTES * 60:
            net.scheduler.call_later(0.1, partial(client, endpoint))

    for i, preset in enumerate((FULL_CONE, PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=LINK)
        endpoint = net.add_host(f"c{i}", lan).bind(5000, lambda data, remote: None)
        net.scheduler.call_at(i * 0.01, partial(client, endpoint))
    net.scheduler.run_until(max_time=MINUTES * 60.0)
    return net.counters["deliver"]


def stun() -> int:
    net = Network(seed=9)
    net.tracing = False
    server = net.add_host("stun")
    stun_server(server)
    target: Address = (server.ip, 3478)
    rng = random.Random(1)
    answered = [0]

    def tick(endpoint: Endpoint) -> None:
        request = Message(Method.BINDING, Class.REQUEST, rng.randbytes(12))
        endpoint.send(request.encode(), target)
        if net.now + 0.1 < MINUTES * 60:
            net.scheduler.call_later(0.1, partial(tick, endpoint))

    def receive(data: bytes, remote: Address) -> None:
        answered[0] += 1

    for i, preset in enumerate((FULL_CONE, PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=LINK)
        endpoint = net.add_host(f"c{i}", lan).bind(5000, receive)
        net.scheduler.call_at(i * 0.01, partial(tick, endpoint))
    net.scheduler.run_until(max_time=MINUTES * 60.0)
    return answered[0]


def ice() -> int:
    net = Network(seed=3)
    net.tracing = False
    stun_host, turn_host = net.add_host("stun"), net.add_host("turn")
    stun_server(stun_host)
    turn_server(turn_host, users={"user": "pass"})
    hosts = []
    for i, preset in enumerate((PORT_RESTRICTED_CONE, SYMMETRIC)):
        lan = net.add_lan(f"lan{i}", f"10.0.{i}.0/24", preset, link=LINK)
        hosts.append(net.add_host(f"h{i}", lan))

    async def main() -> int:
        a, b = (
            Connection(
                ice_controlling=i == 0,
                stun_server=(stun_host.ip, 3478),
                turn_server=(turn_host.ip, 3478),
                turn_username="user",
                turn_password="pass",
                host_addresses=[host.ip],
                net=VirtualNet(host),
            )
            for i, host in enumerate(hosts)
        )
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for candidate in y.local_candidates:
                await x.add_remote_candidate(candidate)
            await x.add_remote_candidate(None)
        await asyncio.gather(a.connect(), b.connect())
        received = [0]

        async def count(connection: Connection) -> None:
            while True:
                await connection.recv()
                received[0] += 1

        readers = [asyncio.ensure_future(count(a)), asyncio.ensure_future(count(b))]
        for _ in range(MINUTES * 60):
            await a.send(b"ping")
            await b.send(b"pong")
            await asyncio.sleep(1.0)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(a.close(), b.close())
        return received[0]

    return run(main(), net)


SCENARIOS: dict[str, Callable[[], int]] = {"keepalives": keepalives, "stun": stun, "ice": ice}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run each")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    print(f"{'scenario':<12} {'events':>8} {'best s':>8} {'median s':>9}  (ten virtual minutes)")
    for name, scenario in SCENARIOS.items():
        times = []
        count = 0
        for _ in range(repeat):
            started = time.perf_counter()
            count = scenario()
            times.append(time.perf_counter() - started)
        print(f"{name:<12} {count:>8} {min(times):>8.3f} {statistics.median(times):>9.3f}")


if __name__ == "__main__":
    main()
