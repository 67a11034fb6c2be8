"""Drive the sans-I/O STUN core from a plain blocking socket: no asyncio at all.

The core (:class:`aioice.stun.Transaction`) takes bytes and ``now`` and returns
datagrams and one timer deadline; this loop owns the socket and the clock. The
same core runs under asyncio in :mod:`aioice.stun.asyncio`.

    python examples/stun_sansio.py 127.0.0.1:3478
"""

from __future__ import annotations

import select
import socket
import sys
import time

from aioice import stun
from aioice.stun.transmit import parse_address


def binding(server: stun.Address) -> tuple[stun.Address, float]:
    """Send a Binding request to ``server``; return the mapped address and the RTT."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        transaction = stun.Transaction(request, server)
        transaction.start(now=time.monotonic())
        while not transaction.done:
            # The drain rule: send what the core returns, then wait until its timer.
            for transmit in transaction.datagrams_to_send():
                sock.sendto(transmit.data, transmit.remote)
            deadline = transaction.get_timer()
            assert deadline is not None
            readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if readable:
                data, addr = sock.recvfrom(2048)
                try:
                    message = stun.parse_message(data)
                except stun.StunParseError:
                    continue  # not for us: dropped
                transaction.receive_response(message, addr[:2], now=time.monotonic())
            else:
                transaction.handle_timer(now=time.monotonic())
        response, _ = transaction.result()  # raises TransactionTimeout / TransactionFailed
        assert transaction.rtt is not None
        return response.attributes["XOR-MAPPED-ADDRESS"], transaction.rtt


if __name__ == "__main__":
    (host, port), rtt = binding(parse_address(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"))
    print(f"mapped address: {host}:{port}")
    print(f"round-trip time: {rtt * 1000:.3f} ms")
