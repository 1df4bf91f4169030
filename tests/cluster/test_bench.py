"""``mdtp bench --quick --json`` runs a real cluster and reports every figure it promises."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster


def test_bench_quick_json_reports_throughput_latency_and_ceiling() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mdtp.node", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    for clients in (1, 16, 64):
        level = doc[f"clients_{clients}"]
        assert level["committed"] > 0 and level["failures"] == 0
        assert level["tx_per_s"] > 0
        assert 0 < level["latency_ms_p50"] <= level["latency_ms_p99"]
    batched = doc["batched"]
    assert batched["committed"] > 0 and batched["failures"] == 0
    assert 0 < batched["batch_latency_ms_p50"] <= batched["batch_latency_ms_p99"]
    assert doc["batched_ratio_to_ceiling"] > 0
    assert doc["ed25519_verify_cpu_us"] > 0
    assert 0 < doc["clients_64_cpu_ratio_to_ceiling"] < doc["batched_cpu_ratio_to_ceiling"]
    for level in [doc[f"clients_{c}"] for c in (1, 16, 64)] + [batched]:
        assert sorted(level["cpu_us_per_tx"]) == ["node0", "node1", "node2", "node3"]
        assert all(v > 0 for v in level["cpu_us_per_tx"].values())
        assert level["cpu_us_per_tx_mean"] > 0 and level["loadgen_cpu_us_per_tx"] > 0
    assert doc["verify_ceiling_tx_per_s"] == pytest.approx(
        doc["ed25519_verify_per_s"] / 4, rel=0.01
    )
    assert doc["ratio_to_ceiling"] > 0
    assert all(v and v > 0 for v in doc["node_rss_mb"].values())
