"""The driver: runs the sans-I/O consensus core inside the node.

It turns peer frames, timers and mempool activity into core events, executes the core's
actions, and owns everything the core must not touch: the clock, the network, the store and
the ledger.

Ordering rules (the reasons this module exists):

- One task, ``_consensus_loop``, calls ``Replica.handle``; events are queued (network events
  in a bounded queue whose overflow is dropped and counted — the protocol tolerates loss —,
  internal events such as timers and executed blocks in a small unbounded one, bounded in
  practice by the number of timer kinds and the window).
- Actions run in the order returned. ``Persist`` is durable (a synced LevelDB write) before
  any ``Send``/``Broadcast`` that follows it. Within one batch of events only the newest
  persisted state is written — it contains everything the earlier ones did — and it is
  written before any vote of the batch leaves.
- ``Deliver`` executes the block through the ledger and commits block, certificate, tx index,
  state writes and tip in one synced batch, then reports ``BlockExecuted``.

Proposal payloads are verified before the core sees them: the ingress task checks the
signatures of every transaction it has not already verified (batched, in threads) and the
core's ``validate_payload`` only looks the transactions up in the verified set. A node thus
verifies each transaction once, whether it arrived by gossip, by API or inside a proposal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mdtp.consensus import state_transfer
from mdtp.consensus.actions import (
    Action,
    Broadcast,
    CancelTimer,
    Deliver,
    Persist,
    ProposalWanted,
    ReportEvidence,
    RequestStateTransfer,
    Send,
    SetTimer,
    StateDiverged,
)
from mdtp.consensus.block import Block, BlockHeader
from mdtp.consensus.codec import pack, unpack_canonical
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.events import (
    BlockExecuted,
    Event,
    MessageReceived,
    StateTransferDone,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
    TransactionsRemoved,
)
from mdtp.consensus.messages import (
    CommitCertificate,
    Message,
    NewView,
    PrePrepare,
    StateTransferRequest,
    StateTransferResponse,
    WireLimits,
    decode_message,
    encode_message,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.state import decode_state, encode_state
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.outbox import OutboxContext, OutboxFactory, WireOutbox
from mdtp.node.identity.genesis import Genesis, MemberSignatures
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import BlockContext, Ledger, TxResult, account_nonce
from mdtp.node.ledger.state import Overlay, next_state_root
from mdtp.node.ledger.tx import Tx, TxError
from mdtp.node.txpool.mempool import Mempool
from mdtp.node.txpool.sigverify import BatchVerifier
from mdtp.storage.blockstore import BlockStore, CommittedBlock
from mdtp.storage.crashpoints import crash_point
from mdtp.storage.errors import InconsistentStore

log = logging.getLogger("mdtp.driver")

SendFn = Callable[[str, str, Any], bool]
BroadcastFn = Callable[[str, Any], None]


@dataclass(frozen=True)
class DriverLimits:
    network_queue_max: int = 20_000
    ingress_queue_max: int = 20_000
    events_per_batch_max: int = 512
    block_txs_max: int = 2_000
    block_bytes_max: int = 4 * 1024 * 1024
    proposal_wait_ms: int = 0
    # Blocks commit one height per round trip (the core commits h only after h-1), so more
    # proposals in flight only make blocks smaller; beyond this many, wait and batch.
    proposals_in_flight_max: int = 2
    verified_cache_max: int = 100_000  # covers a full mempool (50k) plus proposals in flight
    gossip_batch_max: int = 512
    state_transfer_timeout_s: float = 5.0
    lag_blocks_ready_max: int = 8
    status_interval_s: int = 2
    # The core's per-request timer (at least 10 view timeouts): far above a normal commit,
    # including the queueing of a full mempool.
    request_timeout_ms: int = 30_000
    requests_offered_max: int = 64


def consensus_config(
    genesis: Genesis, node_id: str, genesis_root: bytes, limits: DriverLimits
) -> ConsensusConfig:
    p = genesis.consensus
    return ConsensusConfig(
        chain_id=genesis.chain_id,
        members=genesis.member_ids,
        my_id=node_id,
        genesis_state_root=genesis_root,
        checkpoint_interval=p.checkpoint_interval,
        window_size=p.window,
        pipeline_depth=p.pipeline_depth,
        timeout_ms_base=p.view_timeout_ms,
        timeout_ms_cap=p.view_timeout_ms_max,
        clock_skew_ms_max=p.max_clock_skew_ms,
        block_txs_max=limits.block_txs_max,
        block_bytes_max=limits.block_bytes_max,
        request_timeout_ms=max(limits.request_timeout_ms, 10 * p.view_timeout_ms),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def encode_block(block: Block) -> bytes:
    return pack(block.to_wire())


def decode_block(data: bytes, limits: WireLimits) -> Block:
    return Block.from_wire(
        unpack_canonical(data, limits.message_bytes_max), limits.block_txs_max, limits.tx_bytes_max
    )


def decode_certificate(data: bytes, limits: WireLimits) -> CommitCertificate:
    return CommitCertificate.from_wire(unpack_canonical(data, limits.message_bytes_max), limits)


class Driver:
    def __init__(
        self,
        *,
        genesis: Genesis,
        genesis_root: bytes,
        node_id: str,
        node_key: SigningKey,
        store: BlockStore,
        ledger: Ledger,
        mempool: Mempool,
        verifier: BatchVerifier,
        send: SendFn,
        broadcast: BroadcastFn,
        metrics: DriverMetrics,
        limits: DriverLimits,
        outbox: OutboxFactory = WireOutbox,
    ) -> None:
        self.genesis = genesis
        self.node_id = node_id
        self.node_key = node_key
        self.store = store
        self.ledger = ledger
        self.mempool = mempool
        self.verifier = verifier
        self._send = send
        self._broadcast = broadcast
        self.metrics = metrics
        self.limits = limits
        self.config = consensus_config(genesis, node_id, genesis_root, limits)
        self.wire_limits = WireLimits.from_config(self.config)
        self._verify = MemberSignatures(genesis.members)
        self._store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.height, self.state_root = store.tip()
        self.tip_hash = self._tip_hash()
        self._exec_lock = asyncio.Lock()
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._network: deque[tuple[str, Message]] = deque()
        self._internal: deque[Event | Callable[[int], Event] | _Start] = deque()
        self._ingress: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(limits.ingress_queue_max)
        self._wake = asyncio.Event()
        self._timers: dict[TimerKind, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._first_seen: dict[int, float] = {}
        self._proposal_handle: asyncio.TimerHandle | None = None
        self._pending_since: float | None = None
        self._gossip_buffer: list[bytes] = []
        self._gossip_handle: asyncio.Handle | None = None
        self._st_task: asyncio.Task[None] | None = None
        self._st_target = 0
        self._st_waiter: tuple[str, asyncio.Future[StateTransferResponse]] | None = None
        self._last_view = 0
        self._last_proposed = 0
        self._proposal_queued = False
        self._fruitless_at: tuple[int, int, int] | None = None
        self.evidence: deque[dict[str, Any]] = deque(maxlen=1000)
        # called after each block is durably committed (e.g. the supplier node's grants)
        self.commit_listeners: list[Callable[[Block, list[TxResult]], None]] = []
        self.halted_reason: str | None = None
        self._peer_heights: dict[str, int] = {}
        self.highest_seen = self.height
        self.replica = self._build_replica()
        self.outbox = outbox(
            OutboxContext(
                node_id=node_id,
                peers=[m for m in self.config.members if m != node_id],
                chain_id=genesis.chain_id,
                sign=self._sign,
                send=send,
                broadcast=broadcast,
            )
        )
        metrics.export_rejections(lambda: dict(self.replica.rejections))
        metrics.height.set(self.height)

    # -- construction ---------------------------------------------------------------------

    def _tip_hash(self) -> bytes:
        if self.height == 0:
            from mdtp.consensus.block import genesis_hash

            return genesis_hash(self.genesis.chain_id, self.state_root_at(0))
        record = self.store.record(self.height)
        if record is None:
            raise InconsistentStore(f"{self.store.path}: no block record at the tip {self.height}")
        return record.hash

    def state_root_at(self, height: int) -> bytes:
        if height == 0:
            return self.config.genesis_state_root
        record = self.store.record(height)
        if record is None:
            raise InconsistentStore(
                f"{self.store.path}: key space 'block records' has no entry at height {height}"
            )
        return record.state_root

    def _sign(self, data: bytes) -> bytes:
        return self.node_key.sign(data)

    def _validate_payload(self, block: Block) -> str | None:
        for tx in block.payload:
            if hashlib.sha256(tx).digest() not in self._verified:
                return "unverified_transaction"
        return None

    def _last_header(self) -> BlockHeader | None:
        if self.height == 0:
            return None
        raw = self.store.block_bytes(self.height)
        if raw is None:
            raise InconsistentStore(
                f"{self.store.path}: key space 'blocks' has no entry at height {self.height}"
            )
        block = decode_block(raw, self.wire_limits)
        if block.hash() != self._tip_hash():
            raise InconsistentStore(
                f"{self.store.path}: block at height {self.height} does not hash to its record"
            )
        return block.header

    def _build_replica(self) -> Replica:
        persisted = self.store.load_consensus_state()
        if persisted is None:
            return Replica(self.config, self._sign, self._verify, self._validate_payload)
        try:
            state = decode_state(persisted, self.wire_limits)
        except ConsensusError as e:
            raise InconsistentStore(
                f"{self.store.path}: key space 'meta' consensus state is undecodable ({e})"
            ) from None
        depth = self.config.pipeline_depth
        roots = {
            h: self.state_root_at(h) for h in range(max(0, self.height - depth), self.height + 1)
        }
        return Replica.restore(
            self.config,
            state,
            self.height,
            self._last_header(),
            roots,
            self._sign,
            self._verify,
            self._validate_payload,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.outbox.start()
        self._tasks.append(asyncio.create_task(self._consensus_loop(), name="consensus"))
        self._tasks.append(asyncio.create_task(self._ingress_loop(), name="ingress"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._internal.append(_START)
        self._wake.set()

    async def close(self) -> None:
        await self.outbox.close()
        for handle in self._timers.values():
            handle.cancel()
        if self._proposal_handle is not None:
            self._proposal_handle.cancel()
        tasks = [*self._tasks] + ([self._st_task] if self._st_task else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._store_pool.shutdown(wait=True)
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()

    @property
    def lagging(self) -> bool:
        return self.highest_seen - self.height > self.limits.lag_blocks_ready_max or (
            self._st_task is not None and not self._st_task.done()
        )

    # -- inputs -------------------------------------------------------------------------------

    def on_consensus_frame(self, peer_id: str, body: Any) -> None:
        if not isinstance(body, bytes):
            self.metrics.frames_dropped.labels("not_bytes").inc()
            return
        try:
            self._ingress.put_nowait((peer_id, body))
        except asyncio.QueueFull:
            self.metrics.frames_dropped.labels("ingress_full").inc()

    def on_gossip_frame(self, peer_id: str, body: Any) -> None:
        if not isinstance(body, list) or not all(isinstance(t, bytes) for t in body):
            self.metrics.frames_dropped.labels("bad_gossip").inc()
            return
        if len(body) > self.limits.gossip_batch_max * 4:
            self.metrics.frames_dropped.labels("gossip_too_large").inc()
            return
        task = asyncio.create_task(self._admit_gossip(body))
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def submit(self, raw: bytes) -> Tx:
        """A client transaction: verify, admit, gossip once. Raises TxError/MempoolError."""
        tx = await self.verifier.check(raw)
        added = self._admit(tx)
        if added:
            self._gossip(raw)
        return tx

    def _admit(self, tx: Tx) -> bool:
        self._remember_verified(tx.id)
        if self.store.tx_location(tx.id) is not None:
            from mdtp.node.txpool.mempool import MempoolReject

            raise MempoolReject("transaction already committed", reason="duplicate")
        added = self.mempool.add(tx)
        if added:
            self._on_mempool_activity()
        return added

    async def _admit_gossip(self, raws: list[bytes]) -> None:
        fresh = [r for r in raws if hashlib.sha256(r).digest() not in self._verified]
        results = await self.verifier.check_many(fresh)
        from mdtp.node.txpool.mempool import MempoolFull, MempoolReject

        for result in results:
            if isinstance(result, TxError):
                self.mempool.metrics.rejected.labels(result.reason).inc()
                continue
            with contextlib.suppress(MempoolReject, MempoolFull):
                self._admit(result)

    def _gossip(self, raw: bytes) -> None:
        self._gossip_buffer.append(raw)
        if len(self._gossip_buffer) >= self.limits.gossip_batch_max:
            self._flush_gossip()
        elif self._gossip_handle is None:
            # everything submitted in this turn of the event loop travels in one frame
            self._gossip_handle = asyncio.get_running_loop().call_soon(self._flush_gossip)

    def _flush_gossip(self) -> None:
        if self._gossip_handle is not None:
            self._gossip_handle.cancel()
            self._gossip_handle = None
        if self._gossip_buffer:
            batch, self._gossip_buffer = self._gossip_buffer, []
            self._broadcast("txs", batch)

    def _remember_verified(self, tx_id: bytes) -> None:
        self._verified[tx_id] = None
        self._verified.move_to_end(tx_id)
        while len(self._verified) > self.limits.verified_cache_max:
            self._verified.popitem(last=False)

    def wait_committed(self, tx_id: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.store.tx_location(tx_id) is not None:
            fut.set_result(None)
        else:
            self._waiters.setdefault(tx_id, []).append(fut)
        return fut

    # -- ingress: decode, serve state transfer, pre-verify payloads ----------------------

    async def _ingress_loop(self) -> None:
        while True:
            peer_id, body = await self._ingress.get()
            try:
                msg = decode_message(body, self.wire_limits)
            except ConsensusError as e:
                self.metrics.frames_dropped.labels(e.reason).inc()
                continue
            # msg.sender may differ from peer_id: the core relays others' signed messages
            # (e.g. to help a lagging replica); it verifies every signature itself.
            if isinstance(msg, StateTransferRequest):
                self._serve_state_transfer(msg)
                continue
            if isinstance(msg, StateTransferResponse):
                waiter = self._st_waiter
                if waiter is not None and waiter[0] == peer_id and not waiter[1].done():
                    waiter[1].set_result(msg)
                else:
                    self.metrics.frames_dropped.labels("unexpected_response").inc()
                continue
            if isinstance(msg, PrePrepare):
                self.highest_seen = max(self.highest_seen, msg.height - 1)
                await self._preverify([msg.block])
            elif isinstance(msg, NewView):
                await self._preverify([pp.block for pp in msg.pre_prepares])
            if len(self._network) >= self.limits.network_queue_max:
                self.metrics.frames_dropped.labels("network_queue_full").inc()
                continue
            self._network.append((peer_id, msg))
            self._wake.set()

    async def _preverify(self, blocks: list[Block]) -> None:
        unknown = [
            tx
            for b in blocks
            for tx in b.payload
            if hashlib.sha256(tx).digest() not in self._verified
        ]
        if not unknown:
            return
        for result in await self.verifier.check_many(unknown):
            if not isinstance(result, TxError):
                self._remember_verified(result.id)

    def _block_source(self, height: int) -> tuple[Block, CommitCertificate] | None:
        raw_block, raw_cert = self.store.block_bytes(height), self.store.certificate_bytes(height)
        if raw_block is None or raw_cert is None:
            return None
        return decode_block(raw_block, self.wire_limits), decode_certificate(
            raw_cert, self.wire_limits
        )

    def _serve_state_transfer(self, request: StateTransferRequest) -> None:
        response = state_transfer.serve_request(
            self.config, self._sign, self._verify, request, self._block_source
        )
        if response is None:
            self.metrics.frames_dropped.labels("bad_state_request").inc()
            return
        self._send(request.sender, "consensus", encode_message(response))

    # -- the consensus loop ---------------------------------------------------------------

    async def _consensus_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (self._internal or self._network) and self.halted_reason is None:
                now = now_ms()
                actions: list[Action] = []
                handled = 0
                while self._internal and handled < self.limits.events_per_batch_max:
                    item = self._internal.popleft()
                    if item is _PROPOSE:
                        actions.extend(self._propose(now))
                    elif isinstance(item, _Start):
                        actions.extend(self.replica.start(now))
                    else:
                        event = item(now) if callable(item) else item
                        actions.extend(self.replica.handle(event))
                    handled += 1
                while self._network and handled < self.limits.events_per_batch_max:
                    _, msg = self._network.popleft()
                    actions.extend(self.replica.handle(MessageReceived(now, msg)))
                    handled += 1
                await self._execute(actions)
                self._observe_view()
                self._maybe_propose()

    def _observe_view(self) -> None:
        view = self.replica.view
        if view != self._last_view:
            self.metrics.view_changes.inc(max(0, view - self._last_view))
            self._last_view = view
            self.metrics.view.set(view)
            # proposals of the old view that did not commit are offered again
            self.mempool.release_in_flight()
        self.metrics.stable_checkpoint.set(self.replica.stable_checkpoint.height)

    async def _execute(self, actions: list[Action]) -> None:
        persists = [a for a in actions if isinstance(a, Persist)]
        if persists:
            data = encode_state(persists[-1].state)
            started = time.perf_counter()
            crash_point("before consensus-state persist")
            await asyncio.get_running_loop().run_in_executor(
                self._store_pool, self.store.save_consensus_state, data
            )
            crash_point("after consensus-state persist")
            self.metrics.store_write_latency.labels("consensus_state").observe(
                time.perf_counter() - started
            )
        loop = asyncio.get_running_loop()
        follow_up: list[Action] = []
        for action in actions:
            if isinstance(action, Persist):
                continue
            if isinstance(action, Send):
                self._note_message(action.message)
                self.outbox.unicast(action.to, action.message)
            elif isinstance(action, Broadcast):
                self._note_message(action.message)
                self.outbox.broadcast(action.message)
            elif isinstance(action, SetTimer):
                old = self._timers.pop(action.kind, None)
                if old is not None:
                    old.cancel()
                delay = max(0.0, (action.at_ms - now_ms()) / 1000)
                self._timers[action.kind] = loop.call_later(
                    delay, self._timer_fired, action.kind, action.timer_id
                )
            elif isinstance(action, CancelTimer):
                old = self._timers.pop(action.kind, None)
                if old is not None:
                    old.cancel()
            elif isinstance(action, Deliver):
                if action.block.height <= self.height:
                    log.warning("core delivered height %d, already executed", action.block.height)
                    continue
                await self._execute_block(action.block, action.certificate)
                # the core wants BlockExecuted before any other event; what it answers runs
                # after this list (its own Persist still precedes its own votes)
                follow_up.extend(
                    self.replica.handle(BlockExecuted(now_ms(), self.height, self.state_root))
                )
            elif isinstance(action, RequestStateTransfer):
                self._request_state_transfer(action)
            elif isinstance(action, ReportEvidence):
                ev = action.evidence
                self.metrics.evidence.labels(ev.offender).inc()
                self.evidence.append(
                    {
                        "offender": ev.offender,
                        "kind": ev.kind,
                        "first": encode_message(ev.first).hex(),
                        "second": encode_message(ev.second).hex(),
                    }
                )
                log.warning("evidence: %s sent conflicting %s messages", ev.offender, ev.kind)
            elif isinstance(action, ProposalWanted):
                pass  # _maybe_propose runs after every batch
            elif isinstance(action, StateDiverged):
                self.halted_reason = (
                    f"state root at height {action.height} is {action.ours.hex()} here but "
                    f"{action.certified.hex()} in the certified chain"
                )
                self.metrics.halted.set(1)
                log.error("HALTED: %s", self.halted_reason)
        if follow_up:
            await self._execute(follow_up)

    def _note_message(self, msg: Message) -> None:
        if isinstance(msg, PrePrepare):
            self._first_seen.setdefault(msg.height, time.perf_counter())
            if msg.sender == self.node_id:
                self._last_proposed = max(self._last_proposed, msg.height)

    def _timer_fired(self, kind: TimerKind, timer_id: int) -> None:
        self._timers.pop(kind, None)
        self._internal.append(lambda now: TimerFired(now, kind, timer_id))
        self._wake.set()

    # -- execution ------------------------------------------------------------------------

    async def _execute_block(self, block: Block, cert: CommitCertificate) -> None:
        async with self._exec_lock:
            await self._execute_block_locked(block, cert)

    async def _execute_block_locked(self, block: Block, cert: CommitCertificate) -> None:
        height = block.height
        assert height == self.height + 1, f"deliver of {height} after {self.height}"
        assert block.header.prev_hash == self.tip_hash, f"block {height} does not extend the tip"
        ctx = BlockContext(
            self.genesis.chain_id, height, block.header.timestamp_ms, block.header.proposer
        )
        overlay = Overlay(self.store.state)
        results = self.ledger.execute_block(ctx, overlay, block.payload)
        root = next_state_root(self.state_root, overlay.writes)
        seen: set[bytes] = set()
        index_entries = []
        for r in results:
            # a transaction re-proposed after a view change fails its second time (nonce);
            # the index keeps pointing at the execution that counted
            if r.tx_id in seen:
                continue
            earlier = self.store.tx_location(r.tx_id)
            if earlier is not None and (earlier.ok or not r.ok):
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
        started = time.perf_counter()
        crash_point("before block commit batch")
        await asyncio.get_running_loop().run_in_executor(
            self._store_pool, self.store.commit_block, committed
        )
        crash_point("after block commit batch")
        self.metrics.store_write_latency.labels("block").observe(time.perf_counter() - started)
        self.height, self.state_root, self.tip_hash = height, root, block.hash()
        self.highest_seen = max(self.highest_seen, height)
        self._after_commit(block, results)
        first = self._first_seen.pop(height, None)
        if first is not None:
            self.metrics.commit_latency.observe(time.perf_counter() - first)
        for h in [h for h in self._first_seen if h < height]:
            del self._first_seen[h]

    def _after_commit(self, block: Block, results: list[TxResult]) -> None:
        ok = sum(1 for r in results if r.ok)
        self.metrics.txs_committed.labels("ok").inc(ok)
        self.metrics.txs_committed.labels("failed").inc(len(results) - ok)
        self.metrics.block_txs.observe(len(results))
        self.metrics.height.set(block.height)
        self.mempool.committed([(r.tx_id, r.ok, r.reason) for r in results])
        for r in results:
            for fut in self._waiters.pop(r.tx_id, []):
                if not fut.done():
                    fut.set_result(None)
        for listener in self.commit_listeners:
            try:
                listener(block, results)
            except Exception:  # a listener bug must not stop the ledger
                log.exception("commit listener failed at height %d", block.height)

    def committed_nonce(self, account_id: str) -> int:
        return account_nonce(Overlay(self.store.state), account_id)

    # -- proposals ------------------------------------------------------------------------

    def _on_mempool_activity(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.perf_counter()
        self._maybe_propose()

    def _maybe_propose(self) -> None:
        if self.halted_reason is not None or not len(self.mempool):
            self._pending_since = None if not len(self.mempool) else self._pending_since
            return
        if not self.replica.is_primary:
            if not self.replica.in_view_change:
                # tell the core there is work, so a silent primary gets replaced, and which:
                # its request timers hold the primary to the oldest proposable ones
                offered = (
                    self.mempool.take(self.limits.requests_offered_max, self.limits.block_bytes_max)
                    if self._pending_since is not None
                    else []
                )
                if offered:
                    txs = tuple(t.signed_bytes for t in offered)
                    self._internal.append(TransactionsAvailable(now_ms(), txs))
                    self._pending_since = None
                    self._wake.set()
            return
        if not self.replica.wants_proposal:
            return
        in_flight = self._last_proposed - self.height
        if (
            in_flight >= self.limits.proposals_in_flight_max
            and len(self.mempool) < self.limits.block_txs_max
        ):
            return  # re-checked after the next block executes
        waited_ms = (time.perf_counter() - (self._pending_since or time.perf_counter())) * 1000
        if (
            len(self.mempool) < self.limits.block_txs_max
            and waited_ms < self.limits.proposal_wait_ms
        ):
            if self._proposal_handle is None:
                delay = (self.limits.proposal_wait_ms - waited_ms) / 1000
                self._proposal_handle = asyncio.get_running_loop().call_later(
                    delay, self._proposal_timer
                )
            return
        generation = (self.height, self.replica.view, self.mempool.generation)
        if not self._proposal_queued and generation != self._fruitless_at:
            self._proposal_queued = True
            self._internal.append(_PROPOSE)
            self._wake.set()

    def _propose(self, now: int) -> list[Action]:
        """Runs inside the consensus loop, so what is taken is what the core proposes."""
        self._proposal_queued = False
        generation = (self.height, self.replica.view, self.mempool.generation)
        if not self.replica.wants_proposal:
            return []
        txs = self.mempool.take(self.limits.block_txs_max, self.limits.block_bytes_max)
        if not txs:
            # nothing proposable until the mempool, the height or the view changes
            self._fruitless_at = generation
            return []
        self._pending_since = time.perf_counter() if len(self.mempool) > len(txs) else None
        actions = self.replica.handle(
            TransactionsAvailable(now, tuple(t.signed_bytes for t in txs))
        )
        for action in actions:
            msg = action.message if isinstance(action, Broadcast) else None
            if isinstance(msg, PrePrepare) and msg.sender == self.node_id:
                self.mempool.mark_in_flight(
                    [hashlib.sha256(tx).digest() for tx in msg.block.payload]
                )
        return actions

    def _proposal_timer(self) -> None:
        self._proposal_handle = None
        self._maybe_propose()

    # -- state transfer -------------------------------------------------------------------

    def _request_state_transfer(self, action: RequestStateTransfer) -> None:
        self._st_target = max(self._st_target, action.to_height)
        self.highest_seen = max(self.highest_seen, action.to_height)
        self.metrics.state_transfer_target.set(self._st_target)
        if self._st_task is None or self._st_task.done():
            peers = action.peers or tuple(m for m in self.config.members if m != self.node_id)
            self._st_task = asyncio.create_task(self._state_transfer(peers), name="state-transfer")

    async def _state_transfer(self, peers: tuple[str, ...]) -> None:
        self.metrics.state_transfer_active.set(1)
        candidates = [p for p in peers if p != self.node_id] or [
            m for m in self.config.members if m != self.node_id
        ]
        attempt = 0
        last_block: Block | None = None
        try:
            while self.height < self._st_target:
                peer = candidates[attempt % len(candidates)]
                attempt += 1
                request = state_transfer.build_request(
                    self.config, self._sign, self.height + 1, self._st_target
                )
                fut: asyncio.Future[StateTransferResponse] = (
                    asyncio.get_running_loop().create_future()
                )
                self._st_waiter = (peer, fut)
                self._send(peer, "consensus", encode_message(request))
                try:
                    response = await asyncio.wait_for(fut, self.limits.state_transfer_timeout_s)
                except TimeoutError:
                    log.info("state transfer: no answer from %s, trying another peer", peer)
                    continue
                finally:
                    self._st_waiter = None
                try:
                    entries = state_transfer.verify_response(
                        self.config, self._verify, response, self.height + 1, self.tip_hash
                    )
                except ConsensusError as e:
                    log.warning("state transfer: bad response from %s: %s", peer, e)
                    self.metrics.frames_dropped.labels("bad_state_response").inc()
                    continue
                if not entries:
                    continue
                for block, cert in entries:
                    if not await self._execute_block_checked(block, cert):
                        return
                    last_block = block
                    self.metrics.state_transfer_blocks.inc()
                attempt -= 1  # a good peer is asked again
            if last_block is not None:
                depth = self.config.pipeline_depth
                roots = tuple(
                    (h, self.state_root_at(h))
                    for h in range(max(0, self.height - depth + 1), self.height + 1)
                )
                block = last_block
                self._internal.append(lambda now: StateTransferDone(now, block, roots))
                self._wake.set()
                log.info("state transfer done at height %d", self.height)
        finally:
            self.metrics.state_transfer_active.set(0)

    async def _execute_block_checked(self, block: Block, cert: CommitCertificate) -> bool:
        """Execute a transferred block, checking the state root its header commits to;
        False (and the node halts) if our state diverged from the certified chain."""
        if block.height <= self.height:
            return True
        depth = self.config.pipeline_depth
        committed_height = block.height - depth
        if committed_height >= 0 and committed_height <= self.height:
            ours = self.state_root_at(committed_height)
            if ours != block.header.state_root:
                self.halted_reason = (
                    f"state root at height {committed_height} is {ours.hex()} here but block "
                    f"{block.height} commits to {block.header.state_root.hex()}"
                )
                self.metrics.halted.set(1)
                log.error("HALTED: %s", self.halted_reason)
                return False
        await self._execute_block(block, cert)
        return True

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        tick = 0
        behind_since: int | None = None
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            self.mempool.evict_expired(now_ms())
            # stop the core's request timers of what left the pool unseen by it (expired,
            # evicted, committed by state transfer)
            gone = tuple(i for i in self.replica.tracked_request_ids if i not in self.mempool)
            if gone:
                self._internal.append(TransactionsRemoved(now_ms(), gone))
                self._wake.set()
            if len(self.mempool):
                self._on_mempool_activity()
            if tick % self.limits.status_interval_s == 0:
                self._broadcast("status", {"h": self.height, "v": self.replica.view})
            # An idle chain carries no consensus messages, so a replica that missed the last
            # blocks would never hear of them; peers' status beacons tell it. The target is
            # the (f+1)-th highest reported height: at least one honest member has it.
            target = self._beacon_target()
            if target > self.height and not self.lagging_transfer:
                if behind_since is None:
                    behind_since = tick
                elif tick - behind_since >= 2 * self.limits.status_interval_s:
                    peers = tuple(p for p, h in self._peer_heights.items() if h >= target)
                    log.info("behind the chain (%d < %d): catching up", self.height, target)
                    self._request_state_transfer(
                        RequestStateTransfer(self.height + 1, target, None, peers)
                    )
                    behind_since = None
            else:
                behind_since = None

    def _beacon_target(self) -> int:
        heights = sorted(self._peer_heights.values(), reverse=True)
        f = self.config.f
        return heights[f] if len(heights) > f else 0

    @property
    def lagging_transfer(self) -> bool:
        return self._st_task is not None and not self._st_task.done()

    def on_status_frame(self, peer_id: str, body: Any) -> None:
        height = body.get("h") if isinstance(body, dict) else None
        if isinstance(height, bool) or not isinstance(height, int) or not 0 <= height < 2**63:
            self.metrics.frames_dropped.labels("bad_status").inc()
            return
        self._peer_heights[peer_id] = height
        self.highest_seen = max(self.highest_seen, self._beacon_target())


class _Start:
    """Markers for the loop: ``_START`` calls ``Replica.start``, ``_PROPOSE`` proposes."""


_START = _Start()
_PROPOSE = _Start()  # marker: take transactions and propose, inside the loop
