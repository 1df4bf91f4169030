"""Billing on the ledger: every charge rule with its boundaries, payments and their refusals,
suspension for overdue payments and the overdue index. Amounts are exact integers."""

from typing import Any

import pytest

from mdtp.node.ledger.trading import billing, layout
from mdtp.node.ledger.trading.analysis import rule_hash
from mdtp.node.ledger.trading.bodies import Billing, Terms
from mdtp.node.ledger.trading.contracts import terms_hash
from tests.ledger.helpers import DAY_MS, T0, Market, digest, terms
from tests.ledger.test_compute import receipt_body as compute_receipt_body
from tests.ledger.test_compute import rule

S = T0 + 100_000  # use_start_ms: after activation, so period 0 starts exactly here
P = 10_000  # period_ms
DUE = 2_000  # payment_due_ms


@pytest.fixture
def market() -> Market:
    return Market()


def bill(**overrides: Any) -> dict[str, Any]:
    return {"payment_due_ms": DUE, "suspend_when_overdue": False, **overrides}


def subscription(market: Market, price: int = 1001, end: int = S + 35_000, **kw: Any) -> None:
    market.activate(
        price_model="subscription",
        price_minor=price,
        use_start_ms=S,
        use_end_ms=end,
        billing=bill(period_ms=P, **kw),
    )


def per_use(market: Market, unit: str = "download", price: int = 700, **kw: Any) -> None:
    extra: dict[str, Any] = {}
    if unit == "query":
        extra = {"delivery_method": "clean_room", "analysis_rule": rule(query_budget=20)}
    market.activate(
        price_model="pay_per_use",
        price_minor=price,
        use_start_ms=S,
        use_end_ms=S + 35_000,
        max_downloads=20,
        billing=bill(period_ms=P, unit=unit, **kw),
        **extra,
    )


def receipt(
    market: Market, at_ms: int, first: int = 0, last: int = 9, request: str = "r"
) -> dict[str, Any]:
    """A delivery receipt authorised at ``at_ms`` on the state just committed."""
    return {
        "contract_id": "c1",
        "dataset_id": "ds1",
        "first_chunk": first,
        "last_chunk": last,
        "byte_count": 1000,
        "content_hash": digest(f"chunks {first}..{last}"),
        "request_id": digest(f"{request} {at_ms} {first}"),
        "authorised_height": market.chain.height,
        "authorised_at_ms": at_ms,
    }


def deliver(market: Market, at_ms: int, first: int = 0, last: int = 9, request: str = "r") -> None:
    """Authorise at ``at_ms`` (a block at that time) and commit the receipt just after."""
    market.chain.run(at_ms=at_ms)
    body = receipt(market, at_ms, first, last, request)
    market.chain.ok(market.node, "delivery.receipt", body)


def query(market: Market, n: int, at_ms: int) -> dict[str, Any]:
    """A compute receipt for query ``n`` authorised at ``at_ms`` (a block at that time)."""
    market.chain.run(at_ms=at_ms)
    return compute_receipt_body(
        n,
        authorised_height=market.chain.height,
        authorised_at_ms=at_ms,
        rule_hash=rule_hash(rule(query_budget=20)),
    )


def pay_body(invoice_id: str, amount: int, currency: str = "EUR") -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "amount_minor": amount,
        "currency": currency,
        "reference": "SEPA 2026-0001",
    }


def invoices(market: Market, at_ms: int) -> list[dict[str, Any]]:
    return billing.invoices(market.chain.kv, "c1", at_ms=at_ms)


def one(market: Market, invoice_id: str, at_ms: int) -> dict[str, Any]:
    found = billing.invoice(market.chain.kv, invoice_id, at_ms=at_ms)
    assert found is not None
    return found


def activated_ms(market: Market) -> int:
    value: int = market.contract()["activated"]["time_ms"]
    return value


# ---- terms ---------------------------------------------------------------------------------


