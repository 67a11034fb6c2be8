"""An ICE peer on libnice, driven over JSON lines (see ``tests/interop/protocol.md``).

Runs under the *system* python (``/usr/bin/python3``) with PyGObject and libnice's
GObject bindings (Debian: ``python3-gi gir1.2-nice-0.1``); the test environment's python
has no ``gi``. One GLib main loop does everything: libnice's sockets and timers, stdin
(``GLib.io_add_watch``), the connect timeout. No thread, no polling.

libnice specifics (0.1.21):

- ``Nice.Agent.new_full(context, RFC5245, flags)``: aggressive nomination (what
  ``nice_agent_new`` does) unless ``--nomination regular``
  (``NICE_AGENT_OPTION_REGULAR_NOMINATION``).
- ``--trickle``, ``--consent-freshness``: ``NICE_AGENT_OPTION_ICE_TRICKLE`` (failure only
  after ``peer_candidate_gathering_done``, which the peer calls after the remote
  candidates) and ``NICE_AGENT_OPTION_CONSENT_FRESHNESS`` (RFC 7675 checks from libnice).
  GStreamer's webrtcbin uses both with regular nomination.
- Only the ``--address`` addresses are used: ``add_local_address`` turns libnice's
  interface enumeration off. UPnP is off (it would multicast SSDP to the LAN).
- ``--relay-only``: ``force-relay`` on, ``ice-tcp`` off, and only relay candidates are
  signalled.
- ``--turn-transport tls`` is ``NICE_RELAY_TYPE_TURN_TLS``; in RFC 5245 mode libnice does
  *no* TLS at all (its ``pseudossl`` socket is for the Google and OC2007 modes only): it
  speaks plain TURN over TCP to the given port, so no certificate is ever checked.
- ``nice_agent_attach_recv`` and a binary-safe ``nice_agent_send`` are not introspectable
  (``send`` takes a ``str``): both are called through ``ctypes`` on the same library.
- ``Nice.Candidate`` fields read garbage through introspection here: candidates cross the
  boundary as SDP only (``generate_local_candidate_sdp``, ``parse_remote_candidate_sdp``).
- libnice keeps no public check list: the trace is what the peer saw (state changes,
  selected pairs, remote candidates learnt) and libnice's own debug lines, captured with
  a GLib log handler (``--debug`` also copies them to stderr).
"""

from __future__ import annotations

import argparse
import base64
import collections
import ctypes
import ctypes.util
import json
import os
import sys
import time
from typing import Any

import gi  # type: ignore[import-not-found]

gi.require_version("Nice", "0.1")
from gi.repository import GLib, Nice  # type: ignore[import-not-found]  # noqa: E402

DEBUG_LINES = 300
"libnice debug lines kept for the trace (the last ones)."
NOISE = ("Interface: ", "IP Address: ")
"libnice debug lines left out of the trace: its interface-index lookups (no traffic)."
CLOSE_TIMEOUT_MS = 3000
"How long ``close_async`` (TURN deallocation) may take before the peer exits anyway."

RECV_FUNC = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
    ctypes.c_void_p,
)  # fmt: skip
"NiceAgentRecvFunc (agent, stream_id, component_id, len, buf, user_data)."


def load_libnice() -> ctypes.CDLL:
    """The libnice that GI loaded, for the two functions introspection does not give."""
    try:
        lib = ctypes.CDLL("libnice.so.10")
    except OSError:
        lib = ctypes.CDLL(ctypes.util.find_library("nice"))
    lib.nice_agent_attach_recv.argtypes = [
        ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, RECV_FUNC,
        ctypes.c_void_p,
    ]  # fmt: skip
    lib.nice_agent_attach_recv.restype = ctypes.c_int
    lib.nice_agent_send.argtypes = [
        ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_char_p,
    ]  # fmt: skip
    lib.nice_agent_send.restype = ctypes.c_int
    return lib


