"""Uploads to the supplier's own node: ciphertext chunks, the dataset key, then the seal.

Every dataset id is checked against the ledger's id grammar before anything else (no file,
key or log line sees another). Each upload carries an upload authorisation
(:mod:`node.data.protocol`) signed by a supplier account of this node's member and bound
to the action, dataset, chunk index and body digest.
Sealing checks that the stored chunks are complete and hash to the Merkle root the supplier
will publish, and that the dataset key is here; a sealed dataset never changes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from mdtp.node.data.audit import current_key, refused
from mdtp.node.data.crypto import MerkleTree
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger, now_ms
from mdtp.node.data.protocol import (
    UPLOAD_TAG,
    Refused,
    check_expiry,
    check_id,
    check_signature,
    open_envelope,
)
from mdtp.node.ledger.trading.accounts import has_role, load_account
from mdtp.storage.chunkstore import ChunkStore, Manifest
from mdtp.storage.errors import StorageError


class Uploads:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        store: ChunkStore,
        keys: KeyStore,
        pool: Executor,
        limits: DataLimits,
        metrics: DataMetrics,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._ledger = ledger
        self._store = store
        self._keys = keys
        self._pool = pool
        self._limits = limits
        self._metrics = metrics

    def authorise(
        self, auth: bytes, action: str, dataset_id: str, index: int, body_digest: bytes
    ) -> str:
        """The supplier account allowed to store ``action`` for ``dataset_id``, or Refused."""
        who = "?"
        try:
            # before anything else: the id names a key and folders below the chunk store
            check_id(dataset_id)
            env = open_envelope(auth, UPLOAD_TAG, 7)
            chain, act, ds, idx, digest, expires, account_id = env.fields
            if (chain, act, ds, idx, digest) != (
                self.chain_id,
                action,
                dataset_id,
                index,
                body_digest,
            ):
                raise Refused("malformed", "the authorisation is for another upload")
            if not isinstance(expires, int) or not isinstance(account_id, str):
                raise Refused("malformed", "bad authorisation fields")
            check_expiry(expires, now_ms(), self._limits.request_ttl_ms_max)
            account = load_account(self._ledger.state, account_id)
            check_signature(env, UPLOAD_TAG, current_key(account))
            assert account is not None  # a signature check passed, so the account exists
            who = account_id  # only now: an unsigned id never reaches the audit log
            if account["member"] != self.node_id:
                raise Refused("not_member_account", f"{account_id} is not an account of ours")
            if not has_role(account, "supplier"):
                raise Refused("not_supplier")
            return account_id
        except Refused as r:
            what = f"upload {action} of {dataset_id if r.reason != 'bad_id' else 'a bad id'}"
            raise refused(self._metrics, r.reason, what, who, r.message) from None

    async def put_chunk(self, dataset_id: str, index: int, data: bytes) -> bytes:
        digest = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._store.put_chunk, dataset_id, index, data
        )
        self._metrics.stored_bytes.inc(len(data))
        return digest

    def put_key(self, dataset_id: str, key: bytes) -> None:
        if self._store.manifest(dataset_id) is not None and self._keys.get(dataset_id) != key:
            raise StorageError(f"dataset {dataset_id} is sealed", reason="dataset_sealed")
        self._keys.put(dataset_id, key)

    def seal(self, dataset_id: str, chunk_count: int, merkle_root: bytes) -> Manifest:
        digests = self._store.chunk_digests(dataset_id)[: chunk_count + 1]
        if len(digests) != chunk_count:
            raise StorageError(
                f"dataset {dataset_id}: node holds {len(digests)} consecutive chunks, "
                f"not {chunk_count}",
                reason="incomplete",
            )
        if MerkleTree(digests).root != merkle_root:
            raise StorageError("the Merkle root of the stored chunks differs", reason="bad_root")
        if self._keys.get(dataset_id) is None:
            raise StorageError(f"dataset {dataset_id}: no dataset key stored", reason="no_key")
        size = sum(self._store.path_of(d).stat().st_size for d in digests)
        manifest = Manifest(chunk_count, merkle_root, size)
        existing = self._store.manifest(dataset_id)
        if existing is not None and existing.merkle_root != merkle_root:
            raise StorageError(f"dataset {dataset_id} is sealed", reason="dataset_sealed")
        self._store.seal(dataset_id, manifest)
        return manifest
