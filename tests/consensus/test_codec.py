"""Messages and persisted state: canonical bytes, strict decoding, fuzzing."""

from __future__ import annotations

import ast
import contextlib
import pathlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.consensus.codec import DEPTH_MAX, unpack_canonical
from mdtp.consensus.errors import DecodeError
from mdtp.consensus.messages import (
    Checkpoint,
    CheckpointCertificate,
    Message,
    NewView,
    PreparedCertificate,
    StateTransferRequest,
    Suspect,
    ViewChange,
    WireLimits,
    decode_message,
    encode_message,
)
from mdtp.consensus.state import PersistedState, decode_state, encode_state
from tests.consensus.helpers import commit, pre_prepare, prepare, signed

GENESIS_CP = CheckpointCertificate(0, b"\x01" * 32, b"\x00" * 32, ())


def _samples() -> list[Message]:
    pp = pre_prepare()
    cert = PreparedCertificate(pp, tuple((s, prepare(pp, s).signature) for s in ("n1", "n2")))
    vc = signed(ViewChange(1, GENESIS_CP, (cert,), "n2"))
    return [
        pp,
        prepare(pp, "n1"),
        commit(pp, "n2"),
        signed(Checkpoint(4, b"\x02" * 32, b"\x03" * 32, "n3")),
        vc,
        signed(NewView(1, (vc,), (), "n1")),
        signed(StateTransferRequest(1, 9, "n3")),
        signed(Suspect(3, "n2")),
    ]


@pytest.mark.parametrize("msg", _samples(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_canonical_bytes(msg):
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


def test_signed_bytes_are_domain_separated_and_bound_to_the_chain():
    pp = pre_prepare()
    prep = prepare(pp, "n1")
    com = commit(pp, "n1")
    assert prep.signing_bytes("test") != com.signing_bytes("test")
    assert prep.signing_bytes("test").startswith(b"mdtp/v1/prepare")
    assert prep.signing_bytes("test") != prep.signing_bytes("other-chain")


def test_decode_rejects_oversize_before_decoding():
    data = encode_message(pre_prepare())
    with pytest.raises(DecodeError) as err:
        decode_message(data, WireLimits(message_bytes_max=len(data) - 1))
    assert err.value.reason == "oversize"


def test_decode_rejects_unknown_kind_wrong_types_and_non_canonical_encodings():
    cases = {
        "unknown_kind": msgpack.packb([99, "n0", b"\x00" * 64]),
        "bad_field": msgpack.packb([2, "n0", b"\x00" * 64, 0, 1, b"short"]),
        "malformed": b"\xc1",
    }
    for reason, data in cases.items():
        with pytest.raises(DecodeError) as err:
            decode_message(data)
        assert err.value.reason == reason
    # 1 packed as a uint16 instead of a fixint: same value, second encoding.
    non_canonical = (
        b"\x96\x02\xa2n0\xc4\x40" + b"\x00" * 64 + b"\xcd\x00\x01\x01\xc4\x20" + bytes(32)
    )
    with pytest.raises(DecodeError) as err:
        decode_message(non_canonical)
    assert err.value.reason == "non_canonical"


def test_decode_refuses_arrays_nested_deeper_than_the_bound_before_recursing():
    deep = b"\x91" * (DEPTH_MAX + 1) + b"\x00"
    with pytest.raises(DecodeError) as err:
        unpack_canonical(deep, 1_000)
    assert err.value.reason == "too_deep"
    assert unpack_canonical(b"\x91" * (DEPTH_MAX - 1) + b"\x00", 1_000) is not None
    # Deep enough to exhaust a recursive decoder: still one DecodeError, nothing else.
    with pytest.raises(DecodeError):
        decode_message(b"\x93\x02\xa2n0" + b"\x91" * 100_000 + b"\x00")


def test_deepest_legitimate_value_is_within_the_depth_bound():
    pp = pre_prepare()
    cert = PreparedCertificate(pp, tuple((s, prepare(pp, s).signature) for s in ("n1", "n2")))
    vc = signed(ViewChange(1, GENESIS_CP, (cert,), "n2"))
    nv = signed(NewView(1, (vc,), (pp,), "n1"))
    state = PersistedState(1, False, GENESIS_CP, (pp,), (cert,), nv)
    assert decode_state(*encode_state(state).stored()) == state


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decode_message_raises_only_decode_error_on_random_bytes(data):
    with contextlib.suppress(DecodeError):
        decode_message(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_decode_message_raises_only_decode_error_on_mutated_messages(position, value):
    for msg in _samples():
        data = bytearray(encode_message(msg))
        data[position % len(data)] = value
        with contextlib.suppress(DecodeError):
            decode_message(bytes(data))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=70)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10), st.text(max_size=5), msgpack_values)
def test_decode_message_raises_only_decode_error_on_well_formed_msgpack(kind, sender, body):
    data = msgpack.packb([kind, sender, b"\x00" * 64, body, body], use_bin_type=True)
    with contextlib.suppress(DecodeError):
        decode_message(data)


def test_persisted_state_round_trips_through_canonical_bytes():
    pp = pre_prepare()
    cert = PreparedCertificate(pp, tuple((s, prepare(pp, s).signature) for s in ("n1", "n2")))
    state = PersistedState(3, True, GENESIS_CP, (pp,), (cert,), None)
    assert decode_state(*encode_state(state).stored()) == state


FORBIDDEN = {"asyncio", "aiohttp", "plyvel", "time", "random", "socket", "node", "storage"}


def test_consensus_imports_no_io_clock_or_global_randomness():
    root = pathlib.Path(__file__).resolve().parents[2] / "consensus"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
