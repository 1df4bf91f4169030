"""Whole lifecycles in multi-transaction blocks, determinism, and reason-code coverage."""

from pathlib import Path

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import MemoryKV, Overlay, genesis_state_root, next_state_root
from mdtp.node.ledger.trading import genesis_writes, install, queries
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.ledger.trading.reasons import MACHINE_REASONS, REASON_CODES, TRADING_REASONS
from tests.ledger.helpers import (
    CHAIN_ID,
    DAY_MS,
    T0,
    Chain,
    dataset_body,
    digest,
    register_body,
    terms,
)

END = T0 + 30 * DAY_MS


def run_story(chain: Chain) -> dict[str, object]:
    """Register, publish, offer + counter, sign, review, grant, deliver to the quota,
    confirm, expire, dispose; returns what the assertions need."""
    supplier, consumer, reviewer = (SigningKey.generate(with_encryption=True) for _ in range(3))
    a1, a2, node = chain.admins["m1"], chain.admins["m2"], chain.node_keys["m1"]
    results = chain.run(
        chain.tx(a1, "account.register", register_body(supplier, ["supplier"])),
        chain.tx(a2, "account.register", register_body(consumer, ["consumer"])),
        chain.tx(a2, "account.register", register_body(reviewer, ["reviewer"])),
        chain.tx(supplier, "dataset.publish", dataset_body("ds1")),
    )
    assert [r.ok for r in results] == [True] * 4
    v1 = terms(reviewer=reviewer.account_id, max_downloads=2)
    v2 = {**v1, "price_minor": 120_000}
    results = chain.run(
        chain.tx(
            supplier,
            "contract.offer",
            {
                "contract_id": "c1",
                "dataset_id": "ds1",
                "consumer": consumer.account_id,
                "terms": v1,
            },
        ),
        chain.tx(consumer, "contract.counter", {"contract_id": "c1", "version": 1, "terms": v2}),
        chain.tx(
            supplier,
            "contract.sign",
            {"contract_id": "c1", "version": 1, "terms_hash": terms_hash(v1)},
        ),
        chain.tx(
            supplier,
            "contract.sign",
            {"contract_id": "c1", "version": 2, "terms_hash": terms_hash(v2)},
        ),
        chain.tx(
            consumer,
            "contract.sign",
            {"contract_id": "c1", "version": 2, "terms_hash": terms_hash(v2)},
        ),
        chain.tx(
            reviewer,
            "contract.review",
            {"contract_id": "c1", "version": 2, "decision": "approve", "comment": "ok"},
        ),
    )
    assert [(r.ok, r.reason) for r in results] == [
        (True, ""),
        (True, ""),
        (False, "superseded_version"),
        (True, ""),
        (True, ""),
        (True, ""),
    ]

    def receipt(first: int) -> bytes:
        body = {
            "contract_id": "c1",
            "dataset_id": "ds1",
            "first_chunk": first,
            "last_chunk": first + 4,
            "byte_count": 5 * 1_048_576,
            "content_hash": digest(f"part {first}"),
        }
        return chain.tx(node, "delivery.receipt", body)

    grant = chain.tx(node, "access.grant", {"contract_id": "c1", "sealed_key": b"s" * 80})
    first, second, third = receipt(0), receipt(5), receipt(0)
    results = chain.run(grant, first, second, third)
    assert [(r.ok, r.reason) for r in results][-1] == (False, "quota_exhausted")
    assert all(r.ok for r in results[:3])
    results = chain.run(
        chain.tx(consumer, "delivery.confirm", {"receipt_id": chain.tx_id(first)}),
        chain.tx(consumer, "delivery.confirm", {"receipt_id": chain.tx_id(second)}),
    )
    assert all(r.ok for r in results)
    expired = chain.run(receipt(0), at_ms=END)
    assert (expired[0].ok, expired[0].reason) == (False, "not_active")
    body = {"contract_id": "c1", "method": "crypto-erase", "disposed_at_ms": END + 10}
    results = chain.run(chain.tx(consumer, "disposal.attest", body), at_ms=END + DAY_MS)
    assert results[0].ok
    return {"supplier": supplier, "consumer": consumer, "reviewer": reviewer}


def test_a_whole_trade_from_registration_to_disposal():
    chain = Chain()
    parties = run_story(chain)
    kv = chain.kv
    view = queries.get_contract(kv, "c1", at_ms=chain.time_ms)
    assert view is not None
    assert (view["status"], view["effective_status"]) == ("ACTIVE", "EXPIRED")
    assert (view["version"], view["downloads"], view["grants"]) == (2, 2, 1)
    assert view["disposal"]["overdue"] is False
    assert [r["confirmed"] is not None for r in queries.contract_receipts(kv, "c1")] == [True, True]
    assert queries.overdue_disposals(kv, at_ms=chain.time_ms + 365 * DAY_MS) == []
    consumer = parties["consumer"]
    assert isinstance(consumer, SigningKey)
    trail = queries.audit_trail(kv, "account", consumer.account_id)
    assert [e["type"] for e in trail] == [
        "account.register",
        "contract.offer",
        "contract.counter",
        "contract.sign",
        "contract.sign",
        "contract.review",
        "access.grant",
        "delivery.receipt",
        "delivery.receipt",
        "delivery.confirm",
        "delivery.confirm",
        "disposal.attest",
    ]


def test_a_revoked_party_can_no_longer_sign():
    chain = Chain()
    supplier, consumer = chain.user("supplier"), chain.user("consumer", member="m2")
    chain.ok(supplier, "dataset.publish", dataset_body("ds1"))
    offer = {"contract_id": "c1", "dataset_id": "ds1", "consumer": consumer.account_id}
    chain.ok(supplier, "contract.offer", {**offer, "terms": terms()})
    chain.ok(
        chain.admins["m2"], "account.revoke", {"account_id": consumer.account_id, "reason": ""}
    )
    body = {"contract_id": "c1", "version": 1, "terms_hash": terms_hash(terms())}
    result = chain.submit(consumer, "contract.sign", body)
    assert (result.ok, result.reason) == (False, "revoked")


def test_the_same_blocks_give_identical_write_sets_and_state_roots_on_a_fresh_state():
    chain = Chain()
    run_story(chain)
    replica = Ledger(CHAIN_ID)
    install(replica, chain.genesis)
    kv = MemoryKV(genesis_writes(chain.genesis))
    root_a = root_b = genesis_state_root(chain.genesis.hash())
    for height, ((time_ms, txs), writes) in enumerate(
        zip(chain.blocks, chain.write_log, strict=True), start=1
    ):
        state = Overlay(kv)
        replica.execute_block(BlockContext(CHAIN_ID, height, time_ms, "m1"), state, txs)
        assert state.writes == writes, f"block {height} diverged"
        kv.apply(state.writes)
        root_a = next_state_root(root_a, writes)
        root_b = next_state_root(root_b, state.writes)
    assert root_a == root_b
    assert kv.data == chain.kv.data


def test_genesis_writes_are_deterministic():
    chain = Chain()
    assert genesis_writes(chain.genesis) == genesis_writes(chain.genesis)


def test_every_trading_reason_code_is_exercised_by_a_test():
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [code for code in TRADING_REASONS if f'"{code}"' not in sources]
    assert untested == []
    assert set(REASON_CODES) == set(MACHINE_REASONS) | set(TRADING_REASONS)
    assert len(REASON_CODES) == len(set(REASON_CODES))
