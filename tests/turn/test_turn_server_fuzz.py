"""Deterministic fuzzing of the TURN test server, from the client side and the peer side.

Nothing may escape :meth:`TurnServer.receive_datagram` or :meth:`TurnServer.handle_timer`,
and what the server sends must leave from the listening address (towards clients) or
a relayed address that exists (towards peers).

Most inputs are built to get past the cheap checks: requests signed with valid
credentials and a fresh nonce but random attribute values (so they reach the Allocate,
Refresh, CreatePermission and ChannelBind handlers), Send indications and ChannelData
for bound channels and permitted peers, and mutations of all of these (bit flips,
truncation, spliced attributes, with the header length and FINGERPRINT fixed up
afterwards). The rest are random bytes, and datagrams from peers, permitted or not, to
relayed addresses that exist, expired, or never did. Time moves forward in small and
large steps, so that nonces, permissions, channels and allocations expire along the way.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections import Counter
from typing import Any

import pytest
from aioice.stun import (
    Address,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    StunParseError,
    long_term_key,
    message_integrity,
    parse_message,
)
from aioice.turn.server import UDP_TRANSPORT, TurnServer

SEED = 0x7475726E
#: The acceptance criterion is at least 50,000 inputs (per configuration here).
N_INPUTS = 60_000
#: The acceptance criterion: each configuration runs in well under this.
TIME_BUDGET = 20.0

LISTEN = ("192.0.2.1", 3478)
RELAY_IP6 = "2001:db8::1"
REALM = "fuzz.realm"
USERS = {"alice": "secret", "bob": "hunter2"}
CLIENTS = [(f"198.51.100.{i}", 40000 + i) for i in range(1, 7)] + [("2001:db8:c::1", 5)]
PEERS = [
    ("203.0.113.1", 5000),
    ("203.0.113.1", 5001),
    ("203.0.113.2", 5000),
    ("203.0.113.3", 1),
    ("2001:db8:f::1", 5000),
    ("2001:db8:f::2", 7),
]
OTHER_LOCALS = [("192.0.2.1", 3479), ("192.0.2.99", 3478), ("2001:db8::1", 3478)]
METHODS = list(Method)
CLASSES = list(Class)
CHANNELS = [0, 0x3FFF, 0x4000, 0x4001, 0x4002, 0x4FFF, 0x5000, 0x7FFF, 0xFFFF]
INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x11, 0x3F, 0x40, 0x7F, 0x80, 0xFF]


def random_value(rng: random.Random, name: str) -> Any:
    """A value of the right Python type for attribute ``name``, often a telling one."""
    if name == "LIFETIME":
        return rng.choice([0, 1, 599, 600, 601, 3600, 3601, 0xFFFFFFFF, rng.randrange(1 << 32)])
    if name == "REQUESTED-TRANSPORT":
        return rng.choice([UDP_TRANSPORT, UDP_TRANSPORT, 6 << 24, 0, 17, 0xFFFFFFFF])
    if name in ("REQUESTED-ADDRESS-FAMILY", "ADDITIONAL-ADDRESS-FAMILY"):
        return rng.choice([0, 1, 1, 2, 2, 3, 255])
    if name == "EVEN-PORT":
        return rng.random() < 0.5
    if name == "RESERVATION-TOKEN":
        return rng.randbytes(8)
    if name == "DONT-FRAGMENT":
        return None
    if name == "XOR-PEER-ADDRESS":
        if rng.random() < 0.3:
            return [rng.choice(PEERS) for _ in range(rng.randrange(1, 4))]
        return rng.choice(PEERS)
    if name == "CHANNEL-NUMBER":
        return rng.choice(CHANNELS)
    if name == "DATA":
        return rng.randbytes(rng.choice([0, 1, 4, 100, rng.randrange(600)]))
    if name == "PASSWORD-ALGORITHMS":
        return rng.choice([((2, b""), (1, b"")), ((1, b""),), ()])
    if name == "PASSWORD-ALGORITHM":
        return rng.choice([(1, b""), (2, b""), (3, b"")])
    if name == "SOFTWARE":
        return "fuzz"
    raise AssertionError(name)


TURN_ATTRIBUTES = [
    "LIFETIME",
    "REQUESTED-TRANSPORT",
    "REQUESTED-ADDRESS-FAMILY",
    "ADDITIONAL-ADDRESS-FAMILY",
    "EVEN-PORT",
    "RESERVATION-TOKEN",
    "DONT-FRAGMENT",
    "XOR-PEER-ADDRESS",
    "CHANNEL-NUMBER",
    "DATA",
    "SOFTWARE",
]

#: Attributes each method usually carries, so that most requests are nearly valid.
USUAL: dict[Method, dict[str, Any]] = {
    Method.ALLOCATE: {"REQUESTED-TRANSPORT": UDP_TRANSPORT, "LIFETIME": 600},
    Method.REFRESH: {"LIFETIME": 600},
    Method.CREATE_PERMISSION: {"XOR-PEER-ADDRESS": PEERS[0]},
    Method.CHANNEL_BIND: {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEERS[0]},
    Method.SEND: {"XOR-PEER-ADDRESS": PEERS[0], "DATA": b"x"},
}


class Keys:
    """Long-term keys, computed once each (SASLprep is slow)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str, PasswordAlgorithm], bytes] = {}

    def get(self, username: str, password: str, algorithm: PasswordAlgorithm) -> bytes:
        key = self._keys.get((username, password, algorithm))
        if key is None:
            key = long_term_key(username, REALM, password, algorithm=algorithm)
            self._keys[(username, password, algorithm)] = key
        return key


