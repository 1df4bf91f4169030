"""Helpers for tests that run real ``mdtp`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdtp.node.identity import pki
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until truthy; generous deadlines, never a timing assertion."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing may not be up yet
            last_error = e
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} ({last_error})")


def signal_node(node: ClusterNode, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
    """Send ``sig`` to ``node``'s process and wait until it has ended; returns its pid. A
    killed process may run on for a while (a thread blocked in an fsync on a busy disk holds
    the node's lock until it returns): a node started again before that would find its home
    still taken."""
    pid = cluster.running_pid(node)
    assert pid is not None, f"{node.id} is not running"
    os.kill(pid, sig)
    wait_until(lambda: not cluster.process_alive(pid), timeout_s, f"{node.id} (pid {pid}) to end")
    return pid


def api_status(cluster_dir: Path, node: ClusterNode) -> dict[str, Any]:
    """``node``'s whole status, asked as its own member (an outsider gets id and readiness)."""
    ctx = pki.api_client_context(
        cluster_dir / "ca" / "ca.pem", node.home / "node.pem", node.home / "node.key.pem"
    )
    with urllib.request.urlopen(f"https://{node.api}/v1/status", timeout=5, context=ctx) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def metrics_text(node: ClusterNode) -> str:
    """``node``'s whole ``/metrics`` exposition."""
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as r:
        text: str = r.read().decode()
        return text


def metric_value(node: ClusterNode, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of ``/metrics`` (0.0 when the labelled series does not exist yet)."""
    text = metrics_text(node)
    want = name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def all_links_up(cluster_dir: Path) -> bool:
    rows = cluster.status(cluster_dir)
    return all(r["ready"] and r["peers"] == len(rows) - 1 for r in rows)
