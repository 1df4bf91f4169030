"""The supplier's node serving clean-room queries: authorise, check, run, record, answer.

A query arrives as a ``compute.req`` frame carrying a request signed by the consumer account
(:mod:`.protocol`). :meth:`QueryServer.authorise` checks it on the *committed* state, in the
order of the chunk service (:mod:`node.data.supplier`), before the SQL is even parsed:
expiry, signature by the account's current key, the frame came from the account's own
member's node, contract, consumer, status, use period, a clean-room rule, budget left
(the ledger's count plus the queries running here), capacity; only then is the nonce
claimed (:mod:`node.data.replay`, persisted, key space ``q/``).

The run happens on one worker thread: the dataset is decrypted (chunk by chunk, each chunk
re-hashed by the store and authenticated by its AEAD tag) and loaded into the engine
(:mod:`.engine`, cached per dataset version), the SQL checked against the rule
(:mod:`.check`), run, thresholded and noised. Then the node posts a ``compute.receipt``
through the node account's one signer and waits until it commits: only a query whose receipt
is on the ledger gets its result, so every result a consumer holds has a receipt (a receipt
whose result never arrived — the consumer's node gone — is still recorded and counted).

Every refusal is a ``compute.refuse`` frame with its reason, counted in
``mdtp_compute_queries_refused_total{reason}`` and logged in the audit log. It is also counted
per contract for the supplier to read (:meth:`QueryServer.refusals`; kept in the chunk index,
key space ``qr/``, across restarts) only when it is the contract's own consumer's: the
request's signature checked out, and the contract is on the committed ledger, served by this
node, with the signer as its consumer. So nobody can inflate another contract's count, and a
contract id nobody holds is never tracked (``unknown_contract`` and ``not_consumer`` are never
counted per contract). At most ``CONTRACTS_TRACKED_MAX`` contracts are tracked, at most
``CONTRACTS_TRACKED_PER_CONSUMER_MAX`` of one consumer, so no one requester fills the table;
a tally kept before these rules that they would not have counted is dropped on first use.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from mdtp.node.compute.engine import Engine, Outcome, Table
from mdtp.node.compute.metrics import ComputeMetrics
from mdtp.node.compute.protocol import QUERY_TAG, QueryRequest, decode_query_request
from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.compute.result import canonical_result, result_hash
from mdtp.node.compute.rule import Rule
from mdtp.node.data.audit import current_key
from mdtp.node.data.crypto import decrypt_chunk
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.link import PeerLink
from mdtp.node.data.ports import CommittedLedger, KeySpace, TxSubmitter, ledger_now_ms, now_ms
from mdtp.node.data.protocol import Refused, check_expiry, check_signature
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.ledger.trading import billing
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.analysis import rule_hash
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.compute import queries_used
from mdtp.node.ledger.trading.contracts import Status, effective_status, load_contract, load_version
from mdtp.storage.chunkstore import ChunkCorrupt, ChunkMissing, ChunkStore

log = logging.getLogger("mdtp.compute")
audit_log = logging.getLogger("mdtp.compute.audit")

RECEIPT_WAIT_S = 60.0
_U64 = struct.Struct(">Q")
CONTRACTS_TRACKED_MAX = 10_000
CONTRACTS_TRACKED_PER_CONSUMER_MAX = CONTRACTS_TRACKED_MAX // 10
_NEVER_TALLIED = frozenset({"unknown_contract", "not_consumer"})  # never the consumer's own
_STATUS_REFUSAL = {Status.EXPIRED: "contract_expired", Status.TERMINATED: "contract_terminated"}


@dataclass(frozen=True)
class ComputeLimits:
    max_queries: int = 4  # running at once on this node
    request_ttl_ms_max: int = 300_000
    nonce_cache_max: int = 10_000


@dataclass(frozen=True)
class Authorised:
    request: QueryRequest
    contract: dict[str, Any]
    rule: dict[str, Any]
    dataset: dict[str, Any]
    merkle_root: bytes
    height: int
    at_ms: int


class QueryServer:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        store: ChunkStore,
        keys: KeyStore,
        signer: NodeSigner,
        link: PeerLink,
        replay: ReplayGuard,
        engine: Engine,
        pool: Executor,
        tasks: Tasks,
        limits: ComputeLimits,
        metrics: ComputeMetrics,
        counts: KeySpace,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._ledger = ledger
        self._submitter = submitter
        self._store = store
        self._keys = keys
        self._signer = signer
        self._link = link
        self._replay = replay
        self._engine = engine
        self._pool = pool
        self._tasks = tasks
        self._limits = limits
        self._metrics = metrics
        self._running: collections.Counter[str] = collections.Counter()
        self._refused: dict[str, collections.Counter[str]] = {}
        self._tracked_of: collections.Counter[str] | None = None  # by consumer, on first use
        self._counts = counts
        for key, value in list(counts):  # the tally survives restarts
            contract_id, _, reason = key.partition(b"\x00")
            self._refused.setdefault(contract_id.decode(), collections.Counter())[
                reason.decode()
            ] = _U64.unpack(value)[0]

    # -- refusals ----------------------------------------------------------------------------

    def refusals(self, contract_id: str) -> dict[str, int]:
        """Refused queries of ``contract_id`` by reason."""
        self._tracked()
        return dict(sorted(self._refused.get(contract_id, collections.Counter()).items()))

    def _own_consumer(self, req: QueryRequest) -> str | None:
        """The requester if it is the consumer of a contract of this node on the ledger."""
        contract = load_contract(self._ledger.state, req.contract_id)
        if (
            contract is None
            or contract["supplier_node"] != self.node_id
            or contract["consumer"] != req.requester
        ):
            return None
        return req.requester

    def _tracked(self) -> collections.Counter[str]:
        """Tracked contracts by consumer; on first use (the ledger is read by then), drop what
        a tally kept before the rules of the module docstring holds that they exclude."""
        if self._tracked_of is not None:
            return self._tracked_of
        self._tracked_of = collections.Counter()
        state = self._ledger.state
        for contract_id, tally in list(self._refused.items()):
            contract = load_contract(state, contract_id)  # a contract is never removed
            ours = contract is not None and contract["supplier_node"] == self.node_id
            for reason in [r for r in tally if not ours or r in _NEVER_TALLIED]:
                del tally[reason]
                self._counts.delete(contract_id.encode() + b"\x00" + reason.encode())
            if not tally:
                del self._refused[contract_id]
            elif contract is not None:
                self._tracked_of[contract["consumer"]] += 1
        return self._tracked_of

    def _count(self, r: QueryRefused, req: QueryRequest | None, peer: str, authentic: bool) -> None:
        self._metrics.refused.labels(r.reason).inc()
        who = f"{req.requester} via {peer}" if req is not None and authentic else f"? via {peer}"
        what = f"query on contract {req.contract_id}" if req is not None else "query"
        audit_log.warning("refused %s by %s: %s %s", what, who, r.reason, r.message)
        if req is None or not authentic or r.reason in _NEVER_TALLIED:
            return
        consumer = self._own_consumer(req)
        if consumer is None:
            return
        tracked = self._tracked()
        tally = self._refused.get(req.contract_id)
        if tally is None:
            if (
                len(self._refused) >= CONTRACTS_TRACKED_MAX
                or tracked[consumer] >= CONTRACTS_TRACKED_PER_CONSUMER_MAX
            ):
                return
            tally = self._refused[req.contract_id] = collections.Counter()
            tracked[consumer] += 1
        tally[r.reason] += 1
        key = req.contract_id.encode() + b"\x00" + r.reason.encode()
        self._counts.put(key, _U64.pack(tally[r.reason]))

    def _refuse(
        self, peer: str, qid: bytes, r: QueryRefused, req: QueryRequest | None, authentic: bool
    ) -> None:
        self._count(r, req, peer, authentic)
        self._link.send(
            peer, "compute.refuse", {"qid": qid, "reason": r.reason, "message": r.message}
        )

    # -- authorise ---------------------------------------------------------------------------

    def authenticate(self, req: QueryRequest, peer: str) -> None:
        """Expiry, signature by the requester's current key, relayed by its own member."""
        try:
            check_expiry(req.expires_at_ms, now_ms(), self._limits.request_ttl_ms_max)
            account = load_account(self._ledger.state, req.requester)
            check_signature(req.envelope, QUERY_TAG, current_key(account))
        except Refused as r:
            raise QueryRefused(r.reason, r.message) from None
        assert account is not None  # the signature checked out against its key
        if account["member"] != peer:
            raise QueryRefused("foreign_relay", f"relayed by {peer}, not by {account['member']}")

    def authorise(self, req: QueryRequest) -> Authorised:
        """What ``req`` may run against, on the committed state; nothing claimed if refused."""
        height = self._ledger.tip()[0]
        state = self._ledger.state
        at = ledger_now_ms(self._ledger)
        contract = load_contract(state, req.contract_id)
        if contract is None:
            raise QueryRefused("unknown_contract", f"no contract {req.contract_id}")
        if req.requester != contract["consumer"]:
            raise QueryRefused("not_consumer", f"{req.requester} is not the consumer")
        if contract["supplier_node"] != self.node_id:
            raise QueryRefused("dataset_unavailable", f"served by {contract['supplier_node']}")
        status = effective_status(contract, at)
        if status != Status.ACTIVE:
            raise QueryRefused(_STATUS_REFUSAL.get(status, "not_active"), f"contract is {status}")
        version = load_version(state, req.contract_id, contract["activated"]["version"])
        if at < version["terms"]["use_start_ms"]:
            raise QueryRefused("outside_use_period", "the use period has not started")
        if billing.access_suspended(state, contract, at_ms=at):
            raise QueryRefused("payment_overdue", "an invoice is overdue; access is suspended")
        rule = version["terms"].get("analysis_rule")
        if rule is None:
            raise QueryRefused("not_clean_room", f"contract {req.contract_id} is for download")
        used = queries_used(state, req.contract_id) + self._running[req.contract_id]
        if used >= rule["query_budget"]:
            raise QueryRefused("budget_exhausted", f"{used} of {rule['query_budget']} used")
        if sum(self._running.values()) >= self._limits.max_queries:
            raise QueryRefused("busy", "too many queries in progress")
        dataset = load_dataset(state, contract["dataset_id"])
        assert dataset is not None, "a contract's dataset is never removed"
        try:
            self._replay.claim(req.requester, req.nonce, req.expires_at_ms, now_ms())
        except Refused as r:
            raise QueryRefused(r.reason, r.message) from None
        root = bytes(version["dataset_merkle_root"])
        return Authorised(req, contract, rule, dataset, root, height, at)

    # -- frames ------------------------------------------------------------------------------

    def on_request(self, peer: str, _kind: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("qid"), bytes):
            self._metrics.refused.labels("malformed").inc()
            return
        qid: bytes = body["qid"]
        req: QueryRequest | None = None
        authentic = False
        try:
            raw = body.get("req")
            if not isinstance(raw, bytes):
                raise QueryRefused("malformed", "no request")
            req = decode_query_request(raw, self.chain_id)
            self.authenticate(req, peer)
            authentic = True
            auth = self.authorise(req)
        except QueryRefused as r:
            self._refuse(peer, qid, r, req, authentic)
            return
        self._running[req.contract_id] += 1
        self._metrics.running.inc()
        audit_log.info(
            "running query on contract %s for %s via %s", req.contract_id, req.requester, peer
        )
        self._tasks.spawn(self._serve(peer, qid, auth))

    # -- running -----------------------------------------------------------------------------

    def _table(self, auth: Authorised) -> Table:
        """The dataset of ``auth`` loaded in the engine (decrypted here, on the worker)."""
        dataset_id: str = auth.dataset["id"]
        key = f"{dataset_id}:{auth.merkle_root.hex()}"
        table = self._engine.cached(key)
        if table is not None:
            return table
        manifest = self._store.manifest(dataset_id)
        dataset_key = self._keys.get(dataset_id)
        if manifest is None or manifest.merkle_root != auth.merkle_root or dataset_key is None:
            raise QueryRefused("dataset_unavailable", f"no sealed copy of {dataset_id} here")
        if manifest.byte_count > self._engine.limits.dataset_bytes_max:
            raise QueryRefused("dataset_too_large", f"{manifest.byte_count} bytes")
        parts: list[bytes] = []
        try:
            for i in range(manifest.chunk_count):
                stored = self._store.read_chunk(dataset_id, i)
                parts.append(decrypt_chunk(dataset_key, dataset_id, i, stored))
        except (ChunkCorrupt, ChunkMissing, ValueError) as e:
            raise QueryRefused("dataset_unavailable", f"chunk unreadable: {e}") from None
        return self._engine.load(key, b"".join(parts), str(auth.dataset["format"]).lower())

    def _execute(self, auth: Authorised, rule: Rule, hashed_rule: bytes) -> Outcome:
        # on the first query, not at start: sqlglot takes a tenth of a second to import
        from mdtp.node.compute.check import check_query

        table = self._table(auth)
        checked = check_query(auth.request.sql, rule, table.columns)
        return self._engine.run(table, checked, rule, auth.request.request_id, hashed_rule)

    async def _serve(self, peer: str, qid: bytes, auth: Authorised) -> None:
        started = time.monotonic()
        req = auth.request
        try:
            hashed_rule = rule_hash(auth.rule)
            rule = Rule.from_terms(auth.rule)
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self._pool, self._execute, auth, rule, hashed_rule)
            receipt = await self._record(auth, outcome, hashed_rule)
        except QueryRefused as r:
            self._refuse(peer, qid, r, req, True)
            return
        except Exception as e:  # a bug must not leave the consumer's node waiting
            log.exception("query on contract %s failed", req.contract_id)
            self._refuse(peer, qid, QueryRefused("execution_error", type(e).__name__), req, True)
            return
        finally:
            self._running[req.contract_id] -= 1
            if self._running[req.contract_id] <= 0:
                del self._running[req.contract_id]
            self._metrics.running.dec()
        self._metrics.executed.inc()
        self._metrics.suppressed_rows.inc(outcome.rows_suppressed)
        self._metrics.seconds.observe(time.monotonic() - started)
        frame = {
            "qid": qid,
            "result": canonical_result(outcome.columns, outcome.rows),
            "receipt": receipt,
        }
        if not self._link.send(peer, "compute.result", frame):
            log.warning("could not queue the result of a query on %s for %s", req.contract_id, peer)

    async def _record(
        self, auth: Authorised, outcome: Outcome, hashed_rule: bytes
    ) -> dict[str, Any]:
        """Post the receipt and wait until it commits; its fields for the consumer."""
        req = auth.request
        body = b.ComputeReceipt(
            contract_id=req.contract_id,
            request_id=req.request_id,
            authorised_height=auth.height,
            authorised_at_ms=auth.at_ms,
            query_hash=req.query_hash,
            rule_hash=hashed_rule,
            result_hash=result_hash(outcome.columns, outcome.rows),
            rows_scanned=outcome.rows_scanned,
            rows_returned=len(outcome.rows),
            rows_suppressed=outcome.rows_suppressed,
            budget_used=1,
        )
        try:
            tx_id = await self._signer.submit(body.TYPE, body.to_body())
            await asyncio.wait_for(self._submitter.wait_committed(tx_id), RECEIPT_WAIT_S)
        except Exception as e:
            raise QueryRefused("receipt_failed", f"{type(e).__name__}: {e}"[:200]) from None
        location = self._ledger.tx_location(tx_id)
        if location is None or not location.ok:
            reason = "not committed" if location is None else location.reason
            raise QueryRefused("receipt_failed", f"the ledger refused the receipt: {reason}")
        return {
            **{k: (v.hex() if isinstance(v, bytes) else v) for k, v in body.to_body().items()},
            "tx_id": tx_id.hex(),
            "height": location.height,
        }
