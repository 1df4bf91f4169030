"""Prometheus metrics of the peer links."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class P2PMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.peers_connected = Gauge(
            "mdtp_p2p_peers_connected",
            "Authenticated peer links by direction",
            ["direction"],
            registry=registry,
        )
        self.frames_sent = Counter(
            "mdtp_p2p_frames_sent_total", "Frames written to peers", ["kind"], registry=registry
        )
        self.frames_received = Counter(
            "mdtp_p2p_frames_received_total",
            "Well-formed frames read from peers",
            ["kind"],
            registry=registry,
        )
        self.bytes_sent = Counter(
            "mdtp_p2p_sent_bytes_total", "Frame bytes written to peers", registry=registry
        )
        self.bytes_received = Counter(
            "mdtp_p2p_received_bytes_total", "Frame bytes read from peers", registry=registry
        )
        self.frames_dropped = Counter(
            "mdtp_p2p_frames_dropped_total",
            "Frames dropped, by reason (oversized, undecodable, queue_full, ...)",
            ["reason"],
            registry=registry,
        )
        self.reads_paused = Counter(
            "mdtp_p2p_reads_paused_total",
            "Times a link stopped reading because its peer outran what the node serves it",
            registry=registry,
        )
        self.send_queue_full = Counter(
            "mdtp_p2p_send_queue_full_total",
            "Frames refused because the peer's queue of their channel was full, by channel",
            ["channel"],
            registry=registry,
        )
        self.send_queue_stale = Counter(
            "mdtp_p2p_send_queue_stale_total",
            "Frames queued for a peer whose link is down, dropped for newer ones, by channel",
            ["channel"],
            registry=registry,
        )
        self.send_queue_bytes = Gauge(
            "mdtp_p2p_send_queue_bytes",
            "Frame bytes queued for peers and not yet written, by channel",
            ["channel"],
            registry=registry,
        )
        self.connections_refused = Counter(
            "mdtp_p2p_connections_refused_total",
            "Inbound or outbound connections refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.connections_open = Gauge(
            "mdtp_p2p_connections_open",
            "Inbound connections held on the p2p port, authenticated or not",
            registry=registry,
        )
        self.reconnects = Counter(
            "mdtp_p2p_reconnects_total", "Outbound connection attempts", registry=registry
        )
