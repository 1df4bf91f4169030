"""The audit index: every successful trading transaction appends an entry to the trail of
each subject it touches (the dataset, the contract, the accounts involved).

An entry holds the height, the transaction id, the block time, the type, the acting account
and a one-line summary. Entries of one subject are numbered 1, 2, ... in execution order, so a
trail reads back in order with one prefix scan. The commit certificate of the height and the
transaction's index in its block are joined in by the storage layer, which keeps both by
height and by transaction id; handlers do not see the index.
"""

from __future__ import annotations

from typing import Any, Literal

from mdtp.node.ledger.machine import BlockContext
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.tx import Tx

Kind = Literal["account", "dataset", "contract", "member"]
# ``member``: governance proposals and votes about a member (or ``~policy``), see
# node.ledger.governance.rules
KINDS: tuple[Kind, ...] = ("account", "dataset", "contract", "member")
SUMMARY_MAX_LEN = 200
MAX_SUBJECTS_PER_TX = 8


def record(
    ctx: BlockContext,
    state: Overlay,
    tx: Tx,
    subjects: list[tuple[Kind, str]],
    summary: str,
) -> None:
    """Append one entry to the trail of every distinct subject, in the order given."""
    unique = list(dict.fromkeys(subjects))
    assert 0 < len(unique) <= MAX_SUBJECTS_PER_TX, unique
    entry_base = {
        "height": ctx.height,
        "tx_id": tx.id,
        "time_ms": ctx.timestamp_ms,
        "type": tx.type,
        "actor": tx.sender,
        "summary": summary[:SUMMARY_MAX_LEN],
    }
    for kind, subject in unique:
        count_key = layout.audit_count_key(kind, subject)
        raw = state.get(count_key)
        seq = (int.from_bytes(raw, "big") if raw else 0) + 1
        state.put(count_key, seq.to_bytes(8, "big"))
        state.put_obj(layout.audit_key(kind, subject, seq), {**entry_base, "seq": seq})


def event(ctx: BlockContext, tx: Tx) -> dict[str, Any]:
    """Where and when a transaction executed, as every record of the rules keeps it."""
    return {"height": ctx.height, "time_ms": ctx.timestamp_ms, "tx_id": tx.id}


def contract_subjects(contract: dict[str, Any], tx: Tx) -> list[tuple[Kind, str]]:
    """Audit subjects of a contract event: the contract, its dataset, sender and parties."""
    return [
        ("contract", contract["id"]),
        ("dataset", contract["dataset_id"]),
        ("account", tx.sender),
        ("account", contract["supplier"]),
        ("account", contract["consumer"]),
    ]
