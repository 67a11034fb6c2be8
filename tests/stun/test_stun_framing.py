"""StreamFramer: STUN and ChannelData over streams (RFC 8489 §6.2.2, RFC 8656 §11.5), RFC 4571."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest
from aioice.stun import Class, Message, Method, StreamFramer, parse_message
from aioice.stun.framing import MAX_FRAME
from hypothesis import given
from hypothesis import strategies as st

TID = b"abcdefghijkl"
FRAMINGS: tuple[Literal["stun", "rfc4571"], ...] = ("stun", "rfc4571")


def stun_messages() -> list[bytes]:
    return [
        bytes(Message(Method.BINDING, Class.REQUEST, TID)),
        bytes(
            Message(
                Method.BINDING,
                Class.RESPONSE,
                TID,
                {"XOR-MAPPED-ADDRESS": ("192.0.2.1", 32853), "SOFTWARE": "abc"},
            )
        ),
        bytes(Message(Method.ALLOCATE, Class.ERROR, TID, {"ERROR-CODE": (401, "Unauthorized")})),
    ]


def channel_data(channel: int, payload: bytes) -> bytes:
    return channel.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(framer.feed(chunk))
    return frames


def test_stun_back_to_back_split_at_every_boundary() -> None:
    messages = [*stun_messages(), channel_data(0x4000, b"hello"), *stun_messages()]
    framer = StreamFramer()
    stream = b"".join(framer.frame(m) for m in messages)
    assert len(stream) == sum(len(m) for m in messages) + 3  # ChannelData padding
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        first = framer.feed(stream[:cut])
        frames = first + framer.feed(stream[cut:])
        assert frames == messages, cut
        assert not framer.broken
        # Frames come out as soon as they are complete.
        complete = 0
        pos = 0
        for framed in (StreamFramer().frame(m) for m in messages):
            pos += len(framed)
            if pos <= cut:
                complete += 1
        assert len(first) == complete, cut


def test_stun_split_at_every_pair_of_boundaries() -> None:
    messages = stun_messages()
    stream = b"".join(messages)
    size = len(stream)
    steps = 0
    for i in range(size + 1):
        for j in range(i, size + 1):
            steps += 1
            framer = StreamFramer()
            assert feed_all(framer, [stream[:i], stream[i:j], stream[j:]]) == messages
    assert steps == (size + 1) * (size + 2) // 2


def test_byte_by_byte() -> None:
    messages = stun_messages()
    framer = StreamFramer("stun")
    frames = feed_all(framer, [bytes([b]) for b in b"".join(messages)])
    assert frames == messages
    assert [parse_message(f).message_method for f in frames] == [
        Method.BINDING,
        Method.BINDING,
        Method.ALLOCATE,
    ]


@pytest.mark.parametrize(
    ("payload_length", "padding"), [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (5, 3)]
)
def test_channel_data_padding(payload_length: int, padding: int) -> None:
    framer = StreamFramer()
    data = channel_data(0x4001, bytes(range(1, payload_length + 1)))
    framed = framer.frame(data)
    assert framed == data + bytes(padding)
    assert len(framed) % 4 == 0
    # Padding is consumed and not returned; the next frame is intact.
    follow = stun_messages()[0]
    assert framer.feed(framed + follow) == [data, follow]


def test_channel_data_range_of_first_byte() -> None:
    framer = StreamFramer()
    for first in (0x40, 0x4F, 0x7F):
        data = bytes([first, 0x00, 0x00, 0x01, 0xAA])
        assert framer.frame(data) == data + b"\x00\x00\x00"
        assert framer.feed(framer.frame(data)) == [data]
    assert not framer.broken


def test_stun_messages_are_not_padded() -> None:
    framer = StreamFramer()
    for message in stun_messages():
        assert framer.frame(message) == message
    assert framer.frame(b"") == b""
    # Even an odd-length non-ChannelData buffer is passed unchanged.
    assert framer.frame(b"\x00\x01\x02") == b"\x00\x01\x02"


def test_channel_data_padding_split_inside_the_padding() -> None:
    data = channel_data(0x4000, b"x")
    follow = stun_messages()[0]
    stream = StreamFramer().frame(data) + follow
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        assert feed_all(framer, [stream[:cut], stream[cut:]]) == [data, follow], cut


def test_rfc4571_round_trip() -> None:
    payloads = [b"", b"a", *stun_messages(), bytes(range(256)) * 3, b"\x80\x81 RTP-ish"]
    framer = StreamFramer("rfc4571")
    stream = b"".join(framer.frame(p) for p in payloads)
    assert stream[:2] == b"\x00\x00"
    assert stream[2:5] == b"\x00\x01a"
    assert len(stream) == sum(2 + len(p) for p in payloads)
    for cut in range(0, len(stream) + 1, 7):
        reader = StreamFramer("rfc4571")
        assert feed_all(reader, [stream[:cut], stream[cut:]]) == payloads, cut
    # Byte by byte.
    reader = StreamFramer("rfc4571")
    assert feed_all(reader, [bytes([b]) for b in stream]) == payloads
    assert not reader.broken


def test_rfc4571_never_breaks() -> None:
    framer = StreamFramer("rfc4571")
    assert framer.feed(b"\xff\xff") == []
    assert not framer.broken
    assert framer.feed(b"x" * 0xFFFF) == [b"x" * 0xFFFF]


@pytest.mark.parametrize("first", [0x80, 0xBF, 0xC0, 0xFF])
def test_bad_first_byte_breaks_the_stream(first: int) -> None:
    good = stun_messages()
    framer = StreamFramer()
    frames = framer.feed(good[0] + bytes([first, 0, 0, 0]) + good[1])
    # What came before is still returned; nothing after.
    assert frames == [good[0]]
    assert framer.broken
    assert framer.feed(good[2]) == []
    assert framer.feed(b"") == []
    assert framer.broken


def test_bad_first_byte_needs_four_bytes_to_be_seen() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\xff\x00\x00") == []
    assert not framer.broken
    assert framer.feed(b"\x00") == []
    assert framer.broken


def test_frame_limits() -> None:
    framer = StreamFramer("rfc4571")
    assert framer.frame(bytes(0xFFFF))[:2] == b"\xff\xff"
    # The 16-bit length prefix cannot say more: an error, not a corrupt stream.
    with pytest.raises(ValueError, match="too large"):
        framer.frame(bytes(0x10000))
    stun = StreamFramer()
    assert len(stun.frame(bytes(MAX_FRAME))) == MAX_FRAME
    with pytest.raises(ValueError, match="too large"):
        stun.frame(bytes(MAX_FRAME + 1))


def test_unknown_framing() -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        StreamFramer("websocket")  # type: ignore[arg-type]
    assert StreamFramer().framing == "stun"


# -- properties -------------------------------------------------------------------------------

stun_frames = st.builds(
    lambda method, cls, software: bytes(
        Message(method, cls, TID, {"SOFTWARE": software} if software else {})
    ),
    st.sampled_from([Method.BINDING, Method.ALLOCATE, Method.REFRESH]),
    st.sampled_from(list(Class)),
    st.text(max_size=40),
)
channel_frames = st.builds(channel_data, st.integers(0x4000, 0x7FFF), st.binary(max_size=100))


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


@given(
    frames=st.lists(st.one_of(stun_frames, channel_frames), max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_stun_random_chunking_reassembles_exactly(frames: list[bytes], cuts: list[int]) -> None:
    writer = StreamFramer("stun")
    stream = b"".join(writer.frame(f) for f in frames)
    chunks = chunked(stream, cuts)
    assert b"".join(chunks) == stream
    reader = StreamFramer("stun")
    assert feed_all(reader, chunks) == frames
    assert not reader.broken


@given(
    frames=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
)
def test_rfc4571_random_chunking_reassembles_exactly(frames: list[bytes], cuts: list[int]) -> None:
    writer = StreamFramer("rfc4571")
    stream = b"".join(writer.frame(f) for f in frames)
    reader = StreamFramer("rfc4571")
    assert feed_all(reader, chunked(stream, cuts)) == frames


@given(stream=st.binary(max_size=500), cuts=st.lists(st.integers(0, 600), max_size=10))
def test_feed_never_raises(stream: bytes, cuts: list[int]) -> None:
    for framing in FRAMINGS:
        reader = StreamFramer(framing)
        frames = feed_all(reader, chunked(stream, cuts))
        # Frames are an in-order prefix of the stream (padding aside).
        assert sum(len(f) for f in frames) <= len(stream)
        if reader.broken:
            assert reader.feed(b"\x00" * 20) == []
