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


def test_bench_long_reports_every_window_and_the_verdict() -> None:
    """``mdtp bench --long`` (here a short one: 4,000 transactions, 3 s windows) commits
    exactly in batches until the target, and reports each window's rate, CPU and memory."""
    args = ["bench", "--long", "--txs", "4000", "--window", "3", "--json"]
    r = subprocess.run(
        [sys.executable, "-m", "mdtp.node", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["error"] is None and doc["committed"] >= 4000
    assert doc["windows"], doc
    last = 0
    for w in doc["windows"]:
        assert w["committed_total"] >= last and w["tx_per_s"] > 0
        last = w["committed_total"]
        assert sorted(w["rss_mb"]) == ["node0", "node1", "node2", "node3"]
        assert all(v > 0 for v in w["rss_mb"].values())
        assert all(v > 0 for v in w["store_mb"].values())
        assert w["cpu_us_per_tx_mean"] > 0
    assert doc["first_tx_per_s"] == doc["windows"][0]["tx_per_s"]
    assert doc["last_tx_per_s"] == doc["windows"][-1]["tx_per_s"]
    assert doc["rss_mb_max"] == max(v for w in doc["windows"] for v in w["rss_mb"].values())
    assert isinstance(doc["throughput_kept"], bool) and isinstance(doc["rss_within_limit"], bool)


def test_bench_catch_up_reports_the_laggards_rate_blocks_and_cpu() -> None:
    """``mdtp bench --catch-up`` (here 2,000 transactions): one member that is not the
    primary is stopped, the others commit, it is started again and timed until its height
    equals theirs; the figures add up (not their speed: no timed assertions)."""
    args = ["bench", "--catch-up", "--txs", "2000", "--json"]
    r = subprocess.run(
        [sys.executable, "-m", "mdtp.node", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["laggard"] in ("node1", "node2", "node3")
    assert doc["load_committed"] >= 2000
    # it executed every transaction the others committed while it was down (the load's and
    # the senders' registrations), in every block from where it stopped to their height
    assert doc["caught_up_txs"] >= doc["load_committed"]
    assert doc["caught_up_blocks"] == doc["target_height"] - doc["start_height"] > 0
    assert 0 < doc["transfer_seconds"] <= doc["seconds"]
    assert doc["tx_per_s"] == pytest.approx(doc["caught_up_txs"] / doc["seconds"], rel=0.01)
    assert doc["blocks_per_s"] == pytest.approx(doc["caught_up_blocks"] / doc["seconds"], rel=0.01)
    assert doc["transfer_tx_per_s"] >= doc["tx_per_s"]
    assert doc["cpu_s"] > 0
    assert doc["cpu_us_per_tx"] == pytest.approx(
        doc["cpu_s"] * 1e6 / doc["caught_up_txs"], rel=0.02
    )
    threads = doc["cpu_s_by_thread"]
    assert threads["event_loop"] > 0
    # the signatures of the transferred blocks were checked in the worker processes
    assert threads["worker_processes"] > 0
    # the threads alive at the end: at most the process's (ended threads are not listed)
    assert sum(threads.values()) <= doc["cpu_s"] + 0.05 * len(threads)
    assert doc["target_tx_per_s"] == 20_000 and isinstance(doc["target_met"], bool)
    assert doc["machine"] == {"cpus": doc["machine"]["cpus"], "nodes": 4}
