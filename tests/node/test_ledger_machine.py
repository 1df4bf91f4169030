import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger import notes
from mdtp.node.ledger.machine import BlockContext, Ledger, account_nonce
from mdtp.node.ledger.state import MemoryKV, Overlay, next_state_root
from mdtp.node.ledger.tx import decode_tx, sign_tx

KEY = SigningKey.generate()
OTHER = SigningKey.generate()


def note(nonce, key="k", value=b"v", signer=KEY, sender=None, expires=10**13):
    return sign_tx(
        signer,
        chain_id="c1",
        type_="note.set",
        sender=sender or signer.account_id,
        nonce=nonce,
        expires_at_ms=expires,
        body={"key": key, "value": value},
    )


def run(txs, kv=None, ts=1000):
    ledger = Ledger("c1")
    notes.register(ledger)
    state = Overlay(kv or MemoryKV())
    results = ledger.execute_block(BlockContext("c1", 1, ts, "n0"), state, tuple(txs))
    return results, state


def test_every_transaction_gets_a_result_and_failures_have_reasons():
    results, state = run(
        [
            note(1),
            note(1),  # replay of nonce 1
            note(3),  # gap
            note(2, expires=10),  # expired
            note(2, signer=OTHER, sender=KEY.account_id),  # someone else's key
            note(2, key=""),  # bad body: consumes the nonce
            note(3, key="x"),
        ]
    )
    assert [(r.ok, r.reason) for r in results] == [
        (True, ""),
        (False, "bad_nonce"),
        (False, "bad_nonce"),
        (False, "expired"),
        (False, "wrong_key"),
        (False, "bad_body"),
        (True, ""),
    ]
    assert account_nonce(state, KEY.account_id) == 3
    assert [i.index for i in results] == list(range(7))


def test_execution_is_deterministic_and_the_root_commits_to_writes():
    txs = [note(1), note(2, key="b")]
    _, s1 = run(txs)
    _, s2 = run(txs)
    assert s1.writes == s2.writes
    root = b"\x00" * 32
    assert next_state_root(root, s1.writes) == next_state_root(root, s2.writes)
    _, s3 = run([note(1), note(2, key="c")])
    assert next_state_root(root, s3.writes) != next_state_root(root, s1.writes)


def test_overlay_scan_merges_writes_and_deletions_in_key_order():
    kv = MemoryKV({b"p/a": b"1", b"p/c": b"3", b"q/x": b"9"})
    o = Overlay(kv)
    o.put(b"p/b", b"2")
    o.delete(b"p/c")
    child = o.child()
    child.put(b"p/d", b"4")
    assert list(child.scan(b"p/")) == [(b"p/a", b"1"), (b"p/b", b"2"), (b"p/d", b"4")]


class CountingKV(MemoryKV):
    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        super().__init__(data)
        self.reads: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return super().get(key)


def test_a_read_cache_reads_each_key_of_the_base_once_and_never_hides_a_write():
    kv = CountingKV({b"a": b"1", b"b": b"2"})
    o = Overlay(kv, cache_reads=True)
    assert [o.get(b"a"), o.get(b"a"), o.get(b"z"), o.get(b"z")] == [b"1", b"1", None, None]
    assert kv.reads == [b"a", b"z"]
    o.put(b"a", b"9")
    o.delete(b"b")
    child = o.child()
    child.put(b"z", b"new")
    assert [child.get(b"a"), child.get(b"b"), child.get(b"z"), o.get(b"z")] == [
        b"9",
        None,
        b"new",
        None,
    ]
    o.merge(child)
    assert o.get(b"z") == b"new"
    assert kv.reads == [b"a", b"z"]
    # without the cache every read goes to the base
    plain = Overlay(kv)
    plain.get(b"a"), plain.get(b"a")
    assert kv.reads[-2:] == [b"a", b"a"]


def test_a_block_gives_the_same_results_and_writes_with_the_read_cache():
    txs = [note(1), note(1), note(2, key=""), note(3, key="x"), note(2, signer=OTHER)]
    ledger = Ledger("c1")
    notes.register(ledger)
    ctx = BlockContext("c1", 1, 1000, "n0")
    outcomes = []
    for cache in (False, True):
        state = Overlay(MemoryKV({b"nonce/x": b"\x00"}), cache_reads=cache)
        results = ledger.execute_block(ctx, state, tuple(txs))
        outcomes.append(([(r.tx_id, r.ok, r.reason) for r in results], state.writes))
    assert outcomes[0] == outcomes[1]


def test_transactions_decoded_beforehand_are_used_and_the_others_decoded_here():
    txs = (note(1), note(2, key="b"), note(3, key="c"))
    pre = decode_tx(txs[1], chain_id="c1", max_bytes=len(txs[1]))
    ledger = Ledger("c1")
    notes.register(ledger)
    ctx = BlockContext("c1", 1, 1000, "n0")
    state = Overlay(MemoryKV(), cache_reads=True)
    results = ledger.execute_block(ctx, state, txs, [None, pre, None])
    assert [r.ok for r in results] == [True, True, True]
    assert results[1].tx is pre
    assert [r.tx.signed_bytes for r in results if r.tx] == list(txs)
    # a decoded transaction of other bytes is a bug of the caller, never executed
    with pytest.raises(ValueError, match="decoded from other bytes"):
        ledger.execute_block(ctx, Overlay(MemoryKV()), txs, [pre, None, None])
