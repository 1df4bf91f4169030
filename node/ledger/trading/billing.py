"""Billing from the ledger: invoices derived from the terms, committed receipts and block time.

Theory of operation
-------------------
No transaction posts a charge. The terms' optional ``billing`` map (read by
:func:`read_billing`, inside the signed terms hash) says how the contract is billed; the
charges follow from the contract record (activation, termination), the receipts the ledger
committed and the block time, and every replica derives the same invoices. Terms without
``billing`` (every contract written before billing existed) have no invoices on the ledger:
they are settled off-ledger, nothing is ever overdue and access is never suspended.

``billing`` (every amount is an integer in minor units of the terms' ISO 4217 currency)::

    unit                  "download" | "chunk" | "query"   pay_per_use only (and required)
    period_ms             invoice period, 1 s .. 5 years     subscription and pay_per_use only
    payment_due_ms        from a period's close to its due time, 0 .. 1 year
    suspend_when_overdue  bool: no downloads or queries while an invoice is OVERDUE

Periods: period 0 starts at ``start = max(activation time, use_start_ms)``; period ``i`` is
``[start + i*period_ms, start + (i+1)*period_ms)``, the last one cut at the contract's end
(``use_end_ms``, or the termination's block time if earlier). A one-time contract has one
period, ``[activation, activation]``: its invoice closes at activation. At most
:data:`MAX_PERIODS` periods fit in the use period (else the terms are refused).

Charge rules (the README's table):

- one_time: invoice 0 holds one line ``price_minor``, due ``payment_due_ms`` after activation.
- subscription: each period's invoice holds ``price_minor * covered_ms // period_ms``, where
  ``covered_ms`` is the period's length: a full period is charged exactly ``price_minor``, a
  partial one (cut by use_end_ms or a termination) is prorated and rounded down to the minor
  unit (floor division of non-negative integers; the consumer keeps the remainder).
- pay_per_use: each committed ``delivery.receipt`` (unit ``download``: 1, ``chunk``:
  ``last_chunk - first_chunk + 1``) or ``compute.receipt`` (unit ``query``: 1) adds a usage
  line of ``quantity * price_minor`` to the period that contains the receipt's authorisation
  time (``authorised_at_ms``, or the block time of a receipt without one), clamped to the
  first and last period. Periods are half-open, so a receipt exactly at a period's end
  belongs to the next period.
- refunds: a dispute settled or upheld with ``refund_minor`` adds a refund line to the
  invoice of the period containing the resolution's block time (the last period once the
  contract has ended). Credit beyond an invoice's charges, and any amount paid beyond an
  invoice's total, is carried to the next invoice (``credit_brought_minor``); what is left
  after the last invoice is ``credit_outstanding_minor`` in :func:`summary`, owed by the
  supplier and settled off-ledger.

Per invoice: ``charges`` (fixed + usage), ``net = charges - refunds - credit brought``,
``total = max(net, 0)``, ``outstanding = max(total - paid, 0)``. Status at a time ``t``:
OPEN while ``t < period_end``; then PAID (or ACKNOWLEDGED once the supplier acknowledged
every payment) when nothing is outstanding, else DUE until ``due = period_end +
payment_due_ms`` and OVERDUE from then on.

Payments: ``payment.confirm`` by the consumer names an invoice that is closed (not OPEN:
its total is final only then, ``invoice_open``), in the terms' currency
(``currency_mismatch``), for exactly the outstanding amount (``amount_mismatch``; no partial
payments); an invoice with nothing outstanding refuses it (``invoice_paid``, which is also a
second confirmation). A late receipt or a refund may change a closed invoice's total: then
a further payment (at most :data:`MAX_PAYMENTS` per invoice) or a carried credit settles
the difference. ``payment.acknowledge`` by the supplier acknowledges every payment of the
invoice not yet acknowledged (``not_confirmed`` when there is none).

Suspension: with ``suspend_when_overdue``, :func:`access_suspended` is true while an invoice
is OVERDUE. The supplier's node checks it before serving and between windows; the ledger
refuses a receipt (``payment_overdue``) if access was suspended at its authorisation time,
judged on the state that commits it (a payment committed in between lifts the refusal).

Index: ``billdue/<due>/<contract>`` holds the due time of each contract's earliest invoice
with an amount outstanding; it is rewritten whenever that can change (activation,
termination, a usage line, a refund, a payment), so :func:`overdue_invoices` reads only
contracts that are overdue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, layout
from mdtp.node.ledger.trading.accounts import registered_only
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import ID_MAX_LEN, INT_MAX, Fields, bad
from mdtp.node.ledger.tx import Tx

DAY_MS = 86_400_000
UNITS = ("download", "chunk", "query")
PERIOD_MS_MIN = 1000
PERIOD_MS_MAX = 5 * 366 * DAY_MS
PAYMENT_DUE_MS_MAX = 366 * DAY_MS
MAX_PERIODS = 1000
MAX_PAYMENTS = 8
REFERENCE_MAX_LEN = 128
CHUNKS_PER_RECEIPT_MAX = 2**24 + 1
INVOICE_ID_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,63})/(0|[1-9][0-9]{0,5})$")
INVOICE_ID_MAX_LEN = ID_MAX_LEN + 7
LINE_KINDS = ("one_time", "subscription", "usage", "refund")
STATUSES = ("OPEN", "DUE", "OVERDUE", "PAID", "ACKNOWLEDGED")


# ---- terms ---------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def read_billing(f: Fields, terms: dict[str, Any]) -> None:
    """Read the optional ``billing`` map of a terms map (``f``) into ``terms``."""
    if not f.has("billing"):
        return
    model = terms["price_model"]
    b = f.nested("billing")
    billing: dict[str, Any] = {}
    if model == "pay_per_use":
        billing["unit"] = b.choice("unit", UNITS)
    elif b.has("unit"):
        refuse("bad_billing", "terms.billing.unit is only for price_model pay_per_use")
    if model in ("pay_per_use", "subscription"):
        billing["period_ms"] = b.integer("period_ms", lo=PERIOD_MS_MIN, hi=PERIOD_MS_MAX)
    elif b.has("period_ms"):
        refuse("bad_billing", "terms.billing.period_ms is only for subscription, pay_per_use")
    billing["payment_due_ms"] = b.integer("payment_due_ms", hi=PAYMENT_DUE_MS_MAX)
    billing["suspend_when_overdue"] = b.boolean("suspend_when_overdue")
    b.finish()
    clean_room = terms["delivery_method"] == "clean_room"
    unit = billing.get("unit")
    if unit == "query" and not clean_room:
        refuse("bad_billing", "unit query is only for delivery_method clean_room")
    if unit in ("download", "chunk") and clean_room:
        refuse("bad_billing", f"unit {unit} is only for delivery_method download")
    price = terms["price_minor"]
    most = price
    if "period_ms" in billing:
        periods = _ceil_div(terms["use_end_ms"] - terms["use_start_ms"], billing["period_ms"])
        if periods > MAX_PERIODS:
            refuse("bad_billing", f"the use period holds more than {MAX_PERIODS} periods")
        most = price * periods
    if unit == "download":
        most = price * terms["max_downloads"]
    elif unit == "chunk":
        most = price * terms["max_downloads"] * CHUNKS_PER_RECEIPT_MAX
    elif unit == "query":
        most = price * terms["analysis_rule"]["query_budget"]
    if most > INT_MAX:
        refuse("bad_billing", f"the terms could charge more than {INT_MAX} minor units")
    terms["billing"] = billing


# ---- the schedule of a contract ------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A contract's billing schedule: its periods and fixed charges."""

    contract_id: str
    model: str
    unit: str | None
    price_minor: int
    currency: str
    period_ms: int  # 0: one-time
    payment_due_ms: int
    suspend_when_overdue: bool
    start_ms: int
    end_ms: int
    count: int

    def period(self, i: int) -> tuple[int, int]:
        if self.period_ms == 0:
            return self.start_ms, self.start_ms
        start = self.start_ms + i * self.period_ms
        return start, min(start + self.period_ms, self.end_ms)

    def index_at(self, t_ms: int) -> int:
        if self.period_ms == 0 or t_ms < self.start_ms:
            return 0
        return min((t_ms - self.start_ms) // self.period_ms, self.count - 1)

    def fixed_line(self, i: int) -> dict[str, Any] | None:
        if self.model == "one_time":
            return _line("one_time", 1, self.price_minor, self.price_minor)
        if self.model == "subscription":
            start, end = self.period(i)
            covered = end - start
            amount = self.price_minor * covered // self.period_ms
            return {
                **_line("subscription", 1, self.price_minor, amount),
                "covered_ms": covered,
                "period_ms": self.period_ms,
            }
        return None


def _line(kind: str, quantity: int, unit_price: int, amount: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "quantity": quantity,
        "unit_price_minor": unit_price,
        "amount_minor": amount,
    }


def active_terms(kv: ReadableKV, contract: dict[str, Any]) -> dict[str, Any] | None:
    """The terms of the version that activated ``contract`` (None if it never was active)."""
    if contract["activated"] is None:
        return None
    version = layout.read(kv, layout.version_key(contract["id"], contract["activated"]["version"]))
    assert version is not None
    terms: dict[str, Any] = version["terms"]
    return terms


def plan(kv: ReadableKV, contract: dict[str, Any]) -> Plan | None:
    """The schedule of ``contract``: None when it was never active or has no billing."""
    terms = active_terms(kv, contract)
    if terms is None or "billing" not in terms:
        return None
    billing = terms["billing"]
    activated_ms = contract["activated"]["time_ms"]
    period_ms = billing.get("period_ms", 0)
    if period_ms == 0:
        start = end = activated_ms
        count = 1
    else:
        start = max(activated_ms, terms["use_start_ms"])
        end = contract["use_end_ms"]
        if contract["terminated"] is not None:
            end = min(end, contract["terminated"]["time_ms"])
        end = max(end, start)
        count = max(1, _ceil_div(end - start, period_ms))
    return Plan(
        contract_id=contract["id"],
        model=terms["price_model"],
        unit=billing.get("unit"),
        price_minor=terms["price_minor"],
        currency=terms["currency"],
        period_ms=period_ms,
        payment_due_ms=billing["payment_due_ms"],
        suspend_when_overdue=billing["suspend_when_overdue"],
        start_ms=start,
        end_ms=end,
        count=count,
    )


# ---- invoices ------------------------------------------------------------------------------


@dataclass
class Invoice:
    """One period's invoice, without its lines (see :func:`invoice_lines`)."""

    plan: Plan
    index: int
    fixed: dict[str, Any] | None
    usage_minor: int
    refund_minor: int
    line_count: int
    credit_brought_minor: int
    payments: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.plan.contract_id}/{self.index}"

    @property
    def start_ms(self) -> int:
        return self.plan.period(self.index)[0]

    @property
    def end_ms(self) -> int:
        return self.plan.period(self.index)[1]

    @property
    def due_ms(self) -> int:
        return self.end_ms + self.plan.payment_due_ms

    @property
    def charges_minor(self) -> int:
        return (self.fixed["amount_minor"] if self.fixed else 0) + self.usage_minor

    @property
    def net_minor(self) -> int:
        return self.charges_minor - self.refund_minor - self.credit_brought_minor

    @property
    def total_minor(self) -> int:
        return max(self.net_minor, 0)

    @property
    def paid_minor(self) -> int:
        return sum(p["amount_minor"] for p in self.payments)

    @property
    def outstanding_minor(self) -> int:
        return max(self.total_minor - self.paid_minor, 0)

    @property
    def credit_carried_minor(self) -> int:
        return max(-self.net_minor, 0) + max(self.paid_minor - self.total_minor, 0)

    @property
    def listed(self) -> bool:
        """Pay-per-use periods without lines or payments owe nothing and are not listed."""
        return self.fixed is not None or self.line_count > 0 or bool(self.payments)

    def status(self, at_ms: int) -> str:
        if at_ms < self.end_ms:
            return "OPEN"
        if self.outstanding_minor == 0:
            acknowledged = self.payments and all(p["acknowledged"] for p in self.payments)
            return "ACKNOWLEDGED" if acknowledged else "PAID"
        return "OVERDUE" if at_ms >= self.due_ms else "DUE"


