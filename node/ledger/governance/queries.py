"""Reads of the governance state for the API and the CLI: the membership in effect, the
history of epochs, and proposals with their votes.

Every answer depends only on the committed state and the height and block time it is read
at (an open proposal past its expiry reads as ``expired``), never on the node's clock.
"""

from __future__ import annotations

from typing import Any

from mdtp.node.ledger.governance import layout
from mdtp.node.ledger.governance.membership import (
    Epoch,
    epoch_at,
    history,
    membership_of,
)
from mdtp.node.ledger.governance.rules import STATUSES, effective_status, load_proposal, tally
from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading.layout import decode, last_segment
from mdtp.node.ledger.trading.queries import jsonable

LIMIT_MAX = 500


def epoch_view(epoch: Epoch) -> dict[str, Any]:
    m = membership_of(epoch)
    return {**epoch.to_record(), "n": m.n, "f": m.f, "quorum": m.quorum}


def members(kv: ReadableKV, height: int) -> dict[str, Any]:
    """The epoch in effect at ``height`` and the epochs scheduled after it."""
    epochs = history(kv)
    current = epoch_at(epochs, height)
    return {
        "current": epoch_view(current),
        "scheduled": [epoch_view(e) for e in epochs if e.activation_height > height],
    }


def epochs(kv: ReadableKV) -> list[dict[str, Any]]:
    return [epoch_view(e) for e in history(kv)]


def proposal(
    kv: ReadableKV, proposal_id: str, height: int, block_time_ms: int
) -> dict[str, Any] | None:
    record = load_proposal(kv, proposal_id)
    return None if record is None else _view(kv, record, height, block_time_ms)


def _view(
    kv: ReadableKV, record: dict[str, Any], height: int, block_time_ms: int
) -> dict[str, Any]:
    view: dict[str, Any] = jsonable(record)
    view["status"] = effective_status(record, block_time_ms)
    view["votes"] = [{"member": m, **view["votes"][m]} for m in sorted(view["votes"])]
    if view["status"] == "open":
        current = epoch_at(history(kv), height)
        approvals, rejections = tally(record, current)
        n = len(current.members)
        view["tally"] = {
            "members": n,
            "approvals": approvals,
            "rejections": rejections,
            "needed": current.policy.needed(n),
        }
    return view


def proposals(
    kv: ReadableKV,
    height: int,
    block_time_ms: int,
    *,
    status: str | None = None,
    after: str = "",
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Proposals in id order (page with ``after``), optionally only those of ``status``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit must be an integer in 1..{LIMIT_MAX}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    found: list[dict[str, Any]] = []
    for key, raw in kv.scan(layout.PROPOSAL):
        if last_segment(key) <= after:
            continue
        record = decode(raw)
        if status is not None and effective_status(record, block_time_ms) != status:
            continue
        found.append(_view(kv, record, height, block_time_ms))
        if len(found) == limit:
            break
    return found
