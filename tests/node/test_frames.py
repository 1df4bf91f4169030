import asyncio
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.node.errors import FrameError
from mdtp.node.p2p.frames import decode_payload, encode_frame, read_frame


def reader_with(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_frames_round_trip():
    frame = encode_frame("consensus", {"a": b"\x00" * 10, "b": [1, 2]}, 1024)
    kind, body, size = await read_frame(reader_with(frame), 1024)
    assert (kind, body, size) == ("consensus", {"a": b"\x00" * 10, "b": [1, 2]}, len(frame))


async def test_oversized_frame_is_skipped_and_the_next_one_read():
    big = struct.pack(">I", 3000) + b"x" * 3000
    good = encode_frame("tx", b"ok", 2048)
    r = reader_with(big + good)
    with pytest.raises(FrameError) as e:
        await read_frame(r, 2048)
    assert e.value.reason == "oversized"
    assert (await read_frame(r, 2048))[:2] == ("tx", b"ok")


async def test_absurd_length_is_fatal_without_reading_it():
    with pytest.raises(FrameError) as e:
        await read_frame(reader_with(struct.pack(">I", 2**31)), 2048)
    assert e.value.reason == "oversized_fatal"


def test_encoder_refuses_to_send_oversized_frames():
    with pytest.raises(FrameError):
        encode_frame("tx", b"x" * 5000, 4096)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb(["", 1]), msgpack.packb({"a": 1})],
)
def test_malformed_payloads_are_typed_errors(payload):
    with pytest.raises(FrameError) as e:
        decode_payload(payload)
    assert e.value.reason == "undecodable"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256))
def test_decoder_answers_any_bytes_with_a_frame_or_a_typed_error(data):
    try:
        kind, _ = decode_payload(data)
    except FrameError:
        return
    assert isinstance(kind, str)