def _scan_by_period(kv: ReadableKV, prefix: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for key, raw in kv.scan(prefix):
        period = int(key[len(prefix) :].split(b"/", 1)[0], 16)
        out.setdefault(period, []).append(layout.decode(raw))
    return out


def compute_invoices(kv: ReadableKV, p: Plan) -> list[Invoice]:
    """Every invoice of the schedule, in period order (future periods included)."""
    slash = p.contract_id.encode() + b"/"
    totals = _scan_by_period(kv, layout.BILL_TOTAL + slash)
    payments = _scan_by_period(kv, layout.BILL_PAYMENT + slash)
    out: list[Invoice] = []
    credit = 0
    for i in range(p.count):
        total = totals.get(i, [{"usage_minor": 0, "refund_minor": 0, "lines": 0}])[0]
        invoice = Invoice(
            plan=p,
            index=i,
            fixed=p.fixed_line(i),
            usage_minor=total["usage_minor"],
            refund_minor=total["refund_minor"],
            line_count=total["lines"],
            credit_brought_minor=credit,
            payments=payments.get(i, []),
        )
        credit = invoice.credit_carried_minor
        out.append(invoice)
    return out


def load_invoice(kv: ReadableKV, invoice_id: str) -> tuple[dict[str, Any], Invoice] | None:
    """The contract and the invoice an id names, or None (no such contract or period)."""
    match = INVOICE_ID_RE.match(invoice_id)
    if match is None:
        return None
    contract = layout.read(kv, layout.contract_key(match.group(1)))
    if contract is None:
        return None
    p = plan(kv, contract)
    index = int(match.group(2))
    if p is None or index >= p.count:
        return None
    return contract, compute_invoices(kv, p)[index]


def access_suspended(kv: ReadableKV, contract: dict[str, Any], *, at_ms: int) -> bool:
    """True when the terms say ``suspend_when_overdue`` and an invoice is OVERDUE at
    ``at_ms``."""
    p = plan(kv, contract)
    if p is None or not p.suspend_when_overdue:
        return False
    return any(i.status(at_ms) == "OVERDUE" for i in compute_invoices(kv, p))


def charged_minor(kv: ReadableKV, contract: dict[str, Any], *, at_ms: int) -> int:
    """What the contract has charged by ``at_ms``: charges of every period started by then."""
    p = plan(kv, contract)
    if p is None:
        return 0
    return sum(i.charges_minor for i in compute_invoices(kv, p) if i.start_ms <= at_ms)


def _record(kv: ReadableKV, contract_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = layout.read(kv, layout.billing_key(contract_id))
    return found or {"lines": 0, "refunded_minor": 0, "due_key": None}


def refunded_minor(kv: ReadableKV, contract_id: str) -> int:
    value: int = _record(kv, contract_id)["refunded_minor"]
    return value


# ---- reads for the API, the SDK and the supplier's node ------------------------------------


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def invoice_lines(kv: ReadableKV, invoice: Invoice) -> list[dict[str, Any]]:
    """The fixed line (one-time or subscription) then the usage and refund lines, in order."""
    prefix = layout.bill_lines_prefix(invoice.plan.contract_id, invoice.index)
    stored = [layout.decode(raw) for _, raw in kv.scan(prefix)]
    return ([invoice.fixed] if invoice.fixed else []) + stored


def invoice_view(kv: ReadableKV, invoice: Invoice, at_ms: int) -> dict[str, Any]:
    refunds = invoice.refund_minor
    view = {
        "id": invoice.id,
        "contract_id": invoice.plan.contract_id,
        "period_index": invoice.index,
        "period_start_ms": invoice.start_ms,
        "period_end_ms": invoice.end_ms,
        "currency": invoice.plan.currency,
        "lines": invoice_lines(kv, invoice),
        "charges_minor": invoice.charges_minor,
        "refunds_minor": refunds,
        "credit_brought_minor": invoice.credit_brought_minor,
        "total_minor": invoice.total_minor,
        "paid_minor": invoice.paid_minor,
        "outstanding_minor": invoice.outstanding_minor,
        "credit_carried_minor": invoice.credit_carried_minor,
        "due_ms": invoice.due_ms,
        "status": invoice.status(at_ms),
        "payments": invoice.payments,
    }
    result: dict[str, Any] = _json(view)
    return result


def invoices(kv: ReadableKV, contract_id: str, *, at_ms: int) -> list[dict[str, Any]]:
    """The invoices of a contract whose period started by ``at_ms``, in period order (a
    pay-per-use period without lines or payments owes nothing and is left out); empty when
    the contract does not exist, never became active or its terms have no ``billing``."""
    contract = layout.read(kv, layout.contract_key(contract_id))
    p = None if contract is None else plan(kv, contract)
    if p is None:
        return []
    return [
        invoice_view(kv, i, at_ms)
        for i in compute_invoices(kv, p)
        if i.start_ms <= at_ms and i.listed
    ]


def invoice(kv: ReadableKV, invoice_id: str, *, at_ms: int) -> dict[str, Any] | None:
    """One invoice by its id ``<contract id>/<period index>`` (also a future period's)."""
    found = load_invoice(kv, invoice_id)
    return None if found is None else invoice_view(kv, found[1], at_ms)


def summary(kv: ReadableKV, contract_id: str, *, at_ms: int) -> dict[str, Any]:
    """A contract's billing at ``at_ms``: whether it is billed, the terms' billing, what was
    charged (periods started), refunded and paid, the credit the supplier owes after the
    last invoice (``credit_outstanding_minor``), and whether access is suspended."""
    contract = layout.read(kv, layout.contract_key(contract_id))
    p = None if contract is None else plan(kv, contract)
    if contract is None or p is None:
        return {"contract_id": contract_id, "billed": False}
    every = compute_invoices(kv, p)
    started = [i for i in every if i.start_ms <= at_ms]
    return {
        "contract_id": contract_id,
        "billed": True,
        "price_model": p.model,
        "unit": p.unit,
        "currency": p.currency,
        "period_ms": p.period_ms,
        "payment_due_ms": p.payment_due_ms,
        "suspend_when_overdue": p.suspend_when_overdue,
        "periods": p.count,
        "charged_minor": sum(i.charges_minor for i in started),
        "refunded_minor": refunded_minor(kv, contract_id),
        "paid_minor": sum(i.paid_minor for i in every),
        "outstanding_minor": sum(i.outstanding_minor for i in started if i.end_ms <= at_ms),
        "credit_outstanding_minor": every[-1].credit_carried_minor,
        "overdue": any(i.status(at_ms) == "OVERDUE" for i in started),
        "access_suspended": access_suspended(kv, contract, at_ms=at_ms),
    }


def overdue_invoices(kv: ReadableKV, *, at_ms: int, limit: int = 100) -> list[dict[str, Any]]:
    """Invoices OVERDUE at ``at_ms``, contracts by their earliest due time; reads only the
    contracts the ``billdue/`` index names as due before ``at_ms``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
        raise ValueError("limit must be an integer in 1..500")
    found: list[dict[str, Any]] = []
    for key, _ in kv.scan(layout.BILL_DUE):
        due_hex, contract_id = key[len(layout.BILL_DUE) :].decode().split("/", 1)
        if int(due_hex, 16) > at_ms:
            break  # keys are in due order; an invoice is OVERDUE from its due time on
        contract = layout.read(kv, layout.contract_key(contract_id))
        p = None if contract is None else plan(kv, contract)
        assert contract is not None and p is not None, contract_id
        for i in compute_invoices(kv, p):
            if i.status(at_ms) == "OVERDUE":
                found.append(
                    {
                        **invoice_view(kv, i, at_ms),
                        "supplier": contract["supplier"],
                        "consumer": contract["consumer"],
                        "overdue_by_ms": at_ms - i.due_ms,
                    }
                )
                if len(found) == limit:
                    return found
    return found


# ---- writes (called by the contract, receipt and dispute rules) -----------------------------


def reindex(state: Overlay, contract: dict[str, Any]) -> None:
    """Point the contract's ``billdue/`` entry at its earliest invoice with an amount
    outstanding (or remove it)."""
    p = plan(state, contract)
    record = _record(state, contract["id"])
    due_key = None
    if p is not None:
        for invoice in compute_invoices(state, p):
            if invoice.outstanding_minor > 0:
                due_key = layout.bill_due_key(invoice.due_ms, contract["id"])
                break
    if record["due_key"] == due_key:
        return
    if record["due_key"] is not None:
        state.delete(record["due_key"])
    if due_key is not None:
        state.put(due_key, layout.EMPTY)
    record["due_key"] = due_key
    state.put_obj(layout.billing_key(contract["id"]), record)


def _add_line(
    ctx: BlockContext,
    state: Overlay,
    contract: dict[str, Any],
    period: int,
    line: dict[str, Any],
) -> None:
    record = _record(state, contract["id"])
    record["lines"] += 1
    if line["kind"] == "refund":
        record["refunded_minor"] += line["amount_minor"]
    state.put_obj(layout.billing_key(contract["id"]), record)
    state.put_obj(
        layout.bill_line_key(contract["id"], period, record["lines"]),
        {**line, "n": record["lines"], "height": ctx.height, "time_ms": ctx.timestamp_ms},
    )
    total_key = layout.bill_total_key(contract["id"], period)
    total = layout.read(state, total_key) or {"usage_minor": 0, "refund_minor": 0, "lines": 0}
    total["lines"] += 1
    total["refund_minor" if line["kind"] == "refund" else "usage_minor"] += line["amount_minor"]
    state.put_obj(total_key, total)
    reindex(state, contract)


def add_usage(
    ctx: BlockContext,
    state: Overlay,
    contract: dict[str, Any],
    *,
    unit: str,
    quantity: int,
    receipt_id: bytes,
    at_ms: int,
) -> None:
    """Bill a committed receipt of ``unit`` if the contract is billed per ``unit``
    (``download`` and ``chunk`` receipts are the same event: the unit picks the quantity)."""
    p = plan(state, contract)
    if p is None or p.unit != unit:
        return
    line = _line("usage", quantity, p.price_minor, quantity * p.price_minor)
    line.update(unit=unit, receipt_id=receipt_id, authorised_at_ms=at_ms)
    _add_line(ctx, state, contract, p.index_at(at_ms), line)


def add_refund(
    ctx: BlockContext, state: Overlay, contract: dict[str, Any], amount: int, dispute_id: str
) -> str | None:
    """Credit ``amount`` (> 0, within the cap the dispute rules checked) to the invoice of the
    period containing the block time; the invoice id, or None if the contract is not billed."""
    p = plan(state, contract)
    if p is None:
        return None
    period = p.index_at(ctx.timestamp_ms)
    line = _line("refund", 1, amount, amount)
    line["dispute_id"] = dispute_id
    _add_line(ctx, state, contract, period, line)
    return f"{contract['id']}/{period}"


def require_not_suspended(state: Overlay, contract: dict[str, Any], at_ms: int) -> None:
    if access_suspended(state, contract, at_ms=at_ms):
        refuse(
            "payment_overdue",
            f"contract {contract['id']} is suspended: an invoice was overdue at {at_ms}",
        )


# ---- handlers ------------------------------------------------------------------------------


def _read_invoice(state: Overlay, f: Fields) -> tuple[dict[str, Any], Invoice]:
    invoice_id = f.text("invoice_id", min_len=3, max_len=INVOICE_ID_MAX_LEN)
    if not INVOICE_ID_RE.match(invoice_id):
        bad("invoice_id", "must be <contract id>/<period index>")
    found = load_invoice(state, invoice_id)
    if found is None:
        refuse("unknown_invoice", f"invoice_id: no invoice {invoice_id}")
    return found


def payment_confirm(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract, invoice = _read_invoice(state, f)
    amount = f.integer("amount_minor", lo=1, hi=INT_MAX)
    currency = f.text("currency", min_len=3, max_len=3)
    reference = f.text("reference", min_len=1, max_len=REFERENCE_MAX_LEN)
    f.finish()
    if tx.sender != contract["consumer"]:
        refuse("not_contract_consumer", f"only {contract['consumer']} pays this invoice")
    status = invoice.status(ctx.timestamp_ms)
    if status == "OPEN":
        refuse("invoice_open", f"invoice {invoice.id} is open until {invoice.end_ms}")
    if invoice.outstanding_minor == 0:
        refuse("invoice_paid", f"invoice {invoice.id} has nothing outstanding")
    if currency != invoice.plan.currency:
        refuse("currency_mismatch", f"invoice {invoice.id} is in {invoice.plan.currency}")
    if amount != invoice.outstanding_minor:
        refuse(
            "amount_mismatch",
            f"invoice {invoice.id} has {invoice.outstanding_minor} outstanding, not {amount}",
        )
    if len(invoice.payments) >= MAX_PAYMENTS:
        refuse("too_many_payments", f"an invoice takes at most {MAX_PAYMENTS} payments")
    n = len(invoice.payments) + 1
    state.put_obj(
        layout.bill_payment_key(contract["id"], invoice.index, n),
        {
            "n": n,
            "amount_minor": amount,
            "currency": currency,
            "reference": reference,
            "by": tx.sender,
            "late": status == "OVERDUE",
            **audit.event(ctx, tx),
            "acknowledged": None,
        },
    )
    reindex(state, contract)
    audit.record(
        ctx,
        state,
        tx,
        audit.contract_subjects(contract, tx),
        f"confirmed payment of {amount} {currency} for invoice {invoice.id} ({status})",
    )


def payment_acknowledge(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract, invoice = _read_invoice(state, f)
    f.finish()
    if tx.sender != contract["supplier"]:
        refuse("not_contract_supplier", f"only {contract['supplier']} acknowledges payments")
    pending = [p for p in invoice.payments if p["acknowledged"] is None]
    if not pending:
        refuse("not_confirmed", f"invoice {invoice.id} has no payment to acknowledge")
    for payment in pending:
        payment["acknowledged"] = audit.event(ctx, tx)
        state.put_obj(layout.bill_payment_key(contract["id"], invoice.index, payment["n"]), payment)
    amount = sum(p["amount_minor"] for p in pending)
    audit.record(
        ctx,
        state,
        tx,
        audit.contract_subjects(contract, tx),
        f"acknowledged {amount} {invoice.plan.currency} received for invoice {invoice.id}",
    )


def register(ledger: Ledger) -> None:
    ledger.register("payment.confirm", registered_only(payment_confirm))
    ledger.register("payment.acknowledge", registered_only(payment_acknowledge))
