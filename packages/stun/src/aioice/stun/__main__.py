"""Command line: ``python -m aioice.stun {serve,binding,probe} ...``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from . import Class, Message, Method, NatDiscoveryError, TransactionError
from . import asyncio as stun_asyncio
from .transmit import parse_address


async def _serve(args: argparse.Namespace) -> int:
    primary = parse_address(args.listen)
    alternate = parse_address(args.alternate) if args.alternate else None
    runner = await stun_asyncio.serve(primary, alternate, tcp=args.tcp, software="aioice-stun")
    for host, port in runner.addresses:
        print(f"listening on udp {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.close()
    return 0


async def _binding(args: argparse.Namespace) -> int:
    server = parse_address(args.server)
    local = parse_address(args.local, 0) if args.local else None
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        request = Message(Method.BINDING, Class.REQUEST)
        response, _ = await stun_asyncio.request(request, server, local_addr=local)
    except TransactionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rtt = loop.time() - start
    mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
    print(f"mapped address: {mapped[0]}:{mapped[1]}" if mapped else "no mapped address")
    print(f"rtt: {rtt * 1000:.2f} ms")
    return 0


async def _probe(args: argparse.Namespace) -> int:
    server = parse_address(args.server)
    local = parse_address(args.local, 0) if args.local else None
    try:
        behavior = await stun_asyncio.discover_nat_behavior(server, local_addr=local)
    except (NatDiscoveryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    host, port = behavior.mapped_address
    print(f"mapped address: {host}:{port}")
    print(f"behind NAT: {'yes' if behavior.behind_nat else 'no'}")
    print(f"mapping: {behavior.mapping.value}")
    print(f"filtering: {behavior.filtering.value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aioice.stun", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a STUN server")
    serve.add_argument("--listen", default="127.0.0.1:3478", help="primary HOST:PORT")
    serve.add_argument("--alternate", help="alternate HOST:PORT, for RFC 5780")
    serve.add_argument("--tcp", action="store_true", help="also serve STUN over TCP")

    binding = commands.add_parser("binding", help="send one Binding request")
    binding.add_argument("server", help="HOST[:PORT]")
    binding.add_argument("--local", help="local HOST[:PORT] to bind")

    probe = commands.add_parser("probe", help="discover NAT behaviour (RFC 5780)")
    probe.add_argument("server", help="HOST[:PORT] of an RFC 5780 server")
    probe.add_argument("--local", help="local HOST[:PORT] to bind")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    run = {"serve": _serve, "binding": _binding, "probe": _probe}[args.command]
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
