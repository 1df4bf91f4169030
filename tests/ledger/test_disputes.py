"""Disputes on the ledger: evidence bound to what was delivered, every transition and every
refusal with its reason code, refunds as billing credits, and the supplier's track record."""

from typing import Any

import pytest

from mdtp.node.ledger.merkle import MerkleTree
from mdtp.node.ledger.trading import billing, disputes, queries
from mdtp.node.ledger.trading.bodies import DisputedChunk, DisputeOpen
from tests.ledger.helpers import DAY_MS, T0, Market, digest
from tests.ledger.test_billing import P, S, bill, one, pay_body
from tests.ledger.test_compute import receipt_body as compute_receipt_body
from tests.ledger.test_compute import rule

DIGESTS = [digest(f"chunk {i}") for i in range(10)]
TREE = MerkleTree(DIGESTS)
DEADLINE = T0 + 37 * DAY_MS


class DisputeMarket(Market):
    """A market whose dataset has a real Merkle tree over ten chunk hashes."""

    def __init__(self) -> None:
        super().__init__()
        body = {"dataset_id": "ds1", "merkle_root": TREE.root}
        self.chain.ok(self.supplier, "dataset.update", body)

    def arbitrated(self, **overrides: Any) -> None:
        """An active contract whose terms name the reviewer account as arbiter."""
        self.activate(arbiter=self.reviewer.account_id, **overrides)

    def deliver(self, first: int = 0, last: int = 3, **kw: Any) -> bytes:
        body = {
            "contract_id": "c1",
            "dataset_id": "ds1",
            "first_chunk": first,
            "last_chunk": last,
            "byte_count": 1000,
            "content_hash": digest(f"chunks {first}..{last}"),
        }
        result = self.chain.ok(self.node, "delivery.receipt", body, **kw)
        return result.tx_id


@pytest.fixture
def market() -> DisputeMarket:
    return DisputeMarket()


def chunk(index: int, chunk_hash: bytes | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "chunk_hash": chunk_hash if chunk_hash is not None else DIGESTS[index],
        "proof": TREE.proof(index),
    }


def open_body(dispute_id: str = "d1", *indices: int, **overrides: Any) -> dict[str, Any]:
    return {
        "dispute_id": dispute_id,
        "contract_id": "c1",
        "chunks": [chunk(i) for i in (indices or (1,))],
        "statement": "chunk 1 holds readings from another machine",
        "evidence_hash": digest("lab report"),
        **overrides,
    }


def answer_body(dispute_id: str = "d1") -> dict[str, Any]:
    return {"dispute_id": dispute_id, "statement": "calibrated", "evidence_hash": digest("cal")}


def resolve_body(
    dispute_id: str = "d1", decision: str = "upheld", refund: int = 0
) -> dict[str, Any]:
    return {
        "dispute_id": dispute_id,
        "decision": decision,
        "refund_minor": refund,
        "comment": "decided",
    }


def dispute(market: Market, dispute_id: str = "d1") -> dict[str, Any]:
    found = disputes.get_dispute(market.chain.kv, dispute_id)
    assert found is not None
    return found


# ---- terms: the arbiter --------------------------------------------------------------------


def test_the_arbiter_must_hold_the_reviewer_role_and_not_be_a_party(market):
    body = market.offer_body(arbiter=market.supplier.account_id)
    market.chain.refused("arbiter_is_party", market.supplier, "contract.offer", body)
    body = market.offer_body(arbiter=market.consumer.account_id)
    market.chain.refused("arbiter_is_party", market.supplier, "contract.offer", body)
    outsider = market.chain.user("consumer", member="m2", name="Gamma")
    body = market.offer_body(arbiter=outsider.account_id)
    market.chain.refused("not_arbiter", market.supplier, "contract.offer", body)
    market.offer(arbiter=market.reviewer.account_id)


# ---- dispute.open --------------------------------------------------------------------------


def test_consumer_opens_a_dispute_bound_to_delivered_chunks(market):
    market.arbitrated()
    receipt_id = market.deliver(0, 3)
    market.chain.ok(market.consumer, "dispute.open", open_body("d1", 1, 3))
    found = dispute(market)
    assert found["status"] == "OPEN" and found["contract_id"] == "c1"
    assert found["resolver"] == market.reviewer.account_id
    assert [c["index"] for c in found["chunks"]] == [1, 3]
    assert all(c["receipt_id"] == receipt_id for c in found["chunks"])
    assert found["answer"] is None and found["resolution"] is None
    assert [d["id"] for d in disputes.contract_disputes(market.chain.kv, "c1")] == ["d1"]
    record = disputes.track_record(market.chain.kv, market.supplier.account_id)
    assert record == {
        "account": market.supplier.account_id,
        "contracts": 1,
        "disputes_opened": 1,
        "disputes_upheld": 0,
        "disputes_settled": 0,
        "disputes_rejected": 0,
    }


