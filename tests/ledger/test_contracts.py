import itertools

import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.contracts import (
    TRANSITIONS,
    Event,
    Status,
    effective_status,
    load_version,
    refusal_reason,
    terms_hash,
)
from mdtp.node.ledger.trading.reasons import TRADING_REASONS
from tests.ledger.helpers import DAY_MS, T0, Market, digest, terms


@pytest.fixture
def market() -> Market:
    return Market()


def counter_body(version: int, contract_id: str = "c1", **overrides: object) -> dict[str, object]:
    return {"contract_id": contract_id, "version": version, "terms": terms(**overrides)}


def review_body(decision: str, version: int = 1, comment: str = "ok") -> dict[str, object]:
    return {"contract_id": "c1", "version": version, "decision": decision, "comment": comment}


# ---- the table itself ------------------------------------------------------------------


def test_every_status_event_pair_has_a_target_or_a_documented_reason():
    internal = {Event.SIGNED_ALL, Event.SIGNED_ALL_REVIEW}
    for status, ev in itertools.product(Status, Event):
        if (status, ev) in TRANSITIONS or ev in internal:
            continue
        assert refusal_reason(status, ev) in TRADING_REASONS, (status, ev)


def test_final_statuses_are_never_left_and_expired_is_never_entered():
    for (source, _ev), target in TRANSITIONS.items():
        if source in (Status.TERMINATED, Status.DELETED):
            assert target == source
        if source != Status.EXPIRED:
            assert target != Status.EXPIRED


# ---- lifecycles ------------------------------------------------------------------------


def test_offer_counter_both_sign_and_review_approve_makes_the_contract_active(market):
    chain, reviewer = market.chain, market.reviewer.account_id
    market.offer(reviewer=reviewer)
    assert market.contract()["status"] == "OFFERED"
    chain.ok(market.consumer, "contract.counter", counter_body(1, reviewer=reviewer, price_minor=1))
    market.sign(market.supplier, version=2, reviewer=reviewer, price_minor=1)
    assert market.contract()["status"] == "SIGNING"
    market.sign(market.consumer, version=2, reviewer=reviewer, price_minor=1)
    assert market.contract()["status"] == "PENDING_REVIEW"
    chain.ok(market.reviewer, "contract.review", review_body("approve", version=2))
    contract = market.contract()
    assert (contract["status"], contract["version"]) == ("ACTIVE", 2)
    assert contract["activated"]["version"] == 2
    v1, v2 = load_version(chain.kv, "c1", 1), load_version(chain.kv, "c1", 2)
    assert v1["superseded"] is not None and v1["author"] == market.supplier.account_id
    assert v2["author"] == market.consumer.account_id
    assert v2["terms_hash"] == terms_hash(terms(reviewer=reviewer, price_minor=1))
    assert [s["account"] for s in v2["signatures"]] == [
        market.supplier.account_id,
        market.consumer.account_id,
    ]
    assert v2["review"]["decision"] == "approve"
    assert chain.kv.get(layout.disposal_due_key(T0 + 37 * DAY_MS, "c1")) == b""


def test_without_a_reviewer_both_signatures_make_it_active(market):
    market.activate()
    assert market.contract()["status"] == "ACTIVE"


def test_the_consumer_may_make_the_offer(market):
    market.offer(by=market.consumer)
    assert market.contract()["offerer"] == market.consumer.account_id


def test_a_rejected_version_can_be_renegotiated(market):
    chain, reviewer = market.chain, market.reviewer.account_id
    market.activate(reviewer=reviewer)
    chain.ok(market.reviewer, "contract.review", review_body("reject", comment="purpose vague"))
    assert market.contract()["status"] == "REJECTED"
    chain.ok(market.supplier, "contract.counter", counter_body(1, reviewer=reviewer, purpose="QA"))
    assert market.contract()["status"] == "OFFERED"


def test_active_contract_expires_at_the_end_of_its_use_period(market):
    market.activate()
    contract = market.contract()
    end = T0 + 30 * DAY_MS
    assert effective_status(contract, end - 1) == Status.ACTIVE
    assert effective_status(contract, end) == Status.EXPIRED


def test_terminated_contract_records_who_and_why(market):
    market.activate()
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "done"})
    contract = market.contract()
    assert contract["status"] == "TERMINATED"
    assert contract["terminated"]["by"] == market.consumer.account_id
    assert contract["terminated"]["reason"] == "done"


def test_offerer_deletes_an_unsigned_contract_and_the_id_stays_taken(market):
    market.offer()
    market.chain.ok(market.supplier, "contract.delete", {"contract_id": "c1"})
    assert market.contract()["status"] == "DELETED"
    market.chain.refused("contract_exists", market.supplier, "contract.offer", market.offer_body())


