"""Bounds of the chunk service (config section ``[data]``; the daemon builds them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataLimits:
    window_chunks: int = 16
    max_fetches: int = 16
    max_fetches_per_peer: int = 4
    nonce_cache_max: int = 10_000  # per consumer account
    request_ttl_ms_max: int = 300_000
    ack_timeout_ms: int = 30_000
