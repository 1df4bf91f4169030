"""The market on a real 4-node cluster (issue #17): a pay-per-download contract and a
pay-per-query clean-room contract charged by the ledger from their committed receipts, the
closed invoices paid by the consumer and acknowledged by the supplier, a dispute over
delivered chunks (with their Merkle proofs) answered and settled by the arbiter with a refund
that billing credits, the supplier's track record counting it; all four nodes derive the same
billing state at the same height; the agreements export as ODRL policies that map back to the
signed terms."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops import cluster
from mdtp.node.ops.testbed import client_for, make_contract, register_account
from mdtp.node.sdk.compute import publish_for_analysis, query
from mdtp.node.sdk.data import dispute_chunks, fetch, file_sha256, now_ms, publish
from tests.compute import attacks
from tests.support.workload import apis_of, client

pytestmark = pytest.mark.cluster
PERIOD_MS = 5_000
PER_DOWNLOAD = 250
PER_QUERY = 40
REFUND = 300


async def _same_height(cluster_dir: Path) -> int:
    """Wait until every node has executed the same last block (nothing else writes here)."""
    for _ in range(300):
        heights: set[int] = set()
        for api in apis_of(cluster_dir):
            async with client(cluster_dir, api, timeout_s=10) as c:
                heights.add(int((await c.status())["height"]))
        if len(heights) == 1:
            return heights.pop()
        await asyncio.sleep(0.2)
    raise AssertionError(f"heights differ: {heights}")


async def _wait_past(ms: int) -> None:
    await asyncio.sleep(max(0, ms - now_ms()) / 1000 + 0.1)


async def test_pay_per_use_downloads_and_queries_to_paid_invoices_and_a_refunded_dispute(
    running_cluster: Path, tmp_path: Path
) -> None:
    nodes = cluster.load_cluster(running_cluster)
    supplier = await register_account(running_cluster, nodes[0], ["supplier"], "factory")
    consumer = await register_account(running_cluster, nodes[1], ["consumer"], "ai dev")
    arbiter = await register_account(running_cluster, nodes[2], ["reviewer"], "arbiter")
    source = tmp_path / "fleet.csv"
    source.write_bytes(attacks.csv_bytes())
    end = now_ms() + 30 * 60_000  # 360 periods of 5 s
    common: dict[str, Any] = {
        "price_model": "pay_per_use",
        "arbiter": arbiter.account_id,
        "use_end_ms": end,
        "disposal_deadline_ms": end,
    }
    async with client_for(running_cluster, nodes[0], reader=supplier) as c:
        await publish_for_analysis(
            c, supplier, source, dataset_id="fleet", title="CNC fleet", progress=False
        )
        await publish(
            c,
            supplier,
            source,
            dataset_id="fleet-raw",
            title="raw",
            chunk_bytes=1024,
            progress=False,
        )
        downloads = await make_contract(
            c,
            supplier,
            consumer,
            "fleet-raw",
            price_minor=PER_DOWNLOAD,
            billing=b.Billing(
                unit="download",
                period_ms=PERIOD_MS,
                payment_due_ms=60_000,
                suspend_when_overdue=True,
            ),
            **common,
        )
        queries = await make_contract(
            c,
            supplier,
            consumer,
            "fleet",
            price_minor=PER_QUERY,
            analysis_rule=b.AnalysisRule.from_json(attacks.rule()),
            billing=b.Billing(
                unit="query", period_ms=PERIOD_MS, payment_due_ms=60_000, suspend_when_overdue=False
            ),
            **common,
        )

    # use: two downloads and three queries, each recorded by the supplier's node
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    async with client_for(running_cluster, nodes[1], reader=consumer) as c:
        for out in (first, second):
            await fetch(
                c,
                consumer,
                downloads,
                out,
                progress=False,
                grant_timeout_s=60,
                registry=tmp_path / "copies",
            )
            assert out.read_bytes() == source.read_bytes()
        for sql in attacks.ALLOWED[:3]:
            await query(c, consumer, queries, sql)
        receipts = await c.trading.contract_receipts(downloads)
        assert len(receipts) == 2
    used_until = now_ms()

    # the charges: derived from the receipts alone, in the periods they were authorised in
    async with client_for(running_cluster, nodes[1], reader=consumer) as c:
        billed = {cid: await c.trading.invoices(cid) for cid in (downloads, queries)}
    for cid, quantity, unit_price in ((downloads, 2, PER_DOWNLOAD), (queries, 3, PER_QUERY)):
        usage = [
            line
            for inv in billed[cid]["invoices"]
            for line in inv["lines"]
            if line["kind"] == "usage"
        ]
        assert sum(line["quantity"] for line in usage) == quantity, usage
        assert all(line["unit_price_minor"] == unit_price for line in usage)
        assert billed[cid]["billing"]["charged_minor"] == quantity * unit_price
    usage_receipts = {
        line["receipt_id"]
        for inv in billed[downloads]["invoices"]
        for line in inv["lines"]
        if line["kind"] == "usage"
    }
    assert usage_receipts == {r["id"] for r in receipts}

    # once the periods of use have closed (a block after them), the consumer pays each
    # invoice with something outstanding and the supplier acknowledges
    await _wait_past(used_until + PERIOD_MS + 500)
    paid: list[str] = []
    async with client_for(running_cluster, nodes[1], reader=consumer) as c:
        for cid in (downloads, queries):
            for inv in (await c.trading.invoices(cid))["invoices"]:
                if inv["outstanding_minor"] > 0:
                    # closed by the time the payment's block executes; read as of the last
                    # block, which may still be inside the period
                    assert inv["status"] in ("DUE", "OPEN"), inv
                    await c.trading.pay_invoice(consumer, inv["id"], reference=f"SEPA {inv['id']}")
                    paid.append(inv["id"])
    assert paid
    async with client_for(running_cluster, nodes[0], reader=supplier) as c:
        for invoice_id in paid:
            await c.trading.acknowledge_payment(supplier, invoice_id)

    # a dispute about two delivered chunks, with their Merkle proofs from the fetched copy
    dispute_id = f"d-{downloads}"
    evidence = tmp_path / "lab-report.txt"
    evidence.write_text("chunks 0 and 1: spindle load out of the published calibration\n")
    async with client_for(running_cluster, nodes[1], reader=consumer) as c:
        await c.trading.open_dispute(
            consumer,
            dispute_id,
            downloads,
            statement="spindle load outside the calibrated range",
            evidence_hash=file_sha256(evidence),
            chunks=dispute_chunks(first, [0, 1]),
        )
    async with client_for(running_cluster, nodes[0], reader=supplier) as c:
        await c.trading.answer_dispute(
            supplier, dispute_id, statement="calibrated as published", evidence_hash=bytes(32)
        )
    async with client_for(running_cluster, nodes[2], reader=arbiter) as c:
        await c.trading.resolve_dispute(
            arbiter, dispute_id, decision="settled", refund_minor=REFUND, comment="split"
        )
        record = await c.trading.supplier_record(supplier.account_id)
    assert record["disputes_opened"] == 1 and record["disputes_settled"] == 1, record

    # the agreements as ODRL 2.2 policies (with the billing terms) and the catalog as
    # DCAT-AP, read from the cluster: each policy maps back to the signed terms
    async with client_for(running_cluster, nodes[3], reader=consumer) as c:
        for cid in (downloads, queries):
            policy = await c.trading.contract_odrl(cid)
            assert policy["@type"] in ("Agreement", "odrl:Agreement"), policy["@type"]
            checked = await c.trading.check_odrl(policy, cid)
            assert checked["matches"], checked
        catalog = await c.trading.catalog_dcat()
    assert "fleet-raw" in json.dumps(catalog)

    # every node derives the same billing state at the same height
    height = await _same_height(running_cluster)
    views = []
    for node in nodes:
        async with client_for(running_cluster, node, reader=consumer) as c:
            doc = {cid: await c.trading.invoices(cid) for cid in (downloads, queries)}
            doc["dispute"] = await c.trading.dispute(dispute_id)
            views.append(json.dumps(doc, sort_keys=True))
    assert len(set(views)) == 1, f"billing state differs between nodes at height {height}"
    final = json.loads(views[0])
    assert final[downloads]["as_of_height"] == height
    assert final["dispute"]["status"] == "RESOLVED"
    summary = final[downloads]["billing"]
    assert summary["refunded_minor"] == REFUND
    assert summary["paid_minor"] == 2 * PER_DOWNLOAD
    assert final[queries]["billing"]["paid_minor"] == 3 * PER_QUERY
    refunds = [
        line
        for inv in final[downloads]["invoices"]
        for line in inv["lines"]
        if line["kind"] == "refund"
    ]
    assert [line["amount_minor"] for line in refunds] == [REFUND], refunds
    for cid in (downloads, queries):
        for inv in final[cid]["invoices"]:
            if inv["id"] in paid:
                assert inv["status"] == "ACKNOWLEDGED", inv