def test_terms_without_billing_keep_their_hash_and_have_no_invoices(market):
    body = Terms.from_json({**terms(), "terms_document_hash": digest("terms document").hex()})
    assert "billing" not in body.to_body() and "arbiter" not in body.to_body()
    assert body.hash() == terms_hash(terms())
    market.activate()
    assert invoices(market, T0 + DAY_MS) == []
    assert billing.summary(market.chain.kv, "c1", at_ms=T0 + DAY_MS)["billed"] is False
    assert not billing.access_suspended(market.chain.kv, market.contract(), at_ms=T0 + 99 * DAY_MS)
    market.chain.refused("unknown_invoice", market.consumer, "payment.confirm", pay_body("c1/0", 1))


def test_the_billing_map_is_inside_the_signed_terms_hash():
    plain = Terms.from_json({**terms(), "terms_document_hash": digest("terms document").hex()})
    billed = Terms(
        **{**plain.__dict__, "billing": Billing(payment_due_ms=1, suspend_when_overdue=True)}
    )
    assert billed.hash() != plain.hash()
    assert billed.hash() == terms_hash(
        terms(billing={"payment_due_ms": 1, "suspend_when_overdue": True})
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"price_model": "subscription", "billing": bill(period_ms=P, unit="chunk")},
            "bad_billing",
        ),
        ({"price_model": "one_time", "billing": bill(period_ms=P)}, "bad_billing"),
        ({"price_model": "one_time", "billing": bill(unit="download")}, "bad_billing"),
        ({"price_model": "pay_per_use", "billing": bill(period_ms=P)}, "bad_body"),
        ({"price_model": "subscription", "billing": bill()}, "bad_body"),
        ({"price_model": "pay_per_use", "billing": bill(period_ms=P, unit="query")}, "bad_billing"),
        (
            {
                "price_model": "pay_per_use",
                "delivery_method": "clean_room",
                "analysis_rule": rule(),
                "billing": bill(period_ms=P, unit="chunk"),
            },
            "bad_billing",
        ),
        ({"price_model": "subscription", "billing": bill(period_ms=999)}, "bad_body"),
        ({"price_model": "subscription", "billing": bill(period_ms=1000)}, "bad_billing"),
        (
            {
                "price_model": "subscription",
                "price_minor": 2**50,
                "billing": bill(period_ms=DAY_MS),
            },
            "bad_billing",
        ),
        ({"billing": bill(payment_due_ms=-1)}, "bad_body"),
        ({"billing": bill(extra=1)}, "bad_body"),
    ],
)
def test_billing_maps_that_do_not_fit_the_terms_are_refused(market, overrides, reason):
    market.chain.refused(
        reason, market.supplier, "contract.offer", market.offer_body("c1", **overrides)
    )


def test_at_most_max_periods_fit_in_the_use_period(market):
    end = S + billing.MAX_PERIODS * 1000
    market.offer(
        price_model="subscription", use_start_ms=S, use_end_ms=end, billing=bill(period_ms=1000)
    )
    body = market.offer_body(
        "c2",
        price_model="subscription",
        use_start_ms=S,
        use_end_ms=end + 1,
        billing=bill(period_ms=1000),
    )
    market.chain.refused("bad_billing", market.supplier, "contract.offer", body)


# ---- one-time ------------------------------------------------------------------------------


def test_one_time_price_is_invoiced_once_at_activation(market):
    market.activate(billing=bill(payment_due_ms=DAY_MS))
    a = activated_ms(market)
    [invoice] = invoices(market, a)
    assert invoice["id"] == "c1/0" and invoice["period_index"] == 0
    assert (invoice["period_start_ms"], invoice["period_end_ms"]) == (a, a)
    assert invoice["lines"] == [
        {"kind": "one_time", "quantity": 1, "unit_price_minor": 150_000, "amount_minor": 150_000}
    ]
    assert invoice["total_minor"] == 150_000 and invoice["currency"] == "EUR"
    assert invoice["due_ms"] == a + DAY_MS
    assert invoice["status"] == "DUE"
    assert invoices(market, a + DAY_MS - 1)[0]["status"] == "DUE"
    assert invoices(market, a + DAY_MS)[0]["status"] == "OVERDUE"
    assert [i["id"] for i in invoices(market, a + 99 * DAY_MS)] == ["c1/0"]