# ---- refusals: offer -------------------------------------------------------------------


def test_offer_refuses_a_taken_contract_id(market):
    market.offer()
    market.chain.refused("contract_exists", market.supplier, "contract.offer", market.offer_body())


def test_offer_refuses_an_unknown_dataset(market):
    body = {**market.offer_body(), "dataset_id": "nope"}
    market.chain.refused("unknown_dataset", market.supplier, "contract.offer", body)


def test_offer_refuses_a_withdrawn_dataset(market):
    market.chain.ok(market.supplier, "dataset.withdraw", {"dataset_id": "ds1", "reason": ""})
    market.chain.refused(
        "dataset_withdrawn", market.consumer, "contract.offer", market.offer_body()
    )


def test_offer_by_a_non_party_is_refused(market):
    outsider = market.chain.user("supplier", "consumer")
    market.chain.refused("not_a_party", outsider, "contract.offer", market.offer_body())


def test_supplier_cannot_contract_with_itself(market):
    body = {**market.offer_body(), "consumer": market.supplier.account_id}
    market.chain.refused("same_party", market.supplier, "contract.offer", body)


def test_consumer_needs_the_consumer_role(market):
    body = {**market.offer_body(), "consumer": market.reviewer.account_id}
    market.chain.refused("not_consumer", market.supplier, "contract.offer", body)


def test_offer_to_a_revoked_consumer_is_refused(market):
    market.chain.ok(
        market.consumer, "account.revoke", {"account_id": market.consumer.account_id, "reason": ""}
    )
    market.chain.refused("account_revoked", market.supplier, "contract.offer", market.offer_body())


def test_offer_to_an_unregistered_consumer_is_refused(market):
    body = {**market.offer_body(), "consumer": SigningKey.generate().account_id}
    market.chain.refused("unknown_account", market.supplier, "contract.offer", body)


def test_named_reviewer_without_the_reviewer_role_is_refused(market):
    body = market.offer_body(reviewer=market.chain.user("auditor").account_id)
    market.chain.refused("not_reviewer", market.supplier, "contract.offer", body)


def test_a_party_cannot_be_the_reviewer(market):
    body = market.offer_body(reviewer=market.consumer.account_id)
    market.chain.refused("reviewer_is_party", market.supplier, "contract.offer", body)


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"use_end_ms": T0 - DAY_MS}, "terms.use_end_ms must be after terms.use_start_ms"),
        ({"use_start_ms": T0 - 9 * DAY_MS, "use_end_ms": T0 - DAY_MS}, "not after the block"),
        ({"disposal_deadline_ms": T0 + DAY_MS}, "terms.disposal_deadline_ms must not be"),
    ],
)
def test_a_period_that_ends_before_it_starts_is_refused(market, overrides, detail):
    body = market.offer_body(**overrides)
    result = market.chain.refused("bad_period", market.supplier, "contract.offer", body)
    assert detail in result.detail


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"delivery_method": "courier"}, "terms.delivery_method"),
        ({"price_model": "auction"}, "terms.price_model"),
        ({"currency": "eur"}, "terms.currency"),
        ({"max_downloads": 0}, "terms.max_downloads"),
        ({"price_minor": -5}, "terms.price_minor"),
        ({"redistribution_banned": 1}, "terms.redistribution_banned"),
        ({"purpose": ""}, "terms.purpose"),
        ({"terms_document_hash": b"x"}, "terms.terms_document_hash"),
        ({"reviewer": "bob"}, "terms.reviewer"),
        ({"exclusive": True}, "terms.exclusive: unknown field"),
    ],
)
def test_terms_are_validated_field_by_field(market, overrides, needle):
    body = market.offer_body(**overrides)
    result = market.chain.refused("bad_body", market.supplier, "contract.offer", body)
    assert result.detail.startswith(needle), result.detail


# ---- refusals: counter, sign, review, delete, terminate ---------------------------------


def test_unknown_contract_is_refused(market):
    body = market.sign_body("nope")
    market.chain.refused("unknown_contract", market.supplier, "contract.sign", body)


def test_signing_a_superseded_version_is_refused(market):
    market.offer()
    market.chain.ok(market.consumer, "contract.counter", counter_body(1, price_minor=9))
    market.chain.refused("superseded_version", market.supplier, "contract.sign", market.sign_body())


def test_countering_a_superseded_version_is_refused(market):
    market.offer()
    market.chain.ok(market.consumer, "contract.counter", counter_body(1, price_minor=9))
    body = counter_body(1, price_minor=7)
    market.chain.refused("superseded_version", market.supplier, "contract.counter", body)


