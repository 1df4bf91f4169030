"""Small stand-ins for the node parts the chunk service depends on (node/data/ports.py)."""

from __future__ import annotations

from mdtp.node.ledger.state import MemoryKV, ReadableKV
from mdtp.node.ledger.tx import Tx, decode_tx
from mdtp.storage.blockstore import TxLocation

CHAIN = "chain"


class FakeChain:
    """Committed nonce, tx index and mempool of one node, driven by the test."""

    def __init__(self) -> None:
        self.committed = 0
        self.located: set[bytes] = set()
        self.pool: set[bytes] = set()
        self.submitted: list[Tx] = []
        self.state: ReadableKV = MemoryKV()

    # TxSubmitter
    def committed_nonce(self, account_id: str) -> int:
        return self.committed

    async def submit(self, raw: bytes) -> Tx:
        tx = decode_tx(raw, chain_id=CHAIN)
        self.submitted.append(tx)
        self.pool.add(tx.id)
        return tx

    async def wait_committed(self, tx_id: bytes) -> None:
        return None

    # CommittedLedger
    def tip(self) -> tuple[int, bytes]:
        return 0, b""

    def record(self, height: int) -> None:
        return None

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        return TxLocation(1, 0, True, "") if tx_id in self.located else None

    # Mempool
    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self.pool

    def commit(self, tx: Tx) -> None:
        self.pool.discard(tx.id)
        self.located.add(tx.id)
        self.committed = max(self.committed, tx.nonce)