# ---- subscription --------------------------------------------------------------------------


def test_subscription_charges_each_full_period_and_prorates_the_last(market):
    subscription(market, price=1001, end=S + 35_000)
    assert invoices(market, S - 1) == []
    [first] = invoices(market, S)
    assert first["status"] == "OPEN" and first["total_minor"] == 1001
    assert (first["period_start_ms"], first["period_end_ms"]) == (S, S + P)
    every = invoices(market, S + 35_000)
    assert [i["total_minor"] for i in every] == [1001, 1001, 1001, 500]  # 1001 * 5000 // 10000
    assert [(i["period_start_ms"], i["period_end_ms"]) for i in every] == [
        (S, S + P),
        (S + P, S + 2 * P),
        (S + 2 * P, S + 3 * P),
        (S + 3 * P, S + 35_000),
    ]
    assert every[3]["lines"] == [
        {
            "kind": "subscription",
            "quantity": 1,
            "unit_price_minor": 1001,
            "amount_minor": 500,
            "covered_ms": 5000,
            "period_ms": P,
        }
    ]
    assert [i["due_ms"] for i in every] == [
        S + P + DUE,
        S + 2 * P + DUE,
        S + 3 * P + DUE,
        S + 35_000 + DUE,
    ]


def test_a_period_closes_exactly_at_its_end_and_is_overdue_exactly_at_its_due_time(market):
    subscription(market)
    assert [i["status"] for i in invoices(market, S + P - 1)] == ["OPEN"]
    assert [i["status"] for i in invoices(market, S + P)] == ["DUE", "OPEN"]
    assert [i["status"] for i in invoices(market, S + P + DUE - 1)] == ["DUE", "OPEN"]
    assert [i["status"] for i in invoices(market, S + P + DUE)] == ["OVERDUE", "OPEN"]


def test_activation_after_the_use_start_starts_the_first_period_at_activation(market):
    market.activate(
        price_model="subscription",
        price_minor=999,
        use_end_ms=T0 + 300_000,
        billing=bill(period_ms=100_000),
    )
    a = activated_ms(market)
    assert a > T0
    every = invoices(market, T0 + 300_000)
    assert every[0]["period_start_ms"] == a
    assert [i["total_minor"] for i in every] == [
        999,
        999,
        999 * (T0 + 300_000 - a - 200_000) // 100_000,
    ]


def test_termination_mid_period_prorates_the_period_and_ends_the_invoices(market):
    subscription(market, price=1001)
    market.chain.run(at_ms=S + 14_000)
    market.chain.ok(
        market.consumer,
        "contract.terminate",
        {"contract_id": "c1", "reason": "x"},
        at_ms=S + 15_000,
    )
    every = invoices(market, S + 99_000)
    assert [i["total_minor"] for i in every] == [1001, 500]
    assert every[1]["period_end_ms"] == S + 15_000
    assert billing.invoice(market.chain.kv, "c1/2", at_ms=S + 99_000) is None
    market.chain.refused(
        "unknown_invoice", market.consumer, "payment.confirm", pay_body("c1/2", 1001)
    )


def test_termination_at_a_period_boundary_charges_no_partial_period(market):
    subscription(market, price=1001)
    market.chain.ok(
        market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"}, at_ms=S + P
    )
    assert [i["total_minor"] for i in invoices(market, S + 99_000)] == [1001]


def test_termination_before_the_use_period_charges_nothing(market):
    subscription(market, price=1001)
    market.chain.ok(
        market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"}, at_ms=S - 1
    )
    [invoice] = invoices(market, S + 99_000)
    assert invoice["total_minor"] == 0 and invoice["status"] == "PAID" and invoice["payments"] == []
    assert billing.overdue_invoices(market.chain.kv, at_ms=S + 99_000) == []