KEYS = Keys()


class FuzzClient:
    """Credentials for one client address, kept fresh from the 401/438 answers seen."""

    def __init__(self, address: Address, username: str, password: str) -> None:
        self.address = address
        self.username = username
        self.password = password
        self.nonce: bytes | None = None
        self.sha256 = False
        self.last = b""

    def learn(self, response: Message) -> None:
        nonce = response.attributes.get("NONCE")
        if response.error_code in (401, 438) and isinstance(nonce, bytes):
            self.nonce = nonce

    def message(self, rng: random.Random) -> bytes:
        """A request or indication with random attributes, usually validly signed."""
        method = rng.choice([*USUAL, *USUAL, *METHODS])
        message_class = Class.INDICATION if method == Method.SEND else Class.REQUEST
        if rng.random() < 0.05:
            message_class = rng.choice(CLASSES)
        attributes: dict[str, Any] = dict(USUAL.get(method, {}))
        for name in rng.sample(TURN_ATTRIBUTES, rng.choice([0, 0, 1, 1, 2, 3])):
            attributes[name] = random_value(rng, name)
        if attributes and rng.random() < 0.1:
            del attributes[rng.choice(list(attributes))]
        message = Message(method, message_class, rng.randbytes(12), attributes)
        fingerprint = rng.random() < 0.7
        if self.nonce is None or rng.random() < 0.05:
            return message.encode(fingerprint=fingerprint)
        username, password = self.username, self.password
        if rng.random() < 0.03:
            username, password = rng.choice(list(USERS.items()))  # 441 on another's allocation
        elif rng.random() < 0.03:
            password = "wrong"
        elif rng.random() < 0.03:
            username = "mallory"
        attributes["USERNAME"] = username
        attributes["REALM"] = REALM if rng.random() < 0.97 else "other"
        attributes["NONCE"] = self.nonce if rng.random() < 0.97 else rng.randbytes(16)
        sha256 = self.sha256 and rng.random() < 0.8
        if sha256:
            attributes["PASSWORD-ALGORITHMS"] = random_value(rng, "PASSWORD-ALGORITHMS")
            if rng.random() < 0.9:
                attributes["PASSWORD-ALGORITHMS"] = ((2, b""), (1, b""))
            attributes["PASSWORD-ALGORITHM"] = (2, b"") if rng.random() < 0.9 else (1, b"")
            algorithm = PasswordAlgorithm(attributes["PASSWORD-ALGORITHM"][0])
            key = KEYS.get(username, password, algorithm)
            message.add_message_integrity_sha256(key, fingerprint=fingerprint)
            return bytes(message)
        key = KEYS.get(username, password, PasswordAlgorithm.MD5)
        if rng.random() < 0.03:
            # An unknown comprehension-required attribute, signed (420 after authentication).
            data = bytes(message) + struct.pack("!HHI", rng.choice([0x7FFE, 0x0031]), 4, 0)
            data = data[:2] + struct.pack("!H", len(data) - 20) + data[4:]
            data += struct.pack("!HH", 0x0008, 20) + message_integrity(data, key)
            return data[:2] + struct.pack("!H", len(data) - 20) + data[4:]
        return message.encode(key, fingerprint=fingerprint)


# -- mutations of encoded messages ---------------------------------------------------------------


