from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import TxError, canonical, decode_tx, sign_tx

KEY = SigningKey.generate()


def make(**over):
    args: dict[str, Any] = dict(
        chain_id="c1",
        type_="note.set",
        sender=KEY.account_id,
        nonce=1,
        expires_at_ms=10**13,
        body={"key": "k", "value": b"v"},
    )
    args.update(over)
    return sign_tx(KEY, **args)


def test_signed_tx_decodes_with_a_stable_id():
    raw = make()
    tx = decode_tx(raw, chain_id="c1")
    assert (tx.type, tx.sender, tx.nonce) == ("note.set", KEY.account_id, 1)
    assert tx.id == decode_tx(raw, chain_id="c1").id and len(tx.id) == 32


def test_forged_signature_is_refused():
    outer = msgpack.unpackb(make())
    outer[2] = bytes(64)
    with pytest.raises(TxError) as e:
        decode_tx(canonical(outer), chain_id="c1")
    assert e.value.reason == "bad_signature"


def test_altered_body_breaks_the_signature():
    outer = msgpack.unpackb(make())
    inner = msgpack.unpackb(outer[0])
    inner[5]["value"] = b"w"
    outer[0] = canonical(inner)
    with pytest.raises(TxError) as e:
        decode_tx(canonical(outer), chain_id="c1")
    assert e.value.reason == "bad_signature"


def test_wrong_chain_and_oversize_are_refused_before_anything_else():
    with pytest.raises(TxError) as e:
        decode_tx(make(chain_id="c2"), chain_id="c1")
    assert e.value.reason == "wrong_chain"
    with pytest.raises(TxError) as e:
        decode_tx(make(body={"v": b"x" * 5000}), chain_id="c1", max_bytes=4096)
    assert e.value.reason == "oversized"


def test_non_canonical_encoding_is_refused():
    raw = make()
    outer = msgpack.unpackb(raw)
    inner = msgpack.unpackb(outer[0])
    inner[5] = {"value": b"v", "key": "k"}  # unsorted keys
    outer[0] = msgpack.packb(inner, use_bin_type=True)
    with pytest.raises(TxError) as e:
        decode_tx(canonical(outer), chain_id="c1", verify=False)
    assert e.value.reason == "non_canonical"


def test_floats_are_not_allowed():
    with pytest.raises(TxError):
        make(body={"price": 1.5})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_answers_any_bytes_with_a_typed_error(data):
    with pytest.raises(TxError):
        decode_tx(data, chain_id="c1")


def test_deeply_nested_body_is_refused_as_malformed_not_a_recursion_error() -> None:
    import msgpack

    from mdtp.node.ledger.tx import DEPTH_MAX, TxError, decode_tx

    body: object = {}
    for _ in range(600):
        body = {"a": body}
    unsigned = msgpack.packb(["c", "note.set", "s", 1, 1, body], use_bin_type=True)
    raw = msgpack.packb([unsigned, b"k" * 32, b"s" * 64], use_bin_type=True)
    with pytest.raises(TxError) as e:
        decode_tx(raw, chain_id="c", max_bytes=len(raw))
    assert e.value.reason == "malformed" and str(DEPTH_MAX) in str(e.value)


async def test_verifier_answers_after_a_hostile_transaction() -> None:
    import msgpack

    from mdtp.node.ledger.tx import TxError
    from mdtp.node.txpool.sigverify import BatchVerifier

    body: object = []
    for _ in range(600):
        body = [body]
    unsigned = msgpack.packb(["c", "note.set", "s", 1, 1, body], use_bin_type=True)
    hostile = msgpack.packb([unsigned, b"k" * 32, b"s" * 64], use_bin_type=True)
    from prometheus_client import CollectorRegistry

    from mdtp.node.supervisor import Supervisor

    verifier = BatchVerifier("c", 64 * 1024)
    supervisor = Supervisor(CollectorRegistry())
    verifier.start(supervisor)
    try:
        for _ in range(2):
            results = await verifier.check_many([hostile, b"\xc1"])
            assert all(isinstance(r, TxError) for r in results)
            with pytest.raises(TxError):
                await verifier.check(hostile)
        assert supervisor.failed == []
    finally:
        await verifier.close()


def _reference_decode(data: bytes) -> tuple[str, str] | tuple[Any, ...]:
    """The decoder's definition written plainly (depth, shape, then canonical(...) re-encoding
    of both layers), to hold the fast path of ``decode_tx`` to the same answers."""
    from mdtp.node.ledger.tx import DEPTH_MAX

    def unpack(raw: bytes) -> Any:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
        stack = [(obj, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, dict | list):
                if depth >= DEPTH_MAX:
                    raise TxError("deep", reason="malformed")
                stack.extend(
                    (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
                )
        return obj

    try:
        outer = unpack(data)
        if not (
            isinstance(outer, list) and len(outer) == 3 and all(isinstance(x, bytes) for x in outer)
        ):
            raise TxError("shape", reason="malformed")
        if len(outer[1]) != 32 or len(outer[2]) != 64:
            raise TxError("sizes", reason="malformed")
        inner = unpack(outer[0])
        if not (isinstance(inner, list) and len(inner) == 6):
            raise TxError("fields", reason="malformed")
        if inner[0] != "c1":
            raise TxError("chain", reason="wrong_chain")
        if not isinstance(inner[5], dict):
            raise TxError("body", reason="malformed")
        if canonical(outer) != data or canonical(inner) != outer[0]:
            raise TxError("canonical", reason="non_canonical")
    except TxError as e:
        return ("error", e.reason)
    except Exception:
        return ("error", "malformed")
    return tuple(inner[1:])


_leaf = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.floats(),
    st.booleans(),
    st.none(),
)
_values = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=3), st.binary(max_size=2)), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_values, st.booleans())
def test_the_fast_canonical_check_answers_as_the_plain_definition(body, shuffle):
    # bodies of every shape, packed as they come (not sorted): unsorted or bytes keys, floats,
    # nesting; the fast path must refuse exactly what re-encoding refuses, for the same reason
    if isinstance(body, dict) and shuffle:
        body = dict(reversed(list(body.items())))
    unsigned = msgpack.packb(["c1", "note.set", "s", 1, 1, body], use_bin_type=True)
    raw = msgpack.packb([unsigned, b"k" * 32, b"s" * 64], use_bin_type=True)
    try:
        tx = decode_tx(raw, chain_id="c1", max_bytes=len(raw), verify=False)
        got: tuple[Any, ...] = (tx.type, tx.sender, tx.nonce, tx.expires_at_ms, tx.body)
    except TxError as e:
        got = ("error", e.reason)
    want = _reference_decode(raw)
    if want[0] == "error" and got[0] == "error":
        assert got == want
    else:
        assert got[0] != "error" and want[0] != "error", (got, want)
        assert msgpack.packb(list(got), use_bin_type=True) == msgpack.packb(
            list(want), use_bin_type=True
        )
