"""Metrics of the clean room (supplier and consumer side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ComputeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "mdtp_compute_queries_refused_total",
            "Clean-room queries refused, by reason (no result returned, no budget used)",
            ["reason"],
            registry=registry,
        )
        self.executed = Counter(
            "mdtp_compute_queries_executed_total",
            "Clean-room queries this node ran and recorded with a compute.receipt",
            registry=registry,
        )
        self.suppressed_rows = Counter(
            "mdtp_compute_rows_suppressed_total",
            "Result rows withheld because they aggregate fewer identities than the threshold",
            registry=registry,
        )
        self.running = Gauge(
            "mdtp_compute_queries_running",
            "Clean-room queries this node runs now",
            registry=registry,
        )
        self.seconds = Histogram(
            "mdtp_compute_query_seconds",
            "Time from an authorised query to its committed receipt",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