def gobject_pointer(obj: Any) -> int:
    """The C pointer of a PyGObject wrapper."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    pointer: int = get(obj.__gpointer__, None)
    return pointer


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def strip_sdp(line: str) -> str:
    """``a=candidate:1 1 UDP ...`` -> ``1 1 UDP ...`` (the protocol's form)."""
    line = line.strip()
    for prefix in ("a=candidate:", "candidate:"):
        if line.lower().startswith(prefix):
            return line[len(prefix) :]
    return line


def describe(sdp: str) -> dict[str, Any]:
    """``{"type", "address"}`` of a candidate from its SDP line."""
    fields = strip_sdp(sdp).split()
    kind = fields[fields.index("typ") + 1] if "typ" in fields else "?"
    return {"type": kind, "address": [fields[4], int(fields[5])], "transport": fields[2]}


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.perf_counter()
        self.context = GLib.MainContext.default()
        self.loop = GLib.MainLoop.new(self.context, False)
        self.debug: collections.deque[str] = collections.deque(maxlen=DEBUG_LINES)
        self.events: list[str] = []
        self.buffer = b""
        self.remote_at: float | None = None
        self.done = False  # connected or failed was reported
        self.closing = False
        self.selected: tuple[str, str] | None = None
        # The role now: the controlling-mode property keeps the role set, whatever a role
        # conflict made of it, so the conflict is read from libnice's debug line.
        self.controlling = args.role == "controlling"

        for domain in ("libnice", "libnice-stun"):
            GLib.log_set_handler(domain, GLib.LogLevelFlags.LEVEL_MASK, self.on_log, None)
        Nice.debug_enable(False)  # libnice's own lines, not every STUN message

        flags = Nice.AgentOption(0)
        if args.nomination == "regular":
            flags |= Nice.AgentOption.REGULAR_NOMINATION
        if args.trickle:
            flags |= Nice.AgentOption.ICE_TRICKLE
        if args.consent_freshness:
            flags |= Nice.AgentOption.CONSENT_FRESHNESS
        self.agent = Nice.Agent.new_full(self.context, Nice.Compatibility.RFC5245, flags)
        self.agent.set_property("controlling-mode", args.role == "controlling")
        self.agent.set_property("upnp", False)
        self.agent.set_property("ice-tcp", not args.relay_only and not args.no_tcp)
        self.agent.set_property("force-relay", args.relay_only)
        if args.stun:
            host, port = parse_address(args.stun)
            self.agent.set_property("stun-server", host)
            self.agent.set_property("stun-server-port", port)
        for text in args.address:
            address = Nice.Address.new()
            if not address.set_from_string(text):
                raise SystemExit(f"not an IP address: {text}")
            self.agent.add_local_address(address)
        self.stream = self.agent.add_stream(1)

        self.lib = load_libnice()
        self.pointer = gobject_pointer(self.agent)
        self.recv_func = RECV_FUNC(self.on_recv)  # kept alive as long as the agent
        if not self.lib.nice_agent_attach_recv(
            self.pointer, self.stream, 1, None, self.recv_func, None
        ):
            raise SystemExit("nice_agent_attach_recv failed")

        if args.turn:
            host, port = parse_address(args.turn)
            relay_type = {
                "udp": Nice.RelayType.UDP,
                "tcp": Nice.RelayType.TCP,
                "tls": Nice.RelayType.TLS,
            }[args.turn_transport]
            if not self.agent.set_relay_info(
                self.stream, 1, host, port, args.turn_username or "", args.turn_password or "",
                relay_type,
            ):  # fmt: skip
                raise SystemExit("set_relay_info failed")

        self.agent.connect("candidate-gathering-done", self.on_gathering_done)
        self.agent.connect("component-state-changed", self.on_state)
        self.agent.connect("new-selected-pair-full", self.on_selected_pair)
        self.agent.connect("new-remote-candidate-full", self.on_new_remote_candidate)
        GLib.io_add_watch(
            sys.stdin.fileno(),
            GLib.PRIORITY_DEFAULT,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            self.on_stdin,
        )

    # -- helpers --------------------------------------------------------------------------

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def note(self, line: str) -> None:
        self.events.append(f"{self.ms():8.1f} ms {line}")

    def on_log(self, domain: str, level: Any, message: str, *_: Any) -> None:
        if message.startswith(NOISE):
            return
        self.debug.append(f"{self.ms():8.1f} ms {domain}: {message}")
        if "Role conflict, changing agent role to" in message:
            self.controlling = '"controlling"' in message
            self.note(f"role conflict: now {'controlling' if self.controlling else 'controlled'}")
        if self.args.debug:
            sys.stderr.write(f"{domain}: {message}\n")

    def sdp(self, candidate: Any) -> str:
        return strip_sdp(self.agent.generate_local_candidate_sdp(candidate))

    def trace(self) -> list[str]:
        state = Nice.component_state_to_string(self.agent.get_component_state(self.stream, 1))
        lines = [f"libnice state {state}", *self.events]
        lines += [f"local {self.sdp(c)}" for c in self.agent.get_local_candidates(self.stream, 1)]
        lines += [f"remote {self.sdp(c)}" for c in self.agent.get_remote_candidates(self.stream, 1)]
        lines.append(f"-- last {len(self.debug)} libnice debug lines --")
        lines += self.debug
        return lines

    def send(self, data: bytes) -> int:
        sent: int = self.lib.nice_agent_send(self.pointer, self.stream, 1, len(data), data)
        if sent != len(data):
            self.note(f"send of {len(data)} bytes returned {sent}")
        return sent

    # -- libnice signals ------------------------------------------------------------------

    def on_gathering_done(self, agent: Any, stream: int) -> None:
        credentials = agent.get_local_credentials(stream)
        candidates = [self.sdp(c) for c in agent.get_local_candidates(stream, 1)]
        if self.args.relay_only:
            candidates = [c for c in candidates if describe(c)["type"] == "relay"]
        self.note(f"gathered {len(candidates)} candidates")
        emit(
            event="gathered",
            implementation="libnice",
            ufrag=credentials.ufrag,
            pwd=credentials.pwd,
            candidates=candidates,
        )

    def on_state(self, agent: Any, stream: int, component: int, state: Any) -> None:
        self.note(f"component {component} state {Nice.component_state_to_string(state)}")
        if self.done or self.remote_at is None:
            return
        if state == Nice.ComponentState.READY:
            self.done = True
            elapsed = (time.perf_counter() - self.remote_at) * 1000
            if self.selected is None:
                emit(event="failed", reason="READY without a selected pair", elapsed_ms=elapsed)
                emit(event="trace", lines=self.trace())
                return
            local, remote = self.selected
            emit(
                event="connected", local=describe(local), remote=describe(remote),
                elapsed_ms=elapsed, controlling=self.controlling,
            )  # fmt: skip
        elif state == Nice.ComponentState.FAILED:
            self.fail("component state failed")

    def on_selected_pair(
        self, agent: Any, stream: int, component: int, local: Any, remote: Any
    ) -> None:
        self.selected = (self.sdp(local), self.sdp(remote))
        self.note(f"selected pair {self.selected[0]} -> {self.selected[1]}")

    def on_new_remote_candidate(self, agent: Any, candidate: Any) -> None:
        self.note(f"new remote candidate {self.sdp(candidate)}")

    def on_recv(
        self, agent: int, stream: int, component: int, length: int, buf: int, _: int
    ) -> None:
        data = ctypes.string_at(buf, length)
        emit(event="received", data=base64.b64encode(data).decode())
        if not data.startswith(b"echo:"):
            self.send(b"echo:" + data)

    # -- protocol -------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        started = self.remote_at if self.remote_at is not None else self.started
        emit(event="failed", reason=reason, elapsed_ms=(time.perf_counter() - started) * 1000)
        emit(event="trace", lines=self.trace())
        self.close()

    def on_timeout(self) -> bool:
        if not self.done:
            state = self.agent.get_component_state(self.stream, 1)
            self.fail(
                f"not READY after {self.args.timeout} s (state "
                f"{Nice.component_state_to_string(state)})"
            )
        return False

    def on_stdin(self, fd: int, condition: Any) -> bool:
        chunk = os.read(fd, 65536)
        if not chunk:
            self.close()
            return False
        self.buffer += chunk
        while b"\n" in self.buffer and not self.closing:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.command(json.loads(line))
        return not self.closing

    def command(self, command: dict[str, Any]) -> None:
        name = command.get("cmd")
        if name == "remote":
            self.remote(command)
        elif name == "send":
            self.send(base64.b64decode(command["data"]))
        elif name == "trace":
            emit(event="trace", lines=self.trace())
        elif name == "close":
            self.close()
        else:
            self.note(f"unknown command {command!r}")

    def remote(self, command: dict[str, Any]) -> None:
        self.remote_at = time.perf_counter()
        self.agent.set_remote_credentials(self.stream, command["ufrag"], command["pwd"])
        candidates = []
        for line in command["candidates"]:
            candidate = self.agent.parse_remote_candidate_sdp(
                self.stream, "a=candidate:" + strip_sdp(line)
            )
            if candidate is None:
                self.note(f"libnice could not parse remote candidate {line!r}")
            else:
                candidates.append(candidate)
        added = self.agent.set_remote_candidates(self.stream, 1, candidates)
        self.note(f"remote: {added} of {len(command['candidates'])} candidates added")
        self.agent.peer_candidate_gathering_done(self.stream)
        GLib.timeout_add(int(self.args.timeout * 1000), self.on_timeout)

    def close(self) -> None:
        """Release TURN allocations (``close_async``), answer ``closed`` and stop."""
        if self.closing:
            return
        self.closing = True
        self.agent.close_async(lambda *_: self.stop())
        GLib.timeout_add(CLOSE_TIMEOUT_MS, self.stop)

    def stop(self) -> bool:
        if self.loop.is_running():
            self.loop.quit()
        return False

    def run(self) -> None:
        if not self.agent.gather_candidates(self.stream):
            emit(event="failed", reason="gather_candidates failed", elapsed_ms=0.0)
            emit(event="trace", lines=self.trace())
            return
        self.loop.run()
        emit(event="closed")


def main() -> None:
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
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--failure-timeout", type=float, help="ours only: ignored here")
    # libnice only:
    parser.add_argument("--nomination", choices=["aggressive", "regular"], default="aggressive")
    parser.add_argument("--trickle", action="store_true", help="NICE_AGENT_OPTION_ICE_TRICKLE")
    parser.add_argument(
        "--consent-freshness", action="store_true", help="NICE_AGENT_OPTION_CONSENT_FRESHNESS"
    )
    parser.add_argument("--no-tcp", action="store_true", help="no ICE-TCP host candidates")
    args = parser.parse_args()
    if not args.address:
        parser.error("--address is required (libnice would enumerate every interface)")
    Peer(args).run()


if __name__ == "__main__":
    main()
