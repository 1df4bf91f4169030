"""Executing committed blocks: the one path by which a block becomes part of this node's
chain, whether the consensus core delivered it or state transfer fetched it.

:meth:`BlockExecutor.deliver` runs under one lock and takes heights strictly in order: a
height already executed is skipped (the other path got there first), a gap is refused. A block
runs through the ledger, then block, certificate, transaction index, state writes and tip go
to the store in one synced batch; only then do the tip and the listeners move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from mdtp.consensus.block import Block, BlockHeader, genesis_hash
from mdtp.consensus.codec import pack, unpack_canonical
from mdtp.consensus.messages import CommitCertificate, WireLimits
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.ports import Clock, Disk
from mdtp.node.ledger.machine import BlockContext, Ledger, TxResult
from mdtp.node.ledger.state import Overlay, next_state_root
from mdtp.node.ledger.tx import Tx, TxError
from mdtp.storage.blockstore import BlockStore, CommittedBlock
from mdtp.storage.crashpoints import crash_point
from mdtp.storage.errors import InconsistentStore

log = logging.getLogger("mdtp.execution")

# Called after each block is durably committed with its height and its executed transactions
# (each result carries the decoded transaction), e.g. the mempool, waiters, the grants.
CommitListener = Callable[[int, Sequence[TxResult]], None]


def encode_block(block: Block) -> bytes:
    return pack(block.to_wire())


def decode_block(data: bytes, limits: WireLimits) -> Block:
    return Block.from_wire(
        unpack_canonical(data, limits.message_bytes_max), limits.block_txs_max, limits.tx_bytes_max
    )


def decode_certificate(data: bytes, limits: WireLimits) -> CommitCertificate:
    return CommitCertificate.from_wire(unpack_canonical(data, limits.message_bytes_max), limits)


class BlockExecutor:
    def __init__(
        self,
        *,
        chain_id: str,
        genesis_state_root: bytes,
        store: BlockStore,
        ledger: Ledger,
        disk: Disk,
        clock: Clock,
        wire_limits: WireLimits,
        metrics: DriverMetrics,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_state_root = genesis_state_root
        self.store = store
        self.ledger = ledger
        self.disk = disk
        self.clock = clock
        self.wire_limits = wire_limits
        self.metrics = metrics
        self.listeners: list[CommitListener] = []
        # the transactions this node admitted and still holds, by id (the mempool's): a
        # block's transaction found there with identical bytes is not decoded again
        self.known_txs: Callable[[bytes], Tx | None] | None = None
        self._lock = asyncio.Lock()
        self.height, self.state_root = store.tip()
        self.tip_hash = self.hash_at(self.height)
        metrics.height.set(self.height)

    # -- the committed chain ----------------------------------------------------------------

    def hash_at(self, height: int) -> bytes:
        """The hash of the executed block at ``height`` (at most the tip)."""
        if height == 0:
            return genesis_hash(self.chain_id, self.genesis_state_root)
        record = self.store.record(height)
        if record is None:
            raise InconsistentStore(f"{self.store.path}: no block record at the tip {height}")
        return record.hash

    def state_root_at(self, height: int) -> bytes:
        if height == 0:
            return self.genesis_state_root
        record = self.store.record(height)
        if record is None:
            raise InconsistentStore(
                f"{self.store.path}: key space 'block records' has no entry at height {height}"
            )
        return record.state_root

    def recent_roots(self, depth: int) -> dict[int, bytes]:
        """State roots of the last ``depth`` heights and the tip (what the core needs)."""
        return {
            h: self.state_root_at(h) for h in range(max(0, self.height - depth), self.height + 1)
        }

    def last_header(self) -> BlockHeader | None:
        if self.height == 0:
            return None
        raw = self.store.block_bytes(self.height)
        if raw is None:
            raise InconsistentStore(
                f"{self.store.path}: key space 'blocks' has no entry at height {self.height}"
            )
        block = decode_block(raw, self.wire_limits)
        if block.hash() != self.tip_hash:
            raise InconsistentStore(
                f"{self.store.path}: block at height {self.height} does not hash to its record"
            )
        return block.header

    def block_and_certificate(self, height: int) -> tuple[Block, CommitCertificate] | None:
        raw_block, raw_cert = self.store.block_bytes(height), self.store.certificate_bytes(height)
        if raw_block is None or raw_cert is None:
            return None
        return decode_block(raw_block, self.wire_limits), decode_certificate(
            raw_cert, self.wire_limits
        )

    # -- execution --------------------------------------------------------------------------

    async def deliver(
        self,
        block: Block,
        cert: CommitCertificate,
        decoded: Sequence[Tx | TxError | None] | None = None,
    ) -> bool:
        """Execute ``block`` as the next height; False if that height is already executed.
        ``decoded``: its transactions decoded already (see ``Ledger.execute_block``)."""
        async with self._lock:
            height = block.height
            if height <= self.height:
                return False
            if height != self.height + 1:
                raise InconsistentStore(f"block {height} delivered at height {self.height}")
            if block.header.prev_hash != self.tip_hash:
                raise InconsistentStore(f"block {height} does not extend the tip {self.height}")
            await self._execute(block, cert, decoded)
            return True

    def _admitted(self, block: Block) -> list[Tx | TxError | None]:
        """Each transaction as admission decoded it (same chain, same bytes, a tighter size
        bound, the signature checked), or None where this node does not hold it."""
        known = self.known_txs
        assert known is not None
        out: list[Tx | TxError | None] = []
        for raw, tx_id in zip(block.payload, block.tx_ids, strict=True):
            tx = known(tx_id)
            out.append(tx if tx is not None and tx.signed_bytes == raw else None)
        return out

    async def _execute(
        self,
        block: Block,
        cert: CommitCertificate,
        decoded: Sequence[Tx | TxError | None] | None,
    ) -> None:
        height = block.height
        ctx = BlockContext(self.chain_id, height, block.header.timestamp_ms, block.header.proposer)
        # the block's reads of committed state are cached for this block only (the store
        # does not change until this block's own commit below)
        overlay = Overlay(self.store.state, cache_reads=True)
        if decoded is None and self.known_txs is not None:
            decoded = self._admitted(block)
        results = self.ledger.execute_block(ctx, overlay, block.payload, decoded)
        root = next_state_root(self.state_root, overlay.writes)
        seen: set[bytes] = set()
        index_entries = []
        for r in results:
            # a transaction re-proposed after a view change fails its second time (nonce);
            # the index keeps pointing at the execution that counted
            if r.tx_id in seen:
                continue
            # one that succeeds now never succeeded before: that would have consumed its
            # nonce, and a sender's nonce only grows by one per transaction; so only a
            # failed one needs the index look-up
            if not r.ok:
                earlier = self.store.tx_location(r.tx_id)
                if earlier is not None:
                    continue
            seen.add(r.tx_id)
            index_entries.append((r.tx_id, r.index, r.ok, r.reason))
        committed = CommittedBlock(
            height=height,
            block_bytes=encode_block(block),
            certificate_bytes=pack(cert.to_wire()),
            block_hash=block.hash(),
            state_root=root,
            timestamp_ms=block.header.timestamp_ms,
            tx_results=tuple(index_entries),
            state_writes=overlay.writes,
        )
        started = self.clock.monotonic()
        crash_point("before block commit batch")
        await self.disk.run(self.store.commit_block, committed)
        crash_point("after block commit batch")
        self.metrics.store_write_latency.labels("block").observe(self.clock.monotonic() - started)
        self.height, self.state_root, self.tip_hash = height, root, block.hash()
        ok = sum(1 for r in results if r.ok)
        self.metrics.txs_committed.labels("ok").inc(ok)
        self.metrics.txs_committed.labels("failed").inc(len(results) - ok)
        self.metrics.block_txs.observe(len(results))
        self.metrics.height.set(height)
        for listener in self.listeners:
            try:
                listener(height, results)
            except Exception:  # a listener bug must not stop the ledger
                log.exception("commit listener failed at height %d", height)
