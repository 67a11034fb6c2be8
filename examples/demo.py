"""The main job, until the ICE agent exists: a STUN Binding on loopback.

Starts the embedded STUN server on 127.0.0.1 (a free port), sends it a Binding
request from another socket, and prints the mapped address and the round trip.
"""

from __future__ import annotations

import asyncio

from aioice import stun
from aioice.stun import asyncio as stun_asyncio


async def main() -> None:
    async with await stun_asyncio.serve(("127.0.0.1", 0), software="aioice demo") as server:
        host, port = server.addresses[0]
        print(f"STUN server listening on {host}:{port}")
        loop = asyncio.get_running_loop()
        start = loop.time()
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        response, _ = await stun_asyncio.request(request, (host, port))
        rtt = loop.time() - start
        mapped_host, mapped_port = response.attributes["XOR-MAPPED-ADDRESS"]
        print(f"mapped address: {mapped_host}:{mapped_port}")
        print(f"round-trip time: {rtt * 1000:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
