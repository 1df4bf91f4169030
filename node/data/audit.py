"""Refusals of the chunk service: each is counted by reason and written to the audit log."""

from __future__ import annotations

import logging
from typing import Any

from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.protocol import Refused

audit_log = logging.getLogger("mdtp.data.audit")


def refused(metrics: DataMetrics, reason: str, what: str, who: str, message: str = "") -> Refused:
    """Count and audit-log a refusal; return it for the caller to raise or send."""
    metrics.refusals.labels(reason).inc()
    audit_log.warning("refused %s by %s: %s %s", what, who, reason, message)
    return Refused(reason, message)


def current_key(account: dict[str, Any] | None) -> bytes | None:
    """The key an account signs with now; None if it is unknown or not active."""
    if account is None or account["status"] != "active":
        return None
    return bytes(account["public_key"])