# ---- pay per use ---------------------------------------------------------------------------


def test_per_download_usage_lands_in_the_period_of_its_authorisation(market):
    per_use(market, unit="download", price=700)
    deliver(market, S + P - 1, request="a")
    deliver(market, S + P, request="b")  # exactly at the period's end: the next period
    deliver(market, S + P + 1, request="c")
    every = invoices(market, S + 3 * P)
    assert [(i["period_index"], i["total_minor"]) for i in every] == [(0, 700), (1, 1400)]
    line = every[0]["lines"][0]
    assert line["kind"] == "usage" and line["unit"] == "download"
    assert (line["quantity"], line["unit_price_minor"], line["amount_minor"]) == (1, 700, 700)
    assert line["authorised_at_ms"] == S + P - 1
    receipt_ids = [r["id"] for r in billing_receipts(market)]
    assert [ln["receipt_id"] for i in every for ln in i["lines"]] == receipt_ids


def billing_receipts(market: Market) -> list[dict[str, Any]]:
    from mdtp.node.ledger.trading import queries

    return queries.contract_receipts(market.chain.kv, "c1")


def test_per_chunk_usage_counts_the_chunks_of_each_receipt(market):
    per_use(market, unit="chunk", price=3)
    deliver(market, S + 1, first=2, last=5)
    deliver(market, S + 2, first=0, last=0, request="x")
    [invoice] = invoices(market, S + P)
    assert [ln["quantity"] for ln in invoice["lines"]] == [4, 1]
    assert invoice["total_minor"] == 15 and invoice["status"] == "DUE"


def test_per_query_usage_counts_each_compute_receipt(market):
    per_use(market, unit="query", price=250)
    for n in (1, 2, 3):
        market.chain.ok(market.node, "compute.receipt", query(market, n, S + n * 4000))
    every = invoices(market, S + 3 * P)
    assert [(i["period_index"], i["total_minor"]) for i in every] == [(0, 500), (1, 250)]


def test_a_receipt_without_authorisation_is_billed_at_its_block_time(market):
    per_use(market, unit="download", price=700)
    body = {
        k: v for k, v in receipt(market, 0).items() if not k.startswith(("request", "authorised"))
    }
    market.chain.ok(market.node, "delivery.receipt", body, at_ms=S + P + 5)
    assert [i["period_index"] for i in invoices(market, S + 3 * P)] == [1]


def test_a_receipt_is_billed_in_the_terms_unit_only(market):
    per_use(market, unit="chunk", price=3)
    assert invoices(market, S + 3 * P) == []
    deliver(market, S + 2, first=1, last=1)
    assert [ln["unit"] for i in invoices(market, S + 3 * P) for ln in i["lines"]] == ["chunk"]


def test_a_pay_per_use_period_without_usage_is_not_listed_and_owes_nothing(market):
    per_use(market)
    deliver(market, S + 2 * P + 1)
    assert [i["period_index"] for i in invoices(market, S + 99_000)] == [2]
    assert one(market, "c1/0", S + 99_000)["status"] == "PAID"


# ---- payments ------------------------------------------------------------------------------


