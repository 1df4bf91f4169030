"""The msgpack structure walk that runs before large untrusted input is decoded: it agrees
with msgpack on every well-formed value, and a payload of one value per byte (which decodes
into ~64 bytes of memory per byte) is refused without being built, wherever peers and clients
hand the node msgpack."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.consensus.codec import SCAN_ABOVE_BYTES, check_structure, unpack_canonical
from mdtp.consensus.errors import DecodeError
from mdtp.node.errors import FrameError
from mdtp.node.ledger.tx import TxError, decode_tx
from mdtp.node.p2p.frames import decode_payload

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=70_000)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=300)),
    lambda children: (
        st.lists(children, max_size=20) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=60,
)


def count_values(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(count_values(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(count_values(k) + count_values(v) for k, v in value.items())
    return 1


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_walk_counts_every_value_and_level_of_well_formed_msgpack(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    n, d = count_values(value), depth(value)
    check_structure(data, depth_max=d, elements_max=n)
    with pytest.raises(DecodeError, match="too_many_values"):
        check_structure(data, depth_max=d, elements_max=n - 1)
    if d:
        with pytest.raises(DecodeError, match="too_deep"):
            check_structure(data, depth_max=d - 1, elements_max=n)


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_a_cut_value_is_refused_as_ending_early(value: Any, data: st.DataObject) -> None:
    encoded = msgpack.packb(value, use_bin_type=True)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError, match="malformed"):
        check_structure(encoded[:cut], depth_max=64, elements_max=10**7)


def empty_arrays(size: int) -> bytes:
    """One msgpack array of ``size`` empty arrays: one value per byte."""
    return b"\xdd" + size.to_bytes(4, "big") + b"\x90" * size


def short_strings(size: int) -> bytes:
    """One array of 3-byte strings: ~20 bytes of memory per byte once decoded."""
    count = size // 3
    return b"\xdd" + count.to_bytes(4, "big") + b"\xa2ab" * count


def peak_mib(decode: Callable[[], object]) -> float:
    tracemalloc.start()
    with contextlib.suppress(DecodeError, FrameError, TxError):
        decode()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


@pytest.mark.parametrize(
    "payload", [empty_arrays, short_strings], ids=["empty arrays", "short strings"]
)
@pytest.mark.parametrize(
    "decoder",
    [
        lambda p: unpack_canonical(p, 64 * 2**20),
        decode_payload,
        lambda p: decode_tx(p, chain_id="c", max_bytes=len(p)),
    ],
    ids=["consensus message", "p2p frame", "transaction"],
)
def test_one_value_per_byte_is_refused_before_it_is_built(
    payload: Callable[[int], bytes], decoder: Callable[[bytes], object]
) -> None:
    data = payload(8 * 2**20)
    with pytest.raises((DecodeError, FrameError, TxError)):
        decoder(data)
    # decoded, 8 MiB of it is ~500 MiB of Python objects
    assert peak_mib(lambda: decoder(data)) < 64 + 2 * len(data) / 2**20


def test_legitimate_large_input_is_decoded_as_before() -> None:
    # a block-like message: 10,000 transactions of 200 bytes, with certificates
    block = [1, 2, [b"t" * 200] * 10_000, b"h" * 32, "node0", [["n1", b"s" * 64]] * 4]
    data = msgpack.packb(block, use_bin_type=True)
    assert len(data) > SCAN_ABOVE_BYTES
    assert unpack_canonical(data, 64 * 2**20) == block
    frame = msgpack.packb(["consensus", data], use_bin_type=True)
    assert decode_payload(frame) == ("consensus", data)
    # transactions gossiped in one frame
    gossip = msgpack.packb(["txs", [b"t" * 150] * 2_000], use_bin_type=True)
    assert len(gossip) > SCAN_ABOVE_BYTES
    assert decode_payload(gossip) == ("txs", [b"t" * 150] * 2_000)