def test_the_typed_builder_yields_the_body_the_ledger_accepts(market):
    market.arbitrated()
    market.deliver(0, 3)
    body = DisputeOpen(
        dispute_id="d1",
        contract_id="c1",
        chunks=(DisputedChunk(2, DIGESTS[2], tuple(TREE.proof(2))),),
        statement="bad",
        evidence_hash=digest("x"),
    ).to_body()
    assert body["chunks"] == [{"index": 2, "chunk_hash": DIGESTS[2], "proof": TREE.proof(2)}]
    market.chain.ok(market.consumer, "dispute.open", body)
    as_json = {
        **body,
        "evidence_hash": digest("x").hex(),
        "chunks": [
            {"index": 2, "chunk_hash": DIGESTS[2].hex(), "proof": [h.hex() for h in TREE.proof(2)]}
        ],
    }
    assert DisputeOpen.from_json(as_json).to_body() == body


@pytest.mark.parametrize(
    "bad_chunk",
    [
        chunk(1, digest("forged")),  # another chunk's content
        {**chunk(1), "index": 2},  # the right hash at the wrong index
        {**chunk(1), "proof": TREE.proof(1)[:-1]},  # a proof cut short
    ],
)
def test_a_chunk_whose_proof_does_not_verify_is_refused(market, bad_chunk):
    market.arbitrated()
    market.deliver(0, 3)
    body = open_body(chunks=[bad_chunk])
    market.chain.refused("bad_merkle_proof", market.consumer, "dispute.open", body)


def test_a_chunk_never_delivered_is_refused(market):
    market.arbitrated()
    market.deliver(0, 3)
    body = open_body("d1", 2, 5)
    market.chain.refused("chunk_not_delivered", market.consumer, "dispute.open", body)
    market.deliver(5, 5)
    market.chain.ok(market.consumer, "dispute.open", body)


def test_only_the_consumer_opens_a_dispute(market):
    market.arbitrated()
    market.deliver()
    for who in (market.supplier, market.reviewer):
        market.chain.refused("not_contract_consumer", who, "dispute.open", open_body())


def test_a_dispute_needs_a_known_contract_that_was_active(market):
    market.chain.refused(
        "unknown_contract", market.consumer, "dispute.open", open_body(contract_id="nope")
    )
    market.offer(arbiter=market.reviewer.account_id)
    market.chain.refused("not_active", market.consumer, "dispute.open", open_body())


def test_dispute_ids_are_unique(market):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body("d1"))
    market.chain.refused("dispute_exists", market.consumer, "dispute.open", open_body("d1"))


def test_a_dispute_needs_an_arbiter_or_a_reviewer(market):
    market.activate()
    market.deliver()
    market.chain.refused("no_resolver", market.consumer, "dispute.open", open_body())


def test_disputes_may_be_opened_until_the_disposal_deadline(market):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.ok(market.consumer, "dispute.open", open_body("d1"), at_ms=DEADLINE)
    body = open_body("d2")
    market.chain.refused(
        "dispute_window_closed", market.consumer, "dispute.open", body, at_ms=DEADLINE + 1
    )


def test_open_disputes_per_contract_are_bounded(market):
    market.arbitrated()
    market.deliver()
    for n in range(disputes.MAX_OPEN_DISPUTES):
        market.chain.ok(market.consumer, "dispute.open", open_body(f"d{n}"))
    body = open_body("more")
    market.chain.refused("too_many_disputes", market.consumer, "dispute.open", body)
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body("d0", "rejected"))
    market.chain.ok(market.consumer, "dispute.open", body)


def test_all_disputes_per_contract_are_bounded(market):
    market.arbitrated()
    market.deliver()
    for n in range(disputes.MAX_DISPUTES):
        market.chain.ok(market.consumer, "dispute.open", open_body(f"d{n}"))
        market.chain.ok(market.reviewer, "dispute.resolve", resolve_body(f"d{n}", "rejected"))
    body = open_body("more")
    market.chain.refused("too_many_disputes", market.consumer, "dispute.open", body)