def test_consumer_pays_and_supplier_acknowledges(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    invoice = one(market, "c1/0", S + P + 5000)
    assert invoice["status"] == "PAID" and invoice["paid_minor"] == 1001
    [payment] = invoice["payments"]
    assert payment["reference"] == "SEPA 2026-0001" and payment["late"] is False
    assert payment["acknowledged"] is None
    market.chain.ok(market.supplier, "payment.acknowledge", {"invoice_id": "c1/0"})
    invoice = one(market, "c1/0", S + P + 5000)
    assert invoice["status"] == "ACKNOWLEDGED"
    market.chain.refused(
        "not_confirmed", market.supplier, "payment.acknowledge", {"invoice_id": "c1/0"}
    )
    market.chain.refused("invoice_paid", market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    trail = [e["type"] for e in audit(market)]
    assert trail[-2:] == ["payment.confirm", "payment.acknowledge"]


def audit(market: Market) -> list[dict[str, Any]]:
    from mdtp.node.ledger.trading import queries

    return queries.audit_trail(market.chain.kv, "contract", "c1")


def test_a_running_period_cannot_be_paid(market):
    subscription(market)
    body = pay_body("c1/0", 1001)
    market.chain.refused("invoice_open", market.consumer, "payment.confirm", body, at_ms=S + P - 1)
    market.chain.ok(market.consumer, "payment.confirm", body, at_ms=S + P)


def test_a_payment_must_be_the_outstanding_amount_in_the_invoice_currency(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    for amount in (1000, 1002):
        market.chain.refused(
            "amount_mismatch", market.consumer, "payment.confirm", pay_body("c1/0", amount)
        )
    market.chain.refused(
        "currency_mismatch", market.consumer, "payment.confirm", pay_body("c1/0", 1001, "USD")
    )
    market.chain.refused("bad_body", market.consumer, "payment.confirm", pay_body("c1/0", 0))


def test_only_the_consumer_pays_and_only_the_supplier_acknowledges(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    for who in (market.supplier, market.reviewer):
        market.chain.refused(
            "not_contract_consumer", who, "payment.confirm", pay_body("c1/0", 1001)
        )
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    for who in (market.consumer, market.reviewer):
        market.chain.refused(
            "not_contract_supplier", who, "payment.acknowledge", {"invoice_id": "c1/0"}
        )


def test_acknowledgement_needs_a_confirmation(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    market.chain.refused(
        "not_confirmed", market.supplier, "payment.acknowledge", {"invoice_id": "c1/0"}
    )


@pytest.mark.parametrize(
    ("invoice_id", "reason"),
    [
        ("c1/4", "unknown_invoice"),
        ("nope/0", "unknown_invoice"),
        ("c1", "bad_body"),
        ("c1/01", "bad_body"),
    ],
)
def test_unknown_invoices_are_refused(market, invoice_id, reason):
    subscription(market)
    market.chain.run(at_ms=S + 99_000)
    market.chain.refused(reason, market.consumer, "payment.confirm", pay_body(invoice_id, 1001))


def test_a_late_payment_is_flagged_and_clears_the_overdue_status(market):
    subscription(market)
    market.chain.run(at_ms=S + P + DUE)
    assert [i["id"] for i in billing.overdue_invoices(market.chain.kv, at_ms=S + P + DUE)] == [
        "c1/0"
    ]
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    invoice = one(market, "c1/0", S + P + DUE + 1000)
    assert invoice["status"] == "PAID" and invoice["payments"][0]["late"] is True
    assert billing.overdue_invoices(market.chain.kv, at_ms=S + P + DUE + 1000) == []


def test_late_usage_reopens_a_paid_invoice_for_the_difference(market):
    per_use(market, price=700)
    deliver(market, S + 1, request="a")
    market.chain.run(at_ms=S + P)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 700))
    late = receipt(market, S + 2, request="late")  # authorised in period 0, committed later
    market.chain.ok(market.node, "delivery.receipt", late)
    invoice = one(market, "c1/0", S + P + 1000)
    assert (invoice["total_minor"], invoice["paid_minor"], invoice["outstanding_minor"]) == (
        1400,
        700,
        700,
    )
    assert invoice["status"] == "DUE"
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 700))
    assert one(market, "c1/0", S + P + 1000)["status"] == "PAID"


def test_an_invoice_takes_a_bounded_number_of_payments(market):
    per_use(market, price=700)
    deliver(market, S + 1, request="first")
    market.chain.run(at_ms=S + P)
    for n in range(billing.MAX_PAYMENTS):
        if n:
            late = receipt(market, S + 2, request=f"late {n}")
            market.chain.ok(market.node, "delivery.receipt", late)
        market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 700))
    market.chain.ok(market.node, "delivery.receipt", receipt(market, S + 3, request="more"))
    market.chain.refused(
        "too_many_payments", market.consumer, "payment.confirm", pay_body("c1/0", 700)
    )


