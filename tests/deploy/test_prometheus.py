"""A real Prometheus (Debian's package) scrapes a real 4-node cluster with the scrape
configuration and alert rules of deploy/prometheus: every node is up and the height
advances while transactions commit."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mdtp.node.ops import cluster
from tests.deploy.conftest import DEPLOY
from tests.support.processes import wait_until
from tests.support.workload import Workload

pytestmark = pytest.mark.cluster


def scrape_config(nodes: list[cluster.ClusterNode], prometheus_addr: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the local cluster's metrics addresses as targets
    and a one-second scrape interval."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        if job["job_name"] == "mdtp":
            job["static_configs"] = [
                {"targets": [n.metrics], "labels": {"member": n.id}} for n in nodes
            ]
        elif job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [prometheus_addr]}]
    return config


class Prometheus:
    def __init__(self, binary: str, workdir: Path, config: dict[str, Any], addr: str) -> None:
        self.addr = addr
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        (workdir / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address={addr}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    def get(self, path: str, **params: str) -> Any:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        url = f"http://{self.addr}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read()) if path.startswith("/api/") else r.read()

    def query(self, promql: str) -> dict[str, float]:
        """Instant query: {instance: value} (one sample per instance, or "" for no labels)."""
        doc = self.get("/api/v1/query", query=promql)
        assert doc["status"] == "success", doc
        return {
            s["metric"].get("instance", ""): float(s["value"][1]) for s in doc["data"]["result"]
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def four_nodes(tmp_path: Path) -> Iterator[tuple[Path, list[cluster.ClusterNode]]]:
    cluster_dir = tmp_path / "cluster"
    nodes = cluster.init_cluster(cluster_dir, 4)
    try:
        cluster.up(cluster_dir, timeout_s=90)
        yield cluster_dir, nodes
    finally:
        cluster.down(cluster_dir)


def test_prometheus_sees_every_node_up_and_the_height_advancing(
    prometheus_bins: tuple[str, str],
    four_nodes: tuple[Path, list[cluster.ClusterNode]],
    tmp_path: Path,
) -> None:
    cluster_dir, nodes = four_nodes
    (port,) = cluster.free_ports(1)
    addr = f"127.0.0.1:{port}"
    prom = Prometheus(prometheus_bins[0], tmp_path / "prometheus", scrape_config(nodes, addr), addr)
    try:
        wait_until(lambda: prom.get("/-/ready"), 60, "prometheus ready")
        members = {n.metrics for n in nodes}
        wait_until(
            lambda: prom.query('up{job="mdtp"}') == dict.fromkeys(members, 1.0),
            60,
            "every node up in prometheus",
        )
        rules = prom.get("/api/v1/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"MdtpNodeDown", "MdtpNoNewBlock"}

        before = prom.query('mdtp_consensus_height{job="mdtp"}')
        assert set(before) == members
        workload = Workload(cluster_dir, senders=4)
        asyncio.run(workload.run_closed_loop(3))
        assert not workload.errors and len(workload.acked) == 12

        def advanced() -> bool:
            now = prom.query('mdtp_consensus_height{job="mdtp"}')
            return set(now) == members and all(now[m] > before[m] for m in members)

        wait_until(advanced, 60, "mdtp_consensus_height advancing on every node")
        increase = prom.query('max(delta(mdtp_consensus_height{job="mdtp"}[5m]))')
        assert increase[""] > 0
        # nothing alarming on a healthy cluster
        time.sleep(2)
        firing = [
            a["labels"]["alertname"]
            for a in prom.get("/api/v1/alerts")["data"]["alerts"]
            if a["state"] == "firing"
        ]
        assert firing == []
    finally:
        prom.stop()
    assert prom.proc.returncode is not None
