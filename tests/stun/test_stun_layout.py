"""The parser's fast path (cached layouts) gives exactly what the slow path gives."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from aioice import stun
from aioice.stun import layout
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = b"VOkJxbRl1RmTxUk/WvJxBt"


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    layout.clear()
    yield
    layout.clear()


def outcome(data: bytes) -> tuple[str, Any]:
    try:
        message = stun.parse_message(data)
    except stun.StunParseError as exc:
        return "error", str(exc)
    return "message", (
        message.message_method,
        message.message_class,
        message.transaction_id,
        list(message.attributes.items()),
        message.unknown_attributes,
        message.duplicates,
        message.check_message_integrity(KEY),
    )


def ice_request(username: str, priority: int, tie_breaker: int, nominate: bool) -> bytes:
    attributes: dict[str, Any] = {
        "USERNAME": username,
        "PRIORITY": priority,
        "ICE-CONTROLLING": tie_breaker,
    }
    if nominate:
        attributes["USE-CANDIDATE"] = None
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes=attributes)
    message.add_message_integrity(KEY)
    message.add_fingerprint()
    return bytes(message)


def test_second_parse_uses_the_layout_and_agrees() -> None:
    data = ice_request("abcd:efgh", 0x6E0001FF, 1234, True)
    assert layout.find(data) is None
    first = outcome(data)
    assert layout.find(data) is not None
    assert outcome(data) == first
    assert first[1][-1] is True  # integrity verified on both paths


def test_layout_covers_every_attribute_kind() -> None:
    message = stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.RESPONSE,
        attributes={
            "XOR-RELAYED-ADDRESS": ("2001:db8::1", 4000),
            "XOR-MAPPED-ADDRESS": ("192.0.2.1", 32853),
            "LIFETIME": 600,
            "RESERVATION-TOKEN": b"12345678",
            "SOFTWARE": "test",
            "ERROR-CODE": (438, "Stale Nonce"),
            "DONT-FRAGMENT": None,
            "PASSWORD-ALGORITHMS": ((1, b""), (2, b"")),
        },
    )
    message.add_message_integrity(KEY)
    message.add_message_integrity_sha256(KEY)
    message.add_fingerprint()
    data = bytes(message)
    first = outcome(data)
    assert layout.find(data) is not None
    assert outcome(data) == first
    parsed = stun.parse_message(data)
    assert parsed == message
    assert parsed.check_message_integrity(KEY)


def test_a_changed_value_takes_the_same_path_result() -> None:
    data = ice_request("abcd:efgh", 1, 2, False)
    outcome(data)  # learn
    # Same shape, other values: fast path, other attributes.
    other = ice_request("wxyz:klmn", 7, 9, False)
    assert layout.find(other) is not None
    assert outcome(other) == ("message", outcome(other)[1])
    assert stun.parse_message(other).attributes["USERNAME"] == "wxyz:klmn"


def test_mutations_agree_with_the_slow_path() -> None:
    rng = random.Random(5769)
    samples = [
        ice_request("abcd:efgh", 0x6E0001FF, 1234, True),
        ice_request("a:b", 1, 2**64 - 1, False),
    ]
    compared = 0
    for sample in samples:
        for _ in range(3000):
            data = bytearray(sample)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            mutated = bytes(data)
            layout.clear()
            outcome(sample)  # learn the sample's layout
            fast = outcome(mutated)
            layout.clear()
            slow = outcome(mutated)
            if fast[0] == slow[0] == "error":
                continue  # which error is named first may differ; both reject
            assert fast == slow, mutated.hex()
            compared += 1
    assert compared > 100


@settings(max_examples=200, deadline=None)
@given(
    username=st.text(min_size=1, max_size=40),
    priority=st.integers(0, 2**32 - 1),
    tie_breaker=st.integers(0, 2**64 - 1),
    nominate=st.booleans(),
)
def test_fast_and_slow_paths_agree(
    username: str, priority: int, tie_breaker: int, nominate: bool
) -> None:
    data = ice_request(username, priority, tie_breaker, nominate)
    layout.clear()
    slow = outcome(data)
    fast = outcome(data)
    assert layout.find(data) is not None
    assert fast == slow


def test_cache_is_bounded() -> None:
    for n in range(layout.MAX_LAYOUTS + 50):
        stun.parse_message(ice_request("u" * (n + 1), 1, 2, False))
    assert len(layout._LAYOUTS) == layout.MAX_LAYOUTS
    # Messages past the bound still parse (slow path).
    data = ice_request("v" * 1000, 1, 2, False)
    assert stun.parse_message(data).attributes["USERNAME"] == "v" * 1000
    assert layout.find(data) is None
