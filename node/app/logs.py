"""Structured logging: one line per event, text or JSON, never secrets, never forged.

Every line is built by the formatters below, so what holds here holds for every call site,
the node's own and the libraries': (1) no control character that came with an input reaches
the log raw — text lines escape every control and line-separator character of the whole
line, the traceback included (``\\n``, ``\\x1b``, ``\\u2028``), JSON lines are JSON-escaped —
so an input can never start a line of its own; (2) lines caused by an outsider (a task that
serves a connection, see :mod:`mdtp.node.p2p.remote`) carry its source and are rate-limited
per source and in total (:class:`RemoteLineLimiter`); dropped lines are counted in
``mdtp_log_lines_dropped_total{reason}``, so garbage requests cannot grow the log without
bound.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mdtp.node.identity.config import NodeConfig
from mdtp.node.p2p.remote import REMOTE

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal
# or a log viewer may render as a line break or use to rewrite what is shown.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape(text: str) -> str:
    """``text`` with every control and line-separator character written as an escape."""
    return text.translate(_ESCAPES)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        source = getattr(record, "source", None)
        if source:
            line += f" [src {source}]"
        return escape(line)


# A LogRecord's own attributes; anything else on a record came with ``extra=`` (a field).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "source",
    "node_id",
}


def iso_utc(created: float) -> str:
    """``2026-11-30T13:14:57.123Z``: ISO 8601, UTC, milliseconds."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``node``,
    ``message``, ``source`` for a line an outsider caused, ``exc`` for a traceback, and every
    field the call site passed with ``extra=`` (as ``extra_NAME`` if NAME is one of those)."""

    def __init__(self, node_id: str = "") -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        node_id = getattr(record, "node_id", None) or self.node_id
        if node_id:
            doc["node"] = node_id
        doc["message"] = record.getMessage()
        source = getattr(record, "source", None)
        if source:
            doc["source"] = source
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                doc["extra_" + key if key in doc else key] = value
        # ensure_ascii escapes every control character and U+2028/U+2029 as well; a field that
        # is not JSON is written as its str()
        return json.dumps(doc, ensure_ascii=True, default=str)


@dataclass(frozen=True)
class RemoteLineLimits:
    """Log lines caused by outsiders allowed per window, per source and in total."""

    per_source: int = 10
    total: int = 100
    window_s: float = 10.0

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> RemoteLineLimits:
        return cls(
            per_source=cfg.get("log", "remote_lines_per_source"),
            total=cfg.get("log", "remote_lines_total"),
            window_s=cfg.get("log", "remote_window_ms") / 1000,
        )


class RemoteLineLimiter(logging.Filter):
    """Tags each record with its source (:data:`REMOTE`) and drops, counting them, the lines
    of a source beyond ``per_source`` in a window, and of all sources beyond ``total``.

    Windows are fixed and shared: the table of sources is emptied at each boundary, and a
    source gets an entry only while the total budget lasts, so it holds at most ``total``
    entries. CRITICAL lines always pass.
    """

    def __init__(
        self, limits: RemoteLineLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.limits = limits
        self.clock = clock
        self.dropped = {"per_source": 0, "total": 0}
        self._window_start = clock()
        self._lines: dict[str, int] = {}
        self._total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        source = getattr(record, "source", None) or REMOTE.get()
        if source is None:
            return True
        record.source = source
        if record.levelno >= logging.CRITICAL:
            return True
        now = self.clock()
        if now - self._window_start >= self.limits.window_s:
            self._window_start, self._lines, self._total = now, {}, 0
        if self._total >= self.limits.total:
            self.dropped["total"] += 1
            return False
        seen = self._lines.get(source, 0)
        if seen >= self.limits.per_source:
            self.dropped["per_source"] += 1
            return False
        self._lines[source] = seen + 1
        self._total += 1
        return True


class _DroppedLines(Collector):
    def __init__(self, limiter: RemoteLineLimiter) -> None:
        self.limiter = limiter

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "mdtp_log_lines_dropped",
            "Log lines caused by outsiders dropped by the rate limit, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.limiter.dropped.items()):
            family.add_metric([reason], float(count))
        yield family


class _NodeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (so the daemon can find its limiter)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.limiter = RemoteLineLimiter(RemoteLineLimits())
        self.addFilter(self.limiter)


def setup_logging(level: str, as_json: bool, node_id: str = "") -> None:
    handler = _NodeLogHandler()
    if as_json:
        handler.setFormatter(_JsonFormatter(node_id))
    else:
        fmt = f"%(asctime)s %(levelname)-7s {node_id + ' ' if node_id else ''}%(name)s: %(message)s"
        formatter = _TextFormatter(fmt)
        formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"  # ISO 8601 UTC, as in JSON lines
        formatter.default_msec_format = "%s.%03dZ"
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def limit_remote_lines(limits: RemoteLineLimits, registry: CollectorRegistry) -> None:
    """Apply the configured limits to the node's log handler and export its drop count
    (a no-op when :func:`setup_logging` was not called, e.g. a node run inside a test)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _NodeLogHandler):
            handler.limiter.limits = limits
            registry.register(_DroppedLines(handler.limiter))
            return