# ---- suspension and the overdue index ------------------------------------------------------


def test_access_is_suspended_while_an_invoice_is_overdue_if_the_terms_say_so(market):
    per_use(market, price=700, suspend_when_overdue=True)
    deliver(market, S + 1, request="a")
    kv = market.chain.kv
    assert not billing.access_suspended(kv, market.contract(), at_ms=S + P + DUE - 1)
    assert billing.access_suspended(kv, market.contract(), at_ms=S + P + DUE)
    market.chain.run(at_ms=S + P + DUE)
    body = receipt(market, S + P + DUE, request="b")
    market.chain.refused("payment_overdue", market.node, "delivery.receipt", body)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 700))
    assert not billing.access_suspended(market.chain.kv, market.contract(), at_ms=S + P + DUE)
    market.chain.ok(
        market.node, "delivery.receipt", receipt(market, S + P + DUE + 1000, request="b")
    )


def test_an_overdue_invoice_does_not_suspend_access_unless_the_terms_say_so(market):
    per_use(market, price=700, suspend_when_overdue=False)
    deliver(market, S + 1, request="a")
    assert not billing.access_suspended(market.chain.kv, market.contract(), at_ms=S + P + DUE)
    deliver(market, S + P + DUE, request="b")


def test_a_query_authorised_while_suspended_is_refused(market):
    per_use(market, unit="query", price=250, suspend_when_overdue=True)
    market.chain.ok(market.node, "compute.receipt", query(market, 1, S + 1))
    body = query(market, 2, S + P + DUE)
    market.chain.refused("payment_overdue", market.node, "compute.receipt", body)


def test_the_overdue_index_follows_the_earliest_unpaid_invoice(market):
    subscription(market)
    kv = market.chain.kv
    assert [k for k, _ in kv.scan(layout.BILL_DUE)] == [layout.bill_due_key(S + P + DUE, "c1")]
    market.chain.run(at_ms=S + P)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    assert [k for k, _ in kv.scan(layout.BILL_DUE)] == [layout.bill_due_key(S + 2 * P + DUE, "c1")]
    assert billing.overdue_invoices(kv, at_ms=S + 2 * P + DUE - 1) == []
    late = billing.overdue_invoices(kv, at_ms=S + 3 * P + DUE)
    assert [(i["id"], i["overdue_by_ms"]) for i in late] == [("c1/1", P), ("c1/2", 0)]
    assert late[0]["consumer"] == market.consumer.account_id
    assert billing.overdue_invoices(kv, at_ms=S + 3 * P + DUE, limit=1) == late[:1]
    with pytest.raises(ValueError):
        billing.overdue_invoices(kv, at_ms=0, limit=0)


def test_termination_moves_the_overdue_index_to_the_shortened_period(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    market.chain.ok(
        market.supplier,
        "contract.terminate",
        {"contract_id": "c1", "reason": "x"},
        at_ms=S + P + 100,
    )
    keys = [k for k, _ in market.chain.kv.scan(layout.BILL_DUE)]
    assert keys == [layout.bill_due_key(S + P + 100 + DUE, "c1")]
    assert one(market, "c1/1", S + P + 100)["total_minor"] == 1001 * 100 // P


def test_summary_totals_the_contract(market):
    subscription(market)
    market.chain.run(at_ms=S + P)
    market.chain.ok(market.consumer, "payment.confirm", pay_body("c1/0", 1001))
    summary = billing.summary(market.chain.kv, "c1", at_ms=S + 2 * P)
    assert summary["billed"] is True and summary["periods"] == 4
    assert (summary["charged_minor"], summary["paid_minor"], summary["outstanding_minor"]) == (
        3003,
        1001,
        1001,
    )
    assert summary["credit_outstanding_minor"] == 0
