"""``/healthz`` and ``/readyz``: which checks fail, and what the JSON says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from mdtp.node.app.health import (
    LIVENESS_CHECKS,
    LoopLagProbe,
    PeersCheck,
    health_app,
    liveness_checks,
)
from mdtp.node.p2p.metrics import P2PMetrics


def test_a_data_dir_that_cannot_be_written_fails_store_writable(tmp_path: Path) -> None:
    # root ignores permission bits, so make the "directory" a regular file instead
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("")
    failed = liveness_checks(not_a_dir, LoopLagProbe(CollectorRegistry()))
    assert "store_writable" in failed and str(not_a_dir) in failed["store_writable"]


def test_a_healthy_data_dir_passes_and_exports_its_disk_space(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    assert liveness_checks(tmp_path, LoopLagProbe(registry)) == {}
    assert (registry.get_sample_value("mdtp_disk_free_bytes") or 0) > 0
    assert (registry.get_sample_value("mdtp_disk_size_bytes") or 0) > 0


def test_too_little_free_space_fails_disk_space(tmp_path: Path) -> None:
    failed = liveness_checks(tmp_path, LoopLagProbe(CollectorRegistry()), min_free_bytes=2**62)
    assert set(failed) == {"disk_space"}


def test_a_late_event_loop_fails_event_loop_lag(tmp_path: Path) -> None:
    lag = LoopLagProbe(CollectorRegistry())
    lag.lag_s = 3.0
    assert set(liveness_checks(tmp_path, lag)) == {"event_loop_lag"}


def test_peers_fails_only_after_the_grace_without_any_link() -> None:
    now = [0.0]
    links = [0]
    check = PeersCheck(lambda: links[0], grace_s=60, clock=lambda: now[0])
    now[0] = 59
    assert check(ready=False) is None  # starting: within the grace
    now[0] = 61
    assert check(ready=False) == "no peer link up for 61 s"
    links[0] = 1
    assert check(ready=False) is None
    links[0] = 0
    now[0] = 100
    assert check(ready=False) is None  # the last link was seen 39 s ago
    now[0] = 1000
    assert check(ready=True) is None  # a ready node (e.g. a one-member consortium) is fine


async def _client(
    tmp_path: Path, ready: dict[str, Any], links: int, grace_s: float = 0.0
) -> TestClient[Any, Any]:
    registry = CollectorRegistry()
    p2p = P2PMetrics(registry)
    p2p.peers_connected.labels("outbound").set(links)
    lag = LoopLagProbe(registry)
    app = health_app(
        registry, lambda: liveness_checks(tmp_path, lag), lambda: ready, peers_grace_s=grace_s
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_healthz_is_503_and_lists_failed_checks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("")  # not a directory: the store cannot be written
    client = await _client(data, {"ready": False, "reasons": ["starting"]}, links=0)
    try:
        r = await client.get("/healthz")
        assert r.status == 503
        doc = await r.json()
        assert doc["ok"] is False
        assert set(doc["failed"]) == {"store_writable", "peers"}
        assert doc["checks"]["store_writable"] is False
        assert doc["checks"]["event_loop_lag"] is True
        metrics = await (await client.get("/metrics")).text()
        assert 'mdtp_health_check_failing{check="store_writable"} 1.0' in metrics
        assert 'mdtp_health_check_failing{check="event_loop_lag"} 0.0' in metrics
    finally:
        await client.close()


async def test_healthz_is_200_with_every_check_listed_when_healthy(tmp_path: Path) -> None:
    client = await _client(tmp_path, {"ready": False, "reasons": ["starting"]}, links=2)
    try:
        r = await client.get("/healthz")
        assert r.status == 200
        doc = await r.json()
        assert doc == {"ok": True, "failed": {}, "checks": dict.fromkeys(LIVENESS_CHECKS, True)}
    finally:
        await client.close()


async def test_readyz_lists_the_reasons_it_is_not_ready(tmp_path: Path) -> None:
    reasons = ["starting", "connected to 1 peers, a quorum needs 2"]
    client = await _client(tmp_path, {"ready": False, "reasons": reasons, "peers": 1}, links=1)
    try:
        r = await client.get("/readyz")
        assert r.status == 503
        assert (await r.json())["reasons"] == reasons
    finally:
        await client.close()
    client = await _client(tmp_path, {"ready": True, "peers": 3}, links=3)
    try:
        r = await client.get("/readyz")
        assert r.status == 200
        assert (await r.json())["reasons"] == []
    finally:
        await client.close()