def tlv_offsets(data: bytes | bytearray) -> list[int]:
    offsets = []
    pos = 20
    while pos + 4 <= len(data):
        offsets.append(pos)
        length = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + length + (-length % 4)
    return offsets


def fix_length(buf: bytearray) -> bytearray:
    if 20 <= len(buf) <= 0xFFFF + 20 and buf[0] < 0x40:
        buf[2:4] = struct.pack("!H", len(buf) - 20)
    return buf


def refresh_fingerprint(buf: bytearray) -> bytearray:
    if len(buf) >= 28 and buf[-8:-4] == b"\x80\x28\x00\x04":
        buf[-4:] = struct.pack("!I", zlib.crc32(bytes(buf[:-8])) ^ 0x5354554E)
    return buf


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.randrange(9)
        if kind == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # set a byte to a telling value
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING)
        elif kind == 2:  # truncate
            del buf[rng.randrange(len(buf) + 1) :]
        elif kind == 3:  # append junk
            buf += rng.randbytes(rng.choice([1, 2, 3, 4, 8]))
        elif kind == 4:  # splice in an attribute of another message
            other = rng.choice(corpus)
            offsets = tlv_offsets(other)
            if offsets:
                start = rng.choice(offsets)
                length = (other[start + 2] << 8) | other[start + 3]
                tlv = other[start : start + 4 + length + (-length % 4)]
                at = rng.choice([*tlv_offsets(buf), len(buf)]) if len(buf) >= 20 else len(buf)
                buf[at:at] = tlv
        elif kind == 5 and len(buf) >= 24:  # corrupt an attribute length
            offsets = tlv_offsets(buf)
            if offsets:
                pos = rng.choice(offsets)
                buf[pos + 2 : pos + 4] = struct.pack("!H", rng.choice([0, 1, 3, 4, 8, 0xFFFF]))
        elif kind == 6 and len(buf) >= 24:  # retype an attribute
            offsets = tlv_offsets(buf)
            if offsets:
                pos = rng.choice(offsets)
                buf[pos : pos + 2] = struct.pack(
                    "!H", rng.choice([0x000C, 0x0012, 0x0013, 0x0017, 0x0019, 0x7FFE, 0x8000])
                )
        elif kind == 7 and len(buf) >= 2:  # change the message type
            buf[0:2] = struct.pack("!H", rng.choice(METHODS) | rng.choice(CLASSES))
        elif kind == 8 and len(buf) >= 4:  # ChannelData: change number or length
            buf[rng.choice([0, 2]) : rng.choice([2, 4])] = rng.randbytes(2)
    if rng.random() < 0.8:
        fix_length(buf)
    if rng.random() < 0.8:
        refresh_fingerprint(buf)
    return bytes(buf)


def channel_data(rng: random.Random) -> bytes:
    number = rng.choice([*CHANNELS, 0x4000, 0x4000, 0x4001])
    data = rng.randbytes(rng.choice([0, 1, 5, 64, rng.randrange(300)]))
    length = len(data) if rng.random() < 0.8 else rng.randrange(0x10000)
    padding = bytes(rng.choice([0, 0, 1, 3]))
    return struct.pack("!HH", number, length) + data + padding


