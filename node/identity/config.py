"""Node configuration: one TOML file per node home, every key overridable by ``MDTP_*``.

The schema below is the single source of truth: it renders the documented ``config.toml``
that ``mdtp init`` writes, validates the file on load and maps environment variables
(``MDTP_<SECTION>_<KEY>``, upper case, e.g. ``MDTP_P2P_LISTEN``). Relative paths are
relative to the node home.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtp.node.errors import ConfigError


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    type: type
    default: Any
    doc: str
    minimum: int | None = None

    @property
    def env(self) -> str:
        return f"MDTP_{self.section}_{self.name}".upper()


MiB = 1024 * 1024


def _channel_queue_keys(channel: str, frames: int, size: int, carries: str) -> tuple[Key, Key]:
    what = f"Per-peer send queue bound of the {channel} channel ({carries})"
    return (
        Key("p2p", f"{channel}_queue_max_frames", int, frames, f"{what}, in frames.", 1),
        Key("p2p", f"{channel}_queue_max_bytes", int, size, f"{what}, in bytes.", 1024),
    )


SCHEMA: tuple[Key, ...] = (
    Key("node", "id", str, "", "This node's member id; must be a member in the genesis file."),
    Key("node", "genesis", str, "genesis.json", "Path of the genesis file."),
    Key("node", "node_key", str, "node_key.json", "Ed25519 node key file (mode 0600)."),
    Key("node", "data_dir", str, "data", "Directory of the LevelDB store and chunk store."),
    Key("tls", "ca", str, "ca.pem", "Consortium CA certificate (PEM)."),
    Key("tls", "cert", str, "node.pem", "This node's TLS certificate, issued by the CA."),
    Key("tls", "key", str, "node.key.pem", "This node's TLS private key (mode 0600)."),
    Key("p2p", "listen", str, "127.0.0.1:26600", "host:port of the mutual-TLS peer port."),
    Key(
        "p2p",
        "dial",
        str,
        "",
        "Dial some peers elsewhere than genesis says: 'node1=host:port,node2=host:port' "
        "(NAT, proxies). The peer's identity is still checked against genesis.",
    ),
    Key("p2p", "max_frame_bytes", int, 16 * MiB, "Largest peer frame accepted or sent.", 1024),
    # One send queue per peer and channel (see node/p2p/channels.py); a full one refuses the
    # frames of its own channel only.
    *_channel_queue_keys("consensus", 8192, 64 * MiB, "consensus messages"),
    *_channel_queue_keys("status", 64, 1 * MiB, "status beacons, keepalives"),
    *_channel_queue_keys("data_requests", 1024, 4 * MiB, "chunk requests, acks, cancels"),
    *_channel_queue_keys("txs", 1024, 32 * MiB, "transaction gossip"),
    *_channel_queue_keys("blocks", 64, 64 * MiB, "state-transfer requests and blocks"),
    *_channel_queue_keys("data_chunks", 1024, 64 * MiB, "chunks served, end of each fetch"),
    Key(
        "p2p",
        "max_bad_frames",
        int,
        16,
        "Undecodable/oversized frames from one connection before it is closed.",
        1,
    ),
    Key("p2p", "handshake_timeout_ms", int, 5000, "TLS + identity handshake deadline.", 1),
    Key(
        "p2p",
        "max_connections",
        int,
        128,
        "Inbound peer connections held at once, authenticated or not; more are refused "
        "as soon as they are accepted.",
        1,
    ),
    Key(
        "p2p",
        "max_connections_per_address",
        int,
        32,
        "Inbound peer connections held at once from one remote address.",
        1,
    ),
    Key("p2p", "reconnect_backoff_ms_min", int, 100, "First reconnect delay.", 1),
    Key("p2p", "reconnect_backoff_ms_max", int, 5000, "Reconnect delay cap (with jitter).", 1),
    Key("p2p", "idle_timeout_ms", int, 15000, "A link with no frame for this long is dropped.", 1),
    Key("consensus", "block_txs_max", int, 2000, "Most transactions a proposal carries.", 1),
    Key("consensus", "block_bytes_max", int, 4 * MiB, "Most transaction bytes per proposal.", 1024),
    Key(
        "consensus",
        "proposal_wait_ms",
        int,
        0,
        "How long a primary waits to fill a block (blocks also fill while earlier ones commit).",
        0,
    ),
    Key("mempool", "max_txs", int, 50_000, "Mempool bound by count (then HTTP 503).", 1),
    Key("mempool", "max_bytes", int, 64 * MiB, "Mempool bound by bytes (then HTTP 503).", 1024),
    Key(
        "mempool", "nonce_window", int, 1000, "How far ahead of its last nonce a sender may be.", 1
    ),
    Key("mempool", "max_tx_bytes", int, 64 * 1024, "Largest transaction accepted.", 256),
    Key("api", "listen", str, "127.0.0.1:26601", "host:port of the HTTPS API."),
    Key("api", "max_body_bytes", int, 4 * MiB, "Largest API request body.", 1024),
    Key(
        "api",
        "max_connections",
        int,
        512,
        "API connections held at once; more are refused as soon as they are accepted.",
        1,
    ),
    Key("api", "max_connections_per_address", int, 64, "API connections from one address.", 1),
    Key(
        "api",
        "metrics_max_connections",
        int,
        32,
        "Connections the metrics port holds at once (it shares the API's deadlines below).",
        1,
    ),
    Key(
        "api",
        "metrics_max_connections_per_address",
        int,
        16,
        "Connections the metrics port holds at once from one address.",
        1,
    ),
    Key("api", "tls_handshake_timeout_ms", int, 5000, "TLS handshake deadline of the API.", 1),
    Key(
        "api",
        "header_timeout_ms",
        int,
        10_000,
        "From a request's first byte, its request line and headers must arrive within this "
        "(API and metrics port).",
        1,
    ),
    Key(
        "api",
        "body_timeout_ms",
        int,
        60_000,
        "Once its headers are in, a request's whole body must arrive within this.",
        1,
    ),
    Key(
        "api",
        "idle_timeout_ms",
        int,
        30_000,
        "A connection with no request in progress is closed after this (keep-alive).",
        1,
    ),
    Key(
        "api",
        "max_header_bytes",
        int,
        16 * 1024,
        "Largest request line plus headers of one request (API and metrics port).",
        1024,
    ),
    Key("metrics", "listen", str, "127.0.0.1:26602", "host:port of /metrics, /healthz, /readyz."),
    Key("data", "window_chunks", int, 16, "Unacknowledged chunks in flight per fetch.", 1),
    Key("data", "max_fetches", int, 16, "Fetches served (and relayed) at once.", 1),
    Key("data", "max_fetches_per_peer", int, 4, "Fetches served at once to one member.", 1),
    Key(
        "data",
        "nonce_cache_max",
        int,
        10_000,
        "Fetch request nonces remembered per consumer account (each until it expires).",
        1,
    ),
    Key("data", "request_ttl_ms_max", int, 300_000, "Furthest ahead a request may expire.", 1),
    Key("data", "ack_timeout_ms", int, 30_000, "A fetch with no progress for this long ends.", 1),
    Key("compute", "timeout_ms", int, 10_000, "A clean-room query running longer stops.", 1),
    Key("compute", "memory_limit_mb", int, 256, "Memory the clean-room engine may use.", 16),
    Key("compute", "max_queries", int, 4, "Clean-room queries served at once.", 1),
    Key(
        "compute",
        "result_bytes_max",
        int,
        1024 * 1024,
        "Largest clean-room result (canonical JSON) returned.",
        1024,
    ),
    Key(
        "compute",
        "dataset_bytes_max",
        int,
        256 * 1024 * 1024,
        "Largest dataset (stored bytes) loaded for clean-room queries.",
        1024,
    ),
    Key("log", "level", str, "info", "debug, info, warning or error."),
    Key("log", "json", bool, False, "One JSON object per log line instead of text."),
    Key(
        "log",
        "remote_lines_per_source",
        int,
        10,
        "Log lines one remote source (address or member) may cause per window; more are "
        "dropped and counted.",
        1,
    ),
    Key(
        "log",
        "remote_lines_total",
        int,
        100,
        "Log lines all remote sources together may cause per window.",
        1,
    ),
    Key("log", "remote_window_ms", int, 10_000, "Window of the remote log-line limits.", 1),
)

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_address(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    source: str
    values: dict[str, Any]

    def get(self, section: str, name: str) -> Any:
        return self.values[f"{section}.{name}"]

    def path(self, section: str, name: str) -> Path:
        p = Path(self.get(section, name))
        return p if p.is_absolute() else self.home / p

    def address(self, section: str) -> tuple[str, int]:
        return _parse_address(self.get(section, "listen"), f"{self.source}: [{section}] listen")

    def dial_overrides(self) -> dict[str, str]:
        """``p2p.dial`` as {peer id: host:port}."""
        out: dict[str, str] = {}
        raw: str = self.get("p2p", "dial")
        for item in filter(None, (part.strip() for part in raw.split(","))):
            peer, sep, address = item.partition("=")
            if not sep or not peer:
                raise ConfigError(f"{self.source}: [p2p] dial: expected id=host:port, got {item!r}")
            _parse_address(address, f"{self.source}: [p2p] dial {peer}")
            out[peer] = address
        return out

    @property
    def node_id(self) -> str:
        value: str = self.get("node", "id")
        return value


def render_config(overrides: dict[str, Any]) -> str:
    """A documented config.toml: every key with its doc line; defaults commented out."""
    lines = [
        "# mdtp node configuration. Every key can be overridden by an environment variable",
        "# MDTP_<SECTION>_<KEY> (e.g. MDTP_P2P_LISTEN). Relative paths are relative to the",
        "# node home. Keys left commented out take the default shown.",
    ]
    section = ""
    for key in SCHEMA:
        if key.section != section:
            section = key.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {key.doc} (env {key.env})")
        full = f"{key.section}.{key.name}"
        value = overrides.get(full, key.default)
        rendered = _toml_value(value)
        if full in overrides:
            lines.append(f"{key.name} = {rendered}")
        else:
            lines.append(f"# {key.name} = {rendered}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _coerce(key: Key, value: Any, where: str) -> Any:
    if key.type is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if key.type is int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        if key.minimum is not None and value < key.minimum:
            raise ConfigError(f"{where}: must be at least {key.minimum}, got {value}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    return value


def load_config(home: Path, env: dict[str, str] | None = None) -> NodeConfig:
    """Load ``home/config.toml``, apply ``MDTP_*`` overrides, validate every key."""
    env = dict(os.environ) if env is None else env
    path = home / "config.toml"
    if not home.is_dir():
        raise ConfigError(f"{home}: node home not found (create one with: mdtp init --home {home})")
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (run: mdtp init --home {home})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    known = {key.section: set() for key in SCHEMA}  # type: dict[str, set[str]]
    for key in SCHEMA:
        known[key.section].add(key.name)
    for section, body in raw.items():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for name in body:
            if name not in known[section]:
                raise ConfigError(f"{path}: unknown key '{name}' in [{section}]")
    values: dict[str, Any] = {}
    for key in SCHEMA:
        full = f"{key.section}.{key.name}"
        if key.env in env:
            values[full] = _coerce(key, env[key.env], f"environment variable {key.env}")
        else:
            value = raw.get(key.section, {}).get(key.name, key.default)
            values[full] = _coerce(key, value, f"{path}: [{key.section}] {key.name}")
    if not values["node.id"]:
        raise ConfigError(f"{path}: [node] id is required")
    if values["log.level"] not in _LOG_LEVELS:
        raise ConfigError(f"{path}: [log] level must be one of {', '.join(_LOG_LEVELS)}")
    if values["p2p.reconnect_backoff_ms_max"] < values["p2p.reconnect_backoff_ms_min"]:
        raise ConfigError(f"{path}: [p2p] reconnect_backoff_ms_max is below the minimum")
    cfg = NodeConfig(home=home, source=str(path), values=values)
    cfg.dial_overrides()
    for section in ("p2p", "api", "metrics"):
        cfg.address(section)
    return cfg
