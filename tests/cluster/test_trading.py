"""Whole trades on a real 4-node cluster, through the Python SDK and the ``mdtp`` CLI:
accounts registered by member admins, a dataset published and found, a contract offered,
countered, signed by both parties and approved by a reviewer; every refusal of the issue's
"bad input" list checked by reason code; the contract's audit trail in order, each exported
entry verified offline; and the same query answered byte for byte by every node.

One cluster and one market (accounts, datasets) serve the module; the tests run in file
order, and the audit and determinism tests read the contract the SDK trade made."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import SigningKey, load_key, save_key
from mdtp.node.ledger.signer import NONCE_KEPT
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.trading import TradingClient, TxFailed
from tests.support.processes import wait_until

pytestmark = pytest.mark.cluster

DAY_MS = 86_400_000
CLI_TIMEOUT_S = 120


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def metadata(title: str, tags: list[str], machine: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": "Three-axis accelerometer traces, one file per shift.",
        "tags": tags,
        "schema": "time_ms:int,x:int,y:int,z:int",
        "format": "csv",
        "size_bytes": 10_485_760,
        "chunk_count": 10,
        "merkle_root": digest(f"root {title}"),
        "plaintext_digest": digest(f"plain {title}"),
        "quality": {
            "collection_start_ms": 1_700_000_000_000,
            "collection_end_ms": 1_700_000_000_000 + 30 * DAY_MS,
            "machine_type": machine,
            "sampling_rate_millihz": 1_000_000,
            "validation_method": "range checks",
        },
    }


def terms(**overrides: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "delivery_method": "download",
        "purpose": "predictive maintenance model training",
        "use_start_ms": now,
        "use_end_ms": now + 30 * DAY_MS,
        "max_downloads": 3,
        "redistribution_banned": True,
        "disposal_method": "crypto-erase",
        "disposal_deadline_ms": now + 37 * DAY_MS,
        "price_minor": 150_000,
        "currency": "EUR",
        "price_model": "one_time",
        "terms_document_hash": digest("terms document"),
        **overrides,
    }


@dataclass
class Market:
    """Accounts and datasets every test starts from; key files in ``keys``."""

    dir: Path
    keys: Path
    apis: list[str]
    admins: list[SigningKey]
    supplier: SigningKey
    consumer: SigningKey
    reviewer: SigningKey
    outsider: SigningKey  # a consumer of another member, party to nothing
    auditor: SigningKey  # member 0's auditor
    revoked_sdk: SigningKey
    revoked_cli: SigningKey

    def key_file(self, name: str) -> str:
        return str(self.keys / f"{name}.json")

    def client(self, member: int = 0) -> NodeClient:
        """A client of member ``member``, presenting that member's certificate."""
        return NodeClient.of_home(self.apis[member], self.dir / f"node{member}", timeout_s=60)


async def _setup(m: Market) -> None:
    async with m.client() as node:
        t = TradingClient(node)
        for key, admin, roles, name in (
            (m.supplier, 0, ["supplier"], "Acme Machining"),
            (m.consumer, 1, ["consumer"], "Beta Analytics"),
            (m.reviewer, 1, ["reviewer"], "Beta Compliance"),
            (m.outsider, 2, ["consumer"], "Gamma Labs"),
            (m.auditor, 0, ["auditor"], "Acme Internal Audit"),
            (m.revoked_sdk, 0, ["supplier", "consumer"], "Leaver One"),
            (m.revoked_cli, 0, ["supplier", "consumer"], "Leaver Two"),
        ):
            await t.register_account(
                m.admins[admin],
                public_key=key.public_key,
                encryption_public_key=key.encryption_public_key or b"",
                roles=roles,
                display_name=name,
            )
        await t.publish_dataset(
            m.supplier,
            "spindle-line3",
            {**metadata("Spindle vibration line 3", ["vibration", "cnc"], "CNC mill"),
             "supplier_node": "node0"},
        )  # fmt: skip
        await t.publish_dataset(
            m.supplier,
            "gearbox-temp",
            {**metadata("Gearbox temperature", ["thermal"], "gearbox"), "supplier_node": "node0"},
        )
        await t.withdraw_dataset(m.supplier, "gearbox-temp", reason="sensor recall")
        for key in (m.revoked_sdk, m.revoked_cli):
            await t.revoke_account(m.admins[0], key.account_id, reason="left the company")


