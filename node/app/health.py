"""The metrics port: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready).

Plain HTTP, loopback by default.

``/healthz`` answers whether the process is worth keeping alive: 200 when every liveness
check passes, 503 with the failed checks otherwise. The checks (:data:`LIVENESS_CHECKS`):

- ``store_writable``: a probe file can be written and removed in the data directory;
- ``disk_space``: the data directory's file system has at least ``MIN_FREE_DISK_BYTES`` free;
- ``event_loop_lag``: a periodic wake-up is not more than ``MAX_LOOP_LAG_S`` late;
- ``peers``: at least one authenticated peer link is up. A node that is ready (in consensus
  with a quorum) passes it whatever its link count, so a one-member consortium is healthy;
  and it only fails after ``PEERS_GRACE_S`` without any link, so a starting node or a short
  network outage does not get the process restarted by an orchestrator;
- ``tasks``: no task the supervisor owns has died (``node/supervisor.py``).

``/readyz`` is 200 only when the node is in consensus with a quorum of peers and not lagging
(the daemon's ``readiness()``); its JSON always lists the ``reasons`` it is not ready.

Every ``/metrics`` scrape also runs the liveness checks, so ``mdtp_health_check_failing``
and the data directory's disk gauges are as fresh as the scrape.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mdtp.node.version import build_info

MIN_FREE_DISK_BYTES = 256 * 1024 * 1024
MAX_LOOP_LAG_S = 1.0
PEERS_GRACE_S = 60.0
LIVENESS_CHECKS = ("store_writable", "disk_space", "event_loop_lag", "peers", "tasks")
PEERS_GAUGE = "mdtp_p2p_peers_connected"


def register_process_metrics(registry: CollectorRegistry) -> None:
    """The metrics every Prometheus exporter has: ``process_*`` (memory, CPU, open files,
    start time; Linux), ``python_info`` (``PlatformCollector``), and
    ``mdtp_build_info{version,python}`` = 1."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    info = Gauge(
        "mdtp_build_info",
        "Always 1; the labels name the running build's version and its Python version",
        ["version", "python"],
        registry=registry,
    )
    facts = build_info()
    info.labels(facts["version"], facts["python"]).set(1)


class LoopLagProbe:
    """Measures how late a periodic wake-up is: a blocked event loop shows up here.

    It also holds the data directory's disk gauges, which :func:`liveness_checks` updates
    each time it measures the disk (on every ``/healthz`` call and every scrape).
    """

    def __init__(self, registry: CollectorRegistry, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._gauge = Gauge(
            "mdtp_event_loop_lag_seconds", "Lateness of a periodic wake-up", registry=registry
        )
        self.disk_free = Gauge(
            "mdtp_disk_free_bytes",
            "Bytes available to the node on the file system of its data directory",
            registry=registry,
        )
        self.disk_size = Gauge(
            "mdtp_disk_size_bytes",
            "Size of the file system of the node's data directory",
            registry=registry,
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, loop.time() - start - self.interval_s)
            self._gauge.set(self.lag_s)


def liveness_checks(
    data_dir: Path,
    lag: LoopLagProbe,
    *,
    failed_tasks: Sequence[str] = (),
    min_free_bytes: int = MIN_FREE_DISK_BYTES,
) -> dict[str, str]:
    """Failed local checks by name (empty when healthy); ``peers`` is added by
    :func:`health_app`, which knows the links and the readiness."""
    failed: dict[str, str] = {}
    probe = data_dir / ".healthz"
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as e:
        failed["store_writable"] = f"{data_dir}: {e.strerror or e}"
    try:
        usage = shutil.disk_usage(data_dir)
        lag.disk_free.set(usage.free)
        lag.disk_size.set(usage.total)
        if usage.free < min_free_bytes:
            failed["disk_space"] = f"{usage.free // (1024 * 1024)} MiB free in {data_dir}"
    except OSError as e:
        failed["disk_space"] = f"{data_dir}: {e.strerror or e}"
    if lag.lag_s > MAX_LOOP_LAG_S:
        failed["event_loop_lag"] = f"{lag.lag_s:.2f} s"
    if failed_tasks:
        failed["tasks"] = "died: " + ", ".join(failed_tasks)
    return failed


def links_from_registry(registry: CollectorRegistry) -> Callable[[], int]:
    """Authenticated peer links (both directions) as the p2p metrics count them."""

    def count() -> int:
        total = 0.0
        for direction in ("outbound", "inbound"):
            total += registry.get_sample_value(PEERS_GAUGE, {"direction": direction}) or 0.0
        return int(total)

    return count


class PeersCheck:
    """``peers`` fails once no link has been up for ``grace_s`` while the node is not ready."""

    def __init__(
        self,
        links: Callable[[], int],
        grace_s: float = PEERS_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.links = links
        self.grace_s = grace_s
        self.clock = clock
        self.last_link_s = clock()  # the grace also covers start-up

    def __call__(self, ready: bool) -> str | None:
        now = self.clock()
        if self.links() > 0 or ready:
            self.last_link_s = now
            return None
        down_s = now - self.last_link_s
        if down_s <= self.grace_s:
            return None
        return f"no peer link up for {down_s:.0f} s"


class _HealthCollector(Collector):
    """``mdtp_health_check_failing{check}``: 1 for each liveness check failing now."""

    def __init__(self, checks: Callable[[], dict[str, str]]) -> None:
        self.checks = checks
        self._collecting = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # The peers check may read the registry (links_from_registry), which collects
        # every collector again, this one included: that inner pass yields nothing.
        if self._collecting:
            return
        self._collecting = True
        try:
            failed = self.checks()
        finally:
            self._collecting = False
        family = GaugeMetricFamily(
            "mdtp_health_check_failing",
            "1 while the /healthz check fails, by check",
            labels=["check"],
        )
        for check in LIVENESS_CHECKS:
            family.add_metric([check], 1.0 if check in failed else 0.0)
        yield family


def health_app(
    registry: CollectorRegistry,
    liveness: Callable[[], dict[str, str]],
    readiness: Callable[[], dict[str, Any]],
    *,
    peers: Callable[[], int] | None = None,
    peers_grace_s: float = PEERS_GRACE_S,
) -> web.Application:
    """``peers`` counts the node's authenticated links; without it, the p2p metrics in
    ``registry`` are read."""
    peers_check = PeersCheck(peers or links_from_registry(registry), peers_grace_s)

    def all_checks() -> dict[str, str]:
        failed = dict(liveness())
        problem = peers_check(bool(readiness().get("ready")))
        if problem is not None:
            failed["peers"] = problem
        return failed

    registry.register(_HealthCollector(all_checks))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        failed = all_checks()
        doc = {
            "ok": not failed,
            "failed": failed,
            "checks": {check: check not in failed for check in LIVENESS_CHECKS},
        }
        return web.json_response(doc, status=200 if not failed else 503)

    async def readyz(_: web.Request) -> web.Response:
        doc = dict(readiness())
        doc.setdefault("reasons", [])
        return web.json_response(doc, status=200 if doc["ready"] else 503)

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
