"""Off-chain datasets on a real 4-node cluster: publish on node0 (the supplier's member),
fetch through node1 (the consumer's member) over the mutual-TLS peer link, every refusal,
resume, tampering on both sides, receipts and disposal on the ledger.

node0 runs with the Byzantine test hook for the dataset ``byz-ds`` only: it serves that
dataset's chunks with one byte flipped after its own disk check.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.data.protocol import sign_fetch_request
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.merkle import verify_proof
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.ops.testbed import client_for, make_contract, register_account
from mdtp.node.sdk.data import DataClient, DataError, dispose, dispute_chunks, fetch, publish
from mdtp.node.testing.tamper import TAMPER_ENV
from tests.support.processes import metric_value

pytestmark = pytest.mark.cluster
MiB = 1024 * 1024


@dataclass
class Trade:
    dir: Path
    supplier_node: ClusterNode
    consumer_node: ClusterNode
    supplier: SigningKey
    consumer: SigningKey
    other_consumer: SigningKey
    source: Path
    small: Path

    def supplier_client(self) -> DataClient:
        return client_for(self.dir, self.supplier_node, reader=self.supplier)

    def consumer_client(self) -> DataClient:
        return client_for(self.dir, self.consumer_node, reader=self.consumer)


@pytest.fixture(scope="module")
def data_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cluster_dir = tmp_path_factory.mktemp("data-cluster")
    # every refusal below is asserted in the supplier's log, all of them relayed by node1 within
    # seconds: more than the default per-source budget of log lines (the security suite tests
    # that limit)
    cluster.init_cluster(cluster_dir, 4, extra_config={"log.remote_lines_per_source": 1000})
    try:
        cluster.up(cluster_dir, timeout_s=90, env={TAMPER_ENV: "byz-ds"})
        yield cluster_dir
    finally:
        cluster.down(cluster_dir)


@pytest.fixture(scope="module")
def trade(data_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Trade:
    nodes = cluster.load_cluster(data_cluster)
    files = tmp_path_factory.mktemp("files")

    async def setup() -> Trade:
        supplier = await register_account(data_cluster, nodes[0], ["supplier"], "supplier")
        consumer = await register_account(data_cluster, nodes[1], ["consumer"], "consumer")
        other = await register_account(data_cluster, nodes[1], ["consumer"], "other consumer")
        source = files / "source.bin"
        with source.open("wb") as f:
            for _ in range(4):
                f.write(os.urandom(16 * MiB))
        small = files / "small.bin"
        small.write_bytes(os.urandom(3000))
        t = Trade(data_cluster, nodes[0], nodes[1], supplier, consumer, other, source, small)
        async with t.supplier_client() as c:
            await publish(c, supplier, source, dataset_id="big-ds", title="64 MiB", progress=False)
            await publish(
                c,
                supplier,
                small,
                dataset_id="small-ds",
                title="small",
                chunk_bytes=1024,
                progress=False,
            )
        return t

    return asyncio.run(setup())


def served_bytes(t: Trade) -> float:
    return metric_value(t.supplier_node, "mdtp_data_served_bytes_total")


def refusals(node: ClusterNode, reason: str) -> float:
    return metric_value(node, "mdtp_data_refusals_total", {"reason": reason})


async def contract(t: Trade, dataset: str = "small-ds", **kw: Any) -> str:
    async with t.supplier_client() as c:
        return await make_contract(c, t.supplier, t.consumer, dataset, **kw)


async def raw_fetch(t: Trade, raw: bytes) -> list[dict[str, Any]]:
    async with t.consumer_client() as c:
        return [rec async for rec in c.fetch_records(raw)]


async def signed(
    t: Trade,
    contract_id: str,
    *,
    signer: SigningKey | None = None,
    first: int = 0,
    last: int = 2,
    expires_in_ms: int = 60_000,
) -> bytes:
    async with t.consumer_client() as c:
        chain_id = await c.chain_id()
    return sign_fetch_request(
        signer or t.consumer,
        chain_id=chain_id,
        contract_id=contract_id,
        first_chunk=first,
        last_chunk=last,
        expires_at_ms=int(time.time() * 1000) + expires_in_ms,
    )


async def wait_for_grant(t: Trade, contract_id: str) -> None:
    async with t.consumer_client() as c:
        for _ in range(100):
            view = await c.contract_view(contract_id)
            if view["contract"]["access_grants"]:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"no grant for {contract_id}")


async def test_64_mib_dataset_is_fetched_byte_identically_with_receipt_and_confirmation(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    contract_id = await contract(t, "big-ds")
    out = tmp_path / "fetched.bin"
    before = served_bytes(t)
    async with t.consumer_client() as c:
        result = await fetch(
            c, t.consumer, contract_id, out, progress=False, registry=tmp_path / "reg"
        )
        view = await c.contract_view(contract_id)
    assert out.read_bytes() == t.source.read_bytes()
    assert result.chunks == 64 and result.resumed_from == 0
    assert served_bytes(t) - before >= 64 * MiB
    [receipt] = view["receipts"]
    assert (receipt["first_chunk"], receipt["last_chunk"]) == (0, 63)
    assert receipt["byte_count"] >= 64 * MiB and receipt["dataset_id"] == "big-ds"
    assert result.confirmed == [receipt["id"]] and receipt["confirmed"] is not None
    types = [e["type"] for e in view["audit"]]
    assert types[-3:] == ["access.grant", "delivery.receipt", "delivery.confirm"]
    assert view["contract"]["downloads"] == 1
    # the fetch kept the chunk hashes a dispute's Merkle evidence is built from
    root = bytes.fromhex(view["contract"]["versions"][0]["dataset_merkle_root"])
    for chunk in dispute_chunks(out, [0, 63]):
        assert verify_proof(root, 64, chunk.index, chunk.chunk_hash, list(chunk.proof))

    async with t.consumer_client() as c:
        disposed = await dispose(c, t.consumer, contract_id, registry=tmp_path / "reg")
        view = await c.contract_view(contract_id)
    assert str(out.resolve()) in disposed["deleted"] and not out.exists()
    assert view["audit"][-1]["type"] == "disposal.attest"
    assert view["contract"]["disposal"]["overdue"] is False


async def test_interrupted_fetch_resumes_from_the_first_missing_chunk(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    contract_id = await contract(t, "big-ds")
    out = tmp_path / "resumed.bin"
    async with t.consumer_client() as c:
        with pytest.raises(DataError) as e:
            await fetch(
                c,
                t.consumer,
                contract_id,
                out,
                progress=False,
                stop_after_chunks=20,
                registry=tmp_path / "reg",
            )
        assert e.value.reason == "interrupted"
        assert not out.exists() and out.with_name("resumed.bin.part").stat().st_size == 20 * MiB
        result = await fetch(
            c, t.consumer, contract_id, out, progress=False, registry=tmp_path / "reg"
        )
        assert result.resumed_from == 20
        assert out.read_bytes() == t.source.read_bytes()
        for _ in range(50):
            view = await c.contract_view(contract_id)
            if len(view["receipts"]) == 2:
                break
            await asyncio.sleep(0.2)
    ranges = sorted((r["first_chunk"], r["last_chunk"]) for r in view["receipts"])
    assert ranges[1] == (20, 63) and ranges[0][0] == 0
    # the hashes of the chunks fetched before the interruption were kept across it
    assert len(dispute_chunks(out, list(range(64)))) == 64


@pytest.mark.parametrize(
    "case",
    [
        "unknown_contract",
        "not_active",
        "contract_expired",
        "contract_terminated",
        "not_consumer",
        "quota_exhausted",
        "bad_signature",
        "replayed_nonce",
        "request_expired",
        "bad_chunk_range",
        "payment_overdue",
    ],
)
async def test_bad_request_is_refused_with_its_reason_and_no_data_byte(
    trade: Trade, case: str
) -> None:
    t = trade
    refusing = t.consumer_node if case in ("unknown_contract", "not_active") else t.supplier_node
    if case == "unknown_contract":
        raw = await signed(t, "no-such-contract")
    elif case == "not_active":
        raw = await signed(t, await contract(t, sign=False))
    elif case == "contract_expired":
        cid = await contract(t, use_end_ms=int(time.time() * 1000) + 4000)
        await wait_for_grant(t, cid)
        await asyncio.sleep(4.5)
        raw = await signed(t, cid)
    elif case == "contract_terminated":
        cid = await contract(t)
        await wait_for_grant(t, cid)
        async with t.consumer_client() as c:
            await c.submit_signed(
                t.consumer,
                "contract.terminate",
                {"contract_id": cid, "reason": "test"},
                chain_id=await c.chain_id(),
            )
        raw = await signed(t, cid)
    elif case == "not_consumer":
        raw = await signed(t, await contract(t), signer=t.other_consumer)
    elif case == "quota_exhausted":
        cid = await contract(t, max_downloads=1)
        records = await raw_fetch(t, await signed(t, cid, first=0, last=0))
        assert records[-1]["t"] == "end"
        raw = await signed(t, cid)
    elif case == "bad_signature":
        tampered = bytearray(await signed(t, await contract(t)))
        tampered[-5] ^= 0x01
        raw = bytes(tampered)
    elif case == "replayed_nonce":
        raw = await signed(t, await contract(t))
        assert (await raw_fetch(t, raw))[-1]["t"] == "end"
    elif case == "request_expired":
        raw = await signed(t, await contract(t), expires_in_ms=-1000)
    elif case == "payment_overdue":  # the one-time invoice is due, and so overdue, at once
        cid = await contract(t, billing=b.Billing(payment_due_ms=0, suspend_when_overdue=True))
        await wait_for_grant(t, cid)
        raw = await signed(t, cid)
    else:
        raw = await signed(t, await contract(t), first=0, last=99)
    served, refused = served_bytes(t), refusals(refusing, case)
    with pytest.raises(DataError) as e:
        await raw_fetch(t, raw)
    assert e.value.reason == case
    assert served_bytes(t) == served
    assert refusals(refusing, case) == refused + 1
    assert f": {case}" in refusing.log_file.read_text()


async def test_chunk_tampered_on_the_supplier_disk_is_detected_there_and_not_served(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    data = tmp_path / "tamper.bin"
    data.write_bytes(os.urandom(3000))
    async with t.supplier_client() as c:
        published = await publish(
            c, t.supplier, data, dataset_id="tamper-ds", title="t", chunk_bytes=1024, progress=False
        )
    digest = published.chunk_digests[1].hex()
    path = t.supplier_node.home / "data" / "chunks" / "objects" / digest[:2] / digest
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    cid = await contract(t, "tamper-ds")
    before = refusals(t.supplier_node, "chunk_corrupt")
    async with t.consumer_client() as c:
        with pytest.raises(DataError) as e:
            await fetch(
                c, t.consumer, cid, tmp_path / "out.bin", progress=False, registry=tmp_path / "reg"
            )
    assert (e.value.reason, e.value.chunk) == ("chunk_corrupt", 1)
    assert refusals(t.supplier_node, "chunk_corrupt") == before + 1


async def test_chunk_tampered_by_a_byzantine_supplier_fails_the_fetch_naming_the_chunk(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    data = tmp_path / "byz.bin"
    data.write_bytes(os.urandom(3000))
    async with t.supplier_client() as c:
        await publish(
            c, t.supplier, data, dataset_id="byz-ds", title="b", chunk_bytes=1024, progress=False
        )
    cid = await contract(t, "byz-ds")
    out = tmp_path / "out.bin"
    async with t.consumer_client() as c:
        with pytest.raises(DataError) as e:
            await fetch(c, t.consumer, cid, out, progress=False, registry=tmp_path / "reg")
    assert (e.value.reason, e.value.chunk) == ("bad_chunk", 0)
    assert "chunk 0" in e.value.message
    assert not out.exists() and out.with_name("out.bin.part").stat().st_size == 0
    assert (
        metric_value(t.consumer_node, "mdtp_data_fetch_failures_total", {"reason": "bad_chunk"})
        >= 1
    )


async def test_disposal_not_attested_by_the_deadline_shows_as_overdue(trade: Trade) -> None:
    t = trade
    end = int(time.time() * 1000) + 3000
    cid = await contract(t, use_end_ms=end, disposal_deadline_ms=end)
    await asyncio.sleep(3.5)
    async with t.consumer_client() as c:
        # overdue is as of the last block: commit one past the deadline through this node
        await make_contract(c, t.supplier, t.consumer, "small-ds", sign=False)
        overdue = await c.overdue_disposals()
    assert cid in [row["contract_id"] for row in overdue]


async def test_an_overdue_invoice_suspends_fetches_until_paid_then_a_dispute_gets_a_refund(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    third = cluster.load_cluster(t.dir)[2]
    arbiter = await register_account(t.dir, third, ["reviewer"], "arbiter")
    billed = b.Billing(payment_due_ms=0, suspend_when_overdue=True)
    cid = await contract(t, billing=billed, arbiter=arbiter.account_id)
    await wait_for_grant(t, cid)
    out, registry = tmp_path / "small.bin", tmp_path / "reg"
    async with t.consumer_client() as c:
        with pytest.raises(DataError) as e:
            await fetch(c, t.consumer, cid, out, progress=False, registry=registry)
        assert e.value.reason == "payment_overdue"
        [invoice] = (await c.trading.invoices(cid))["invoices"]
        assert (invoice["status"], invoice["total_minor"]) == ("OVERDUE", 1000)
        await c.trading.pay_invoice(t.consumer, f"{cid}/0", reference="SEPA 1")
        await fetch(c, t.consumer, cid, out, progress=False, registry=registry)
        assert out.read_bytes() == t.small.read_bytes()
        await c.trading.open_dispute(
            t.consumer,
            f"d-{cid}",
            cid,
            statement="chunks 0 and 2 are not what the schema says",
            evidence_hash=bytes(32),
            chunks=dispute_chunks(out, [0, 2]),
        )
    async with t.supplier_client() as c:
        await c.trading.acknowledge_payment(t.supplier, f"{cid}/0")
        await c.trading.answer_dispute(
            t.supplier, f"d-{cid}", statement="as published", evidence_hash=bytes(32)
        )
    async with client_for(t.dir, third, reader=arbiter) as c:
        await c.trading.resolve_dispute(
            arbiter, f"d-{cid}", decision="upheld", refund_minor=400, comment="partly"
        )
        dispute = await c.trading.dispute(f"d-{cid}")
        record = await c.trading.supplier_record(t.supplier.account_id)
    assert dispute["status"] == "RESOLVED" and [ch["index"] for ch in dispute["chunks"]] == [0, 2]
    assert record["disputes_upheld"] >= 1
    async with t.consumer_client() as c:
        listed = await c.trading.invoices(cid)
    assert listed["invoices"][0]["status"] == "ACKNOWLEDGED"
    assert listed["billing"]["credit_outstanding_minor"] == 400