def test_download_evidence_is_chunks_without_a_receipt_id(market):
    market.arbitrated()
    market.deliver()
    for body in (open_body(chunks=[]), open_body(receipt_id=digest("r"))):
        market.chain.refused("bad_evidence", market.consumer, "dispute.open", body)


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunks": [chunk(1)] * 2},
        {"chunks": [chunk(i) for i in range(10)] + [chunk(0)] * 7},
        {"chunks": [{**chunk(1), "proof": [b"short"]}]},
        {"chunks": [{**chunk(1), "extra": 1}]},
        {"statement": ""},
        {"evidence_hash": b"short"},
    ],
)
def test_malformed_evidence_is_refused(market, overrides):
    market.arbitrated()
    market.deliver()
    market.chain.refused("bad_body", market.consumer, "dispute.open", open_body(**overrides))


# ---- clean room ----------------------------------------------------------------------------


def test_a_clean_room_dispute_binds_to_a_compute_receipt_and_its_result_hash(market):
    market.arbitrated(delivery_method="clean_room", analysis_rule=rule())
    market.chain.run()
    body = compute_receipt_body(1, authorised_height=market.chain.height)
    receipt_id = market.chain.ok(market.node, "compute.receipt", body).tx_id
    with_chunks = open_body(receipt_id=receipt_id)
    market.chain.refused("bad_evidence", market.consumer, "dispute.open", with_chunks)
    unknown = open_body(chunks=[], receipt_id=digest("nope"))
    market.chain.refused("unknown_receipt", market.consumer, "dispute.open", unknown)
    market.chain.refused("bad_evidence", market.consumer, "dispute.open", open_body(chunks=[]))
    market.chain.ok(market.consumer, "dispute.open", open_body(chunks=[], receipt_id=receipt_id))
    assert dispute(market)["result_hash"] == digest("result 1")
    assert dispute(market)["receipt_id"] == receipt_id


# ---- dispute.answer ------------------------------------------------------------------------


def test_supplier_answers_once(market):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    for who in (market.consumer, market.reviewer):
        market.chain.refused("not_contract_supplier", who, "dispute.answer", answer_body())
    market.chain.ok(market.supplier, "dispute.answer", answer_body())
    found = dispute(market)
    assert found["status"] == "ANSWERED" and found["answer"]["statement"] == "calibrated"
    market.chain.refused("already_answered", market.supplier, "dispute.answer", answer_body())
    market.chain.refused("unknown_dispute", market.supplier, "dispute.answer", answer_body("x"))


def test_no_answer_after_the_resolution(market):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body(decision="rejected"))
    market.chain.refused("dispute_resolved", market.supplier, "dispute.answer", answer_body())


# ---- dispute.resolve -----------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["upheld", "rejected", "settled"])
def test_the_arbiter_resolves_and_the_track_record_counts_it(market, decision):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    market.chain.ok(market.supplier, "dispute.answer", answer_body())
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body(decision=decision))
    found = dispute(market)
    assert found["status"] == "RESOLVED"
    assert found["resolution"]["decision"] == decision
    assert found["resolution"]["refund_minor"] == 0 and found["resolution"]["invoice_id"] is None
    record = disputes.track_record(market.chain.kv, market.supplier.account_id)
    assert record[f"disputes_{decision}"] == 1 and record["disputes_opened"] == 1
    trail = queries.audit_trail(market.chain.kv, "contract", "c1")
    assert [e["type"] for e in trail][-3:] == ["dispute.open", "dispute.answer", "dispute.resolve"]
    assert trail[-1]["summary"] == f"resolved dispute d1 on contract c1: {decision}"
    market.chain.refused("dispute_resolved", market.reviewer, "dispute.resolve", resolve_body())


def test_the_reviewer_resolves_when_the_terms_name_no_arbiter(market):
    market.offer(reviewer=market.reviewer.account_id)
    market.sign(market.supplier, reviewer=market.reviewer.account_id)
    market.sign(market.consumer, reviewer=market.reviewer.account_id)
    review = {"contract_id": "c1", "version": 1, "decision": "approve", "comment": ""}
    market.chain.ok(market.reviewer, "contract.review", review)
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    assert dispute(market)["resolver"] == market.reviewer.account_id
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body())


def test_only_the_named_resolver_resolves(market):
    other = market.chain.user("reviewer", member="m1", name="Other reviewer")
    market.activate(arbiter=other.account_id)
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    for who in (market.supplier, market.consumer, market.reviewer):
        market.chain.refused("not_resolver", who, "dispute.resolve", resolve_body())
    market.chain.refused("unknown_dispute", other, "dispute.resolve", resolve_body("x"))
    market.chain.ok(other, "dispute.resolve", resolve_body())


def test_a_rejected_dispute_grants_no_refund(market):
    market.arbitrated(billing=bill())
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    body = resolve_body(decision="rejected", refund=1)
    market.chain.refused("refund_not_allowed", market.reviewer, "dispute.resolve", body)


