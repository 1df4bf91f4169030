"""``note.set``: the smallest application — an account stores a short value under a key.

Used by the load generator and the tests of the replicated ledger itself; the trading rules
register their own transaction types beside it.
"""

from __future__ import annotations

from mdtp.node.ledger.machine import BlockContext, Ledger, Refusal
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import Tx

NOTE_PREFIX = b"note/"
MAX_NOTE_KEY = 64
MAX_NOTE_VALUE = 1024


def note_key(account_id: str, key: str) -> bytes:
    return NOTE_PREFIX + account_id.encode() + b"/" + key.encode()


def note_set(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    key, value = tx.body.get("key"), tx.body.get("value")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_NOTE_KEY:
        raise Refusal("bad_body", f"key must be a string of 1..{MAX_NOTE_KEY} characters")
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes) or len(value) > MAX_NOTE_VALUE:
        raise Refusal("bad_body", f"value must be at most {MAX_NOTE_VALUE} bytes")
    state.put(note_key(tx.sender, key), value)


def register(ledger: Ledger) -> None:
    ledger.register("note.set", note_set)
