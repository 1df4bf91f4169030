"""The typed body builders: one for every transaction type the trading rules register, and each
one's output accepted by the ledger's own validation (run through the real rules)."""

from __future__ import annotations

import dataclasses

import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.trading.contracts import load_contract
from tests.ledger.helpers import (
    CHAIN_ID,
    DAY_MS,
    T0,
    Chain,
    Market,
    dataset_body,
    digest,
    quality,
    terms,
)


def executes(chain: Chain, signer: SigningKey, body: b.Body, sender: str | None = None) -> bytes:
    """Submit ``body`` as its type and require that the ledger accepted it; the tx id."""
    raw = chain.tx(signer, body.TYPE, body.to_body(), sender=sender)
    [result] = chain.run(raw)
    assert result.ok, (body.TYPE, result.reason, result.detail)
    return result.tx_id


def test_every_registered_transaction_type_has_a_builder() -> None:
    assert set(b.BODIES) == set(Chain().ledger.handlers)
    assert all(tx_type == body.TYPE for tx_type, body in b.BODIES.items())


def test_every_builder_yields_a_body_the_ledger_accepts() -> None:
    m = Market()
    chain, admin = m.chain, m.chain.admins["m1"]
    built: set[str] = set()

    def ok(signer: SigningKey, body: b.Body, sender: str | None = None) -> bytes:
        built.add(body.TYPE)
        return executes(chain, signer, body, sender)

    # accounts
    user, new_key = SigningKey.generate(with_encryption=True), SigningKey.generate()
    enc = user.encryption_public_key or b""
    ok(admin, b.AccountRegister.for_key(user.public_key, enc, ["supplier"], "Temp"))
    ok(user, b.AccountRotateKey.to_key(new_key, CHAIN_ID, user.account_id))
    ok(new_key, b.AccountRevoke(user.account_id, reason="left"), sender=user.account_id)
    # catalog
    quality = b.Quality.from_json(dataset_body()["quality"])
    ok(
        m.supplier,
        b.DatasetPublish(
            dataset_id="ds2",
            title="Coolant temperature",
            description="",
            tags=("thermal",),
            schema="",
            format="csv",
            size_bytes=1000,
            chunk_count=1,
            merkle_root=digest("root ds2"),
            plaintext_digest=digest("plain ds2"),
            quality=quality,
            supplier_node="m1",
        ),
    )
    ok(m.supplier, b.DatasetUpdate("ds2", title="Coolant temperature, line 2", tags=("a", "b")))
    ok(m.supplier, b.DatasetWithdraw("ds2", reason="sensor recall"))
    # contracts: offered, countered, signed by both, approved by the reviewer
    reviewed = b.Terms.from_json({**terms(), "reviewer": m.reviewer.account_id})
    ok(m.consumer, b.ContractOffer("c1", "ds1", m.consumer.account_id, reviewed))
    ok(m.supplier, b.ContractCounter("c1", 1, reviewed))
    for party in (m.consumer, m.supplier):
        ok(party, b.ContractSign("c1", 2, reviewed.hash()))
    ok(m.reviewer, b.ContractReview("c1", 2, "approve", comment="fits"))
    assert m.contract("c1")["status"] == "ACTIVE"
    plain = b.Terms.from_json(terms())
    ok(m.supplier, b.ContractOffer("c2", "ds1", m.consumer.account_id, plain))
    ok(m.supplier, b.ContractDelete("c2"))
    ok(m.supplier, b.ContractOffer("c3", "ds1", m.consumer.account_id, plain))
    ok(m.consumer, b.ContractTerminate("c3", "budget cut"))
    # fulfilment, by the supplier's node and the consumer
    ok(m.node, b.AccessGrant("c1", b"sealed dataset key"))
    receipt = ok(m.node, b.DeliveryReceipt("c1", "ds1", 0, 9, 10_485_760, digest("chunks")))
    ok(m.consumer, b.DeliveryConfirm(receipt))
    ok(m.consumer, b.DisposalAttest("c1", "crypto-erase", chain.time_ms))
    contract = load_contract(chain.kv, "c1")
    assert contract is not None and contract["disposal"]["overdue"] is False
    # the clean room: a contract under an analysis rule, one query's receipt
    rule = b.AnalysisRule(
        aggregations={"load": ["AVG"]},
        dimensions=("machine",),
        never_output=(),
        scalar_functions=("ROUND",),
        identity_column="batch",
        min_distinct=3,
        query_budget=10,
        max_result_rows=100,
        noise_scale_milli=500,
    )
    clean = b.Terms.from_json({**terms(), "delivery_method": "clean_room"})
    billed = b.Billing(payment_due_ms=0, suspend_when_overdue=False)
    arbiter = m.reviewer.account_id
    clean = dataclasses.replace(clean, analysis_rule=rule, billing=billed, arbiter=arbiter)
    ok(m.supplier, b.ContractOffer("c4", "ds1", m.consumer.account_id, clean))
    for party in (m.consumer, m.supplier):
        ok(party, b.ContractSign("c4", 1, clean.hash()))
    compute = ok(
        m.node,
        b.ComputeReceipt(
            "c4",
            digest("request"),
            chain.height,
            chain.time_ms,
            digest("sql"),
            rule.hash(),
            digest("result"),
            100,
            3,
            1,
            1,
        ),
    )
    # billing and disputes on the clean-room contract (one-time price, arbitrated)
    ok(m.consumer, b.PaymentConfirm("c4/0", 150_000, "EUR", "SEPA 1"))
    ok(m.supplier, b.PaymentAcknowledge("c4/0"))
    ok(m.consumer, b.DisputeOpen("d1", "c4", (), "wrong", digest("report"), compute))
    ok(m.supplier, b.DisputeAnswer("d1", "checked", digest("log")))
    ok(m.reviewer, b.DisputeResolve("d1", "settled", 1000, "half"))

    assert built == set(b.BODIES)


