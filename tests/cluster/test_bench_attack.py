"""``mdtp bench --attack --json`` (4 s per behaviour) runs every Aardvark behaviour on a real
cluster and reports every figure it promises (timing is never asserted: the figures go in
the README)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def test_bench_attack_quick_json_reports_every_behaviour() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mdtp.node", "bench", "--attack", "--json", "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["clients"] == 16 and doc["duration_s_per_behaviour"] == 4
    runs = doc["behaviours"]
    assert set(runs) == {"fault_free", "slow_primary", "flooding_replica", "flooding_clients"}
    for name, run in runs.items():
        assert run["committed"] > 0 and run["tx_per_s"] > 0, name
        assert 0 < run["latency_ms_p50"] <= run["latency_ms_p99"], name
        assert run["fraction_of_fault_free"] > 0, name
        assert run["view_changes_max"] >= 0, name
    assert runs["fault_free"]["fraction_of_fault_free"] == 1.0
    assert runs["slow_primary"]["byzantine"].startswith("node0 ")  # the primary of view 0
    assert runs["flooding_replica"]["byzantine"].startswith("node3 ")
    # the honest nodes checked the flooder's signed messages and refused them
    assert runs["flooding_replica"]["consensus_refused"] > 0
    flood = runs["flooding_clients"]["flood_clients"]
    # refused by an answer or throttled (a closed connection): never accepted
    assert flood["answered"] > 0 and flood["accepted"] == 0, flood["answers"]
    assert flood["refused"] + flood["errors"] == flood["answered"]
