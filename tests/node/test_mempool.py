import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import Tx, decode_tx, sign_tx
from mdtp.node.txpool.mempool import (
    Mempool,
    MempoolFull,
    MempoolLimits,
    MempoolMetrics,
    MempoolReject,
)

CHAIN = "c1"


def tx(key: SigningKey, nonce: int, size: int = 10) -> Tx:
    raw = sign_tx(
        key,
        chain_id=CHAIN,
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=10**13,
        body={"key": "k", "value": b"x" * size},
    )
    return decode_tx(raw, chain_id=CHAIN)


def pool(committed: dict[str, int] | None = None, **limits: int) -> Mempool:
    nonces = committed if committed is not None else {}
    return Mempool(
        MempoolLimits(**limits),
        lambda account: nonces.get(account, 0),
        MempoolMetrics(CollectorRegistry()),
    )


def test_full_mempool_refuses_by_count_and_by_bytes():
    a = SigningKey.generate()
    p = pool(max_txs=2)
    p.add(tx(a, 1))
    p.add(tx(a, 2))
    with pytest.raises(MempoolFull):
        p.add(tx(a, 3))
    b = SigningKey.generate()
    q = pool(max_bytes=400)
    q.add(tx(b, 1, size=100))
    with pytest.raises(MempoolFull):
        q.add(tx(b, 2, size=300))
    assert len(q) == 1 and q.size_bytes < 400


def test_nonce_window_duplicates_and_stale_nonces_are_refused_with_reasons():
    a = SigningKey.generate()
    p = pool({a.account_id: 5}, nonce_window=10)
    first = tx(a, 6)
    assert p.add(first) is True
    assert p.add(first) is False  # duplicate id: no-op
    for nonce, reason in ((5, "stale_nonce"), (16, "future_nonce")):
        with pytest.raises(MempoolReject) as e:
            p.add(tx(a, nonce))
        assert e.value.reason == reason
    with pytest.raises(MempoolReject) as e:
        p.add(tx(a, 6, size=11))  # another tx with a pending nonce
    assert e.value.reason == "nonce_taken"


def test_proposals_are_gap_free_per_sender_and_skip_in_flight():
    a, b = SigningKey.generate(), SigningKey.generate()
    p = pool()
    for t in (tx(a, 2), tx(b, 1), tx(a, 1), tx(a, 4)):
        p.add(t)
    first = p.take(10, 10**6)
    # arrival order; a's nonce 2 came before 1 so it waits for the next proposal
    assert [(t.sender == a.account_id, t.nonce) for t in first] == [(False, 1), (True, 1)]
    p.mark_in_flight([t.id for t in first])
    assert [t.nonce for t in p.take(10, 10**6)] == [2]
    p2 = pool()
    for t in (tx(a, 1), tx(a, 2), tx(a, 4)):
        p2.add(t)
    batch = p2.take(10, 10**6)
    assert [t.nonce for t in batch] == [1, 2]
    p2.mark_in_flight([t.id for t in batch])
    assert p2.take(10, 10**6) == []  # 3 is missing: 4 must wait
    assert not p2.has_proposable()


def test_commit_evicts_settled_and_stale_but_keeps_not_yet_due():
    a = SigningKey.generate()
    committed = {a.account_id: 0}
    p = pool(committed)
    t1, t2, t3 = tx(a, 1), tx(a, 2), tx(a, 3)
    for t in (t1, t2, t3):
        p.add(t)
    committed[a.account_id] = 1
    p.committed([(t1.id, a.account_id, True, ""), (t3.id, a.account_id, False, "bad_nonce")])
    assert t1.id not in p and t2.id in p and t3.id in p
    committed[a.account_id] = 3
    # t3's nonce was taken by another transaction of a (it failed in its own block):
    # it is dropped, and the pool remembers why
    assert p.committed([(t2.id, a.account_id, True, "")]) == [t3.id]
    assert len(p) == 0
    assert p.dropped_reason(t3.id) == "nonce_used" and p.dropped_reason(t2.id) is None


def test_a_rival_this_pool_never_saw_drops_the_transaction_whose_nonce_it_took():
    """A lagging node accepted t (its state said nonce 1 was free); the block it executes
    holds the sender's other transaction with nonce 1, which never entered this pool."""
    a = SigningKey.generate()
    committed = {a.account_id: 0}
    p = pool(committed)
    t, rival = tx(a, 1), tx(a, 1, size=20)
    p.add(t)
    committed[a.account_id] = 1
    assert p.committed([(rival.id, a.account_id, True, "")]) == [t.id]
    assert p.dropped_reason(t.id) == "nonce_used" and len(p) == 0


def test_expired_transactions_leave_by_themselves():
    a = SigningKey.generate()
    p = pool()
    raw = sign_tx(
        a,
        chain_id=CHAIN,
        type_="note.set",
        sender=a.account_id,
        nonce=1,
        expires_at_ms=1000,
        body={},
    )
    t = decode_tx(raw, chain_id=CHAIN)
    p.add(t)
    assert p.evict_expired(2000) == [t.id] and len(p) == 0
    assert p.dropped_reason(t.id) == "expired"
    p.add(t)  # accepted again: no longer dropped
    assert p.dropped_reason(t.id) is None


def test_committed_nonces_are_read_once_between_commits():
    a, b = SigningKey.generate(), SigningKey.generate()
    reads: list[str] = []
    nonces = {a.account_id: 0, b.account_id: 0}

    def read(account: str) -> int:
        reads.append(account)
        return nonces[account]

    p = Mempool(MempoolLimits(), read, MempoolMetrics(CollectorRegistry()))
    t1, t2, u1 = tx(a, 1), tx(a, 2), tx(b, 1)
    for t in (t1, t2, u1):
        p.add(t)
    assert [t.nonce for t in p.take(10, 10**6)] == [1, 2, 1]
    assert reads == [a.account_id, b.account_id]
    # a commit moves the nonces: the next read is fresh, and a used nonce is refused
    nonces[a.account_id] = 1
    p.committed([(t1.id, a.account_id, True, "")])
    with pytest.raises(MempoolReject) as e:
        p.add(tx(a, 1, size=2))
    assert e.value.reason == "stale_nonce"
    assert reads[2:] == [a.account_id]  # read once after the commit, then remembered


def test_the_size_gauges_read_the_pool_when_scraped():
    registry = CollectorRegistry()
    a = SigningKey.generate()
    committed = {a.account_id: 0}
    p = Mempool(MempoolLimits(), lambda account: committed[account], MempoolMetrics(registry))

    def gauges() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("mdtp_mempool_transactions"),
            registry.get_sample_value("mdtp_mempool_bytes"),
        )

    assert gauges() == (0, 0)
    t1, t2 = tx(a, 1), tx(a, 2, size=50)
    p.add(t1)
    p.add(t2)
    assert gauges() == (2, len(t1.signed_bytes) + len(t2.signed_bytes))
    committed[a.account_id] = 1
    p.committed([(t1.id, a.account_id, True, "")])
    assert gauges() == (1, len(t2.signed_bytes))
