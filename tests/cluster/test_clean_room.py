"""Clean-room analysis on a real 4-node cluster (issue #14): the supplier publishes a CNC
table on node0 for analysis, the consumer queries it through node1 under a signed rule.

Shown here end to end: allowed aggregate queries give the results the same computation on the
plaintext gives; every extraction attempt of ``tests/compute/attacks.py`` is refused with its
reason (or its rows suppressed) by the supplier's node; queries signed by someone else,
replayed, beyond the budget, after termination and after expiry are refused; the supplier
reads the refusal counts; no raw row leaves node0 (no chunk is ever served, no result holds a
serial number or an operator); every executed query's receipt verifies offline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.cli import main
from mdtp.node.compute.protocol import sign_query_request
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.ops.testbed import client_for, make_contract, register_account
from mdtp.node.sdk.audit_verify import parse_entry, verify_entry
from mdtp.node.sdk.compute import (
    QueryResult,
    publish_for_analysis,
    query,
    query_refusals,
    receipt_entry,
    verify_offline,
)
from mdtp.node.sdk.data import DataClient, DataError, now_ms, publish
from tests.compute import attacks
from tests.support.processes import metric_value

pytestmark = pytest.mark.cluster
DATASET = "cnc-fleet"
EXPIRING_MS = 5_000


def rule(**overrides: Any) -> b.AnalysisRule:
    return b.AnalysisRule.from_json(attacks.rule(**overrides))


@dataclass
class CleanRoom:
    dir: Path
    nodes: list[ClusterNode]
    supplier: SigningKey
    consumer: SigningKey
    stranger: SigningKey  # a consumer of the same member, party to nothing here
    contract: str
    small_budget: str
    to_terminate: str
    expiring: str
    expires_at_ms: int
    download: str
    noisy: str
    keys: Path

    def consumer_client(self) -> DataClient:
        return client_for(self.dir, self.nodes[1], reader=self.consumer)

    def supplier_client(self) -> DataClient:
        return client_for(self.dir, self.nodes[0], reader=self.supplier)


@pytest.fixture(scope="module")
def room(running_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanRoom]:
    nodes = cluster.load_cluster(running_cluster)
    files = tmp_path_factory.mktemp("clean-room")

    async def setup() -> CleanRoom:
        supplier = await register_account(running_cluster, nodes[0], ["supplier"], "factory")
        consumer = await register_account(running_cluster, nodes[1], ["consumer"], "ai dev")
        stranger = await register_account(running_cluster, nodes[1], ["consumer"], "stranger")
        source = files / "fleet.csv"
        source.write_bytes(attacks.csv_bytes())
        async with client_for(running_cluster, nodes[0], reader=supplier) as c:
            await publish_for_analysis(
                c, supplier, source, dataset_id=DATASET, title="CNC fleet", progress=False
            )
            await publish(c, supplier, source, dataset_id="raw-file", title="raw", progress=False)
            # first: its short use period runs while the others are set up and tested
            expires = now_ms() + EXPIRING_MS
            expiring = await make_contract(
                c,
                supplier,
                consumer,
                DATASET,
                analysis_rule=rule(),
                use_end_ms=expires,
                disposal_deadline_ms=expires,
            )
            contract = await make_contract(c, supplier, consumer, DATASET, analysis_rule=rule())
            small = await make_contract(
                c, supplier, consumer, DATASET, analysis_rule=rule(query_budget=2)
            )
            to_terminate = await make_contract(c, supplier, consumer, DATASET, analysis_rule=rule())
            download = await make_contract(c, supplier, consumer, "raw-file")
            noisy = await make_contract(
                c, supplier, consumer, DATASET, analysis_rule=rule(noise_scale_milli=5000)
            )
        keys = files / "keys"
        keys.mkdir()
        save_key(keys / "consumer.json", consumer)
        save_key(keys / "supplier.json", supplier)
        return CleanRoom(
            running_cluster,
            nodes,
            supplier,
            consumer,
            stranger,
            contract,
            small,
            to_terminate,
            expiring,
            expires,
            download,
            noisy,
            keys,
        )

    yield asyncio.run(setup())


async def ask(room: CleanRoom, sql: str, contract: str | None = None) -> QueryResult:
    async with room.consumer_client() as c:
        return await query(c, room.consumer, contract or room.contract, sql)


async def refused(room: CleanRoom, sql: str, contract: str | None = None) -> str:
    try:
        await ask(room, sql, contract)
    except DataError as e:
        return e.reason
    raise AssertionError(f"not refused: {sql}")


def test_allowed_queries_match_the_plaintext_computation(room: CleanRoom) -> None:
    rows = attacks.rows()

    async def go() -> list[QueryResult]:
        return [await ask(room, sql) for sql in attacks.ALLOWED]

    per_machine, day_totals, temps = asyncio.run(go())
    assert per_machine.columns == ["machine_id", "avg_load"]
    expected = attacks.per_machine_average()
    assert {m: pytest.approx(v) for m, v in expected.items()} == dict(
        (m, v) for m, v in per_machine.rows
    )
    assert per_machine.receipt["rows_suppressed"] == 1  # M4: 2 batches, below 3
    assert per_machine.receipt["rows_scanned"] == len(rows)
    day = [r for r in rows if r["shift"] == "day"]
    assert day_totals.rows == [[len(day), pytest.approx(sum(r["spindle_load"] for r in day))]]
    for machine, avg in temps.rows:
        mine = [r["temperature_c"] for r in rows if r["machine_id"] == machine]
        assert avg == round(sum(mine) / len(mine), 2)
    # no raw row: nothing of a row's identity leaves, and no chunk was ever served
    text = json.dumps([r.rows for r in (per_machine, day_totals, temps)])
    assert not any(r["serial"] in text or r["operator_id"] in text for r in rows)


def test_every_extraction_attempt_is_refused_with_its_reason(room: CleanRoom) -> None:
    async def go() -> dict[str, str]:
        return {name: await refused(room, sql) for name, sql, _ in attacks.REFUSED}

    got = asyncio.run(go())
    assert got == {name: reason for name, _, reason in attacks.REFUSED}
    assert len(got) >= 20


def test_small_groups_are_suppressed_and_oversized_results_refused(room: CleanRoom) -> None:
    async def go() -> tuple[list[QueryResult], str]:
        results = [await ask(room, sql) for _, sql, _, _ in attacks.SUPPRESSED]
        return results, await refused(room, attacks.OVERSIZED)

    results, oversized = asyncio.run(go())
    for (name, _, returned, suppressed), result in zip(attacks.SUPPRESSED, results, strict=True):
        counts = (len(result.rows), result.receipt["rows_suppressed"])
        assert counts == (returned, suppressed), name
    assert oversized == "result_too_large"


def test_differencing_two_overlapping_queries_is_bounded_by_noise(room: CleanRoom) -> None:
    """What the threshold cannot stop: M4's total (2 batches, suppressed when asked) is the
    difference of two allowed queries. Without noise it comes out exact; under a rule with
    noise each answer is blurred afresh, and the budget bounds how often one may try."""
    both = "SELECT SUM(spindle_load) AS s FROM data WHERE machine_id IN ('M1', 'M4')"
    one = "SELECT SUM(spindle_load) AS s FROM data WHERE machine_id = 'M1'"
    exact = sum(r["spindle_load"] for r in attacks.rows() if r["machine_id"] == "M4")

    async def go() -> list[float]:
        answers = []
        for contract in (room.contract, room.noisy):
            a, b_ = await ask(room, both, contract), await ask(room, one, contract)
            answers.append(a.rows[0][0] - b_.rows[0][0])
        return answers

    plain, noisy = asyncio.run(go())
    assert plain == pytest.approx(exact)
    assert abs(noisy - exact) > 1e-3


def test_queries_signed_by_someone_else_or_replayed_are_refused(room: CleanRoom) -> None:
    """Authority is checked before the SQL is even parsed: a forged or a stranger's
    ``SELECT *`` is refused for who sent it, not for what it asks."""
    sql = "SELECT * FROM data"

    class Impostor:  # signs with the stranger's key but names the consumer as requester
        account_id = room.consumer.account_id
        public_key = room.stranger.public_key
        sign = room.stranger.sign

    async def post(raw: bytes) -> str:
        async with room.consumer_client() as c:
            try:
                await c.post_raw("/v1/compute/query", raw)
            except Exception as e:
                return str(getattr(e, "reason", e))
            return "ok"

    async def go() -> list[str]:
        async with room.consumer_client() as c:
            chain_id = await c.chain_id()
            try:
                await query(c, room.stranger, room.contract, sql)
                not_party = "ok"
            except DataError as e:
                not_party = e.reason
        forged = sign_query_request(
            Impostor(),
            chain_id=chain_id,
            contract_id=room.contract,
            sql=sql,
            expires_at_ms=now_ms() + 30_000,
        )
        once = sign_query_request(
            room.consumer,
            chain_id=chain_id,
            contract_id=room.contract,
            sql=attacks.ALLOWED[0],
            expires_at_ms=now_ms() + 30_000,
        )
        async with client_for(room.dir, room.nodes[2]) as other_node:
            try:
                await other_node.post_raw("/v1/compute/query", once)
                foreign = "ok"
            except Exception as e:
                foreign = str(getattr(e, "reason", e))
        return [not_party, await post(forged), await post(once), await post(once), foreign]

    not_party, forged, first, replay, foreign = asyncio.run(go())
    assert not_party == "not_consumer"
    assert forged == "bad_signature"
    assert (first, replay) == ("ok", "replayed_nonce")
    assert foreign == "not_member_account"


def test_the_budget_termination_and_delivery_method_bound_queries(room: CleanRoom) -> None:
    sql = attacks.ALLOWED[1]

    async def go() -> list[str]:
        await ask(room, sql, room.small_budget)
        await ask(room, sql, room.small_budget)
        exhausted = await refused(room, sql, room.small_budget)
        async with room.consumer_client() as c:
            await c.send(room.consumer, b.ContractTerminate(room.to_terminate, "done"))
        terminated = await refused(room, sql, room.to_terminate)
        download = await refused(room, sql, room.download)
        async with room.consumer_client() as c:
            used = (await c.trading.contract_compute(room.small_budget))["queries_used"]
        return [exhausted, terminated, download, str(used)]

    assert asyncio.run(go()) == ["budget_exhausted", "contract_terminated", "not_clean_room", "2"]


def test_the_supplier_sees_the_refusals_and_no_chunk_ever_left(room: CleanRoom) -> None:
    async def go() -> dict[str, Any]:
        async with room.supplier_client() as c:
            return await query_refusals(c, room.supplier, room.contract)

    counts = asyncio.run(go())
    assert counts["node"] == room.nodes[0].id
    assert counts["refused"]["select_star"] >= 1
    assert counts["total"] >= len(attacks.REFUSED)
    supplier = room.nodes[0]
    assert metric_value(supplier, "mdtp_compute_queries_refused_total", {"reason": "join"}) >= 1
    assert metric_value(supplier, "mdtp_compute_queries_executed_total") >= 5
    assert metric_value(supplier, "mdtp_data_served_bytes_total") == 0


def test_a_receipt_verifies_offline_and_exposes_a_changed_result(room: CleanRoom) -> None:
    async def go() -> tuple[QueryResult, str]:
        result = await ask(room, attacks.ALLOWED[0])
        async with room.consumer_client() as c:
            line = await receipt_entry(c, room.consumer, result.receipt["tx_id"], room.contract)
        return result, line

    result, line = asyncio.run(go())
    genesis = load_genesis(room.dir / "genesis.json")
    assert verify_offline(line, genesis, result) == result.receipt["tx_id"]
    tampered = QueryResult(result.columns, [[m, v + 1] for m, v in result.rows], {}, result.sql)
    with pytest.raises(Exception, match="result_mismatch"):
        verify_offline(line, genesis, tampered)


def test_the_cli_publishes_for_analysis_and_queries(
    room: CleanRoom, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "fleet.csv"
    source.write_bytes(attacks.csv_bytes())
    c0 = ["--cluster", str(room.dir), "--member", room.nodes[0].id]
    c1 = ["--cluster", str(room.dir), "--member", room.nodes[1].id]
    supplier_key = str(room.keys / "supplier.json")
    consumer_key = str(room.keys / "consumer.json")
    argv = ["data", "publish", str(source), "--id", "cnc-anon", "--for-analysis"]
    argv += ["--analysis-format", "parquet", "--drop-column", "operator_id"]
    argv += ["--pseudonymise", "serial", "--generalise", "temperature_c=0.5"]
    assert main([*argv, *c0, "--key", supplier_key, "--no-progress"]) == 0
    schema = json.loads(capsys.readouterr().out)["schema"]
    assert "operator_id" not in [c["name"] for c in schema["columns"]]
    assert {s["method"] for s in schema["anonymisation"]} == {
        "dropped",
        "pseudonymised",
        "generalised",
    }
    sql = "SELECT machine_id, AVG(spindle_load) AS avg_load FROM data GROUP BY machine_id"
    args = ["compute", "query", room.contract, "--sql", sql, *c1, "--key", consumer_key]
    assert main([*args, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "machine_id,avg_load" and len(lines) == 4
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["receipt"]["rows_returned"] == 3
    assert (
        main(
            [
                "compute",
                "query",
                room.contract,
                "--sql",
                "SELECT * FROM data",
                *c1,
                "--key",
                consumer_key,
            ]
        )
        == 1
    )
    assert "select_star" in capsys.readouterr().err
    refusals = ["compute", "refusals", room.contract, *c0, "--key", supplier_key, "--json"]
    assert main(refusals) == 0
    assert json.loads(capsys.readouterr().out)["refused"]["select_star"] >= 1


def test_a_query_after_the_use_period_is_refused(room: CleanRoom) -> None:
    """Last in the module: the contract's short use period has mostly passed by now."""

    async def go() -> tuple[str, int, list[str]]:
        await asyncio.sleep(max(0.0, (room.expires_at_ms - now_ms()) / 1000 + 0.5))
        expired = await refused(room, attacks.ALLOWED[1], room.expiring)
        used = 0
        lines: list[str] = []
        async with room.consumer_client() as c:
            contracts = (room.contract, room.small_budget, room.to_terminate, room.expiring)
            for contract in (*contracts, room.noisy):
                used += (await c.trading.contract_compute(contract))["queries_used"]
                lines += await c.trading.audit_export("contract", contract)
        return expired, used, lines

    expired, used, lines = asyncio.run(go())
    assert expired == "contract_expired"
    # every query the supplier's node ran has its receipt on the ledger, each verifiable offline
    assert used == metric_value(room.nodes[0], "mdtp_compute_queries_executed_total")
    genesis = load_genesis(room.dir / "genesis.json")
    receipts = [e for e in map(parse_entry, lines) if e["type"] == "compute.receipt"]
    assert len(receipts) == used
    assert all(verify_entry(e, genesis).type == "compute.receipt" for e in receipts)
