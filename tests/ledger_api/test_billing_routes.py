"""Billing and disputes end to end through the SDK: TradingClient builds and signs the
bodies, a one-process chain executes them, and the reads go through the real API routes
(``node/api/trading.py``) over HTTP. Authorisation itself (``node/api/auth.py``) is tested
on a real node by ``tests/api_contract``; here a test middleware names the signed reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mdtp.node.api import auth
from mdtp.node.api import trading as trading_routes
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading.contracts import Status
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.data import DataError, dispute_chunks, evidence_path, file_sha256
from mdtp.node.sdk.trading import TradingClient, TxFailed
from tests.ledger.helpers import DAY_MS
from tests.ledger.test_disputes import DIGESTS, TREE, DisputeMarket
from tests.ledger_api.test_trading_client import LedgerNode

READER_HEADER = "X-Test-Reader"


class Store:
    """What the trading routes read of a block store, from the test chain."""

    def __init__(self, market: DisputeMarket) -> None:
        self.chain = market.chain

    @property
    def state(self) -> Any:
        return self.chain.kv

    def tip(self) -> tuple[int, bytes]:
        return self.chain.height, b""

    def record(self, height: int) -> Any:
        return SimpleNamespace(timestamp_ms=self.chain.time_ms)


@web.middleware
async def as_reader(request: web.Request, handler: Any) -> web.StreamResponse:
    request[auth.READER] = request.headers.get(READER_HEADER, "")
    response: web.StreamResponse = await handler(request)
    return response


class RoutedNode(LedgerNode):
    """Submits execute a block of the market's chain; reads go to the real routes."""

    def __init__(self, market: DisputeMarket, http: TestClient[Any, Any]) -> None:
        super().__init__()
        self.ledger = market.chain
        self.http = http
        self.reader: SigningKey | None = None  # the CLI's --key, as on a NodeClient

    async def get(self, /, path: str, **params: str) -> Any:
        if path.endswith("/nonce"):
            return await super().get(path)
        return await self._read(path, None, params)

    async def get_signed(
        self, /, path: str, reader: SigningKey | None = None, **params: str
    ) -> Any:
        return await self._read(path, reader, params)

    async def _read(self, path: str, reader: SigningKey | None, params: dict[str, str]) -> Any:
        reader = reader or self.reader
        headers = {READER_HEADER: reader.account_id} if reader is not None else {}
        response = await self.http.get(path, params=params, headers=headers)
        doc = json.loads(await response.text())
        if response.status != 200:
            raise ApiError(response.status, doc["error"], doc["message"])
        return doc


def routes_app(market: DisputeMarket) -> web.Application:
    app = web.Application(middlewares=[as_reader])
    trading_routes.add_routes(app, Store(market), 0, None, chain_id="test")  # type: ignore[arg-type]
    return app


@pytest.fixture
async def setup() -> AsyncIterator[tuple[DisputeMarket, TradingClient]]:
    market = DisputeMarket()
    async with TestClient(TestServer(routes_app(market))) as http:
        yield market, TradingClient(RoutedNode(market, http))


def fetched_copy(tmp_path: Path) -> Path:
    """A completed fetch's output and the chunk hashes ``mdtp data fetch`` keeps with it."""
    out = tmp_path / "spindle.csv"
    out.write_bytes(b"plaintext")
    doc = {
        "contract_id": "c1",
        "dataset_id": "ds1",
        "merkle_root": TREE.root.hex(),
        "chunk_hashes": [d.hex() for d in DIGESTS],
    }
    evidence_path(out).write_text(json.dumps(doc))
    return out


