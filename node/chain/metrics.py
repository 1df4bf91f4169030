"""Prometheus metrics of consensus, execution, state transfer and the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class _CoreCounters(Collector):
    """Exports counters the consensus core keeps itself (by one label), as they are."""

    def __init__(
        self, name: str, documentation: str, label: str, source: Callable[[], dict[str, int]]
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.source = source

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.source().items()):
            family.add_metric([value], count)
        yield family


class DriverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.height = Gauge(
            "mdtp_consensus_height", "Height of the last executed block", registry=registry
        )
        self.view = Gauge("mdtp_consensus_view", "Current view", registry=registry)
        self.epoch = Gauge(
            "mdtp_consensus_epoch",
            "Membership epoch this node's consensus core works in (views restart at 0 in each)",
            registry=registry,
        )
        self.view_changes = Counter(
            "mdtp_consensus_view_changes_total", "Views this replica moved to", registry=registry
        )
        self.stable_checkpoint = Gauge(
            "mdtp_consensus_stable_checkpoint_height",
            "Height of the stable checkpoint",
            registry=registry,
        )
        self.commit_latency = Histogram(
            "mdtp_consensus_commit_latency_seconds",
            "From first sight of a proposal to its execution",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.block_txs = Histogram(
            "mdtp_block_transactions",
            "Transactions per committed block",
            buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
            registry=registry,
        )
        self.txs_committed = Counter(
            "mdtp_transactions_committed_total",
            "Transactions executed, by result",
            ["result"],
            registry=registry,
        )
        self.frames_dropped = Counter(
            "mdtp_consensus_frames_dropped_total",
            "Consensus frames dropped before the core, by reason",
            ["reason"],
            registry=registry,
        )
        self.evidence = Counter(
            "mdtp_consensus_evidence_total",
            "Conflicting signed messages recorded, by offender",
            ["offender"],
            registry=registry,
        )
        self.state_transfer_target = Gauge(
            "mdtp_state_transfer_target_height",
            "Height state transfer is fetching up to",
            registry=registry,
        )
        self.state_transfer_blocks = Counter(
            "mdtp_state_transfer_blocks_total",
            "Blocks applied by state transfer",
            registry=registry,
        )
        self.state_transfer_peer_strikes = Counter(
            "mdtp_state_transfer_peer_strikes_total",
            "Strikes state transfer gave a peer (timeout, bad_response, slow), by peer and reason",
            ["peer", "reason"],
            registry=registry,
        )
        self.state_transfer_active = Gauge(
            "mdtp_state_transfer_active", "1 while this node is catching up", registry=registry
        )
        self.store_write_latency = Histogram(
            "mdtp_store_write_latency_seconds",
            "Latency of synced LevelDB batches",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.halted = Gauge(
            "mdtp_consensus_halted", "1 if this replica halted (state diverged)", registry=registry
        )

    def export_core(
        self,
        *,
        rejections: Callable[[], dict[str, int]],
        suspicions: Callable[[], dict[str, int]],
        requests_tracked: Callable[[], int],
    ) -> None:
        """What the core counts itself: rejected messages, suspicions of the primary (by
        cause: progress, request, ...) and transactions under the request timer."""
        self.registry.register(
            _CoreCounters(
                "mdtp_consensus_messages_rejected",
                "Consensus messages rejected by the core, by reason",
                "reason",
                rejections,
            )
        )
        self.registry.register(
            _CoreCounters(
                "mdtp_consensus_suspicions",
                "Times this replica suspected the primary, by cause (progress, request, ...)",
                "cause",
                suspicions,
            )
        )
        tracked = Gauge(
            "mdtp_consensus_requests_tracked",
            "Transactions whose request timer runs at this replica",
            registry=self.registry,
        )
        tracked.set_function(lambda: float(requests_tracked()))
