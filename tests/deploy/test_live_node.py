"""Against a real node process: its ``/metrics`` follow Prometheus naming conventions (and
``promtool check metrics`` accepts them), carry the standard process metrics, the build info
and the API latency histogram, and every metric the dashboard and the alert rules read is one
the node exports."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mdtp.node.app.health import LIVENESS_CHECKS
from mdtp.node.ops import cluster
from mdtp.node.version import build_info
from tests.deploy.conftest import DEPLOY
from tests.deploy.promql import dashboard_exprs, exported_series, metric_names, rule_exprs
from tests.support.processes import wait_until

pytestmark = pytest.mark.cluster

CONCERNS = ("consensus", "mempool", "p2p", "store", "transactions", "data", "api", "state")
# What prometheus_client's ProcessCollector and PlatformCollector export (every exporter has
# them, so operators' dashboards and alerts can watch memory and CPU).
STANDARD = ("process_", "python_info")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.ClusterNode]:
    cluster_dir = tmp_path_factory.mktemp("one")
    (member,) = cluster.init_cluster(cluster_dir, 1)
    try:
        cluster.up(cluster_dir, timeout_s=90)
        cluster.status(cluster_dir)  # one API request (GET /v1/status) before the scrape
        yield member
    finally:
        cluster.down(cluster_dir)


@pytest.fixture(scope="module")
def metrics_text(node: cluster.ClusterNode) -> str:
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as r:
        text: str = r.read().decode()
    return text


def test_metric_names_follow_prometheus_conventions(metrics_text: str) -> None:
    types = dict(
        line.split()[2:4] for line in metrics_text.splitlines() if line.startswith("# TYPE ")
    )
    assert types, "no metrics"
    for name, kind in types.items():
        if name.endswith("_created"):
            continue  # prometheus_client's creation timestamps of counters and histograms
        if name.startswith(STANDARD):
            continue
        assert name.startswith("mdtp_"), name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|kb|mb|percent)(_|$)", name), (
            f"{name}: use base units (seconds, bytes, ratios)"
        )
    exported = {name.split("_")[1] for name in types}
    for concern in CONCERNS:
        assert concern in exported, f"no mdtp_{concern}_* metric"


def test_dashboard_reads_only_metrics_the_node_exports(metrics_text: str) -> None:
    exported = exported_series(metrics_text) | {"up"}
    dashboard = DEPLOY / "grafana" / "dashboards" / "mdtp.json"
    read: dict[str, str] = {}
    for title, expr in dashboard_exprs(dashboard):
        for name in metric_names(expr):
            read.setdefault(name, title)
    unknown = {name: title for name, title in read.items() if name not in exported}
    assert not unknown, f"dashboard panels read metrics no node exports: {unknown}"
    assert len(read) >= 20


def test_alert_rules_read_only_metrics_the_node_exports(metrics_text: str) -> None:
    exported = exported_series(metrics_text) | {"up"}
    for alert, expr in rule_exprs(DEPLOY / "prometheus" / "alerts.yml"):
        names = metric_names(expr)
        assert names, alert
        assert names <= exported, f"{alert} reads {names - exported}"


def test_healthz_and_readyz_answer_with_their_checks_and_reasons(
    node: cluster.ClusterNode,
) -> None:
    def get(path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://{node.metrics}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, doc = wait_until(lambda: (s := get("/healthz"))[0] == 200 and s, 30, "healthy")
    assert doc["ok"] is True and doc["failed"] == {}
    assert set(doc["checks"]) == set(LIVENESS_CHECKS)
    status, doc = get("/readyz")
    assert status == 200 and doc["ready"] is True and doc["reasons"] == []


def test_every_metric_has_help_text(metrics_text: str) -> None:
    """Every exported metric has help text (the README's metrics table is built from it)."""
    helps = {
        line.split()[2]: line.split(None, 3)[3] if len(line.split(None, 3)) > 3 else ""
        for line in metrics_text.splitlines()
        if line.startswith("# HELP ")
    }
    assert all(h.strip() for h in helps.values()), [n for n, h in helps.items() if not h.strip()]


def test_promtool_check_metrics_accepts_the_live_metrics(promtool: str, metrics_text: str) -> None:
    r = subprocess.run(
        [promtool, "check", "metrics"],
        input=metrics_text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_process_metrics_build_info_and_api_latency_are_exported(metrics_text: str) -> None:
    names = exported_series(metrics_text)
    for wanted in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
    ):
        assert wanted in names, wanted
    info = build_info()
    assert (
        f'mdtp_build_info{{python="{info["python"]}",version="{info["version"]}"}} 1.0'
        in metrics_text.splitlines()
    )
    # by canonical route, so a path's variable part never becomes a label value
    assert re.search(
        r'^mdtp_api_request_duration_seconds_count\{route="/v1/status"\} [1-9]',
        metrics_text,
        re.M,
    ), "no API latency histogram for GET /v1/status"
    assert "mdtp_api_request_duration_seconds_bucket" in names