async def test_a_billed_contract_is_paid_disputed_and_refunded_through_the_sdk(
    setup: tuple[DisputeMarket, TradingClient], tmp_path: Path
) -> None:
    m, t = setup
    m.arbitrated(billing={"payment_due_ms": DAY_MS, "suspend_when_overdue": True})
    m.deliver(0, 3)
    listed = await t.invoices("c1", reader=m.consumer)
    assert listed["billing"]["billed"] is True and listed["billing"]["charged_minor"] == 150_000
    [invoice] = listed["invoices"]
    assert invoice["id"] == "c1/0" and invoice["status"] == "DUE"
    assert invoice == await t.invoice("c1/0", reader=m.supplier)

    with pytest.raises(TxFailed) as refused:
        await t.confirm_payment(
            m.consumer, "c1/0", amount_minor=1, currency="EUR", reference="SEPA 1"
        )
    assert refused.value.reason == "amount_mismatch" and refused.value.hint
    await t.pay_invoice(m.consumer, "c1/0", reference="SEPA 1")
    await t.acknowledge_payment(m.supplier, "c1/0")
    assert (await t.invoice("c1/0", reader=m.consumer))["status"] == "ACKNOWLEDGED"

    report = tmp_path / "lab-report.pdf"
    report.write_bytes(b"%PDF readings from machine 7")
    chunks = dispute_chunks(fetched_copy(tmp_path), [1, 3])
    await t.open_dispute(
        m.consumer,
        "d1",
        "c1",
        statement="chunks 1 and 3 hold another machine's readings",
        evidence_hash=file_sha256(report),
        chunks=chunks,
    )
    await t.answer_dispute(m.supplier, "d1", statement="calibrated", evidence_hash=b"\x01" * 32)
    await t.resolve_dispute(m.reviewer, "d1", decision="settled", refund_minor=50_000)
    dispute = await t.dispute("d1", reader=m.reviewer)
    assert dispute["status"] == "RESOLVED" and dispute["evidence_hash"] == file_sha256(report).hex()
    assert [c["index"] for c in dispute["chunks"]] == [1, 3]
    assert [d["id"] for d in await t.disputes("c1", reader=m.consumer)] == ["d1"]
    record = await t.supplier_record(m.supplier.account_id)
    assert (record["contracts"], record["disputes_opened"], record["disputes_settled"]) == (1, 1, 1)
    summary = (await t.invoices("c1", reader=m.consumer))["billing"]
    assert summary["refunded_minor"] == 50_000 and summary["credit_outstanding_minor"] == 50_000
    shown = await t.node.get("/v1/datasets/ds1")  # the catalog shows the track record
    assert shown["supplier_record"] == {
        **record,
        "contracts_by_status": {**{s.value: 0 for s in Status}, "ACTIVE": 1},
        "contracts_by_status_complete": True,
    }


async def test_overdue_invoices_list_only_contracts_the_reader_may_read(
    setup: tuple[DisputeMarket, TradingClient],
) -> None:
    m, t = setup
    m.arbitrated(billing={"payment_due_ms": 0, "suspend_when_overdue": True})
    m.chain.run()
    rows = (await t.overdue_invoices(reader=m.consumer))["overdue"]
    assert [(r["id"], r["status"]) for r in rows] == [("c1/0", "OVERDUE")]
    assert (await t.overdue_invoices(reader=m.reviewer))["overdue"] == rows  # the arbiter
    stranger = m.chain.user("consumer", member="m2", name="Gamma")
    assert (await t.overdue_invoices(reader=stranger))["overdue"] == []
    summary = (await t.invoices("c1", reader=m.consumer))["billing"]
    assert summary["access_suspended"] is True


async def test_unknown_subjects_answer_404_and_bad_ids_400(
    setup: tuple[DisputeMarket, TradingClient],
) -> None:
    m, t = setup
    m.arbitrated()
    assert (await t.invoices("c1", reader=m.consumer))["invoices"] == []  # billed off-ledger
    for call in (
        t.invoices("nope", reader=m.consumer),
        t.invoice("c1/0", reader=m.consumer),
        t.dispute("nope", reader=m.consumer),
        t.disputes("nope", reader=m.consumer),
        t.supplier_record("did:key:znope"),
    ):
        with pytest.raises(ApiError) as e:
            await call
        assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        await t.node.get_signed("/v1/contracts/c1/invoices/x1", m.consumer)
    assert e.value.status == 400
    with pytest.raises(ValueError):
        await t.invoice("c1", reader=m.consumer)


def test_dispute_evidence_needs_the_kept_chunk_hashes(tmp_path: Path) -> None:
    out = fetched_copy(tmp_path)
    with pytest.raises(DataError) as e:
        dispute_chunks(out, [10])
    assert e.value.reason == "bad_chunk_range"
    with pytest.raises(DataError) as e:
        dispute_chunks(tmp_path / "never-fetched.csv", [0])
    assert e.value.reason == "no_evidence"
    doc = json.loads(evidence_path(out).read_text())
    evidence_path(out).write_text(json.dumps({**doc, "merkle_root": "00" * 32}))
    with pytest.raises(DataError) as e:
        dispute_chunks(out, [0])
    assert e.value.reason == "bad_chunk"
