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
