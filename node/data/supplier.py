"""The supplier's node serving a fetch: authorise it on committed state, stream, post receipts.

A fetch arrives as a ``data.req`` frame carrying a request signed by the consumer account.
:meth:`Supplier.authorise` checks it against the *committed* state only (expiry, signature by
the account's current key, fresh nonce, contract, consumer, status, use period, chunk range,
download quota, concurrency) — any failure is a ``data.refuse`` frame with a reason code, a
metric and an audit log line, and no data byte. An authorised fetch streams ``data.chunk``
frames (chunk, Merkle proof) with a window: at most ``window_chunks`` unacknowledged chunks
are ever queued, so a fetch cannot flood the peer link that consensus also uses. Every chunk
is re-hashed on read; a corrupted one stops the fetch (``chunk_corrupt``).

When the stream ends (complete, cancelled or broken) the node posts one ``delivery.receipt``
for the chunks it actually sent; that receipt counts one download. Receipts not yet
committed count against the quota too, so concurrent requests cannot overdraw it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from mdtp.node.data.audit import audit_log, current_key, refused
from mdtp.node.data.crypto import MerkleTree, range_content_hash
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import ChunkHook, CommittedLedger, TxSubmitter, ledger_now_ms, now_ms
from mdtp.node.data.protocol import (
    FETCH_TAG,
    FetchRequest,
    NonceCache,
    Refused,
    check_expiry,
    check_signature,
    decode_fetch_request,
)
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.contracts import Status, effective_status, load_contract, load_version
from mdtp.storage.chunkstore import ChunkCorrupt, ChunkMissing, ChunkStore

log = logging.getLogger("mdtp.data")

RECEIPT_COMMIT_WAIT_S = 120
_TREE_CACHE_MAX = 16
_STATUS_REFUSAL = {
    Status.EXPIRED: "contract_expired",
    Status.TERMINATED: "contract_terminated",
}


@dataclass
class _Serving:
    fid: bytes
    peer: str
    request: FetchRequest
    dataset_id: str
    acked: int
    ack: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    sent_chunks: int = 0
    sent_bytes: int = 0
    digests: list[bytes] = field(default_factory=list)


class Supplier:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        store: ChunkStore,
        link: PeerLink,
        signer: NodeSigner,
        pool: Executor,
        tasks: Tasks,
        limits: DataLimits,
        metrics: DataMetrics,
        chunk_hook: ChunkHook | None = None,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._ledger = ledger
        self._submitter = submitter
        self._store = store
        self._link = link
        self._signer = signer
        self._pool = pool
        self._tasks = tasks
        self._limits = limits
        self._metrics = metrics
        self._chunk_hook = chunk_hook
        if chunk_hook is not None:
            log.warning("TEST HOOK: chunks are passed through %r before they are sent", chunk_hook)
        self._nonces = NonceCache(limits.nonce_cache_max)
        self._serving: dict[tuple[str, bytes], _Serving] = {}
        self._pending_downloads: collections.Counter[str] = collections.Counter()
        self._trees: collections.OrderedDict[str, MerkleTree] = collections.OrderedDict()

    # -- authorise ---------------------------------------------------------------------------

    def authorise(self, req: FetchRequest, peer: str) -> tuple[str, int]:
        """(dataset id, chunk count) if the committed state allows ``req``; else Refused."""
        now = now_ms()
        check_expiry(req.expires_at_ms, now, self._limits.request_ttl_ms_max)
        state = self._ledger.state
        check_signature(req.envelope, FETCH_TAG, current_key(load_account(state, req.requester)))
        self._nonces.claim(req.requester.encode() + b"\x00" + req.nonce, req.expires_at_ms, now)
        contract = load_contract(state, req.contract_id)
        if contract is None:
            raise Refused("unknown_contract", f"no contract {req.contract_id}")
        if req.requester != contract["consumer"]:
            raise Refused("not_consumer", f"{req.requester} is not the consumer")
        at = ledger_now_ms(self._ledger)
        status = effective_status(contract, at)
        if status != Status.ACTIVE:
            raise Refused(_STATUS_REFUSAL.get(status, "not_active"), f"contract is {status}")
        if contract["supplier_node"] != self.node_id:
            raise Refused("dataset_unavailable", f"served by {contract['supplier_node']}")
        version = load_version(state, req.contract_id, contract["activated"]["version"])
        if at < version["terms"]["use_start_ms"]:
            raise Refused("outside_use_period", "the use period has not started")
        dataset_id = contract["dataset_id"]
        manifest = self._store.manifest(dataset_id)
        if manifest is None or manifest.merkle_root != version["dataset_merkle_root"]:
            raise Refused("dataset_unavailable", f"no sealed copy of {dataset_id} here")
        if not req.first_chunk <= req.last_chunk < manifest.chunk_count:
            raise Refused(
                "bad_chunk_range",
                f"chunks {req.first_chunk}..{req.last_chunk} outside 0..{manifest.chunk_count - 1}",
            )
        used = contract["downloads"] + self._pending_downloads[req.contract_id]
        if used >= contract["max_downloads"]:
            raise Refused("quota_exhausted", f"{used} of {contract['max_downloads']} used")
        per_peer = sum(1 for p, _ in self._serving if p == peer)
        if (
            len(self._serving) >= self._limits.max_fetches
            or per_peer >= self._limits.max_fetches_per_peer
        ):
            raise Refused("busy", "too many fetches in progress")
        return dataset_id, manifest.chunk_count

    # -- frames from the consumer's node -----------------------------------------------------

    def on_request(self, peer: str, _kind: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("fid"), bytes):
            self._metrics.refusals.labels("malformed").inc()
            return
        fid = body["fid"]
        who, what = "?", "fetch"
        try:
            raw = body.get("req")
            if not isinstance(raw, bytes):
                raise Refused("malformed", "no request")
            req = decode_fetch_request(raw, self.chain_id)
            who = req.requester
            what = f"fetch of contract {req.contract_id} chunks {req.first_chunk}..{req.last_chunk}"
            if (peer, fid) in self._serving:
                raise Refused("malformed", "fetch id in use")
            dataset_id, _ = self.authorise(req, peer)
        except Refused as r:
            refused(self._metrics, r.reason, what, f"{who} via {peer}", r.message)
            self._link.send(
                peer,
                "data.refuse",
                {"fid": fid, "reason": r.reason, "message": r.message, "chunk": None},
            )
            return
        serving = _Serving(fid, peer, req, dataset_id, acked=req.first_chunk - 1)
        self._serving[(peer, fid)] = serving
        self._pending_downloads[req.contract_id] += 1
        self._metrics.active_serving.inc()
        audit_log.info("serving %s to %s via %s", what, who, peer)
        self._tasks.spawn(self._serve(serving))

    def on_ack(self, peer: str, _kind: str, body: Any) -> None:
        s = self._serving.get((peer, body.get("fid", b""))) if isinstance(body, dict) else None
        if s is not None and isinstance(body.get("upto"), int):
            s.acked = max(s.acked, body["upto"])
            s.ack.set()

    def on_cancel(self, peer: str, _kind: str, body: Any) -> None:
        s = self._serving.get((peer, body.get("fid", b""))) if isinstance(body, dict) else None
        if s is not None:
            s.cancelled = True
            s.ack.set()

    # -- streaming ---------------------------------------------------------------------------

    def _tree(self, dataset_id: str) -> MerkleTree:
        tree = self._trees.get(dataset_id)
        if tree is None:
            manifest = self._store.manifest(dataset_id)
            assert manifest is not None, f"{dataset_id} was authorised without a manifest"
            tree = MerkleTree(self._store.chunk_digests(dataset_id)[: manifest.chunk_count])
            self._trees[dataset_id] = tree
            while len(self._trees) > _TREE_CACHE_MAX:
                self._trees.popitem(last=False)
        self._trees.move_to_end(dataset_id)
        return tree

    async def _serve(self, s: _Serving) -> None:
        loop = asyncio.get_running_loop()
        req = s.request
        failure: Refused | None = None
        try:
            tree = self._tree(s.dataset_id)
            for i in range(req.first_chunk, req.last_chunk + 1):
                while i > s.acked + self._limits.window_chunks and not s.cancelled:
                    s.ack.clear()
                    await asyncio.wait_for(s.ack.wait(), self._limits.ack_timeout_ms / 1000)
                if s.cancelled:
                    break
                try:
                    data = await loop.run_in_executor(
                        self._pool, self._store.read_chunk, s.dataset_id, i
                    )
                except (ChunkCorrupt, ChunkMissing) as e:
                    failure = refused(
                        self._metrics,
                        "chunk_corrupt",
                        f"chunk {i} of {s.dataset_id}",
                        f"{req.requester} via {s.peer}",
                        str(e),
                    )
                    failure.chunk = i
                    break
                digest = tree.levels[0][i]  # leaf hash; the chunk hash is checked on read
                if self._chunk_hook is not None:
                    data = self._chunk_hook(s.dataset_id, i, data)
                frame = {"fid": s.fid, "i": i, "data": data, "proof": tree.proof(i)}
                await self._send_patiently(s, "data.chunk", frame)
                s.sent_chunks += 1
                s.sent_bytes += len(data)
                s.digests.append(self._store.chunk_digest(s.dataset_id, i) or digest)
                self._metrics.served_chunks.inc()
                self._metrics.served_bytes.inc(len(data))
        except TimeoutError:
            failure = Refused("interrupted", "the consumer's node stopped acknowledging")
            self._metrics.fetch_failures.labels("ack_timeout").inc()
        finally:
            self._serving.pop((s.peer, s.fid), None)
            self._metrics.active_serving.dec()
        receipt = await self._post_receipt(s)
        if failure is not None:
            self._link.send(
                s.peer,
                "data.refuse",
                {
                    "fid": s.fid,
                    "reason": failure.reason,
                    "message": failure.message,
                    "chunk": failure.chunk,
                },
            )
        elif not s.cancelled:
            self._link.send(
                s.peer,
                "data.end",
                {"fid": s.fid, "receipt": receipt, "chunks": s.sent_chunks, "bytes": s.sent_bytes},
            )

    async def _send_patiently(self, s: _Serving, kind: str, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._limits.ack_timeout_ms / 1000
        while not self._link.send(s.peer, kind, body):
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.05)

    # -- receipts ----------------------------------------------------------------------------

    async def _post_receipt(self, s: _Serving) -> bytes | None:
        req = s.request
        if s.sent_chunks == 0:
            self._pending_downloads[req.contract_id] -= 1
            return None
        body = {
            "contract_id": req.contract_id,
            "dataset_id": s.dataset_id,
            "first_chunk": req.first_chunk,
            "last_chunk": req.first_chunk + s.sent_chunks - 1,
            "byte_count": s.sent_bytes,
            "content_hash": range_content_hash(s.digests),
        }
        try:
            tx_id = await self._signer.submit("delivery.receipt", body)
        except Exception as e:  # logged; the quota must be released
            log.error("cannot post delivery receipt for %s: %s", req.contract_id, e)
            self._pending_downloads[req.contract_id] -= 1
            return None
        self._metrics.records_posted.labels("delivery.receipt").inc()
        self._tasks.spawn(self._release_when_committed(req.contract_id, tx_id))
        return tx_id

    async def _release_when_committed(self, contract_id: str, tx_id: bytes) -> None:
        try:
            await asyncio.wait_for(self._submitter.wait_committed(tx_id), RECEIPT_COMMIT_WAIT_S)
        except TimeoutError:
            log.error(
                "delivery receipt %s did not commit in %d s", tx_id.hex(), RECEIPT_COMMIT_WAIT_S
            )
        finally:
            self._pending_downloads[contract_id] -= 1
