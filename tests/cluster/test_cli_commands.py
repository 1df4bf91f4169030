"""The ``mdtp`` command against a real one-node cluster: ``cluster up/status/down --json``,
the ledger reads (``block``, ``tx``, ``chain``, ``evidence``) in text and JSON, and a missing
object read with ``--json`` printing a JSON error and exiting non-zero."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.cli import main
from mdtp.node.ops import cluster
from tests.support.processes import wait_until

pytestmark = pytest.mark.cluster


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    capsys.readouterr()
    assert main(list(argv)) == code, capsys.readouterr()
    return capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    return json.loads(run(capsys, *argv, "--json", code=code))


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cluster_dir = tmp_path_factory.mktemp("cli")
    assert main(["cluster", "init", "--dir", str(cluster_dir), "--nodes", "1", "--json"]) == 0
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["cluster", "up", "--dir", str(cluster_dir), "--json"]) == 0
        assert json.loads(out.getvalue())["ready"] == ["node0"]
        yield cluster_dir
    finally:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["cluster", "down", "--dir", str(cluster_dir), "--json"])
    assert json.loads(out.getvalue()) == {"stopped": ["node0"]}


@pytest.fixture(scope="module")
def committed_tx(one: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ``account.register`` committed on the cluster (its CLI JSON result)."""
    key = tmp_path_factory.mktemp("keys") / "k.json"
    assert main(["keys", "generate", "--out", str(key)]) == 0
    argv = ["account", "register", "--cluster", str(one), "--json"]
    argv += ["--key", str(cluster.admin_key_path(one, "node0")), "--account-key", str(key)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--roles", "consumer", "--name", "cli test"]) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    assert doc["status"] == "committed"
    return doc


def test_cluster_status_and_down_print_json(one: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "cluster", "status", "--dir", str(one))
    assert [r["id"] for r in rows] == ["node0"] and rows[0]["ready"] is True


def test_tx_block_and_chain_read_a_committed_transaction(
    one: Path, committed_tx: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--cluster", str(one)]
    tx = run_json(capsys, "tx", committed_tx["id"], *c)
    assert tx["status"] == "committed" and tx["height"] == committed_tx["height"]
    assert "committed" in run(capsys, "tx", committed_tx["id"], *c)
    height = str(committed_tx["height"])
    block = run_json(capsys, "block", height, *c)
    assert committed_tx["id"] in block["transactions"] and block["certificate"]["signatures"]
    text = run(capsys, "block", height, *c)
    assert block["hash"] in text and committed_tx["id"] in text
    chain = run_json(capsys, "chain", *c, "--from", "1", "--to", height)
    assert chain[-1] == {
        "height": committed_tx["height"],
        "hash": block["hash"],
        "state_root": block["state_root"],
        "tx_count": 1,
    }
    assert run_json(capsys, "chain", *c) == chain  # --to defaults to the node's height
    assert block["hash"] in run(capsys, "chain", *c)
    # the API latency histogram labels by canonical route, never by the raw path
    (node,) = cluster.load_cluster(one)
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'mdtp_api_request_duration_seconds_count{route="/v1/blocks/{height}"}' in metrics
    assert 'mdtp_api_request_duration_seconds_count{route="/v1/tx/{tx_id}"}' in metrics
    assert f'route="/v1/blocks/{height}"' not in metrics


def test_evidence_of_an_honest_cluster_is_empty(
    one: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_json(capsys, "evidence", "--cluster", str(one)) == []
    assert "no evidence" in run(capsys, "evidence", "--cluster", str(one))


@pytest.mark.parametrize(
    "argv",
    [["block", "999999"], ["tx", "ab" * 32], ["dataset", "show", "nope"]],
    ids=["block", "tx", "dataset"],
)
def test_a_missing_object_with_json_prints_a_json_error(
    one: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    doc = run_json(capsys, *argv, "--cluster", str(one), code=1)
    assert doc["status"] == "failed" and doc["reason"] == "not_found" and doc["message"]


def test_cluster_restart_brings_one_node_back_with_its_chain(
    one: Path, committed_tx: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = cluster.status(one)[0]["pid"]
    doc = run_json(capsys, "cluster", "restart", "node0", "--dir", str(one))
    assert doc["node"] == "node0" and doc["ready"] is True and doc["pid"] != before
    row = cluster.status(one)[0]
    assert row["pid"] == doc["pid"] and row["height"] >= committed_tx["height"]
    tx = run_json(capsys, "tx", committed_tx["id"], "--cluster", str(one))
    assert tx["status"] == "committed"
    failed = run_json(capsys, "cluster", "restart", "node9", "--dir", str(one), code=2)
    assert failed["status"] == "failed" and "node9" in failed["message"]


def test_a_node_started_by_hand_is_seen_by_cluster_status_and_stopped_by_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mdtp start --home node0`` (a relative home, no node.pid): the cluster commands find
    the process through the pid it writes into its home's lock."""
    run(capsys, "cluster", "init", "--dir", str(tmp_path), "--nodes", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdtp.node", "start", "--home", "node0"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rows = wait_until(
            lambda: (r := cluster.status(tmp_path))[0]["ready"] and r, 60, "node0 ready"
        )
        assert rows[0]["pid"] == proc.pid
        assert run_json(capsys, "cluster", "down", "--dir", str(tmp_path)) == {"stopped": ["node0"]}
        assert proc.wait(timeout=30) == 0
        assert cluster.status(tmp_path)[0]["pid"] is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