def test_signing_a_version_that_does_not_exist_yet_is_refused(market):
    market.offer()
    body = market.sign_body(version=2)
    market.chain.refused("unknown_version", market.supplier, "contract.sign", body)


def test_signing_with_the_wrong_terms_hash_is_refused(market):
    market.offer()
    body = {**market.sign_body(), "terms_hash": digest("other terms")}
    market.chain.refused("terms_hash_mismatch", market.consumer, "contract.sign", body)


def test_a_non_party_cannot_sign(market):
    market.offer()
    outsider = market.chain.user("consumer")
    market.chain.refused("not_a_party", outsider, "contract.sign", market.sign_body())


def test_signing_twice_is_refused(market):
    market.offer()
    market.sign(market.consumer)
    market.chain.refused("already_signed", market.consumer, "contract.sign", market.sign_body())


def test_signing_an_active_contract_is_refused(market):
    market.activate()
    market.chain.refused("already_signed", market.consumer, "contract.sign", market.sign_body())


def test_signing_after_the_dataset_content_changed_is_refused(market):
    market.offer()
    body = {"dataset_id": "ds1", "merkle_root": digest("new content")}
    market.chain.ok(market.supplier, "dataset.update", body)
    market.chain.refused("dataset_changed", market.consumer, "contract.sign", market.sign_body())


def test_signing_on_a_withdrawn_dataset_is_refused(market):
    market.offer()
    market.chain.ok(market.supplier, "dataset.withdraw", {"dataset_id": "ds1", "reason": ""})
    body = market.sign_body()
    market.chain.refused("dataset_withdrawn", market.consumer, "contract.sign", body)


def test_an_active_contract_cannot_be_countered(market):
    market.activate()
    body = counter_body(1, price_minor=1)
    market.chain.refused("contract_active", market.consumer, "contract.counter", body)


def test_a_contract_has_a_bounded_number_of_versions(market):
    market.offer()
    for version in range(1, 32):
        market.chain.ok(
            market.consumer, "contract.counter", counter_body(version, price_minor=version)
        )
    body = counter_body(32, price_minor=99)
    market.chain.refused("too_many_versions", market.supplier, "contract.counter", body)


def test_review_before_both_signatures_is_refused(market):
    market.offer(reviewer=market.reviewer.account_id)
    body = review_body("approve")
    market.chain.refused("not_pending_review", market.reviewer, "contract.review", body)


def test_review_by_an_account_other_than_the_named_reviewer_is_refused(market):
    market.activate(reviewer=market.reviewer.account_id)
    other_reviewer = market.chain.user("reviewer")
    body = review_body("approve")
    market.chain.refused("not_reviewer", other_reviewer, "contract.review", body)


def test_reviewing_twice_is_refused(market):
    market.activate(reviewer=market.reviewer.account_id)
    market.chain.ok(market.reviewer, "contract.review", review_body("approve"))
    body = review_body("reject")
    market.chain.refused("not_pending_review", market.reviewer, "contract.review", body)


def test_deleting_a_signed_contract_is_refused(market):
    market.offer()
    market.sign(market.consumer)
    body = {"contract_id": "c1"}
    market.chain.refused("contract_signed", market.supplier, "contract.delete", body)


def test_only_the_author_of_the_current_version_deletes(market):
    market.offer()
    body = {"contract_id": "c1"}
    market.chain.refused("not_offerer", market.consumer, "contract.delete", body)


def test_a_deleted_contract_cannot_be_signed(market):
    market.offer()
    market.chain.ok(market.supplier, "contract.delete", {"contract_id": "c1"})
    body = market.sign_body()
    market.chain.refused("contract_deleted", market.consumer, "contract.sign", body)


def test_terminating_twice_is_refused(market):
    market.activate()
    body = {"contract_id": "c1", "reason": "breach"}
    market.chain.ok(market.supplier, "contract.terminate", body)
    market.chain.refused("already_terminated", market.consumer, "contract.terminate", body)


def test_a_non_party_cannot_terminate(market):
    market.activate()
    body = {"contract_id": "c1", "reason": "meddling"}
    market.chain.refused("not_a_party", market.reviewer, "contract.terminate", body)


def test_an_expired_contract_can_be_neither_signed_nor_terminated(market):
    market.offer()
    market.chain.run(at_ms=T0 + 30 * DAY_MS)
    body = market.sign_body()
    market.chain.refused("contract_expired", market.consumer, "contract.sign", body)
    body = {"contract_id": "c1", "reason": "late"}
    market.chain.refused("contract_expired", market.consumer, "contract.terminate", body)