def test_no_refund_on_a_contract_billed_off_ledger(market):
    market.arbitrated()
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    body = resolve_body(decision="settled", refund=1)
    market.chain.refused("refund_over_cap", market.reviewer, "dispute.resolve", body)


# ---- refunds in billing --------------------------------------------------------------------


def test_a_refund_is_credited_to_the_invoice_of_its_period_up_to_the_cap(market):
    market.arbitrated(billing=bill(payment_due_ms=DAY_MS))  # one-time, 150 000
    market.deliver()
    for n in (1, 2):
        market.chain.ok(market.consumer, "dispute.open", open_body(f"d{n}"))
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body("d1", "settled", 100_000))
    found = dispute(market, "d1")
    assert found["resolution"]["invoice_id"] == "c1/0"
    now = market.chain.time_ms
    [invoice] = billing.invoices(market.chain.kv, "c1", at_ms=now)
    assert [ln["kind"] for ln in invoice["lines"]] == ["one_time", "refund"]
    assert invoice["lines"][1]["dispute_id"] == "d1"
    assert (invoice["charges_minor"], invoice["refunds_minor"], invoice["total_minor"]) == (
        150_000,
        100_000,
        50_000,
    )
    over = resolve_body("d2", "upheld", 50_001)
    market.chain.refused("refund_over_cap", market.reviewer, "dispute.resolve", over)
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body("d2", "upheld", 50_000))
    [invoice] = billing.invoices(market.chain.kv, "c1", at_ms=market.chain.time_ms)
    assert invoice["total_minor"] == 0 and invoice["status"] == "PAID"
    summary = billing.summary(market.chain.kv, "c1", at_ms=market.chain.time_ms)
    assert summary["refunded_minor"] == 150_000


def test_a_refund_after_payment_becomes_credit_the_supplier_owes(market):
    market.arbitrated(billing=bill())
    market.deliver()
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 150_000))
    market.chain.ok(market.consumer, "dispute.open", open_body())
    market.chain.ok(market.reviewer, "dispute.resolve", resolve_body("d1", "upheld", 40_000))
    invoice = one(market, "c1/0", market.chain.time_ms)
    assert (invoice["total_minor"], invoice["paid_minor"], invoice["credit_carried_minor"]) == (
        110_000,
        150_000,
        40_000,
    )
    assert invoice["status"] == "PAID"
    summary = billing.summary(market.chain.kv, "c1", at_ms=market.chain.time_ms)
    assert summary["credit_outstanding_minor"] == 40_000


def test_a_refund_larger_than_its_invoice_carries_to_the_next_invoice(market):
    market.arbitrated(
        price_model="subscription",
        price_minor=1000,
        use_start_ms=S,
        use_end_ms=S + 3 * P,
        billing=bill(period_ms=P),
    )
    market.chain.run(at_ms=S + 1)
    market.deliver()
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1000), at_ms=S + P)
    market.chain.ok(market.consumer, "dispute.open", open_body())
    # resolved in period 1: charged so far 2000 (periods 0 and 1), refund 1500
    market.chain.ok(
        market.reviewer, "dispute.resolve", resolve_body("d1", "settled", 1500), at_ms=S + P + 10
    )
    every = billing.invoices(market.chain.kv, "c1", at_ms=S + 3 * P)
    assert [i["total_minor"] for i in every] == [1000, 0, 500]
    assert [i["credit_brought_minor"] for i in every] == [0, 0, 500]
    assert every[1]["credit_carried_minor"] == 500 and every[1]["status"] == "PAID"
    assert every[2]["outstanding_minor"] == 500


def test_a_refund_after_the_contract_ended_lands_on_the_last_invoice(market):
    market.arbitrated(
        price_model="subscription",
        price_minor=1000,
        use_start_ms=S,
        use_end_ms=S + 2 * P,
        billing=bill(period_ms=P),
    )
    market.chain.run(at_ms=S + 1)
    market.deliver()
    market.chain.ok(market.consumer, "dispute.open", open_body())
    market.chain.ok(
        market.reviewer, "dispute.resolve", resolve_body("d1", "upheld", 2000), at_ms=S + 5 * P
    )
    every = billing.invoices(market.chain.kv, "c1", at_ms=S + 5 * P)
    assert [i["total_minor"] for i in every] == [1000, 0]
    assert dispute(market)["resolution"]["invoice_id"] == "c1/1"
    assert every[1]["credit_carried_minor"] == 1000  # credit never flows back to invoice 0
    assert billing.overdue_invoices(market.chain.kv, at_ms=S + 5 * P)[0]["id"] == "c1/0"
    summary = billing.summary(market.chain.kv, "c1", at_ms=S + 5 * P)
    assert summary["credit_outstanding_minor"] == 1000 and summary["overdue"] is True
