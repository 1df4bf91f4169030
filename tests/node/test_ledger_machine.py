from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger import notes
from mdtp.node.ledger.machine import BlockContext, Ledger, account_nonce
from mdtp.node.ledger.state import MemoryKV, Overlay, next_state_root
from mdtp.node.ledger.tx import sign_tx

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
