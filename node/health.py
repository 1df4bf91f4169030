"""The metrics port: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready).

Plain HTTP, loopback by default. ``/healthz`` is 200 when every liveness check passes and
503 with the failed checks otherwise; ``/readyz`` is 200 only when the node is in consensus
with a quorum of peers and not lagging.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

MIN_FREE_DISK_BYTES = 256 * 1024 * 1024
MAX_LOOP_LAG_S = 1.0


class LoopLagProbe:
    """Measures how late a periodic wake-up is: a blocked event loop shows up here."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._gauge = Gauge(
            "mdtp_event_loop_lag_seconds", "Lateness of a periodic wake-up", registry=registry
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, loop.time() - start - self.interval_s)
            self._gauge.set(self.lag_s)


def liveness_checks(data_dir: Path, lag: LoopLagProbe) -> dict[str, str]:
    """Failed checks by name (empty when healthy)."""
    failed: dict[str, str] = {}
    probe = data_dir / ".healthz"
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as e:
        failed["store_writable"] = f"{data_dir}: {e.strerror}"
    try:
        free = shutil.disk_usage(data_dir).free
        if free < MIN_FREE_DISK_BYTES:
            failed["disk_space"] = f"{free // (1024 * 1024)} MiB free"
    except OSError as e:
        failed["disk_space"] = str(e)
    if lag.lag_s > MAX_LOOP_LAG_S:
        failed["event_loop_lag"] = f"{lag.lag_s:.2f} s"
    return failed


def health_app(
    registry: CollectorRegistry,
    liveness: Callable[[], dict[str, str]],
    readiness: Callable[[], dict[str, Any]],
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        failed = liveness()
        return web.json_response(
            {"ok": not failed, "failed": failed}, status=200 if not failed else 503
        )

    async def readyz(_: web.Request) -> web.Response:
        doc = readiness()
        return web.json_response(doc, status=200 if doc["ready"] else 503)

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
