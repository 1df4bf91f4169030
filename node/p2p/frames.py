"""Length-prefixed msgpack frames: ``u32 big-endian length || msgpack([kind, body])``.

The length is checked against the configured maximum before a byte of the body is read, so
a peer cannot make us buffer more than ``max_frame_bytes``. An oversized frame is skipped in
bounded reads (its bytes are never kept); a length beyond ``_SKIP_FACTOR`` times the maximum
closes the link at once.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from mdtp.consensus.codec import SCAN_ABOVE_BYTES, check_structure, elements_max_for
from mdtp.consensus.errors import DecodeError
from mdtp.node.errors import FrameError

_HEADER = struct.Struct(">I")
_SKIP_FACTOR = 4
_SKIP_CHUNK = 64 * 1024
KIND_MAX_LEN = 32
FRAME_DEPTH_MAX = 16
# what makes a legitimate frame large is byte strings (blocks, transactions, chunks, a
# clean-room result's JSON), so a large frame holds few values for its size
FRAME_BYTES_PER_VALUE = 32


def encode_frame(kind: str, body: Any, max_frame_bytes: int) -> bytes:
    payload: bytes = msgpack.packb([kind, body], use_bin_type=True)
    if len(payload) > max_frame_bytes:
        raise FrameError(
            f"frame of kind {kind!r} is {len(payload)} bytes, above the maximum {max_frame_bytes}",
            reason="oversized",
        )
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> tuple[str, Any]:
    """Decode one frame payload; a :class:`FrameError` ``undecodable`` on anything malformed.
    A large one is walked first, so that one value per byte cannot decode into ~64 bytes of
    memory per byte (see :func:`~mdtp.consensus.codec.check_structure`)."""
    if len(payload) > SCAN_ABOVE_BYTES:
        try:
            check_structure(
                payload,
                depth_max=FRAME_DEPTH_MAX,
                elements_max=elements_max_for(len(payload), FRAME_BYTES_PER_VALUE),
            )
        except DecodeError as e:
            raise FrameError(f"undecodable frame: {e}", reason="undecodable") from None
    try:
        obj = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise FrameError(f"undecodable frame: {type(e).__name__}", reason="undecodable") from None
    if (
        not isinstance(obj, list)
        or len(obj) != 2
        or not isinstance(obj[0], str)
        or not 0 < len(obj[0]) <= KIND_MAX_LEN
    ):
        raise FrameError("frame is not a [kind, body] pair", reason="undecodable")
    return obj[0], obj[1]


async def read_frame(reader: asyncio.StreamReader, max_frame_bytes: int) -> tuple[str, Any, int]:
    """Read one frame: (kind, body, wire size).

    Raises FrameError for a bad frame (recoverable unless its reason is ``oversized_fatal``)
    and ``asyncio.IncompleteReadError`` at end of stream."""
    header = await reader.readexactly(_HEADER.size)
    (length,) = _HEADER.unpack(header)
    if length > max_frame_bytes:
        if length > _SKIP_FACTOR * max_frame_bytes:
            raise FrameError(
                f"frame length {length} is far above the maximum {max_frame_bytes}",
                reason="oversized_fatal",
            )
        remaining = length
        while remaining:
            chunk = await reader.read(min(remaining, _SKIP_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
        raise FrameError(
            f"frame of {length} bytes above the maximum {max_frame_bytes}", reason="oversized"
        )
    payload = await reader.readexactly(length)
    kind, body = decode_payload(payload)
    return kind, body, _HEADER.size + length
