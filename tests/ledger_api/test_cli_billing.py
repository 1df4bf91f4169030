"""``mdtp invoice|dispute|supplier`` and the billing flags of ``mdtp contract offer``: each
command parsed, run through the SDK against the real trading routes (a one-process chain
executes the transactions) and printed; only the HTTPS connection is replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mdtp.node.cli import main
from mdtp.node.cli import trading as trading_cli
from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.ledger.trading import layout
from tests.ledger.helpers import DAY_MS
from tests.ledger.test_disputes import DisputeMarket
from tests.ledger_api.test_billing_routes import RoutedNode, fetched_copy, routes_app


class Connect:
    """Stands in for ``NodeClient(...)`` in the CLI: a node over the test routes."""

    def __init__(self, market: DisputeMarket) -> None:
        self.market = market

    def __call__(self, *_args: Any, reader: SigningKey | None = None, **_kw: Any) -> Connect:
        self.reader = reader
        return self

    async def __aenter__(self) -> RoutedNode:
        self.http: TestClient[Any, Any] = TestClient(TestServer(routes_app(self.market)))
        await self.http.start_server()
        node = RoutedNode(self.market, self.http)
        node.reader = self.reader
        return node

    async def __aexit__(self, *_exc: object) -> None:
        await self.http.close()


@pytest.fixture
def market(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> DisputeMarket:
    m = DisputeMarket()
    monkeypatch.setattr(trading_cli, "NodeClient", Connect(m))
    monkeypatch.setenv("MDTP_NODE", "127.0.0.1:9")
    monkeypatch.setenv("MDTP_CA", str(tmp_path / "ca.pem"))
    for var in ("MDTP_CLUSTER", "MDTP_MEMBER", "MDTP_CERT", "MDTP_CERT_KEY"):
        monkeypatch.delenv(var, raising=False)
    return m


def key(tmp_path: Path, name: str, signer: SigningKey) -> str:
    path = tmp_path / f"{name}.json"
    save_key(path, signer)
    return str(path)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_invoices_are_listed_paid_and_acknowledged(
    market: DisputeMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    market.arbitrated(billing={"payment_due_ms": 0, "suspend_when_overdue": False})
    market.chain.run()
    consumer = key(tmp_path, "consumer", market.consumer)
    supplier = key(tmp_path, "supplier", market.supplier)
    doc = run_json(capsys, "invoice", "list", "c1", "--key", consumer)
    assert [i["status"] for i in doc["invoices"]] == ["OVERDUE"]
    assert main(["invoice", "list", "c1", "--key", consumer]) == 0
    out = capsys.readouterr().out
    assert "one_time, charged 150000" in out and "c1/0" in out and "OVERDUE" in out
    rows = run_json(capsys, "invoice", "overdue", "--key", consumer)["overdue"]
    assert [r["id"] for r in rows] == ["c1/0"]
    assert main(["invoice", "overdue", "--key", consumer]) == 0
    assert "c1/0" in capsys.readouterr().out

    code = main(
        ["invoice", "pay", "c1/0", "--amount", "1", "--reference", "R", "--key", consumer, "--json"]
    )
    assert code == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "amount_mismatch"
    paid = run_json(
        capsys,
        "invoice",
        "pay",
        "c1/0",
        "--amount",
        "150000",
        "--reference",
        "SEPA 7",
        "--key",
        consumer,
    )
    assert paid["status"] == "committed"
    assert main(["invoice", "ack", "c1/0", "--key", supplier]) == 0
    assert "acknowledged" in capsys.readouterr().out
    shown = run_json(capsys, "invoice", "show", "c1/0", "--key", consumer)
    assert shown["status"] == "ACKNOWLEDGED" and shown["payments"][0]["reference"] == "SEPA 7"
    assert main(["invoice", "show", "c1/0", "--key", consumer]) == 0
    assert "paid 150000 EUR (SEPA 7), acknowledged" in capsys.readouterr().out


def test_a_dispute_is_opened_from_the_fetched_copy_answered_and_resolved(
    market: DisputeMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    market.arbitrated(billing={"payment_due_ms": DAY_MS, "suspend_when_overdue": False})
    market.deliver(0, 3)
    consumer = key(tmp_path, "consumer", market.consumer)
    supplier = key(tmp_path, "supplier", market.supplier)
    reviewer = key(tmp_path, "reviewer", market.reviewer)
    out = fetched_copy(tmp_path)
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF")
    code = main(
        [
            "dispute",
            "open",
            "c1",
            "--id",
            "d1",
            "--file",
            str(out),
            "--chunks",
            "1,3",
            "--statement",
            "wrong machine",
            "--evidence",
            str(report),
            "--key",
            consumer,
        ]
    )
    assert code == 0, capsys.readouterr()
    assert "opened dispute d1" in capsys.readouterr().out
    code = main(
        [
            "dispute",
            "answer",
            "d1",
            "--statement",
            "calibrated",
            "--evidence-hash",
            "ab" * 32,
            "--key",
            supplier,
        ]
    )
    assert code == 0
    code = main(
        [
            "dispute",
            "resolve",
            "d1",
            "--decision",
            "settled",
            "--refund",
            "1000",
            "--comment",
            "half",
            "--key",
            reviewer,
        ]
    )
    assert code == 0
    assert "resolved dispute d1: settled, refund 1000" in capsys.readouterr().out
    [listed] = run_json(capsys, "dispute", "list", "c1", "--key", consumer)
    assert listed["status"] == "RESOLVED" and [c["index"] for c in listed["chunks"]] == [1, 3]
    assert main(["dispute", "list", "c1", "--key", consumer]) == 0
    assert "settled" in capsys.readouterr().out
    shown = run_json(capsys, "dispute", "show", "d1", "--key", reviewer)
    assert shown["resolution"]["refund_minor"] == 1000
    assert main(["dispute", "show", "d1", "--key", reviewer]) == 0
    assert "supplier: calibrated" in capsys.readouterr().out
    record = run_json(capsys, "supplier", "record", market.supplier.account_id)
    assert (record["disputes_opened"], record["disputes_settled"]) == (1, 1)
    assert main(["supplier", "record", market.supplier.account_id]) == 0
    assert "1 disputes opened (0 upheld, 1 settled" in capsys.readouterr().out
    # the catalog shows the supplier's track record with each dataset
    assert main(["dataset", "show", "ds1"]) == 0
    assert "1 contracts, 1 disputes (0 upheld, 1 settled, 0 rejected)" in capsys.readouterr().out


def test_dispute_evidence_errors_are_the_users_to_fix(
    market: DisputeMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer = key(tmp_path, "consumer", market.consumer)
    out = fetched_copy(tmp_path)
    base = ["dispute", "open", "c1", "--id", "d1", "--statement", "s", "--key", consumer]
    assert main([*base, "--evidence-hash", "ab" * 32]) == 2
    assert "--file OUT --chunks" in capsys.readouterr().err
    assert main([*base, "--file", str(out), "--chunks", "1,x", "--evidence-hash", "ab"]) == 2
    assert "--evidence" in capsys.readouterr().err
    assert main([*base, "--file", str(out), "--chunks", "1,x", "--evidence-hash", "ab" * 32]) == 2
    assert "chunk indices" in capsys.readouterr().err
    assert main([*base, "--file", str(out), "--chunks", "99", "--evidence-hash", "ab" * 32]) == 2
    assert "outside 0..9" in capsys.readouterr().err


def test_an_offer_carries_billing_terms_and_an_arbiter(
    market: DisputeMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supplier = key(tmp_path, "supplier", market.supplier)
    code = main(
        [
            "contract",
            "offer",
            "--key",
            supplier,
            "--id",
            "c9",
            "--dataset",
            "ds1",
            "--consumer",
            market.consumer.account_id,
            "--purpose",
            "training",
            "--end",
            "+60d",
            "--max-downloads",
            "3",
            "--disposal-method",
            "crypto-erase",
            "--disposal-deadline",
            "+90d",
            "--price-minor",
            "1000",
            "--price-model",
            "pay_per_use",
            "--billing-unit",
            "chunk",
            "--billing-period",
            "30d",
            "--payment-due",
            "14d",
            "--suspend-when-overdue",
            "--arbiter",
            market.reviewer.account_id,
            "--terms-document-hash",
            "ab" * 32,
        ]
    )
    assert code == 0, capsys.readouterr()
    version = layout.read(market.chain.kv, layout.version_key("c9", 1))
    assert version["terms"]["billing"] == {
        "unit": "chunk",
        "period_ms": 30 * DAY_MS,
        "payment_due_ms": 14 * DAY_MS,
        "suspend_when_overdue": True,
    }
    assert version["terms"]["arbiter"] == market.reviewer.account_id
    code = main(
        [
            "contract",
            "offer",
            "--key",
            supplier,
            "--id",
            "c8",
            "--dataset",
            "ds1",
            "--consumer",
            market.consumer.account_id,
            "--purpose",
            "training",
            "--end",
            "+60d",
            "--max-downloads",
            "3",
            "--disposal-method",
            "crypto-erase",
            "--disposal-deadline",
            "+90d",
            "--price-minor",
            "1000",
            "--billing-period",
            "30x",
            "--terms-document-hash",
            "ab" * 32,
        ]
    )
    assert code == 2 and "cannot read duration" in capsys.readouterr().err
