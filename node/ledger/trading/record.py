"""A supplier's track record: counters kept in state, so reading one is O(1).

``contracts`` counts the supplier's contracts that became ACTIVE (counted once, at
activation); ``disputes_opened`` every dispute a consumer opened on one of them, and
``disputes_upheld`` / ``disputes_settled`` / ``disputes_rejected`` how they were resolved
(:mod:`.disputes`). Only the rules write it; the catalog and the API read it.
"""

from __future__ import annotations

from typing import Any

from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import layout

FIELDS = (
    "contracts",
    "disputes_opened",
    "disputes_upheld",
    "disputes_settled",
    "disputes_rejected",
)


def track_record(kv: ReadableKV, supplier: str) -> dict[str, Any]:
    """The counters of ``supplier`` (all zero for an account with no history)."""
    stored: dict[str, int] = layout.read(kv, layout.track_record_key(supplier)) or {}
    return {"account": supplier, **{name: stored.get(name, 0) for name in FIELDS}}


def bump(state: Overlay, supplier: str, field: str) -> None:
    assert field in FIELDS, field
    stored: dict[str, int] = layout.read(state, layout.track_record_key(supplier)) or {}
    stored[field] = stored.get(field, 0) + 1
    state.put_obj(layout.track_record_key(supplier), stored)
