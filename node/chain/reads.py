"""Read views of the committed chain for the API: a transaction's status, a block with its
commit certificate, the chain's hashes and state roots, the evidence collected."""

from __future__ import annotations

import hashlib
from typing import Any

from mdtp.node.chain.driver import Driver
from mdtp.node.chain.execution import decode_block, decode_certificate
from mdtp.storage.blockstore import BlockStore


class ChainReads:
    def __init__(self, store: BlockStore, driver: Driver) -> None:
        self.store = store
        self.driver = driver

    def tx_status(self, tx_id: bytes) -> dict[str, Any]:
        loc = self.store.tx_location(tx_id)
        if loc is not None:
            return {
                "id": tx_id.hex(),
                "status": "committed" if loc.ok else "failed",
                "height": loc.height,
                "index": loc.index,
                "reason": loc.reason or None,
            }
        mempool = self.driver.mempool
        if tx_id in mempool:
            return {"id": tx_id.hex(), "status": "pending"}
        dropped = mempool.dropped_reason(tx_id)
        if dropped is not None:
            return {"id": tx_id.hex(), "status": "dropped", "reason": dropped}
        return {"id": tx_id.hex(), "status": "unknown"}

    def block(self, height: int) -> dict[str, Any] | None:
        raw, raw_cert = self.store.block_bytes(height), self.store.certificate_bytes(height)
        record = self.store.record(height)
        if raw is None or raw_cert is None or record is None:
            return None
        limits = self.driver.wire_limits
        block, cert = decode_block(raw, limits), decode_certificate(raw_cert, limits)
        h = block.header
        return {
            "height": height,
            "hash": record.hash.hex(),
            "prev_hash": h.prev_hash.hex(),
            "state_root_committed": h.state_root.hex(),
            "state_root": record.state_root.hex(),
            "timestamp_ms": h.timestamp_ms,
            "proposer": h.proposer,
            "transactions": [hashlib.sha256(tx).hexdigest() for tx in block.payload],
            "certificate": {
                "view": cert.view,
                "signatures": [[signer, sig.hex()] for signer, sig in cert.signatures],
            },
            "block_bytes": raw.hex(),
            "certificate_bytes": raw_cert.hex(),
        }

    def chain(self, start: int, end: int) -> list[list[Any]]:
        """Heights ``start..end`` this store holds: from its base on (a store restored from
        a state-only snapshot holds no block below its checkpoint)."""
        out: list[list[Any]] = []
        for height in range(max(start, self.store.base()), end + 1):
            record = self.store.record(height)
            if record is None:
                break
            out.append([height, record.hash.hex(), record.state_root.hex(), record.tx_count])
        return out

    def evidence(self) -> list[dict[str, Any]]:
        return list(self.driver.evidence)
