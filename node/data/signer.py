"""The node account's signer: the grants and delivery receipts this node posts itself.

Nonces: the ledger takes nonce n from an account only when its last committed nonce is n - 1,
and the node posts again before its last transaction committed, so it counts ahead: the next
nonce is one above the larger of the committed nonce and the nonces of its own transactions
still pending. One that left the mempool uncommitted (expired, evicted) would leave every
later nonce waiting forever, so then the count restarts from the committed nonce.

The committed nonce comes through a :class:`NonceSource`, the same seam as the shared
client signer's (``node.ledger.signer``), so this signer can become an instance of it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from mdtp.node.data.ports import CommittedLedger, Mempool, TxSubmitter, now_ms
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import sign_tx

TX_LIFETIME_MS = 120_000


class NonceSource(Protocol):
    async def committed_nonce(self, account_id: str) -> int:
        """The last nonce the committed state consumed for ``account_id`` (0 if none)."""
        ...


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
        nonces: NonceSource,
        submitter: TxSubmitter,
        ledger: CommittedLedger,
        mempool: Mempool,
    ) -> None:
        self.key = key
        self.account = key.account_id
        self.chain_id = chain_id
        self._nonces = nonces
        self._submitter = submitter
        self._ledger = ledger
        self._mempool = mempool
        self._lock = asyncio.Lock()
        self._pending: dict[bytes, int] = {}  # tx id -> nonce, submitted and not yet committed

    async def _next_nonce(self) -> int:
        committed = await self._nonces.committed_nonce(self.account)
        for tx_id in list(self._pending):
            if self._ledger.tx_location(tx_id) is not None:
                del self._pending[tx_id]
            elif tx_id not in self._mempool:
                self._pending.clear()
                break
        live = [n for n in self._pending.values() if n > committed]
        return max([committed, *live]) + 1

    async def submit(self, type_: str, body: dict[str, Any]) -> bytes:
        """Sign ``body`` as a ``type_`` transaction of the node account and submit it; its id."""
        async with self._lock:
            nonce = await self._next_nonce()
            raw = sign_tx(
                self.key,
                chain_id=self.chain_id,
                type_=type_,
                sender=self.account,
                nonce=nonce,
                expires_at_ms=now_ms() + TX_LIFETIME_MS,
                body=body,
            )
            tx = await self._submitter.submit(raw)
            self._pending[tx.id] = nonce
            return tx.id
