"""``Message.encode()``, the one-step encoder, gives the bytes of the compatible API."""

from __future__ import annotations

from typing import Any

import pytest
from aioice import stun
from hypothesis import given
from hypothesis import strategies as st

KEY = b"VOkJxbRl1RmTxUk/WvJxBt"

attribute_values = st.fixed_dictionaries(
    {},
    optional={
        "USERNAME": st.text(max_size=30),
        "PRIORITY": st.integers(0, 2**32 - 1),
        "ICE-CONTROLLING": st.integers(0, 2**64 - 1),
        "USE-CANDIDATE": st.none(),
        "XOR-MAPPED-ADDRESS": st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
        "SOFTWARE": st.text(max_size=10),
        "DATA": st.binary(max_size=33),
    },
)


def compatible(attributes: dict[str, Any], key: bytes | None, fingerprint: bool) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, b"t" * 12, dict(attributes))
    if key is not None:
        message.add_message_integrity(key, fingerprint=fingerprint)
    elif fingerprint:
        message.add_fingerprint()
    return bytes(message)


@given(attributes=attribute_values, signed=st.booleans(), fingerprint=st.booleans())
def test_encode_equals_the_compatible_api(
    attributes: dict[str, Any], signed: bool, fingerprint: bool
) -> None:
    key = KEY if signed else None
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, b"t" * 12, dict(attributes))
    data = message.encode(key, fingerprint=fingerprint)
    assert data == compatible(attributes, key, fingerprint)
    # encode() leaves the message as it was.
    assert message.attributes == attributes
    parsed = stun.parse_message(data)
    assert parsed.check_message_integrity(KEY) is signed
    assert ("FINGERPRINT" in parsed.attributes) is fingerprint


def test_add_message_integrity_adds_fingerprint_as_aioice_did() -> None:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={"PRIORITY": 1})
    message.add_message_integrity(KEY)
    assert list(message.attributes) == ["PRIORITY", "MESSAGE-INTEGRITY", "FINGERPRINT"]
    data = bytes(message)
    assert data == stun.Message(
        stun.Method.BINDING, stun.Class.REQUEST, message.transaction_id, {"PRIORITY": 1}
    ).encode(KEY)
    # A second add_fingerprint() (aioice 0.x callers do this) changes nothing.
    message.add_fingerprint()
    assert bytes(message) == data


def test_encode_refuses_a_message_that_is_already_signed() -> None:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.add_fingerprint()
    with pytest.raises(ValueError, match="signature attributes"):
        message.encode(KEY)
