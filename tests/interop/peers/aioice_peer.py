"""An ICE peer driven over JSON lines, for interop tests and the NAT lab.

Runs with our packages (the test environment's python) or with upstream aioice (the
python of its own venv): both have the same ``Connection`` API. See
``tests/interop/protocol.md`` for the protocol; in short::

    peer -> {"event": "gathered", "ufrag", "pwd", "candidates": [...]}
    test -> {"cmd": "remote", "ufrag", "pwd", "candidates": [...]}      (then end-of-candidates)
    peer -> {"event": "connected", "local": {...}, "remote": {...}, "elapsed_ms"}
            or {"event": "failed", "reason", "elapsed_ms"}
    peer -> {"event": "received", "data": base64}; it also echoes b"echo:" + data
    test -> {"cmd": "send", "data": base64} | {"cmd": "trace"} | {"cmd": "close"}

Only the addresses given with ``--address`` are gathered on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
import time
from typing import Any


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def describe(candidate: Any, address: tuple[str, int] | None = None) -> dict[str, Any]:
    host = address[0] if address else candidate.host
    port = address[1] if address else candidate.port
    return {"type": candidate.type, "address": [host, port]}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["controlling", "controlled"], required=True)
    parser.add_argument("--address", action="append", default=[])
    parser.add_argument("--stun")
    parser.add_argument("--turn")
    parser.add_argument("--turn-username")
    parser.add_argument("--turn-password")
    parser.add_argument("--turn-transport", choices=["udp", "tcp", "tls"], default="udp")
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--failure-timeout", type=float)  # ours only: IceConfig.failure_timeout
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)

    import aioice
    import aioice.ice
    from aioice import Candidate, Connection, TransportPolicy

    kwargs: dict[str, Any] = {
        "ice_controlling": args.role == "controlling",
        "stun_server": parse_address(args.stun) if args.stun else None,
        "turn_server": parse_address(args.turn) if args.turn else None,
        "turn_username": args.turn_username,
        "turn_password": args.turn_password,
        "turn_transport": "tcp" if args.turn_transport == "tls" else args.turn_transport,
        "turn_ssl": args.turn_transport == "tls",
        "transport_policy": TransportPolicy.RELAY if args.relay_only else TransportPolicy.ALL,
    }
    ours = hasattr(aioice.ice, "IceAgent")
    if ours:
        kwargs["host_addresses"] = args.address
        if args.failure_timeout is not None:
            kwargs["config"] = aioice.ice.IceConfig(failure_timeout=args.failure_timeout)
    else:
        # Upstream has no address option: restrict its interface enumeration.
        addresses = list(args.address)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: addresses  # type: ignore[attr-defined]
    connection = Connection(**kwargs)
    loop = asyncio.get_running_loop()
    await connection.gather_candidates()
    emit(
        event="gathered",
        implementation="ours" if ours else f"upstream {getattr(aioice, '__version__', '?')}",
        ufrag=connection.local_username,
        pwd=connection.local_password,
        candidates=[c.to_sdp() for c in connection.local_candidates],
    )

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def next_command() -> dict[str, Any] | None:
        line = await reader.readline()
        return json.loads(line) if line else None

    command = await next_command()
    if command is None or command.get("cmd") != "remote":
        await connection.close()
        return
    connection.remote_username = command["ufrag"]
    connection.remote_password = command["pwd"]
    for sdp in command["candidates"]:
        await connection.add_remote_candidate(Candidate.from_sdp(sdp))
    await connection.add_remote_candidate(None)

    started = time.perf_counter()
    try:
        await asyncio.wait_for(connection.connect(), args.timeout)
    except (ConnectionError, asyncio.TimeoutError) as exc:
        emit(event="failed", reason=repr(exc), elapsed_ms=(time.perf_counter() - started) * 1000)
        emit(event="trace", lines=trace(connection))
        await connection.close()
        return
    elapsed = (time.perf_counter() - started) * 1000
    local, remote = selected(connection)
    emit(event="connected", local=local, remote=remote, elapsed_ms=elapsed)

    async def echo() -> None:
        while True:
            try:
                data = await connection.recv()
            except ConnectionError:
                return
            emit(event="received", data=base64.b64encode(data).decode())
            if not data.startswith(b"echo:"):
                await connection.send(b"echo:" + data)

    echo_task = asyncio.ensure_future(echo())
    try:
        while (command := await next_command()) is not None:
            if command["cmd"] == "send":
                await connection.send(base64.b64decode(command["data"]))
            elif command["cmd"] == "trace":
                emit(event="trace", lines=trace(connection))
            elif command["cmd"] == "close":
                break
    finally:
        echo_task.cancel()
        await connection.close()
        emit(event="closed")


def selected(connection: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pair = getattr(connection, "selected_pair", None)
    if pair is not None:  # ours
        return describe(pair.local, pair.base), describe(pair.remote, pair.remote_address)
    pair = connection._nominated[1]  # upstream 0.x keeps it private
    return describe(pair.local_candidate), describe(pair.remote_candidate, pair.remote_addr)


def trace(connection: Any) -> list[str]:
    """The check list, one line per pair, for failure diagnosis."""
    agent = getattr(connection, "agent", None)
    if agent is not None:  # ours
        lines = [f"state {agent.state.value} {agent.failure_reason or ''}".strip()]
        for pair in agent.pairs:
            s = pair.stats
            lines.append(
                f"{pair!r} sent={s.requests_sent} recv={s.requests_received}"
                f" responses={s.responses_received} rtt={s.rtt}"
            )
        lines.append(f"dropped {dict(agent.dropped)}")
        return lines
    return [repr(pair) for pair in getattr(connection, "_check_list", [])]


if __name__ == "__main__":
    asyncio.run(main())
