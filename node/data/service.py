"""The chunk service: serves encrypted dataset chunks between members' nodes.

Theory of operation
-------------------
Supplier side. The supplier's client uploads ciphertext chunks and the dataset key to its
own node (:meth:`DataService.authorise_upload`, :meth:`put_chunk`, :meth:`put_key`,
:meth:`seal`). When a contract on one of this node's datasets becomes ACTIVE, a commit
listener seals the dataset key to the consumer's X25519 key and posts ``access.grant``.

A fetch arrives as a ``data.req`` frame carrying a request signed by the consumer account.
:meth:`_authorise` checks it against the *committed* state only (expiry, signature by the
account's current key, fresh nonce, contract, consumer, status, use period, chunk range,
download quota, concurrency) — any failure is a ``data.refuse`` frame with a reason code, a
metric and an audit log line, and no data byte. An authorised fetch streams ``data.chunk``
frames (chunk, Merkle proof) with a window: at most ``data.window_chunks`` unacknowledged
chunks are ever queued, so a fetch cannot flood the peer link that consensus also uses.
Every chunk is re-hashed on read; a corrupted one stops the fetch (``chunk_corrupt``).
When the stream ends (complete, cancelled or broken) the node posts one
``delivery.receipt`` for the chunks it actually sent; that receipt counts one download.
Receipts not yet committed count against the quota too, so concurrent requests cannot
overdraw it.

Consumer side. The consumer's node relays its own member's clients' requests
(:meth:`open_fetch`) to the supplier's node and hands chunks back through a
:class:`FetchSession`, checking each against the Merkle root the contract pinned before the
client sees it, and acknowledging it once the client took it.

Frames (msgpack maps; ``fid`` is a 16-byte fetch id chosen by the consumer's node)::

    data.req    consumer -> supplier  {fid, req}
    data.ack    consumer -> supplier  {fid, upto}        chunks up to ``upto`` consumed
    data.cancel consumer -> supplier  {fid}
    data.chunk  supplier -> consumer  {fid, i, data, proof}
    data.end    supplier -> consumer  {fid, receipt, chunks, bytes}
    data.refuse supplier -> consumer  {fid, reason, message, chunk}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nacl.public

from mdtp.node.data.crypto import MerkleTree, range_content_hash, sha256, verify_proof
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.protocol import (
    FETCH_TAG,
    REFUSALS,
    UPLOAD_TAG,
    FetchRequest,
    NonceCache,
    Refused,
    check_expiry,
    check_signature,
    decode_fetch_request,
    open_envelope,
)
from mdtp.node.ledger.trading.accounts import has_role, load_account
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.contracts import Status, effective_status, load_contract, load_version
from mdtp.node.ledger.trading.queries import list_contracts
from mdtp.node.ledger.tx import TxError, decode_tx, sign_tx
from mdtp.storage.chunkstore import ChunkCorrupt, ChunkMissing, ChunkStore, Manifest
from mdtp.storage.errors import StorageError

if TYPE_CHECKING:
    from mdtp.node.app.daemon import Node

log = logging.getLogger("mdtp.data")
audit_log = logging.getLogger("mdtp.data.audit")

BYZANTINE_ENV = "MDTP_TEST_BYZANTINE_DATASETS"
"""Test hook: a comma-separated list of dataset ids this node serves with one byte flipped
in every chunk after its own disk check (a Byzantine supplier). Never set in production."""

_TREE_CACHE_MAX = 16
_STATUS_REFUSAL = {
    Status.EXPIRED: "contract_expired",
    Status.TERMINATED: "contract_terminated",
}


def _current_key(account: dict[str, Any] | None) -> bytes | None:
    if account is None or account["status"] != "active":
        return None
    return bytes(account["public_key"])


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class DataLimits:
    window_chunks: int = 16
    max_fetches: int = 16
    max_fetches_per_peer: int = 4
    nonce_cache_max: int = 100_000
    request_ttl_ms_max: int = 300_000
    ack_timeout_ms: int = 30_000

    @classmethod
    def from_config(cls, node: Node) -> DataLimits:
        def get(name: str, default: int) -> int:
            try:
                return int(node.cfg.get("data", name))
            except KeyError:
                return default

        d = cls()
        return cls(
            window_chunks=get("window_chunks", d.window_chunks),
            max_fetches=get("max_fetches", d.max_fetches),
            max_fetches_per_peer=get("max_fetches_per_peer", d.max_fetches_per_peer),
            nonce_cache_max=get("nonce_cache_max", d.nonce_cache_max),
            request_ttl_ms_max=get("request_ttl_ms_max", d.request_ttl_ms_max),
            ack_timeout_ms=get("ack_timeout_ms", d.ack_timeout_ms),
        )


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


class FetchSession:
    """One relayed fetch on the consumer's node; the API drains it with :meth:`next`."""

    def __init__(
        self,
        service: DataService,
        fid: bytes,
        supplier: str,
        request: FetchRequest,
        root: bytes,
        count: int,
        dataset_id: str,
    ) -> None:
        self.service = service
        self.fid = fid
        self.supplier = supplier
        self.request = request
        self.root = root
        self.count = count
        self.dataset_id = dataset_id
        self.next_index = request.first_chunk
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(
            maxsize=service.limits.window_chunks + 4
        )
        self.started = time.monotonic()
        self.bytes = 0
        self.done = False

    def deliver(self, kind: str, body: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait({"kind": kind, **body})
        except asyncio.QueueFull:
            # the supplier ignored the window: a protocol violation, end the fetch
            self.service.metrics.fetch_failures.labels("window_violation").inc()
            self.cancel()

    async def next(self) -> dict[str, Any]:
        """The next event: ``chunk`` (verified), ``end``; :class:`Refused` on failure."""
        timeout = self.service.limits.ack_timeout_ms / 1000
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            self.cancel()
            raise Refused(
                "supplier_unreachable"
                if self.next_index == self.request.first_chunk
                else "interrupted",
                f"no answer from {self.supplier} in {timeout:.0f} s",
            ) from None
        kind = event["kind"]
        if kind == "refuse":
            self.close()
            reason, chunk = event.get("reason"), event.get("chunk")
            message = f"{self.supplier}: {event.get('message', '')}"
            if reason not in REFUSALS:
                reason, message = "interrupted", f"{self.supplier} refused: {reason!r}"
            raise Refused(reason, message, chunk if isinstance(chunk, int) else None)
        if kind == "end":
            self.close()
            return event
        index, data, proof = event.get("i"), event.get("data"), event.get("proof")
        if (
            index != self.next_index
            or not isinstance(data, bytes)
            or not isinstance(proof, list)
            or not verify_proof(self.root, self.count, index, sha256(data), proof)
        ):
            self.service.metrics.fetch_failures.labels("bad_chunk").inc()
            audit_log.warning(
                "fetch of contract %s: chunk %s from %s does not match the Merkle root",
                self.request.contract_id,
                self.next_index,
                self.supplier,
            )
            self.cancel()
            raise Refused(
                "bad_chunk",
                f"chunk {self.next_index} from {self.supplier} does not match the Merkle root",
                self.next_index,
            )
        self.next_index += 1
        self.bytes += len(data)
        self.service.metrics.fetched_chunks.inc()
        self.service.metrics.fetched_bytes.inc(len(data))
        return event

    def ack(self, index: int) -> None:
        self.service._send(self.supplier, "data.ack", {"fid": self.fid, "upto": index})

    def cancel(self) -> None:
        if not self.done:
            self.service._send(self.supplier, "data.cancel", {"fid": self.fid})
            self.service.metrics.fetch_failures.labels("interrupted").inc()
        self.close()

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.service._fetching.pop(self.fid, None)
            self.service.metrics.active_fetching.dec()
            if self.next_index > self.request.last_chunk:
                elapsed = max(time.monotonic() - self.started, 1e-6)
                self.service.metrics.fetch_throughput.observe(self.bytes / 2**20 / elapsed)


class NodeSigner:
    """Signs and submits the node account's transactions with locally tracked nonces."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.account = node.node_key.account_id
        self._lock = asyncio.Lock()
        self._outstanding: dict[bytes, int] = {}

    def _next_nonce(self) -> int:
        driver, store = self.node.driver, self.node.store
        assert driver is not None and store is not None
        committed = driver.committed_nonce(self.account)
        for tx_id in list(self._outstanding):
            if store.tx_location(tx_id) is not None:
                del self._outstanding[tx_id]
            elif tx_id not in driver.mempool:
                # dropped (expired or evicted): later nonces would wait forever; restart
                self._outstanding.clear()
                break
        live = [n for n in self._outstanding.values() if n > committed]
        return max([committed, *live]) + 1

    async def submit(self, type_: str, body: dict[str, Any]) -> bytes:
        driver = self.node.driver
        assert driver is not None
        async with self._lock:
            nonce = self._next_nonce()
            raw = sign_tx(
                self.node.node_key,
                chain_id=self.node.genesis.chain_id,
                type_=type_,
                sender=self.account,
                nonce=nonce,
                expires_at_ms=now_ms() + 120_000,
                body=body,
            )
            tx = await driver.submit(raw)
            self._outstanding[tx.id] = nonce
            return tx.id


class DataService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.limits = DataLimits.from_config(node)
        self.metrics = DataMetrics(node.registry)
        self.nonces = NonceCache(self.limits.nonce_cache_max)
        self.store: ChunkStore | None = None
        self.keys: KeyStore | None = None
        self.signer = NodeSigner(node)
        self._serving: dict[tuple[str, bytes], _Serving] = {}
        self._fetching: dict[bytes, FetchSession] = {}
        self._pending_downloads: collections.Counter[str] = collections.Counter()
        self._trees: collections.OrderedDict[str, MerkleTree] = collections.OrderedDict()
        self._granting: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="chunks")
        self._byzantine = {d for d in os.environ.get(BYZANTINE_ENV, "").split(",") if d}
        if self._byzantine:
            log.warning("TEST HOOK: serving tampered chunks of %s", sorted(self._byzantine))
        for kind, handler in (
            ("data.req", self._on_request),
            ("data.ack", self._on_ack),
            ("data.cancel", self._on_cancel),
            ("data.chunk", self._on_reply),
            ("data.end", self._on_reply),
            ("data.refuse", self._on_reply),
        ):
            node.frame_handlers[kind] = handler

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.store = ChunkStore(self.node.data_dir / "chunks")
        self.keys = KeyStore(self.store, self.node.node_key)
        assert self.node.driver is not None
        self.node.driver.commit_listeners.append(self._on_commit)
        self._spawn(self._grant_missing())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)
        if self.store is not None:
            self.store.close()
            self.store = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, peer: str, kind: str, body: dict[str, Any]) -> bool:
        if peer == self.node.node_id:  # supplier and consumer on the same member's node
            handler = self.node.frame_handlers[kind]
            asyncio.get_running_loop().call_soon(handler, peer, kind, body)
            return True
        return self.node.transport.send(peer, kind, body)

    @property
    def _state(self) -> Any:
        assert self.node.store is not None
        return self.node.store.state

    def _ledger_now_ms(self) -> int:
        """The later of the wall clock and the last block time: never serve on a stale view."""
        store = self.node.store
        record = store.record(self.node.height) if store is not None and self.node.height else None
        return max(now_ms(), record.timestamp_ms if record is not None else 0)

    def refuse(self, reason: str, what: str, who: str, message: str = "") -> Refused:
        """Count and audit-log a refusal; return it for the caller to raise or send."""
        self.metrics.refusals.labels(reason).inc()
        audit_log.warning("refused %s by %s: %s %s", what, who, reason, message)
        return Refused(reason, message)

    # -- uploads (the supplier's own client) -------------------------------------------------

    def authorise_upload(
        self, auth: bytes, action: str, dataset_id: str, index: int, body_digest: bytes
    ) -> str:
        """The supplier account allowed to store ``action`` for ``dataset_id``, or Refused."""
        who = "?"
        try:
            env = open_envelope(auth, UPLOAD_TAG, 7)
            chain, act, ds, idx, digest, expires, account_id = env.fields
            who = str(account_id)
            if (chain, act, ds, idx, digest) != (
                self.node.genesis.chain_id,
                action,
                dataset_id,
                index,
                body_digest,
            ):
                raise Refused("malformed", "the authorisation is for another upload")
            if not isinstance(expires, int) or not isinstance(account_id, str):
                raise Refused("malformed", "bad authorisation fields")
            check_expiry(expires, now_ms(), self.limits.request_ttl_ms_max)
            account = load_account(self._state, account_id)
            check_signature(env, UPLOAD_TAG, _current_key(account))
            assert account is not None
            if account["member"] != self.node.node_id:
                raise Refused("not_member_account", f"{account_id} is not an account of ours")
            if not has_role(account, "supplier"):
                raise Refused("not_supplier")
            return account_id
        except Refused as r:
            raise self.refuse(
                r.reason, f"upload {action} of {dataset_id}", who, r.message
            ) from None

    async def put_chunk(self, dataset_id: str, index: int, data: bytes) -> bytes:
        assert self.store is not None
        digest = await asyncio.get_running_loop().run_in_executor(
            self._pool, self.store.put_chunk, dataset_id, index, data
        )
        self.metrics.stored_bytes.inc(len(data))
        return digest

    def put_key(self, dataset_id: str, key: bytes) -> None:
        assert self.keys is not None and self.store is not None
        if self.store.manifest(dataset_id) is not None and self.keys.get(dataset_id) != key:
            raise StorageError(f"dataset {dataset_id} is sealed", reason="dataset_sealed")
        self.keys.put(dataset_id, key)

    def seal(self, dataset_id: str, chunk_count: int, merkle_root: bytes) -> Manifest:
        assert self.store is not None and self.keys is not None
        digests = self.store.chunk_digests(dataset_id)[: chunk_count + 1]
        if len(digests) != chunk_count:
            raise StorageError(
                f"dataset {dataset_id}: node holds {len(digests)} consecutive chunks, "
                f"not {chunk_count}",
                reason="incomplete",
            )
        if MerkleTree(digests).root != merkle_root:
            raise StorageError("the Merkle root of the stored chunks differs", reason="bad_root")
        if self.keys.get(dataset_id) is None:
            raise StorageError(f"dataset {dataset_id}: no dataset key stored", reason="no_key")
        size = sum(self.store.path_of(d).stat().st_size for d in digests)
        manifest = Manifest(chunk_count, merkle_root, size)
        existing = self.store.manifest(dataset_id)
        if existing is not None and existing.merkle_root != merkle_root:
            raise StorageError(f"dataset {dataset_id} is sealed", reason="dataset_sealed")
        self.store.seal(dataset_id, manifest)
        return manifest

    def _tree(self, dataset_id: str) -> MerkleTree:
        assert self.store is not None
        tree = self._trees.get(dataset_id)
        if tree is None:
            manifest = self.store.manifest(dataset_id)
            assert manifest is not None
            tree = MerkleTree(self.store.chunk_digests(dataset_id)[: manifest.chunk_count])
            self._trees[dataset_id] = tree
            while len(self._trees) > _TREE_CACHE_MAX:
                self._trees.popitem(last=False)
        self._trees.move_to_end(dataset_id)
        return tree

    # -- supplier: authorise and serve --------------------------------------------------------

    def _authorise(self, req: FetchRequest, peer: str) -> tuple[str, int]:
        """(dataset id, chunk count) if the committed state allows ``req``; else Refused."""
        assert self.store is not None
        now = now_ms()
        check_expiry(req.expires_at_ms, now, self.limits.request_ttl_ms_max)
        state = self._state
        check_signature(req.envelope, FETCH_TAG, _current_key(load_account(state, req.requester)))
        self.nonces.claim(req.requester.encode() + b"\x00" + req.nonce, req.expires_at_ms, now)
        contract = load_contract(state, req.contract_id)
        if contract is None:
            raise Refused("unknown_contract", f"no contract {req.contract_id}")
        if req.requester != contract["consumer"]:
            raise Refused("not_consumer", f"{req.requester} is not the consumer")
        at = self._ledger_now_ms()
        status = effective_status(contract, at)
        if status != Status.ACTIVE:
            raise Refused(_STATUS_REFUSAL.get(status, "not_active"), f"contract is {status}")
        if contract["supplier_node"] != self.node.node_id:
            raise Refused("dataset_unavailable", f"served by {contract['supplier_node']}")
        version = load_version(state, req.contract_id, contract["activated"]["version"])
        if at < version["terms"]["use_start_ms"]:
            raise Refused("outside_use_period", "the use period has not started")
        dataset_id = contract["dataset_id"]
        manifest = self.store.manifest(dataset_id)
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
            len(self._serving) >= self.limits.max_fetches
            or per_peer >= self.limits.max_fetches_per_peer
        ):
            raise Refused("busy", "too many fetches in progress")
        return dataset_id, manifest.chunk_count

    def _on_request(self, peer: str, _kind: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("fid"), bytes):
            self.metrics.refusals.labels("malformed").inc()
            return
        fid = body["fid"]
        who, what = "?", "fetch"
        try:
            raw = body.get("req")
            if not isinstance(raw, bytes):
                raise Refused("malformed", "no request")
            req = decode_fetch_request(raw, self.node.genesis.chain_id)
            who = req.requester
            what = f"fetch of contract {req.contract_id} chunks {req.first_chunk}..{req.last_chunk}"
            if (peer, fid) in self._serving:
                raise Refused("malformed", "fetch id in use")
            dataset_id, _ = self._authorise(req, peer)
        except Refused as r:
            self.refuse(r.reason, what, f"{who} via {peer}", r.message)
            self._send(
                peer,
                "data.refuse",
                {"fid": fid, "reason": r.reason, "message": r.message, "chunk": None},
            )
            return
        serving = _Serving(fid, peer, req, dataset_id, acked=req.first_chunk - 1)
        self._serving[(peer, fid)] = serving
        self._pending_downloads[req.contract_id] += 1
        self.metrics.active_serving.inc()
        audit_log.info("serving %s to %s via %s", what, who, peer)
        self._spawn(self._serve(serving))

    def _on_ack(self, peer: str, _kind: str, body: Any) -> None:
        s = self._serving.get((peer, body.get("fid", b""))) if isinstance(body, dict) else None
        if s is not None and isinstance(body.get("upto"), int):
            s.acked = max(s.acked, body["upto"])
            s.ack.set()

    def _on_cancel(self, peer: str, _kind: str, body: Any) -> None:
        s = self._serving.get((peer, body.get("fid", b""))) if isinstance(body, dict) else None
        if s is not None:
            s.cancelled = True
            s.ack.set()

    async def _serve(self, s: _Serving) -> None:
        assert self.store is not None
        loop = asyncio.get_running_loop()
        req = s.request
        failure: Refused | None = None
        try:
            tree = self._tree(s.dataset_id)
            for i in range(req.first_chunk, req.last_chunk + 1):
                while i > s.acked + self.limits.window_chunks and not s.cancelled:
                    s.ack.clear()
                    await asyncio.wait_for(s.ack.wait(), self.limits.ack_timeout_ms / 1000)
                if s.cancelled:
                    break
                try:
                    data = await loop.run_in_executor(
                        self._pool, self.store.read_chunk, s.dataset_id, i
                    )
                except (ChunkCorrupt, ChunkMissing) as e:
                    failure = self.refuse(
                        "chunk_corrupt",
                        f"chunk {i} of {s.dataset_id}",
                        f"{req.requester} via {s.peer}",
                        str(e),
                    )
                    failure.chunk = i
                    break
                digest = tree.levels[0][i]  # leaf hash; the chunk hash is checked on read
                if s.dataset_id in self._byzantine:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                frame = {"fid": s.fid, "i": i, "data": data, "proof": tree.proof(i)}
                await self._send_patiently(s, "data.chunk", frame)
                s.sent_chunks += 1
                s.sent_bytes += len(data)
                s.digests.append(self.store.chunk_digest(s.dataset_id, i) or digest)
                self.metrics.served_chunks.inc()
                self.metrics.served_bytes.inc(len(data))
        except TimeoutError:
            failure = Refused("interrupted", "the consumer's node stopped acknowledging")
            self.metrics.fetch_failures.labels("ack_timeout").inc()
        finally:
            self._serving.pop((s.peer, s.fid), None)
            self.metrics.active_serving.dec()
        receipt = await self._post_receipt(s)
        if failure is not None:
            self._send(
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
            self._send(
                s.peer,
                "data.end",
                {"fid": s.fid, "receipt": receipt, "chunks": s.sent_chunks, "bytes": s.sent_bytes},
            )

    async def _send_patiently(self, s: _Serving, kind: str, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.limits.ack_timeout_ms / 1000
        while not self._send(s.peer, kind, body):
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.05)

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
            tx_id = await self.signer.submit("delivery.receipt", body)
        except (TxError, Exception) as e:  # logged; the quota must be released
            log.error("cannot post delivery receipt for %s: %s", req.contract_id, e)
            self._pending_downloads[req.contract_id] -= 1
            return None
        self.metrics.records_posted.labels("delivery.receipt").inc()
        self._spawn(self._release_when_committed(req.contract_id, tx_id))
        return tx_id

    async def _release_when_committed(self, contract_id: str, tx_id: bytes) -> None:
        assert self.node.driver is not None
        try:
            await asyncio.wait_for(self.node.driver.wait_committed(tx_id), 120)
        except TimeoutError:
            log.error("delivery receipt %s did not commit in 120 s", tx_id.hex())
        finally:
            self._pending_downloads[contract_id] -= 1

    # -- consumer: relay a fetch ------------------------------------------------------------

    def open_fetch(self, raw: bytes) -> FetchSession:
        """Start relaying a client's signed request; Refused if this node will not relay it."""
        who, what = "?", "fetch"
        try:
            req = decode_fetch_request(raw, self.node.genesis.chain_id)
            who, what = req.requester, f"fetch of contract {req.contract_id}"
            state = self._state
            account = load_account(state, req.requester)
            if account is None or account["member"] != self.node.node_id:
                raise Refused("not_member_account", f"{req.requester} is not an account of ours")
            contract = load_contract(state, req.contract_id)
            if contract is None:
                raise Refused("unknown_contract", f"no contract {req.contract_id}")
            if contract["activated"] is None:
                raise Refused("not_active", f"contract {req.contract_id} never became active")
            if len(self._fetching) >= self.limits.max_fetches:
                raise Refused("busy", "too many fetches in progress on this node")
            version = load_version(state, req.contract_id, contract["activated"]["version"])
            dataset = load_dataset(state, contract["dataset_id"])
            assert dataset is not None
        except Refused as r:
            raise self.refuse(r.reason, what, who, r.message) from None
        fid = os.urandom(16)
        session = FetchSession(
            self,
            fid,
            contract["supplier_node"],
            req,
            bytes(version["dataset_merkle_root"]),
            int(dataset["chunk_count"]),
            contract["dataset_id"],
        )
        self._fetching[fid] = session
        self.metrics.active_fetching.inc()
        self._send(session.supplier, "data.req", {"fid": fid, "req": raw})
        return session

    def _on_reply(self, peer: str, kind: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        session = self._fetching.get(body.get("fid", b""))
        if session is None or session.supplier != peer:
            return  # a late frame of a finished fetch
        session.deliver(kind.removeprefix("data."), body)

    # -- grants -----------------------------------------------------------------------------

    def _on_commit(self, block: Any, results: list[Any]) -> None:
        for r in results:
            raw = block.payload[r.index]
            if not r.ok or (b"contract.sign" not in raw and b"contract.review" not in raw):
                continue
            try:
                tx = decode_tx(
                    raw, chain_id=self.node.genesis.chain_id, max_bytes=len(raw), verify=False
                )
            except TxError:
                continue
            contract_id = tx.body.get("contract_id")
            if tx.type in ("contract.sign", "contract.review") and isinstance(contract_id, str):
                self._spawn(self._maybe_grant(contract_id))

    async def _grant_missing(self) -> None:
        """After a restart: grant every active contract on our datasets that has none."""
        assert self.store is not None
        for dataset_id in self.store.datasets():
            after: str | None = None
            while True:
                page = list_contracts(
                    self._state,
                    at_ms=self._ledger_now_ms(),
                    dataset=dataset_id,
                    status="ACTIVE",
                    after=after,
                    limit=100,
                )
                for contract in page:
                    await self._maybe_grant(contract["id"])
                if len(page) < 100:
                    break
                after = page[-1]["id"]

    async def _maybe_grant(self, contract_id: str) -> None:
        assert self.keys is not None and self.node.driver is not None
        state = self._state
        contract = load_contract(state, contract_id)
        if (
            contract is None
            or contract["supplier_node"] != self.node.node_id
            or contract["grants"] > 0
            or effective_status(contract, self._ledger_now_ms()) != Status.ACTIVE
            or contract_id in self._granting
        ):
            return
        key = self.keys.get(contract["dataset_id"])
        consumer = load_account(state, contract["consumer"])
        if key is None or consumer is None or len(consumer["encryption_public_key"]) != 32:
            log.error("cannot grant contract %s: no dataset key or consumer key", contract_id)
            return
        sealed = nacl.public.SealedBox(
            nacl.public.PublicKey(bytes(consumer["encryption_public_key"]))
        ).encrypt(key)
        self._granting.add(contract_id)
        try:
            tx_id = await self.signer.submit(
                "access.grant", {"contract_id": contract_id, "sealed_key": bytes(sealed)}
            )
            self.metrics.records_posted.labels("access.grant").inc()
            audit_log.info("granted access to contract %s (tx %s)", contract_id, tx_id.hex())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.node.driver.wait_committed(tx_id), 120)
        except Exception as e:  # a failed grant is retried below
            log.error("cannot post access grant for %s: %s", contract_id, e)
            retry = True
        else:
            retry = False
        finally:
            self._granting.discard(contract_id)
        after = load_contract(self._state, contract_id)
        if retry or (after is not None and after["grants"] == 0):
            await asyncio.sleep(2)
            await self._maybe_grant(contract_id)


def install(node: Node) -> DataService:
    service = DataService(node)
    node.services.append(service)
    return service


def service_of(node: Node) -> DataService | None:
    return next((s for s in node.services if isinstance(s, DataService)), None)