# -- the fuzz run ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"relay_ip6": RELAY_IP6, "password_algorithms": True, "auth_secret": "s3cret"},
    ],
    ids=["md5-ipv4", "sha256-dual"],
)
def test_fuzz_turn_server(options: dict[str, Any]) -> None:
    rng = random.Random(SEED)
    server = TurnServer(
        LISTEN,
        realm=REALM,
        users=USERS,
        relay_ip="192.0.2.1",
        port_range=(50000, 50015),
        rng=random.Random(SEED + 1),
        nonce_lifetime=90.0,
        max_lifetime=900,
        default_lifetime=120,
        user_quota=5,
        software="fuzz",
        **options,
    )
    sha256 = bool(options.get("password_algorithms"))
    # Six addresses for alice, over her quota of five; one for bob.
    clients = [FuzzClient(address, "alice", "secret") for address in CLIENTS[:6]]
    clients.append(FuzzClient(CLIENTS[6], "bob", "hunter2"))
    for client in clients:
        client.sha256 = sha256
    corpus: list[bytes] = []
    stale_relays: list[Address] = [("192.0.2.1", 50000), (RELAY_IP6, 50001)]
    now = 0.0
    kinds: Counter[str] = Counter()
    start = time.perf_counter()

    def deliver(data: bytes, *, local: Address, remote: Address) -> None:
        relayed_before = set(server.relayed_addresses)
        server.receive_datagram(data, local=local, remote=remote, now=now)
        relayed = relayed_before | set(server.relayed_addresses)
        for transmit in server.datagrams_to_send():
            if transmit.local == LISTEN:
                assert transmit.remote in CLIENTS
                if transmit.data[0] < 0x40:
                    try:
                        response = parse_message(transmit.data)
                    except StunParseError:  # pragma: no cover - a bug
                        raise AssertionError(transmit) from None
                    for client in clients:
                        if client.address == transmit.remote:
                            client.learn(response)
            else:
                assert transmit.local in relayed, transmit
                assert transmit.remote[0] in {p[0] for p in PEERS}, transmit
        while (event := server.next_event()) is not None:
            stale_relays.append(event.relayed)
            del stale_relays[:-20]

    for _ in range(N_INPUTS):
        roll = rng.random()
        client = rng.choice(clients)
        if roll < 0.35:
            kinds["fresh request"] += 1
            data = client.last = client.message(rng)
            if len(corpus) < 400:
                corpus.append(data)
            else:
                corpus[rng.randrange(len(corpus))] = data
            deliver(data, local=LISTEN, remote=client.address)
        elif roll < 0.57 and corpus:
            kinds["mutated"] += 1
            data = mutate(rng, rng.choice(corpus), corpus)
            deliver(data, local=LISTEN, remote=client.address)
        elif roll < 0.60 and corpus:
            kinds["replayed"] += 1  # retransmissions, and requests from another 5-tuple
            data = client.last if client.last and rng.random() < 0.7 else rng.choice(corpus)
            deliver(data, local=LISTEN, remote=client.address)
        elif roll < 0.70:
            kinds["channel data"] += 1
            deliver(channel_data(rng), local=LISTEN, remote=client.address)
        elif roll < 0.74:
            kinds["random bytes"] += 1
            data = rng.randbytes(rng.choice([0, 1, 3, 4, 19, 20, 21, 28, rng.randrange(200)]))
            local = LISTEN if rng.random() < 0.8 else rng.choice(OTHER_LOCALS)
            deliver(data, local=local, remote=client.address)
        elif roll < 0.95:
            kinds["from peer"] += 1
            relayed = server.relayed_addresses
            if relayed and rng.random() < 0.9:
                local = rng.choice(relayed)
            else:
                local = rng.choice([*stale_relays, *OTHER_LOCALS])
            peer = rng.choice(PEERS) if rng.random() < 0.9 else rng.choice(CLIENTS)
            if rng.random() < 0.3 and corpus:
                data = rng.choice(corpus)  # STUN-looking data from a peer is just data
            else:
                data = rng.randbytes(rng.choice([0, 1, 4, 20, 100, rng.randrange(1500)]))
            if rng.random() < 0.001:
                data = bytes(rng.choice([0xFFE0, 0xFFFF, 0x10000]))
            deliver(data, local=local, remote=peer)
        else:
            kinds["time"] += 1
            now += rng.choice([0.001, 0.5, 1.0, 5.0, 30.0, 60.0, 120.0, 300.0, 600.0])
            timer = server.get_timer()
            if (timer is not None and timer <= now) or rng.random() < 0.3:
                server.handle_timer(now=now)
                assert server.datagrams_to_send() == []
                while (event := server.next_event()) is not None:
                    stale_relays.append(event.relayed)
                after = server.get_timer()
                assert after is None or after > now
    elapsed = time.perf_counter() - start

    stats = server.stats
    assert sum(kinds.values()) == N_INPUTS
    assert elapsed < TIME_BUDGET, f"{N_INPUTS} inputs took {elapsed:.1f} s"
    # The inputs got deep: every handler succeeded and failed along the way.
    assert stats.allocations > 100
    assert stats.refreshes > 100
    assert stats.permissions > 100
    assert stats.channel_binds > 100
    assert stats.to_peer > 100
    assert stats.to_client > 100
    assert stats.no_permission > 100
    assert stats.expired_allocations > 10
    assert stats.expired_permissions > 10
    assert stats.expired_channels > 10
    assert stats.retransmissions > 0
    for code in (400, 401, 420, 437, 438, 440, 441, 442, 443, 486, 508):
        assert stats.error_codes.get(code, 0) > 0, (code, stats.error_codes)
