"""Every download on the ledger: the supplier's node records what it served as a
``delivery.receipt``, written ahead, retried until committed, kept across restarts.

Before the first chunk of a fetch leaves, a :class:`Download` is written (synced) to the
chunk index (key space ``r/``, by request id); before each chunk leaves, its count and bytes
are updated there, so a crash mid-stream still records every chunk sent (at worst one more
than arrived). When the stream ends — complete, cancelled, the consumer gone, the contract
ended mid-stream — the receipt is posted and retried until the ledger holds a receipt for
that request (the ledger keeps one per request, so a retry after a crash never counts a
download twice); only then is the record cleared. A download that sent no chunk is no
download and is cleared at once.

Quota accounting never waits on the receipt: a download counts against its contract's
``max_downloads`` from the moment it is written here until the ledger counts it. A receipt
the ledger refuses for a reason in the rules (not a stale nonce or an expiry) is not
retried, is counted by reason, and its download keeps counting against the quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from mdtp.node.data.crypto import range_content_hash
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger, KeySpace, TxSubmitter
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.reasons import TRADING_REASONS
from mdtp.storage.chunkstore import ChunkStore

log = logging.getLogger("mdtp.data")

RECEIPT_COMMIT_WAIT_S = 120
RECEIPT_RETRY_S = 2.0


@dataclass
class Download:
    """One authorised fetch: what the receipt will name and what has been sent so far."""

    request_id: bytes
    contract_id: str
    dataset_id: str
    first_chunk: int
    authorised_height: int
    authorised_at_ms: int
    sent_chunks: int = 0
    sent_bytes: int = 0
    refused: str | None = None  # the ledger's reason, if it refused the receipt for good

    def encode(self) -> bytes:
        raw: bytes = msgpack.packb(asdict(self), use_bin_type=True)
        return raw

    @classmethod
    def decode(cls, raw: bytes) -> Download:
        return cls(**msgpack.unpackb(raw, raw=False))


class Receipts:
    def __init__(
        self,
        *,
        space: KeySpace,
        store: ChunkStore,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        signer: NodeSigner,
        tasks: Tasks,
        metrics: DataMetrics,
    ) -> None:
        self._space = space
        self._store = store
        self._ledger = ledger
        self._submitter = submitter
        self._signer = signer
        self._tasks = tasks
        self._metrics = metrics
        self._downloads: dict[bytes, Download] = {}  # bounded by the quotas of contracts

    def uncounted(self, contract_id: str) -> int:
        """Downloads of ``contract_id`` written here that the ledger does not count yet (a
        receipt that just committed is not counted twice while its record is cleared)."""
        return sum(
            1
            for d in self._downloads.values()
            if d.contract_id == contract_id and not self._recorded(d)
        )

    def _save(self, d: Download, *, sync: bool) -> None:
        self._space.put(d.request_id, d.encode(), sync=sync)

    def _track(self, d: Download) -> None:
        self._downloads[d.request_id] = d
        self._metrics.receipts_pending.set(len(self._downloads))

    def _forget(self, d: Download) -> None:
        self._space.delete(d.request_id, sync=True)
        self._downloads.pop(d.request_id, None)
        self._metrics.receipts_pending.set(len(self._downloads))

    def open(self, d: Download) -> None:
        """Write the download ahead of its first chunk; from now on it counts."""
        self._save(d, sync=True)
        self._track(d)

    def sending(self, d: Download, chunk_bytes: int) -> None:
        """Record one more chunk before it leaves (a crash then over-records, never under)."""
        d.sent_chunks += 1
        d.sent_bytes += chunk_bytes
        self._save(d, sync=False)

    def unsend(self, d: Download, chunk_bytes: int) -> None:
        """The chunk recorded by :meth:`sending` could not leave after all."""
        d.sent_chunks -= 1
        d.sent_bytes -= chunk_bytes
        self._save(d, sync=False)

    async def close(self, d: Download) -> bytes | None:
        """The stream ended: post the receipt (id returned if it was accepted for the
        mempool) and keep retrying it in the background until the ledger holds it."""
        if d.sent_chunks == 0:
            self._forget(d)
            return None
        self._save(d, sync=True)
        tx_id = await self._post(d)
        self._tasks.spawn(self._until_recorded(d, tx_id))
        return tx_id

    def resume(self) -> None:
        """After a restart: record every download a previous run served and did not record."""
        for _, raw in list(self._space):
            d = Download.decode(raw)
            if d.sent_chunks == 0:
                self._space.delete(d.request_id, sync=True)
                continue
            self._track(d)
            if d.refused is None:
                self._tasks.spawn(self._until_recorded(d, None))

    def _recorded(self, d: Download) -> bool:
        key = layout.receipt_request_key(d.contract_id, d.request_id)
        return self._ledger.state.get(key) is not None

    def _body(self, d: Download) -> dict[str, Any]:
        last = d.first_chunk + d.sent_chunks - 1
        digests: list[bytes] = []
        for i in range(d.first_chunk, last + 1):
            digest = self._store.chunk_digest(d.dataset_id, i)
            assert digest is not None, f"served chunk {i} of {d.dataset_id} that is not stored"
            digests.append(digest)
        return {
            "contract_id": d.contract_id,
            "dataset_id": d.dataset_id,
            "first_chunk": d.first_chunk,
            "last_chunk": last,
            "byte_count": d.sent_bytes,
            "content_hash": range_content_hash(digests),
            "request_id": d.request_id,
            "authorised_height": d.authorised_height,
            "authorised_at_ms": d.authorised_at_ms,
        }

    async def _post(self, d: Download) -> bytes | None:
        try:
            tx_id = await self._signer.submit("delivery.receipt", self._body(d))
        except Exception as e:  # retried by _until_recorded
            log.error("cannot post delivery receipt for %s (will retry): %s", d.contract_id, e)
            self._metrics.receipt_retries.inc()
            return None
        self._metrics.records_posted.labels("delivery.receipt").inc()
        return tx_id

    async def _until_recorded(self, d: Download, tx_id: bytes | None) -> None:
        while not self._recorded(d):
            if tx_id is None:
                tx_id = await self._post(d)
            if tx_id is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._submitter.wait_committed(tx_id), RECEIPT_COMMIT_WAIT_S
                    )
                if self._recorded(d):
                    break
                location = self._ledger.tx_location(tx_id)
                if location is not None and not location.ok and location.reason in TRADING_REASONS:
                    self._refused(d, location.reason)
                    return
                self._metrics.receipt_retries.inc()
                tx_id = None
            await asyncio.sleep(RECEIPT_RETRY_S)
        self._forget(d)

    def _refused(self, d: Download, reason: str) -> None:
        d.refused = reason
        self._save(d, sync=True)
        self._metrics.receipts_refused.labels(reason).inc()
        log.error(
            "the ledger refused the receipt of contract %s (%s); the download still counts",
            d.contract_id,
            reason,
        )
