"""Command line: ``python -m aioice.mdns resolve NAME.local`` / ``publish NAME.local ADDRESS``.

- ``resolve NAME [--timeout S]`` prints the first address (every address with ``--all``,
  one a line) and exits 0, or exits 1 when no answer came within the timeout.
- ``publish NAME ADDRESS`` prints ``published NAME ADDRESS`` once announced and answers
  until SIGTERM or SIGINT, then sends a goodbye and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence

from .asyncio import mdns_service
from .service import MdnsConfig


async def _resolve(name: str, timeout: float, show_all: bool, interfaces: list[str] | None) -> int:
    config = MdnsConfig(timeout=timeout)
    async with mdns_service(config=config, interfaces=interfaces) as client:
        addresses = await client.resolve_all(name, timeout=timeout)
    if not addresses:
        print(f"{name}: no answer within {timeout} s", file=sys.stderr)
        return 1
    for address in addresses if show_all else addresses[:1]:
        print(address, flush=True)
    return 0


async def _publish(name: str, address: str, interfaces: list[str] | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with mdns_service(interfaces=interfaces) as client:
            if not client.families:
                print("no multicast interface available", file=sys.stderr)
                return 1
            await client.publish(name, address)
            print(f"published {name} {address}", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {value!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aioice.mdns", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--interface", action="append", dest="interfaces", help="use only this interface"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    resolve = commands.add_parser("resolve", help="resolve a .local name")
    resolve.add_argument("name")
    resolve.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    resolve.add_argument("--all", action="store_true", help="print every address")
    publish = commands.add_parser("publish", help="answer for a .local name until stopped")
    publish.add_argument("name")
    publish.add_argument("address", type=_address)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "resolve":
        return asyncio.run(_resolve(args.name, args.timeout, args.all, args.interfaces))
    return asyncio.run(_publish(args.name, args.address, args.interfaces))


if __name__ == "__main__":
    sys.exit(main())