@pytest.fixture(scope="module")
def market(running_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    nodes = cluster.load_cluster(running_cluster)
    keys = tmp_path_factory.mktemp("keys")
    named = {
        name: SigningKey.generate(with_encryption=True)
        for name in (
            "supplier",
            "consumer",
            "reviewer",
            "outsider",
            "auditor",
            "revoked_sdk",
            "revoked_cli",
        )
    }
    for name, key in named.items():
        save_key(keys / f"{name}.json", key)
    m = Market(
        dir=running_cluster,
        keys=keys,
        apis=[n.api for n in nodes],
        admins=[load_key(n.admin_key_file) for n in nodes],
        **named,
    )
    asyncio.run(_setup(m))
    yield m


def cli(m: Market, *args: str, member: str = "node0") -> subprocess.CompletedProcess[str]:
    """``python -m mdtp.node ARGS`` against the cluster, as a person would run it."""
    env = {**os.environ, "MDTP_CLUSTER": str(m.dir), "MDTP_MEMBER": member}
    return subprocess.run(
        [sys.executable, "-m", "mdtp.node", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        check=False,
    )


def cli_ok(m: Market, *args: str, member: str = "node0") -> str:
    done = cli(m, *args, member=member)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def cli_json(m: Market, *args: str, member: str = "node0") -> Any:
    return json.loads(cli_ok(m, *args, "--json", member=member))


def raw_get(m: Market, member: int, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` as member ``member``'s client, signed by the consumer (a party of the
    contracts these tests read)."""
    home = m.dir / f"node{member}"
    ctx = pki.api_client_context(home / "ca.pem", home / "node.pem", home / "node.key.pem")
    raw_path, _, query = path.partition("?")
    chain_id = json.loads((m.dir / "cluster.json").read_text())["chain_id"]
    headers = signed_read.sign_headers(m.consumer, chain_id, "GET", raw_path, query)
    request = urllib.request.Request(f"https://{m.apis[member]}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=ctx) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


async def tx_reason(t: TradingClient, tx_id: str) -> str | None:
    doc = await t.node.tx(tx_id)
    assert doc["status"] == "failed", doc
    return doc["reason"]  # type: ignore[no-any-return]


async def refused(reason: str, t: TradingClient, call: Any) -> None:
    """``call`` (an SDK coroutine) fails with ``reason``, and the API reports the same."""
    with pytest.raises(TxFailed) as e:
        await call
    assert e.value.reason == reason, e.value
    if e.value.height is None:
        # refused on admission (the ledger's common checks: key, revocation, expiry): the API
        # answered POST /v1/tx with this reason, and nothing of it reached a block
        assert reason in NONCE_KEPT
        with pytest.raises(ApiError) as unknown:
            await t.node.tx(e.value.tx_id)
        assert unknown.value.status == 404
    else:
        assert await tx_reason(t, e.value.tx_id) == reason


def status_of(contract: dict[str, Any]) -> str:
    return str(contract["effective_status"])


# ---- the SDK ------------------------------------------------------------------------------


async def test_sdk_trade_goes_offered_signing_pending_review_active_with_full_history(
    market: Market,
) -> None:
    m = market
    async with m.client(1) as node:
        t = TradingClient(node, reader=m.consumer)
        found = await t.search_datasets(text="spindle vibration", tag="cnc")
        assert [d["id"] for d in found["datasets"]] == ["spindle-line3"]
        assert (await t.search_datasets(text="gearbox"))["datasets"] == []
        withdrawn = await t.search_datasets(text="gearbox", include_withdrawn=True)
        assert [d["status"] for d in withdrawn["datasets"]] == ["withdrawn"]
        by_field = await t.search_datasets(
            supplier=m.supplier.account_id, fields={"quality.machine_type": "CNC mill"}
        )
        assert [d["id"] for d in by_field["datasets"]] == ["spindle-line3"]

        await t.offer(
            m.consumer,
            contract_id="s-trade",
            dataset_id="spindle-line3",
            consumer=m.consumer.account_id,
            terms=terms(reviewer=m.reviewer.account_id),
        )
        assert status_of(await t.contract("s-trade")) == "OFFERED"
        await t.counter(
            m.supplier, "s-trade", terms=terms(reviewer=m.reviewer.account_id, price_minor=180_000)
        )
        after_counter = await t.contract("s-trade")
        assert status_of(after_counter) == "OFFERED" and after_counter["version"] == 2
        await t.sign_contract(m.consumer, "s-trade")
        assert status_of(await t.contract("s-trade")) == "SIGNING"
        await t.sign_contract(m.supplier, "s-trade")
        assert status_of(await t.contract("s-trade")) == "PENDING_REVIEW"
        await t.review(m.reviewer, "s-trade", approve=True, comment="purpose fits")
        contract = await t.contract("s-trade")

    assert status_of(contract) == "ACTIVE" and contract["activated"]["version"] == 2
    v1, v2 = contract["versions"]
    assert v1["author"] == m.consumer.account_id and v1["superseded"] is not None
    assert v1["signatures"] == [] and v1["terms"]["price_minor"] == 150_000
    assert v2["author"] == m.supplier.account_id and v2["superseded"] is None
    assert v2["terms"]["price_minor"] == 180_000
    assert [s["account"] for s in v2["signatures"]] == [
        m.consumer.account_id,
        m.supplier.account_id,
    ]
    assert v2["review"]["decision"] == "approve" and v2["review"]["reviewer"] == (
        m.reviewer.account_id
    )
    heights = [
        v1["created"]["height"],
        v2["created"]["height"],
        *(s["height"] for s in v2["signatures"]),
        v2["review"]["height"],
    ]
    assert heights == sorted(heights) and len(set(heights)) == 5


async def test_sdk_every_bad_step_fails_with_its_reason_code_visible_through_the_api(
    market: Market,
) -> None:
    m = market
    async with m.client(2) as node:
        t = TradingClient(node, reader=m.consumer)
        # a superseded version, a non-party, deleting a signed contract, terminating twice
        await t.offer(
            m.consumer,
            contract_id="s-bad",
            dataset_id="spindle-line3",
            consumer=m.consumer.account_id,
            terms=terms(),
        )
        await t.counter(m.supplier, "s-bad", terms=terms(max_downloads=1))
        await refused("superseded_version", t, t.sign_contract(m.consumer, "s-bad", version=1))
        await refused("not_a_party", t, t.sign_contract(m.outsider, "s-bad"))
        await t.sign_contract(m.consumer, "s-bad")
        await refused("contract_signed", t, t.delete_contract(m.supplier, "s-bad"))
        await t.terminate_contract(m.consumer, "s-bad", reason="budget cut")
        assert status_of(await t.contract("s-bad")) == "TERMINATED"
        await refused(
            "already_terminated", t, t.terminate_contract(m.supplier, "s-bad", reason="again")
        )
        # a period that ends before it starts; unknown and withdrawn datasets
        now = int(time.time() * 1000)
        backwards = terms(use_start_ms=now + 10 * DAY_MS, use_end_ms=now + DAY_MS)
        for reason, dataset, contract_terms in (
            ("bad_period", "spindle-line3", backwards),
            ("unknown_dataset", "no-such-dataset", terms()),
            ("dataset_withdrawn", "gearbox-temp", terms()),
        ):
            offer = t.offer(
                m.consumer,
                contract_id=f"s-{reason}",
                dataset_id=dataset,
                consumer=m.consumer.account_id,
                terms=contract_terms,
            )
            await refused(reason, t, offer)
        # a revoked key
        await refused(
            "revoked",
            t,
            t.offer(
                m.revoked_sdk,
                contract_id="s-revoked",
                dataset_id="spindle-line3",
                consumer=m.revoked_sdk.account_id,
                terms=terms(),
            ),
        )
        # a reviewer without the role: named in the terms, or reviewing in another's place
        await refused(
            "not_reviewer",
            t,
            t.offer(
                m.consumer,
                contract_id="s-no-role",
                dataset_id="spindle-line3",
                consumer=m.consumer.account_id,
                terms=terms(reviewer=m.outsider.account_id),
            ),
        )
        await t.offer(
            m.consumer,
            contract_id="s-review",
            dataset_id="spindle-line3",
            consumer=m.consumer.account_id,
            terms=terms(reviewer=m.reviewer.account_id),
        )
        await t.sign_contract(m.consumer, "s-review")
        await t.sign_contract(m.supplier, "s-review")
        await refused("not_reviewer", t, t.review(m.outsider, "s-review", approve=True))
        assert status_of(await t.contract("s-review")) == "PENDING_REVIEW"
        await refused("not_reviewer", t, t.review(m.supplier, "s-review", approve=True))
        # nothing of a refused offer is left behind
        for missing in ("s-bad_period", "s-unknown_dataset", "s-dataset_withdrawn", "s-revoked"):
            status, _, _ = await asyncio.to_thread(raw_get, m, 2, f"/v1/contracts/{missing}")
            assert status == 404


# ---- the CLI ------------------------------------------------------------------------------


def test_cli_whole_trade_from_publish_to_active_contract(market: Market) -> None:
    m = market
    sup, con, rev = (m.key_file(n) for n in ("supplier", "consumer", "reviewer"))
    out = cli_ok(
        m, "dataset", "publish", "--key", sup, "--id", "press-line7",
        "--title", "Hydraulic press forces line 7", "--tag", "press", "--tag", "force",
        "--format", "parquet", "--size-bytes", "5000000", "--chunk-count", "5",
        "--merkle-root", digest("press root"), "--plaintext-digest", digest("press plain"),
        "--machine-type", "hydraulic press", "--sampling-rate-millihz", "500000",
        "--collected-from", "2024-01-01", "--collected-to", "2024-03-31",
    )  # fmt: skip
    assert "published dataset press-line7" in out
    table = cli_ok(m, "dataset", "search", "hydraulic", "--tag", "press")
    assert table.splitlines()[0].split()[:3] == ["ID", "TITLE", "TAGS"]
    assert "press-line7" in table
    shown = json.loads(raw_get(m, 2, "/v1/datasets/press-line7")[2])["dataset"]
    assert shown["supplier"] == m.supplier.account_id and shown["supplier_node"] == "node0"

    terms_file = m.keys / "press-terms.json"
    terms_file.write_text(json.dumps(terms(reviewer=m.reviewer.account_id)))
    cli_ok(
        m, "contract", "offer", "--key", con, "--id", "k-trade", "--dataset", "press-line7",
        "--consumer", m.consumer.account_id, "--terms", str(terms_file),
        member="node1",
    )  # fmt: skip
    counter = cli_json(m, "contract", "counter", "k-trade", "--key", sup, "--price-minor", "99000")
    assert counter["status"] == "committed" and counter["type"] == "contract.counter"
    assert cli_json(m, "contract", "sign", "k-trade", "--key", con)["result"] == "SIGNING"
    assert cli_json(m, "contract", "sign", "k-trade", "--key", sup)["result"] == "PENDING_REVIEW"
    out = cli_ok(m, "contract", "review", "k-trade", "--approve", "--key", rev, member="node2")
    assert "approved contract k-trade; it is now ACTIVE" in out

    human = cli_ok(m, "contract", "show", "k-trade", "--key", rev, member="node3")
    assert "k-trade  ACTIVE  (version 2)" in human and "superseded" in human
    assert "99000 EUR one_time" in human
    listed = cli_ok(m, "contract", "list", "--key", con)
    assert re.search(r"^k-trade\s+ACTIVE\s+2\s+press-line7\s", listed, re.MULTILINE), listed


def cli_refused(m: Market, reason: str, *args: str, as_json: bool = False) -> None:
    """The CLI prints the reason, its meaning and what to do and exits 1 (with ``--json``:
    the reason in a JSON document), and the API reports the transaction failed with it."""
    done = cli(m, *args, *(["--json"] if as_json else []))
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    assert f"failed: {reason}: " in done.stderr and "what to do:" in done.stderr, done.stderr
    tx_id = done.stderr.split("(tx ", 1)[1].split(",", 1)[0]
    if as_json:
        doc = json.loads(done.stdout)
        assert doc["status"] == "failed" and doc["reason"] == reason and doc["id"] == tx_id
        assert doc["description"] and doc["hint"]
    status, _, body = raw_get(m, 0, f"/v1/tx/{tx_id}")
    if "refused by the node before any block" in done.stderr:
        # the ledger's common checks (key, revocation, expiry) refuse it on admission
        assert reason in NONCE_KEPT
        assert status == 404 and json.loads(body)["status"] == "unknown", body
        return
    assert status == 200, body
    assert json.loads(body)["status"] == "failed" and json.loads(body)["reason"] == reason


def test_cli_every_bad_step_prints_its_reason_and_what_to_do(market: Market) -> None:
    m = market
    sup, con, out_key = m.key_file("supplier"), m.key_file("consumer"), m.key_file("outsider")
    offer = ["contract", "offer", "--key", con, "--consumer", m.consumer.account_id]
    terms_file = m.keys / "bad-terms.json"
    terms_file.write_text(json.dumps(terms()))
    cli_ok(m, *offer, "--id", "k-bad", "--dataset", "spindle-line3", "--terms", str(terms_file))
    cli_ok(m, "contract", "counter", "k-bad", "--key", sup, "--max-downloads", "1")
    cli_refused(
        m, "superseded_version", "contract", "sign", "k-bad", "--version", "1", "--key", con
    )
    cli_refused(m, "not_a_party", "contract", "sign", "k-bad", "--key", out_key, as_json=True)
    cli_ok(m, "contract", "sign", "k-bad", "--key", con)
    cli_refused(m, "contract_signed", "contract", "delete", "k-bad", "--key", sup)
    cli_ok(m, "contract", "terminate", "k-bad", "--key", con, "--reason", "budget cut")
    cli_refused(
        m, "already_terminated", "contract", "terminate", "k-bad", "--key", sup, "--reason", "x"
    )
    with_file = ["--terms", str(terms_file)]
    cli_refused(
        m, "bad_period", *offer, "--id", "k-period", "--dataset", "spindle-line3", *with_file,
        "--start", "+10d", "--end", "+1d",
    )  # fmt: skip
    cli_refused(m, "unknown_dataset", *offer, "--id", "k-unknown", "--dataset", "nope", *with_file)
    cli_refused(
        m, "dataset_withdrawn", *offer, "--id", "k-gone", "--dataset", "gearbox-temp", *with_file
    )
    gone = m.key_file("revoked_cli")
    cli_refused(
        m, "revoked", "contract", "offer", "--key", gone, "--consumer", m.revoked_cli.account_id,
        "--id", "k-revoked", "--dataset", "spindle-line3", *with_file,
    )  # fmt: skip
    cli_refused(
        m, "not_reviewer", *offer, "--id", "k-role", "--dataset", "spindle-line3", *with_file,
        "--reviewer", m.outsider.account_id,
    )  # fmt: skip
    missing = cli(m, "contract", "show", "k-never", "--key", m.key_file("consumer"))
    assert missing.returncode == 1 and "not found: no contract k-never" in missing.stderr


# ---- audit --------------------------------------------------------------------------------


def test_contract_audit_trail_lists_every_step_in_order_and_each_entry_verifies_offline(
    market: Market,
) -> None:
    m = market
    con = m.key_file("consumer")
    trail = cli_json(m, "audit", "show", "contract", "s-trade", "--key", con)
    assert [e["type"] for e in trail] == [
        "contract.offer",
        "contract.counter",
        "contract.sign",
        "contract.sign",
        "contract.review",
    ]
    assert [e["seq"] for e in trail] == [1, 2, 3, 4, 5]
    assert [e["actor"] for e in trail] == [
        m.consumer.account_id,
        m.supplier.account_id,
        m.consumer.account_id,
        m.supplier.account_id,
        m.reviewer.account_id,
    ]
    assert [e["height"] for e in trail] == sorted(e["height"] for e in trail)
    assert all(e["time_ms"] > 0 and len(e["tx_id"]) == 64 for e in trail)

    status, content_type, body = raw_get(m, 3, "/v1/audit/contract/s-trade/export")
    assert status == 200 and content_type.startswith("application/x-ndjson")
    lines = body.decode().splitlines()
    assert [json.loads(line)["tx_id"] for line in lines] == [e["tx_id"] for e in trail]
    for line in lines:
        entry = json.loads(line)
        assert len(entry["certificate"]["signatures"]) >= 3 and entry["block_bytes"]

    export = m.keys / "s-trade.jsonl"
    cli_ok(
        m, "audit", "export", "contract", "s-trade", "--out", str(export), "--key", con,
        member="node2",
    )  # fmt: skip
    genesis = str(m.dir / "genesis.json")
    verified = cli_ok(m, "verify-receipt", str(export), "--genesis", genesis)
    assert verified.count(": verified: ") == 5 and "NOT VERIFIED" not in verified

    tampered = m.keys / "tampered.jsonl"
    entries = [json.loads(line) for line in export.read_text().splitlines()]
    entries[2]["index"] += 1
    entries[3]["tx_id"] = entries[1]["tx_id"]
    raw = bytearray(bytes.fromhex(entries[4]["block_bytes"]))
    raw[-1] ^= 0x01
    entries[4]["block_bytes"] = raw.hex()
    tampered.write_text("".join(json.dumps(e) + "\n" for e in entries))
    result = cli(m, "verify-receipt", str(tampered), "--genesis", genesis)
    assert result.returncode == 1
    assert [
        line.split(":")[1].strip() for line in result.stdout.splitlines() if "line" in line[:5]
    ] == [
        "verified",
        "verified",
        "NOT VERIFIED",
        "NOT VERIFIED",
        "NOT VERIFIED",
    ]


async def test_account_and_dataset_trails_record_their_steps(market: Market) -> None:
    async with market.client(3) as node:
        t = TradingClient(node)
        dataset = await t.audit_trail("dataset", "gearbox-temp", reader=market.supplier)
        assert [e["type"] for e in dataset] == ["dataset.publish", "dataset.withdraw"]
        # a revoked account reads nothing any more; its member's auditor reads its trail
        account = await t.audit_trail(
            "account", market.revoked_sdk.account_id, reader=market.auditor
        )
        assert [e["type"] for e in account] == ["account.register", "account.revoke"]


# ---- determinism and API errors -----------------------------------------------------------


def test_every_node_returns_byte_identical_query_results_at_the_same_height(
    market: Market,
) -> None:
    m = market
    paths = [
        "/v1/contracts/s-trade",
        "/v1/datasets?text=vibration&limit=10",
        f"/v1/contracts?account={m.consumer.account_id}",
        f"/v1/accounts/{m.supplier.account_id}",
        "/v1/audit/contract/s-trade?proof=0",
        "/v1/disposals/overdue",
        "/v1/reasons",
    ]

    def same_everywhere() -> dict[str, bytes] | None:
        heights = {json.loads(raw_get(m, i, "/v1/status")[2])["height"] for i in range(4)}
        if len(heights) != 1:
            return None
        bodies = {p: [raw_get(m, i, p)[2] for i in range(4)] for p in paths}
        if {json.loads(b[0]).get("as_of_height", 0) for b in bodies.values()} - heights - {0}:
            return None
        return (
            {p: b[0] for p, b in bodies.items() if len(set(b)) == 1}
            if all(len(set(b)) == 1 for b in bodies.values())
            else None
        )

    agreed = wait_until(same_everywhere, 60, "all nodes at one height with identical answers")
    contract = json.loads(agreed["/v1/contracts/s-trade"])
    assert contract["contract"]["effective_status"] == "ACTIVE"
    assert contract["as_of_height"] > 0 and contract["as_of_time_ms"] > 0


def test_bad_parameters_are_400_with_a_reason_and_unknown_ids_404(market: Market) -> None:
    m = market
    for path, reason in (
        ("/v1/datasets?limit=501", "bad_request"),
        ("/v1/datasets?colour=red", "bad_request"),
        ("/v1/datasets?size_bytes=big", "bad_request"),
        ("/v1/contracts", "bad_request"),
        ("/v1/contracts?account=a&status=SLEEPING", "bad_request"),
        ("/v1/audit/invoice/x", "bad_request"),
        ("/v1/receipts/zz", "bad_request"),
    ):
        status, _, body = raw_get(m, 1, path)
        assert status == 400 and json.loads(body)["error"] == reason, (path, body)
        assert json.loads(body)["message"]
    for path in ("/v1/contracts/nope", "/v1/datasets/nope", "/v1/accounts/did:key:z6Mkq"):
        status, _, body = raw_get(m, 1, path)
        assert status == 404 and json.loads(body)["error"] == "not_found", (path, body)
