"""The node account's signer: the grants and delivery receipts this node posts itself.

It signs through the one signer of the code base (:class:`mdtp.node.ledger.signer.Signer`),
with the node's own committed state as its nonce source, and tells it when a transaction of
the node account left without consuming its nonce: refused by the common checks on commit,
or gone from the mempool uncommitted (expired, evicted) — else every later nonce would wait
forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mdtp.node.data.ports import CommittedLedger, Mempool, TxSubmitter
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.signer import SignedTx, Signer

TX_LIFETIME_MS = 120_000


class CommittedNonces:
    """Nonces from this node's own committed state (no network round trip)."""

    def __init__(self, submitter: TxSubmitter) -> None:
        self._submitter = submitter

    async def committed_nonce(self, account_id: str) -> int:
        return self._submitter.committed_nonce(account_id)


class NodeSigner:
    """Signs and submits the node account's transactions, one at a time."""

    def __init__(
        self,
        key: SigningKey,
        chain_id: str,
        submitter: TxSubmitter,
        ledger: CommittedLedger,
        mempool: Mempool,
    ) -> None:
        self.key = key
        self.account = key.account_id
        self._signer = Signer(chain_id, CommittedNonces(submitter), lifetime_ms=TX_LIFETIME_MS)
        self._submitter = submitter
        self._ledger = ledger
        self._mempool = mempool
        self._lock = asyncio.Lock()
        self._pending: dict[bytes, SignedTx] = {}  # submitted, not yet committed

    def _settle(self) -> None:
        for tx_id, tx in list(self._pending.items()):
            location = self._ledger.tx_location(tx_id)
            if location is not None:
                del self._pending[tx_id]
                if not location.ok:
                    self._signer.refused(tx, location.reason)
            elif tx_id not in self._mempool:
                self._pending.clear()
                self._signer.release(tx)
                return

    async def submit(self, type_: str, body: dict[str, Any]) -> bytes:
        """Sign ``body`` as a ``type_`` transaction of the node account and submit it; its id."""
        async with self._lock:
            self._settle()
            tx = await self._signer.sign(self.key, type_, body)
            try:
                await self._submitter.submit(tx.raw)
            except Exception:
                self._signer.release(tx)
                raise
            self._pending[tx.id] = tx
            return tx.id
