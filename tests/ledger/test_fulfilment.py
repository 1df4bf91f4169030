from typing import Any

import pytest

from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.fulfilment import MAX_GRANTS
from tests.ledger.helpers import DAY_MS, T0, Market, digest

DEADLINE = T0 + 37 * DAY_MS
END = T0 + 30 * DAY_MS


@pytest.fixture
def market() -> Market:
    return Market()


def grant_body(contract_id: str = "c1") -> dict[str, object]:
    return {"contract_id": contract_id, "sealed_key": b"\x01" * 80}


def receipt_body(first: int = 0, last: int = 9, **overrides: Any) -> dict[str, object]:
    return {
        "contract_id": "c1",
        "dataset_id": "ds1",
        "first_chunk": first,
        "last_chunk": last,
        "byte_count": 10_485_760,
        "content_hash": digest(f"chunks {first}..{last}"),
        **overrides,
    }


def dispose_body(at_ms: int, method: str = "crypto-erase") -> dict[str, object]:
    return {"contract_id": "c1", "method": method, "disposed_at_ms": at_ms}


# ---- access.grant ------------------------------------------------------------------------


def test_supplier_node_grants_access_sealed_to_the_consumers_key(market):
    market.activate()
    market.chain.ok(market.node, "access.grant", grant_body())
    grant = layout.read(market.chain.kv, layout.grant_key("c1", 1))
    assert grant["sealed_to"] == market.consumer.encryption_public_key
    assert grant["sealed_key"] == b"\x01" * 80
    assert market.contract()["grants"] == 1


def test_only_the_supplier_members_node_grants_access(market):
    market.activate()
    other_node = market.chain.node_keys["m2"]
    market.chain.refused("not_supplier_node", other_node, "access.grant", grant_body())
    market.chain.refused("not_supplier_node", market.supplier, "access.grant", grant_body())


def test_access_is_granted_only_to_an_active_contract(market):
    market.offer()
    market.chain.refused("not_active", market.node, "access.grant", grant_body())
    market.sign(market.supplier)
    market.sign(market.consumer)
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.refused("not_active", market.node, "access.grant", grant_body())


def test_no_access_is_granted_after_expiry(market):
    market.activate()
    market.chain.run(at_ms=END)
    market.chain.refused("not_active", market.node, "access.grant", grant_body())


def test_no_access_is_granted_to_a_revoked_consumer(market):
    market.activate()
    body = {"account_id": market.consumer.account_id, "reason": ""}
    market.chain.ok(market.chain.admins["m2"], "account.revoke", body)
    market.chain.refused("account_revoked", market.node, "access.grant", grant_body())


def test_access_grants_per_contract_are_bounded(market):
    market.activate()
    for _ in range(MAX_GRANTS):
        market.chain.ok(market.node, "access.grant", grant_body())
    market.chain.refused("limit_reached", market.node, "access.grant", grant_body())


# ---- delivery.receipt and delivery.confirm ------------------------------------------------


def test_receipts_count_downloads_up_to_the_quota(market):
    market.activate(max_downloads=3)
    for i in range(3):
        market.chain.ok(market.node, "delivery.receipt", receipt_body(i, i))
    assert market.contract()["downloads"] == 3
    market.chain.refused("quota_exhausted", market.node, "delivery.receipt", receipt_body())


def test_receipts_come_only_from_the_supplier_node(market):
    market.activate()
    node = market.chain.node_keys["m2"]
    market.chain.refused("not_supplier_node", node, "delivery.receipt", receipt_body())


def test_receipt_for_another_dataset_is_refused(market):
    market.activate()
    body = receipt_body(dataset_id="ds2")
    market.chain.refused("dataset_mismatch", market.node, "delivery.receipt", body)


@pytest.mark.parametrize(("first", "last"), [(0, 10), (5, 4)])
def test_receipt_chunk_range_must_lie_in_the_dataset(market, first, last):
    market.activate()
    body = receipt_body(first, last)
    market.chain.refused("bad_chunk_range", market.node, "delivery.receipt", body)


def test_no_delivery_before_the_use_period_starts(market):
    market.activate(use_start_ms=T0 + DAY_MS)
    market.chain.refused("outside_use_period", market.node, "delivery.receipt", receipt_body())
    market.chain.ok(market.node, "delivery.receipt", receipt_body(), at_ms=T0 + DAY_MS)


def test_no_delivery_after_expiry(market):
    market.activate()
    market.chain.run(at_ms=END)
    market.chain.refused("not_active", market.node, "delivery.receipt", receipt_body())


def authorised(market: Market, request: str = "r1", **overrides: object) -> dict[str, object]:
    """A receipt naming its fetch request, authorised on the state just committed."""
    fields: dict[str, Any] = {
        "request_id": digest(request),
        "authorised_height": market.chain.height,
        "authorised_at_ms": market.chain.time_ms,
    }
    return receipt_body(**{**fields, **overrides})


def test_a_download_authorised_while_active_is_recorded_after_termination(market):
    market.activate()
    body = authorised(market)
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.ok(market.node, "delivery.receipt", body)
    assert market.contract()["downloads"] == 1
    [receipt_id] = [v for k, v in market.chain.kv.data.items() if k.startswith(b"rcptreq/")]
    stored = layout.read(market.chain.kv, layout.receipt_key(receipt_id))
    assert stored["request_id"] == digest("r1")


