import pytest

from mdtp.node.ledger.trading import queries
from tests.ledger.helpers import DAY_MS, T0, Market, dataset_body, digest, quality, terms

DEADLINE = T0 + 37 * DAY_MS


@pytest.fixture
def market() -> Market:
    m = Market()
    m.chain.ok(
        m.supplier,
        "dataset.publish",
        dataset_body(
            "ds2",
            title="Coolant temperature",
            tags=["thermal"],
            format="parquet",
            quality=quality(machine_type="lathe"),
        ),
    )
    return m


def ids(results: list[dict[str, object]]) -> list[str]:
    return [str(r["id"]) for r in results]


def test_search_by_text_matches_every_word_case_insensitively(market):
    kv = market.chain.kv
    assert ids(queries.search_datasets(kv, text="SPINDLE line")) == ["ds1"]
    assert ids(queries.search_datasets(kv, text="lathe")) == ["ds2"]
    assert ids(queries.search_datasets(kv, text="spindle lathe")) == []


def test_search_by_tag_supplier_and_fields(market):
    kv, supplier = market.chain.kv, market.supplier.account_id
    assert ids(queries.search_datasets(kv, tag="thermal")) == ["ds2"]
    assert ids(queries.search_datasets(kv, supplier=supplier)) == ["ds1", "ds2"]
    assert ids(queries.search_datasets(kv, supplier=market.consumer.account_id)) == []
    assert ids(queries.search_datasets(kv, fields={"format": "parquet"})) == ["ds2"]
    found = queries.search_datasets(kv, fields={"quality.machine_type": "CNC milling centre"})
    assert ids(found) == ["ds1"]
    assert found[0]["merkle_root"] == digest("root ds1").hex()


def test_search_pages_and_skips_withdrawn_datasets_unless_asked(market):
    kv = market.chain.kv
    assert ids(queries.search_datasets(kv, limit=1)) == ["ds1"]
    assert ids(queries.search_datasets(kv, after="ds1")) == ["ds2"]
    market.chain.ok(market.supplier, "dataset.withdraw", {"dataset_id": "ds1", "reason": ""})
    assert ids(queries.search_datasets(kv, tag="cnc")) == []
    assert ids(queries.search_datasets(kv, tag="cnc", include_withdrawn=True)) == ["ds1"]


def test_search_refuses_unknown_fields_and_bad_limits(market):
    with pytest.raises(ValueError, match="colour"):
        queries.search_datasets(market.chain.kv, fields={"colour": "red"})
    with pytest.raises(ValueError, match="limit"):
        queries.search_datasets(market.chain.kv, limit=0)


def test_get_account_and_dataset_are_json_ready(market):
    account = queries.get_account(market.chain.kv, market.supplier.account_id)
    assert account is not None
    assert account["public_key"] == market.supplier.public_key.hex()
    assert account["roles"] == ["supplier"]
    assert queries.get_account(market.chain.kv, "did:key:zNobody") is None
    dataset = queries.get_dataset(market.chain.kv, "ds1")
    assert dataset is not None and dataset["status"] == "published"


def test_contract_view_has_every_version_signature_and_review(market):
    chain, reviewer = market.chain, market.reviewer.account_id
    market.offer(reviewer=reviewer)
    chain.ok(
        market.consumer,
        "contract.counter",
        {"contract_id": "c1", "version": 1, "terms": terms(reviewer=reviewer, price_minor=5)},
    )
    market.sign(market.consumer, version=2, reviewer=reviewer, price_minor=5)
    market.sign(market.supplier, version=2, reviewer=reviewer, price_minor=5)
    chain.ok(
        market.reviewer,
        "contract.review",
        {"contract_id": "c1", "version": 2, "decision": "approve", "comment": "fine"},
    )
    chain.ok(market.node, "access.grant", {"contract_id": "c1", "sealed_key": b"k" * 80})
    view = queries.get_contract(chain.kv, "c1", at_ms=chain.time_ms)
    assert view is not None
    assert (view["status"], view["effective_status"]) == ("ACTIVE", "ACTIVE")
    assert [v["version"] for v in view["versions"]] == [1, 2]
    assert view["versions"][0]["superseded"]["height"] == view["versions"][1]["created"]["height"]
    assert [s["account"] for s in view["versions"][1]["signatures"]] == [
        market.consumer.account_id,
        market.supplier.account_id,
    ]
    assert view["versions"][1]["review"]["comment"] == "fine"
    assert view["access_grants"][0]["sealed_key"] == (b"k" * 80).hex()
    expired = queries.get_contract(chain.kv, "c1", at_ms=T0 + 30 * DAY_MS)
    assert expired is not None and expired["effective_status"] == "EXPIRED"
    assert queries.get_contract(chain.kv, "nope", at_ms=0) is None


