"""Every transaction type a node's ledger accepts has a typed body, and each body's
``to_body()`` is executed by that ledger's real state machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger import bodies as all_bodies
from mdtp.node.ledger import governance, notes
from mdtp.node.ledger.governance import bodies as gb
from mdtp.node.ledger.setup import build_ledger
from mdtp.node.ledger.trading import bodies as b
from tests.ledger.helpers import CHAIN_ID, Market, dataset_body, digest, terms


def test_every_type_the_node_ledger_registers_has_a_typed_body() -> None:
    handlers = set(build_ledger(Market().chain.genesis).ledger.handlers)
    assert set(all_bodies.BODIES) == handlers
    assert all(t == body.TYPE for t, body in all_bodies.BODIES.items())
    assert all(issubclass(body, b.Body) for body in all_bodies.BODIES.values())


Step = tuple[SigningKey, Callable[[], b.Body], str | None]  # signer, body, sender


def samples(m: Market, receipt_id: list[bytes]) -> list[Step]:
    """One body of each type, in an order in which each is allowed, with its signer;
    ``receipt_id`` receives the delivery receipt's id, then the compute receipt's, once each
    committed."""
    admin = m.chain.admins["m1"]
    user, new_key = SigningKey.generate(with_encryption=True), SigningKey.generate()
    enc = user.encryption_public_key or b""
    policy = gb.PolicyChange(1, 2, min_members=2)
    reviewed = b.Terms.from_json({**terms(), "reviewer": m.reviewer.account_id})
    plain = b.Terms.from_json(terms())
    rule = b.AnalysisRule(
        aggregations={"load": ["AVG"]},
        dimensions=("machine",),
        never_output=(),
        scalar_functions=(),
        identity_column="batch",
        min_distinct=2,
        query_budget=5,
        max_result_rows=10,
    )
    clean = dataclasses.replace(
        plain,
        delivery_method="clean_room",
        analysis_rule=rule,
        billing=b.Billing(payment_due_ms=0, suspend_when_overdue=False),
        arbiter=m.reviewer.account_id,
    )
    publish = b.DatasetPublish.from_json(
        {
            **dataset_body("ds2"),
            "merkle_root": digest("root ds2").hex(),
            "plaintext_digest": digest("plain ds2").hex(),
        }
    )
    return [
        (admin, lambda: b.AccountRegister.for_key(user.public_key, enc, ["supplier"], "T"), None),
        (user, lambda: all_bodies.NoteSet("greeting", b"hello"), None),
        (user, lambda: b.AccountRotateKey.to_key(new_key, CHAIN_ID, user.account_id), None),
        (new_key, lambda: b.AccountRevoke(user.account_id, reason="left"), user.account_id),
        (m.supplier, lambda: publish, None),
        (m.supplier, lambda: b.DatasetUpdate("ds2", title="Coolant, line 2"), None),
        (m.supplier, lambda: b.DatasetWithdraw("ds2", reason="recall"), None),
        (m.consumer, lambda: b.ContractOffer("c1", "ds1", m.consumer.account_id, reviewed), None),
        (m.supplier, lambda: b.ContractCounter("c1", 1, reviewed), None),
        (m.consumer, lambda: b.ContractSign("c1", 2, reviewed.hash()), None),
        (m.supplier, lambda: b.ContractSign("c1", 2, reviewed.hash()), None),
        (m.reviewer, lambda: b.ContractReview("c1", 2, "approve", comment="fits"), None),
        (m.supplier, lambda: b.ContractOffer("c2", "ds1", m.consumer.account_id, plain), None),
        (m.supplier, lambda: b.ContractDelete("c2"), None),
        (m.supplier, lambda: b.ContractOffer("c3", "ds1", m.consumer.account_id, plain), None),
        (m.consumer, lambda: b.ContractTerminate("c3", "budget cut"), None),
        (m.node, lambda: b.AccessGrant("c1", b"sealed dataset key"), None),
        (
            m.node,
            lambda: b.DeliveryReceipt("c1", "ds1", 0, 9, 10_485_760, digest("chunks")),
            None,
        ),
        (m.consumer, lambda: b.DeliveryConfirm(receipt_id[0]), None),
        (m.consumer, lambda: b.DisposalAttest("c1", "crypto-erase", m.chain.time_ms), None),
        (m.supplier, lambda: b.ContractOffer("c4", "ds1", m.consumer.account_id, clean), None),
        (m.consumer, lambda: b.ContractSign("c4", 1, clean.hash()), None),
        (m.supplier, lambda: b.ContractSign("c4", 1, clean.hash()), None),
        (
            m.node,
            lambda: b.ComputeReceipt(
                "c4",
                digest("query request"),
                m.chain.height,
                m.chain.time_ms,
                digest("sql"),
                rule.hash(),
                digest("result"),
                100,
                2,
                1,
                1,
            ),
            None,
        ),
        (m.consumer, lambda: b.PaymentConfirm("c4/0", 150_000, "EUR", "SEPA 1"), None),
        (m.supplier, lambda: b.PaymentAcknowledge("c4/0"), None),
        (
            m.consumer,
            lambda: b.DisputeOpen("d1", "c4", (), "wrong", digest("report"), receipt_id[1]),
            None,
        ),
        (m.supplier, lambda: b.DisputeAnswer("d1", "checked", digest("log")), None),
        (m.reviewer, lambda: b.DisputeResolve("d1", "settled", 1000, "half"), None),
        (admin, lambda: gb.MemberPropose("p1", policy, m.chain.time_ms + 3_600_000), None),
        (m.chain.admins["m2"], lambda: gb.MemberVote("p1", approve=True), None),
    ]


def test_every_typed_body_is_executed_by_the_node_ledger() -> None:
    m = Market()
    notes.register(m.chain.ledger)  # the trading test chain plus note.set: a node's ledger
    governance.install(m.chain.ledger, m.chain.genesis)  # and governance, from epoch 0
    m.chain.kv.apply(dict(governance.genesis_writes(m.chain.genesis)))
    assert set(m.chain.ledger.handlers) == set(all_bodies.BODIES)
    receipt_id: list[bytes] = []
    executed: set[str] = set()
    for signer, make, sender in samples(m, receipt_id):
        body = make()
        raw = m.chain.tx(signer, body.TYPE, body.to_body(), sender=sender)
        [result] = m.chain.run(raw)
        assert result.ok, (body.TYPE, result.reason, result.detail)
        executed.add(body.TYPE)
        if body.TYPE in ("delivery.receipt", "compute.receipt"):
            receipt_id.append(result.tx_id)
    assert executed == set(all_bodies.BODIES)