def test_builders_give_the_same_bodies_as_hand_made_maps() -> None:
    doc = dataset_body("ds1")
    quality = doc.pop("quality")
    publish = b.DatasetPublish.from_json({**doc, "quality": quality})
    assert publish.to_body() == dataset_body("ds1")
    assert b.Terms.from_json(terms()).to_body() == terms()
    assert "reviewer" not in b.Terms.from_json(terms()).to_body()
    assert b.DatasetUpdate("ds1", title="t").to_body() == {"dataset_id": "ds1", "title": "t"}


def test_json_forms_read_hashes_as_hex_and_name_a_bad_field() -> None:
    as_json = {**terms(), "terms_document_hash": digest("terms document").hex()}
    assert b.Terms.from_json(as_json) == b.Terms.from_json(terms())
    with pytest.raises(ValueError, match=r"^terms\.colour: unknown field$"):
        b.Terms.from_json({**terms(), "colour": "red"}, "terms.")
    with pytest.raises(ValueError, match=r"^purpose: missing$"):
        b.Terms.from_json({k: v for k, v in terms().items() if k != "purpose"})
    with pytest.raises(ValueError, match=r"^terms_document_hash: must be hex$"):
        b.Terms.from_json({**terms(), "terms_document_hash": "zz"})
    bad_quality = {**dataset_body(), "quality": {**dataset_body()["quality"], "x": 1}}
    with pytest.raises(ValueError, match=r"^quality\.x: unknown field$"):
        b.DatasetPublish.from_json(bad_quality)


def test_a_builder_holding_a_bad_value_is_refused_by_the_ledger_not_the_builder() -> None:
    m = Market()
    late = b.Terms.from_json(terms(use_end_ms=T0 - DAY_MS, disposal_deadline_ms=T0))
    raw = m.chain.tx(
        m.consumer,
        "contract.offer",
        b.ContractOffer("c9", "ds1", m.consumer.account_id, late).to_body(),
    )
    [result] = m.chain.run(raw)
    assert result.reason == "bad_period"
    wrong_type = b.Terms.from_json({**terms(), "max_downloads": "3"})
    raw = m.chain.tx(
        m.consumer,
        "contract.offer",
        b.ContractOffer("c9", "ds1", m.consumer.account_id, wrong_type).to_body(),
    )
    [result] = m.chain.run(raw)
    assert result.reason == "bad_body" and "terms.max_downloads" in result.detail


def test_quality_claims_and_a_stamp_read_from_their_json_forms() -> None:
    chain = Chain()
    supplier, camera = chain.user("supplier"), chain.user("capture")
    content = dataset_body("ds1")
    stamp = b.Provenance.stamp(
        camera,
        chain_id=CHAIN_ID,
        dataset_id="ds1",
        plaintext_digest=content["plaintext_digest"],
        merkle_root=content["merkle_root"],
        site="plant-a",
        line="line-3",
        capture_start_ms=T0 - 20 * DAY_MS,
        capture_end_ms=T0 - 2 * DAY_MS,
    )
    gaps = [{"start_ms": T0 - 25 * DAY_MS, "end_ms": T0 - 24 * DAY_MS, "reason": "PLC restart"}]
    doc = {
        **{k: v.hex() if isinstance(v, bytes) else v for k, v in content.items()},
        "quality": quality(completeness_permille=990, known_gaps=gaps),
        "provenance": {**stamp.to_body(), "capture_signature": stamp.capture_signature.hex()},
    }
    body = b.DatasetPublish.from_json(doc)
    assert body.quality.known_gaps == (
        b.KnownGap(T0 - 25 * DAY_MS, T0 - 24 * DAY_MS, "PLC restart"),
    )
    assert body.provenance == stamp
    assert body.to_body()["quality"]["known_gaps"] == gaps
    executes(chain, supplier, body)
    with pytest.raises(ValueError, match=r"quality\.known_gaps\[0\]\.colour: unknown field"):
        b.DatasetPublish.from_json(
            {**doc, "quality": quality(known_gaps=[{**gaps[0], "colour": 1}])}
        )
