"""The one way to sign a transaction: each sender's next nonce, one lifetime policy.

The ledger takes nonce n from an account only when its last committed nonce is n - 1
(:mod:`node.ledger.machine`). A signer that sends again before its last transaction committed
must count ahead, so the next nonce of a sender is the larger of *committed + 1* and *one
above the last nonce this signer handed out for it* (the nonces in flight). A transaction
that leaves without consuming its nonce makes every nonce counted after it unusable: then
:meth:`Signer.release` forgets the count, and the next nonce comes from the committed state
again. That happens when the ledger refuses it in a common check (:data:`NONCE_KEPT`; see
:meth:`Signer.refused`), when the mempool turns it away, or when it is dropped unexecuted.

The committed nonce comes from a :class:`NonceSource`: a node's API for a client, the local
state for the node's own account; this module does no I/O of its own. Per sender, the lookup
and the count happen under one lock, so concurrent callers never get the same nonce.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import sign_tx

# Long enough for a transaction to wait out a view change or two in the mempool; short enough
# that a lost one leaves the mempool (and frees its nonce) within minutes.
TX_LIFETIME_MS = 10 * 60 * 1000

# Refusals by the common checks of node.ledger.machine: the block records the transaction as
# failed but leaves the sender's nonce where it was.
NONCE_KEPT = frozenset(
    {"expired", "wrong_key", "revoked", "unknown_sender", "bad_nonce", "malformed"}
)


class NonceSource(Protocol):
    async def committed_nonce(self, account_id: str) -> int:
        """The last nonce the committed state consumed for ``account_id`` (0 if none)."""
        ...


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    id: bytes
    type: str
    sender: str
    nonce: int
    expires_at_ms: int


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Signer:
    """Signs transactions for one chain with each sender's next nonce."""

    def __init__(
        self,
        chain_id: str,
        nonces: NonceSource,
        *,
        lifetime_ms: int = TX_LIFETIME_MS,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        assert lifetime_ms > 0, lifetime_ms
        self.chain_id = chain_id
        self.nonces = nonces
        self.lifetime_ms = lifetime_ms
        self._clock_ms = clock_ms
        # Next nonce to hand out per sender, while some are in flight. One entry and one lock
        # per account this signer signs for: a client's own accounts, or the node's one.
        self._next: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def sign(
        self,
        key: SigningKey,
        tx_type: str,
        body: Mapping[str, Any],
        *,
        sender: str | None = None,
    ) -> SignedTx:
        """``body`` as a ``tx_type`` transaction from ``sender`` (the key's own account by
        default), signed by ``key`` with the sender's next nonce."""
        sender = sender or key.account_id
        lock = self._locks.setdefault(sender, asyncio.Lock())
        async with lock:
            committed = await self.nonces.committed_nonce(sender)
            nonce = max(committed + 1, self._next.get(sender, 0))
            expires_at_ms = self._clock_ms() + self.lifetime_ms
            raw = sign_tx(
                key,
                chain_id=self.chain_id,
                type_=tx_type,
                sender=sender,
                nonce=nonce,
                expires_at_ms=expires_at_ms,
                body=dict(body),
            )
            self._next[sender] = nonce + 1
        tx_id = hashlib.sha256(raw).digest()
        return SignedTx(raw, tx_id, tx_type, sender, nonce, expires_at_ms)

    def release(self, tx: SignedTx) -> None:
        """``tx`` left without consuming its nonce: count its sender's nonces afresh."""
        self._next.pop(tx.sender, None)

    def refused(self, tx: SignedTx, reason: str) -> None:
        """The ledger executed ``tx`` and refused it with ``reason``."""
        if reason in NONCE_KEPT:
            self.release(tx)
