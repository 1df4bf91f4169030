"""The README's first command: ``mdtp demo`` runs a whole trade and proves what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mdtp.node.ops import cluster

pytestmark = pytest.mark.cluster


def test_demo_runs_a_whole_trade_and_verifies_it(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "mdtp.node", "demo", "--dir", str(cluster_dir), "--stop"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for needle in (
        "status seen by the observer node: ACTIVE",
        "identical = True",
        "delivery receipt(s) on the ledger",
        "usage 1 x EUR 1,500.00 = EUR 1,500.00",
        "the factory acknowledged it: invoice ACKNOWLEDGED",
        "opened with chunks 0 and 1 and their Merkle proofs",
        "settled: refund EUR 300.00 credited",
        "1 dispute(s), 1 settled",
        "disposal.attest",
        "SELECT * FROM data -> refused by the factory's node: select_star",
        "per-machine averages",
        "raw rows received: 0",
        "verified offline",
        "identical block hashes and state roots",
        '{"demo": "ok"',
    ):
        assert needle in out, needle
    assert all(r["pid"] is None for r in cluster.status(cluster_dir))
    audit = cluster_dir / "demo" / "contract-audit.jsonl"
    v = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdtp.node",
            "verify-receipt",
            str(audit),
            "--genesis",
            str(cluster_dir / "genesis.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert v.returncode == 0, v.stdout + v.stderr
