"""The supplier's node serving a fetch: authorise it on committed state, stream, record it.

A fetch arrives as a ``data.req`` frame carrying a request signed by the consumer account.
:meth:`Supplier.authorise` checks it against the *committed* state only, cheapest first and
before anything is claimed: expiry, signature by the account's current key, that the frame
came from the account's own member's node, contract, consumer, status, use period, dataset,
chunk range, download quota, concurrency — and only then claims the nonce
(:mod:`~node.data.replay`, kept across restarts). Any failure is a ``data.refuse`` frame
with a reason code, a metric and an audit log line, and no data byte.

An authorised fetch is written ahead as a download (:mod:`~node.data.receipts`) and streams
``data.chunk`` frames (chunk, Merkle proof) with a window: at most ``window_chunks``
unacknowledged chunks are ever queued, so a fetch cannot flood the peer link that consensus
also uses. Before each window the authorisation is checked again on the committed state
(contract still ACTIVE, inside the use period, no overdue invoice suspending access, quota not
overdrawn, consumer not revoked):
a consumer who stalls and terminates gets no further window. Every chunk is re-hashed on
read; a corrupted one stops the fetch (``chunk_corrupt``). However the stream ends, what was
sent is recorded on the ledger as one ``delivery.receipt``.
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
from mdtp.node.data.crypto import MerkleTree, sha256
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import ChunkHook, CommittedLedger, ledger_now_ms, now_ms
from mdtp.node.data.protocol import (
    FETCH_TAG,
    FetchRequest,
    Refused,
    check_expiry,
    check_signature,
    decode_fetch_request,
)
from mdtp.node.data.receipts import Download, Receipts
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.tasks import Tasks
from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading import billing
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.contracts import Status, effective_status, load_contract, load_version
from mdtp.storage.chunkstore import ChunkCorrupt, ChunkMissing, ChunkStore

log = logging.getLogger("mdtp.data")

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
    download: Download
    acked: int
    ack: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False


class Supplier:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        store: ChunkStore,
        link: PeerLink,
        receipts: Receipts,
        replay: ReplayGuard,
        pool: Executor,
        tasks: Tasks,
        limits: DataLimits,
        metrics: DataMetrics,
        chunk_hook: ChunkHook | None = None,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._ledger = ledger
        self._store = store
        self._link = link
        self._receipts = receipts
        self._replay = replay
        self._pool = pool
        self._tasks = tasks
        self._limits = limits
        self._metrics = metrics
        self._chunk_hook = chunk_hook
        if chunk_hook is not None:
            log.warning("TEST HOOK: chunks are passed through %r before they are sent", chunk_hook)
        self._serving: dict[tuple[str, bytes], _Serving] = {}
        self._trees: collections.OrderedDict[str, MerkleTree] = collections.OrderedDict()

    # -- authorise ---------------------------------------------------------------------------

    def authorise(self, req: FetchRequest, peer: str) -> Download:
        """The download ``req`` may start now on the committed state; else Refused.

        Nothing is claimed until every check passed: a request that is refused for any
        reason leaves no nonce, no quota and no slot behind."""
        now = now_ms()
        check_expiry(req.expires_at_ms, now, self._limits.request_ttl_ms_max)
        height = self._ledger.tip()[0]
        state = self._ledger.state
        account = load_account(state, req.requester)
        check_signature(req.envelope, FETCH_TAG, current_key(account))
        assert account is not None  # the signature checked out against its key
        if account["member"] != peer:
            raise Refused("foreign_relay", f"relayed by {peer}, not by {account['member']}")
        at = ledger_now_ms(self._ledger)
        contract, dataset_id, chunk_count = self._still_authorised(req, state, at)
        if not req.first_chunk <= req.last_chunk < chunk_count:
            raise Refused(
                "bad_chunk_range",
                f"chunks {req.first_chunk}..{req.last_chunk} outside 0..{chunk_count - 1}",
            )
        used = contract["downloads"] + self._receipts.uncounted(req.contract_id)
        if used >= contract["max_downloads"]:
            raise Refused("quota_exhausted", f"{used} of {contract['max_downloads']} used")
        per_peer = sum(1 for p, _ in self._serving if p == peer)
        if (
            len(self._serving) >= self._limits.max_fetches
            or per_peer >= self._limits.max_fetches_per_peer
        ):
            raise Refused("busy", "too many fetches in progress")
        self._replay.claim(req.requester, req.nonce, req.expires_at_ms, now)
        return Download(
            request_id=sha256(req.envelope.unsigned),
            contract_id=req.contract_id,
            dataset_id=dataset_id,
            first_chunk=req.first_chunk,
            authorised_height=height,
            authorised_at_ms=at,
        )

    def _still_authorised(
        self, req: FetchRequest, state: ReadableKV, at: int
    ) -> tuple[dict[str, Any], str, int]:
        """(contract, dataset id, chunk count) if the contract lets ``req`` be served at ``at``."""
        contract = load_contract(state, req.contract_id)
        if contract is None:
            raise Refused("unknown_contract", f"no contract {req.contract_id}")
        if req.requester != contract["consumer"]:
            raise Refused("not_consumer", f"{req.requester} is not the consumer")
        if contract["supplier_node"] != self.node_id:
            raise Refused("dataset_unavailable", f"served by {contract['supplier_node']}")
        status = effective_status(contract, at)
        if status != Status.ACTIVE:
            raise Refused(_STATUS_REFUSAL.get(status, "not_active"), f"contract is {status}")
        version = load_version(state, req.contract_id, contract["activated"]["version"])
        if at < version["terms"]["use_start_ms"]:
            raise Refused("outside_use_period", "the use period has not started")
        if billing.access_suspended(state, contract, at_ms=at):
            raise Refused("payment_overdue", "an invoice is overdue and the terms suspend access")
        dataset_id: str = contract["dataset_id"]
        manifest = self._store.manifest(dataset_id)
        if manifest is None or manifest.merkle_root != version["dataset_merkle_root"]:
            raise Refused("dataset_unavailable", f"no sealed copy of {dataset_id} here")
        return contract, dataset_id, manifest.chunk_count

    def _recheck(self, s: _Serving) -> None:
        """Between windows: Refused if the committed state no longer lets this fetch go on."""
        state = self._ledger.state
        req = s.request
        if current_key(load_account(state, req.requester)) != req.envelope.public_key:
            raise Refused("bad_signature", f"{req.requester} rotated its key or was revoked")
        contract, _, _ = self._still_authorised(req, state, ledger_now_ms(self._ledger))
        # this download is among the uncounted ones until its receipt commits
        used = contract["downloads"] + self._receipts.uncounted(req.contract_id)
        if used > contract["max_downloads"]:
            raise Refused("quota_exhausted", f"{used} of {contract['max_downloads']} used")

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
            download = self.authorise(req, peer)
        except Refused as r:
            refused(self._metrics, r.reason, what, f"{who} via {peer}", r.message)
            self._link.send(
                peer,
                "data.refuse",
                {"fid": fid, "reason": r.reason, "message": r.message, "chunk": None},
            )
            return
        self._receipts.open(download)  # on disk before the first chunk leaves
        serving = _Serving(fid, peer, req, download.dataset_id, download, acked=req.first_chunk - 1)
        self._serving[(peer, fid)] = serving
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
                if i > req.first_chunk and (i - req.first_chunk) % self._limits.window_chunks == 0:
                    try:
                        self._recheck(s)
                    except Refused as r:
                        self._metrics.stream_stops.labels(r.reason).inc()
                        failure = refused(
                            self._metrics,
                            r.reason,
                            f"chunk {i} of contract {req.contract_id}",
                            f"{req.requester} via {s.peer}",
                            r.message,
                        )
                        failure.chunk = i
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
                if self._chunk_hook is not None:
                    data = self._chunk_hook(s.dataset_id, i, data)
                frame = {"fid": s.fid, "i": i, "data": data, "proof": tree.proof(i)}
                self._receipts.sending(s.download, len(data))
                try:
                    await self._send_patiently(s, "data.chunk", frame)
                except TimeoutError:
                    self._receipts.unsend(s.download, len(data))
                    raise
                self._metrics.served_chunks.inc()
                self._metrics.served_bytes.inc(len(data))
        except TimeoutError:
            failure = Refused("interrupted", "the consumer's node stopped acknowledging")
            self._metrics.fetch_failures.labels("ack_timeout").inc()
        finally:
            self._serving.pop((s.peer, s.fid), None)
            self._metrics.active_serving.dec()
        receipt = await self._receipts.close(s.download)
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
                {
                    "fid": s.fid,
                    "receipt": receipt,
                    "chunks": s.download.sent_chunks,
                    "bytes": s.download.sent_bytes,
                },
            )

    async def _send_patiently(self, s: _Serving, kind: str, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._limits.ack_timeout_ms / 1000
        while not self._link.send(s.peer, kind, body):
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.05)