def test_a_download_authorised_after_termination_is_refused(market):
    market.activate()
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    body = authorised(market)
    market.chain.refused("not_authorised_while_active", market.node, "delivery.receipt", body)


def test_a_download_authorised_before_activation_is_refused(market):
    market.offer()
    body = authorised(market)
    market.sign(market.supplier)
    market.sign(market.consumer)
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.refused("not_authorised_while_active", market.node, "delivery.receipt", body)


def test_a_download_authorised_before_expiry_is_recorded_after_it(market):
    market.activate()
    early, late = authorised(market, "early"), authorised(market, "late", authorised_at_ms=END)
    market.chain.run(at_ms=END + 1)
    market.chain.ok(market.node, "delivery.receipt", early)
    market.chain.refused("not_authorised_while_active", market.node, "delivery.receipt", late)


def test_an_authorisation_cannot_name_a_height_not_yet_committed(market):
    market.activate()
    body = authorised(market, authorised_height=market.chain.height + 5)
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.refused("not_authorised_while_active", market.node, "delivery.receipt", body)


def test_one_receipt_per_fetch_request_so_a_retry_never_counts_twice(market):
    market.activate()
    body = authorised(market)
    market.chain.ok(market.node, "delivery.receipt", body)
    market.chain.refused("duplicate_receipt", market.node, "delivery.receipt", body)
    market.chain.ok(market.node, "delivery.receipt", authorised(market, "r2"))
    assert market.contract()["downloads"] == 2


def test_an_active_contract_keeps_delivering_after_the_dataset_is_withdrawn(market):
    market.activate()
    market.chain.ok(market.supplier, "dataset.withdraw", {"dataset_id": "ds1", "reason": ""})
    market.chain.ok(market.node, "delivery.receipt", receipt_body())


def test_consumer_confirms_a_receipt_once(market):
    market.activate()
    receipt = market.chain.ok(market.node, "delivery.receipt", receipt_body())
    body = {"receipt_id": receipt.tx_id}
    market.chain.refused("not_contract_consumer", market.supplier, "delivery.confirm", body)
    market.chain.ok(market.consumer, "delivery.confirm", body)
    stored = layout.read(market.chain.kv, layout.receipt_key(receipt.tx_id))
    assert stored["confirmed"]["tx_id"] is not None
    market.chain.refused("already_confirmed", market.consumer, "delivery.confirm", body)


def test_a_receipt_can_be_confirmed_after_expiry(market):
    market.activate()
    receipt = market.chain.ok(market.node, "delivery.receipt", receipt_body())
    market.chain.run(at_ms=END + 1)
    market.chain.ok(market.consumer, "delivery.confirm", {"receipt_id": receipt.tx_id})


def test_confirming_an_unknown_receipt_is_refused(market):
    body = {"receipt_id": digest("no such receipt")}
    market.chain.refused("unknown_receipt", market.consumer, "delivery.confirm", body)


# ---- disposal.attest ---------------------------------------------------------------------


def test_disposal_on_time_is_recorded_and_clears_the_deadline(market):
    market.activate()
    market.chain.run(at_ms=END + DAY_MS)
    market.chain.ok(market.consumer, "disposal.attest", dispose_body(END + 1))
    disposal = market.contract()["disposal"]
    assert (disposal["overdue"], disposal["method_matches"]) == (False, True)
    assert market.chain.kv.get(layout.disposal_due_key(DEADLINE, "c1")) is None


def test_overdue_disposal_is_still_recorded_and_flagged(market):
    market.activate()
    market.chain.run(at_ms=DEADLINE + DAY_MS)
    market.chain.ok(market.consumer, "disposal.attest", dispose_body(DEADLINE + 5, "shredding"))
    disposal = market.contract()["disposal"]
    assert (disposal["overdue"], disposal["method_matches"]) == (True, False)
    assert market.chain.kv.get(layout.disposal_due_key(DEADLINE, "c1")) == b""


def test_attesting_on_time_a_disposal_that_reaches_the_ledger_late_is_overdue(market):
    market.activate()
    market.chain.run(at_ms=DEADLINE + 1)
    market.chain.ok(market.consumer, "disposal.attest", dispose_body(END))
    assert market.contract()["disposal"]["overdue"] is True


def test_disposal_is_attested_once_by_the_consumer(market):
    market.activate()
    body = dispose_body(T0)
    market.chain.refused("not_contract_consumer", market.supplier, "disposal.attest", body)
    market.chain.ok(market.consumer, "disposal.attest", body)
    market.chain.refused("already_disposed", market.consumer, "disposal.attest", body)


def test_disposal_time_cannot_be_in_the_future(market):
    market.activate()
    body = dispose_body(market.chain.time_ms + 10 * DAY_MS)
    market.chain.refused("future_timestamp", market.consumer, "disposal.attest", body)


def test_disposal_of_a_contract_that_never_became_active_is_refused(market):
    market.offer()
    market.chain.refused("not_active", market.consumer, "disposal.attest", dispose_body(T0))
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "no"})
    market.chain.refused("not_active", market.consumer, "disposal.attest", dispose_body(T0))


def test_disposal_after_termination_is_accepted(market):
    market.activate()
    market.chain.ok(market.supplier, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    market.chain.ok(market.consumer, "disposal.attest", dispose_body(market.chain.time_ms))