def test_contracts_are_listed_by_account_and_by_dataset(market):
    market.activate("c1")
    market.offer("c2")
    kv, now = market.chain.kv, market.chain.time_ms
    listed = queries.list_contracts(kv, at_ms=now, account=market.consumer.account_id)
    assert [c["id"] for c in listed] == ["c1", "c2"]
    active = queries.list_contracts(kv, at_ms=now, dataset="ds1", status="ACTIVE")
    assert [c["id"] for c in active] == ["c1"]
    assert queries.list_contracts(kv, at_ms=now, account=market.reviewer.account_id) == []
    with pytest.raises(ValueError):
        queries.list_contracts(kv, at_ms=now)


def test_receipts_are_listed_in_delivery_order_with_paging(market):
    market.activate()
    for i in range(3):
        market.chain.ok(
            market.node,
            "delivery.receipt",
            {
                "contract_id": "c1",
                "dataset_id": "ds1",
                "first_chunk": i,
                "last_chunk": i,
                "byte_count": 1,
                "content_hash": digest(str(i)),
            },
        )
    kv = market.chain.kv
    receipts = queries.contract_receipts(kv, "c1")
    assert [r["first_chunk"] for r in receipts] == [0, 1, 2]
    assert [r["n"] for r in queries.contract_receipts(kv, "c1", after=1, limit=1)] == [2]
    assert queries.get_receipt(kv, bytes.fromhex(receipts[0]["id"])) == receipts[0]


def test_overdue_disposals_list_outstanding_and_late_attestations(market):
    market.activate("c1")
    market.activate("c2")
    market.activate("c3")
    chain = market.chain
    chain.ok(market.consumer, "disposal.attest", {**_dispose("c3"), "disposed_at_ms": T0})
    assert queries.overdue_disposals(chain.kv, at_ms=DEADLINE) == []
    chain.run(at_ms=DEADLINE + 100)
    chain.ok(market.consumer, "disposal.attest", {**_dispose("c2"), "disposed_at_ms": DEADLINE})
    overdue = queries.overdue_disposals(chain.kv, at_ms=DEADLINE + 1000)
    assert [o["contract_id"] for o in overdue] == ["c1", "c2"]
    c1, c2 = overdue
    assert (c1["attestation"], c1["overdue_by_ms"]) == (None, 1000)
    assert c2["attestation"]["overdue"] is True
    assert c2["overdue_by_ms"] == chain.time_ms - DEADLINE


def _dispose(contract_id: str) -> dict[str, object]:
    return {"contract_id": contract_id, "method": "crypto-erase"}


def test_audit_trails_list_entries_in_order_with_height_tx_and_time(market):
    market.activate()
    chain = market.chain
    raw = chain.tx(market.supplier, "contract.terminate", {"contract_id": "c1", "reason": "end"})
    chain.run(raw)
    trail = queries.audit_trail(chain.kv, "contract", "c1")
    assert [e["type"] for e in trail] == [
        "contract.offer",
        "contract.sign",
        "contract.sign",
        "contract.terminate",
    ]
    assert [e["seq"] for e in trail] == [1, 2, 3, 4]
    assert trail[-1]["tx_id"] == chain.tx_id(raw).hex()
    assert (trail[-1]["height"], trail[-1]["time_ms"]) == (chain.height, chain.time_ms)
    assert trail[-1]["actor"] == market.supplier.account_id
    assert "end" in trail[-1]["summary"]
    heights = [e["height"] for e in trail]
    assert heights == sorted(heights)
    dataset_types = [e["type"] for e in queries.audit_trail(chain.kv, "dataset", "ds1")]
    assert dataset_types[0] == "dataset.publish" and dataset_types[-1] == "contract.terminate"
    consumer_trail = queries.audit_trail(chain.kv, "account", market.consumer.account_id)
    assert consumer_trail[0]["type"] == "account.register"
    assert [e["seq"] for e in queries.audit_trail(chain.kv, "contract", "c1", after=2)] == [3, 4]
    with pytest.raises(ValueError):
        queries.audit_trail(chain.kv, "block", "1")


def test_refused_transactions_leave_no_audit_entry(market):
    market.offer()
    before = queries.audit_trail(market.chain.kv, "contract", "c1")
    body = {"contract_id": "c1", "version": 1, "terms_hash": digest("wrong")}
    market.chain.refused("terms_hash_mismatch", market.consumer, "contract.sign", body)
    assert queries.audit_trail(market.chain.kv, "contract", "c1") == before
