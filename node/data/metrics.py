"""Metrics of the chunk service (supplier and consumer side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DataMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.served_bytes = Counter(
            "mdtp_data_served_bytes_total",
            "Ciphertext bytes this node served to consumers' nodes",
            registry=registry,
        )
        self.served_chunks = Counter(
            "mdtp_data_served_chunks_total", "Chunks this node served", registry=registry
        )
        self.refusals = Counter(
            "mdtp_data_refusals_total",
            "Fetch and upload requests refused, by reason (no data byte served)",
            ["reason"],
            registry=registry,
        )
        self.active_serving = Gauge(
            "mdtp_data_serving_active", "Fetches this node is serving now", registry=registry
        )
        self.active_fetching = Gauge(
            "mdtp_data_fetching_active", "Fetches this node relays now", registry=registry
        )
        self.fetched_bytes = Counter(
            "mdtp_data_fetched_bytes_total",
            "Verified ciphertext bytes this node relayed to its clients",
            registry=registry,
        )
        self.fetched_chunks = Counter(
            "mdtp_data_fetched_chunks_total", "Verified chunks relayed", registry=registry
        )
        self.fetch_failures = Counter(
            "mdtp_data_fetch_failures_total",
            "Fetches that failed after they started, by reason",
            ["reason"],
            registry=registry,
        )
        self.fetch_throughput = Histogram(
            "mdtp_data_fetch_throughput_bytes_per_second",
            "Throughput of completed fetches, in bytes per second",
            buckets=tuple(mib * 2**20 for mib in (1, 5, 10, 25, 50, 100, 200, 400, 800, 1600)),
            registry=registry,
        )
        self.stored_bytes = Counter(
            "mdtp_data_stored_bytes_total", "Chunk bytes uploaded to this node", registry=registry
        )
        self.records_posted = Counter(
            "mdtp_data_records_posted_total",
            "Fulfilment transactions this node submitted, by type",
            ["type"],
            registry=registry,
        )
        self.receipts_pending = Gauge(
            "mdtp_data_receipts_pending",
            "Downloads served (or being served) whose receipt the ledger does not hold yet",
            registry=registry,
        )
        self.receipt_retries = Counter(
            "mdtp_data_receipt_retries_total",
            "Delivery receipts posted again (not accepted, not committed in time)",
            registry=registry,
        )
        self.receipts_refused = Counter(
            "mdtp_data_receipts_refused_total",
            "Delivery receipts the ledger refused by rule, by reason (the download still counts)",
            ["reason"],
            registry=registry,
        )
        self.stream_stops = Counter(
            "mdtp_data_stream_stops_total",
            "Fetches stopped mid-stream because authorisation no longer held, by reason",
            ["reason"],
            registry=registry,
        )
        self.grants_refused = Counter(
            "mdtp_data_grants_refused_total",
            "Access grants the ledger refused by rule, by reason (not retried)",
            ["reason"],
            registry=registry,
        )
