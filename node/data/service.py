"""The chunk service: serves encrypted dataset chunks between members' nodes.

It is composed of one part per job, each in its own module:

- :mod:`~node.data.uploads`: the supplier's client stores ciphertext chunks and the dataset
  key on its own node and seals the dataset;
- :mod:`~node.data.grants`: once a contract on one of this node's datasets is ACTIVE, the
  dataset key is sealed to the consumer and posted as ``access.grant``;
- :mod:`~node.data.supplier`: fetches from consumers' nodes are authorised on committed
  state (each nonce once, :mod:`~node.data.replay`) and streamed in a window, re-checked
  between windows;
- :mod:`~node.data.receipts`: every download is written ahead and recorded on the ledger as
  a ``delivery.receipt``, retried until committed, across restarts;
- :mod:`~node.data.relay`: the consumer's node relays its own clients' fetches and checks
  every chunk against the Merkle root before the client sees it;
- :mod:`~node.data.signer`: the node account's signer for the grants and receipts.

The service depends only on the interfaces of :mod:`~node.data.ports`; the daemon passes it
the block store, the driver and the transport, installs :attr:`DataService.frame_handlers`
and :meth:`DataService.on_commit`, and starts it after the driver.

Everything the service writes lives under ``chunks_dir``, which is owner-only (0700, and
what an earlier version left there is made 0700/0600 on start): chunk files, the dataset
keys, the LevelDB index with its key spaces ``n/`` (nonces) and ``r/`` (downloads).

Frames (msgpack maps; ``fid`` is a 16-byte fetch id chosen by the consumer's node)::

    data.req    consumer -> supplier  {fid, req}
    data.ack    consumer -> supplier  {fid, upto}        chunks up to ``upto`` consumed
    data.cancel consumer -> supplier  {fid}
    data.chunk  supplier -> consumer  {fid, i, data, proof}
    data.end    supplier -> consumer  {fid, receipt, chunks, bytes}
    data.refuse supplier -> consumer  {fid, reason, message, chunk}
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mdtp.node.data.grants import Grants
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.owner_only import make_owner_only
from mdtp.node.data.ports import (
    ChunkHook,
    CommittedLedger,
    FrameHandler,
    Mempool,
    PeerSend,
    TxSubmitter,
    now_ms,
)
from mdtp.node.data.receipts import Receipts
from mdtp.node.data.relay import Relay
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.supplier import Supplier
from mdtp.node.data.tasks import Tasks
from mdtp.node.data.uploads import Uploads
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import TxResult
from mdtp.storage.chunkstore import ChunkStore

CHUNK_IO_THREADS = 2
NONCES, DOWNLOADS = b"n/", b"r/"  # key spaces of the chunk index beside the store's own


class DataService:
    def __init__(
        self,
        *,
        chunks_dir: Path,
        node_id: str,
        node_key: SigningKey,
        chain_id: str,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        mempool: Mempool,
        send: PeerSend,
        limits: DataLimits,
        metrics: DataMetrics,
        chunk_hook: ChunkHook | None = None,
    ) -> None:
        make_owner_only(chunks_dir)
        self._store = ChunkStore(chunks_dir)
        keys = KeyStore(self._store, node_key)
        self._pool = ThreadPoolExecutor(CHUNK_IO_THREADS, thread_name_prefix="chunks")
        self._tasks = Tasks()
        link = PeerLink(node_id, send, self._on_own_frame)
        signer = NodeSigner(node_key, chain_id, submitter, ledger, mempool)
        # shared with the clean room (node.compute), which serves the same datasets and
        # posts its receipts through the node account's one signer
        self.store, self.keys, self.link, self.signer, self.tasks = (
            self._store,
            keys,
            link,
            signer,
            self._tasks,
        )
        self.uploads = Uploads(
            node_id=node_id,
            chain_id=chain_id,
            ledger=ledger,
            store=self._store,
            keys=keys,
            pool=self._pool,
            limits=limits,
            metrics=metrics,
        )
        self.receipts = Receipts(
            space=self._store.db.prefixed_db(DOWNLOADS),
            store=self._store,
            ledger=ledger,
            submitter=submitter,
            signer=signer,
            tasks=self._tasks,
            metrics=metrics,
        )
        self.supplier = Supplier(
            node_id=node_id,
            chain_id=chain_id,
            ledger=ledger,
            store=self._store,
            link=link,
            receipts=self.receipts,
            replay=ReplayGuard(
                self._store.db.prefixed_db(NONCES), limits.nonce_cache_max, now_ms()
            ),
            pool=self._pool,
            tasks=self._tasks,
            limits=limits,
            metrics=metrics,
            chunk_hook=chunk_hook,
        )
        self.relay = Relay(
            node_id=node_id,
            chain_id=chain_id,
            ledger=ledger,
            link=link,
            limits=limits,
            metrics=metrics,
            pool=self._pool,
        )
        self.grants = Grants(
            node_id=node_id,
            ledger=ledger,
            submitter=submitter,
            store=self._store,
            keys=keys,
            signer=signer,
            tasks=self._tasks,
            metrics=metrics,
        )
        # other concerns' frames to this node itself arrive here too (node.compute adds its own)
        self.frame_handlers: dict[str, FrameHandler] = {
            "data.req": self.supplier.on_request,
            "data.ack": self.supplier.on_ack,
            "data.cancel": self.supplier.on_cancel,
            "data.chunk": self.relay.on_reply,
            "data.end": self.relay.on_reply,
            "data.refuse": self.relay.on_reply,
        }

    def _on_own_frame(self, peer: str, kind: str, body: Any) -> None:
        self.frame_handlers[kind](peer, kind, body)

    def on_commit(self, height: int, results: Sequence[TxResult]) -> None:
        """The driver's commit listener."""
        self.grants.on_commit(height, results)

    async def start(self) -> None:
        self.receipts.resume()
        self._tasks.spawn(self.grants.grant_missing())

    async def close(self) -> None:
        await self._tasks.cancel_all()
        self._pool.shutdown(wait=True)
        self._store.close()
