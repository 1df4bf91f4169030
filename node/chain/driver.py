"""The driver: runs the sans-I/O consensus core inside the node.

It turns peer frames, timers and mempool activity into core events and executes the core's
actions. Its parts, each with one job: :class:`.execution.BlockExecutor` (the one path that
executes and commits blocks), :class:`.statesync.StateSync` (catching up, serving, beacons),
:class:`mdtp.node.txpool.admission.Admission` (transactions in, gossip out), the outbox (where
consensus messages go). Time, the disk and the links come in through :mod:`.ports`, so the
simulator runs this very code under virtual time.

Ordering rules (the reasons this module exists):

- One task, ``_consensus_loop``, calls ``Replica.handle``; events are queued (network events
  in bounded queues whose overflow is dropped and counted — the protocol tolerates loss;
  peer frames wait in one bounded queue per peer link, taken round robin within a frame
  budget per peer (:mod:`.ingress`), so one member's flood delays no other member —,
  internal events such as timers and executed blocks in a small unbounded one, bounded in
  practice by the number of timer kinds and the window).
- Every peer message is checked before any work is done for it: decoded within the wire
  bounds, sent by a member, signature valid. Only then does it count for bookkeeping (the
  highest height seen) or get its payload's signatures checked.
- Actions run in the order returned. ``Persist`` is durable (a synced LevelDB write) before
  any ``Send``/``Broadcast`` that follows it. Within one batch of events only the newest
  persisted state is written — it contains everything the earlier ones did — and it is
  written before any vote of the batch leaves.
- ``Deliver`` executes the block through the executor, then reports ``BlockExecuted``.
- Epochs (:mod:`.epochs`): after every executed block the driver re-reads the membership
  history; a newly scheduled change is reported to the core (``EpochEnds``) *before* the
  block's ``BlockExecuted``, so the core never works past the epoch's last height. Once the
  core is finished with its epoch (that height is its stable checkpoint) or state transfer
  took this node past it, the driver starts the next epoch's replica from the epoch's base
  block: new members and keys, views from 0. A node that is not a member of the epoch runs
  a replica that follows without voting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from mdtp.consensus.block import Block
from mdtp.consensus.config import ConsensusConfig, EpochBase
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.events import (
    BlockExecuted,
    EpochEnds,
    Event,
    MessageReceived,
    StateTransferDone,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
    TransactionsRemoved,
)
from mdtp.consensus.messages import (
    CheckpointCertificate,
    CommitCertificate,
    Message,
    NewView,
    PrePrepare,
    StateTransferRequest,
    StateTransferResponse,
    Verifier,
    WireLimits,
    decode_message,
    encode_message,
    verify_message,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.state import PersistedState, StateWriter, decode_state
from mdtp.node.chain.epochs import ChainEpochs
from mdtp.node.chain.execution import (
    BlockExecutor,
    decode_block,
    decode_certificate,
    encode_block,
)
from mdtp.node.chain.ingress import FairIngress, IngressLimits
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.outbox import OutboxContext, OutboxFactory, WireOutbox
from mdtp.node.chain.ports import BroadcastFn, Clock, Disk, SendFn, SystemClock, ThreadDisk
from mdtp.node.chain.statesync import StateServer, StateSync, SyncLimits
from mdtp.node.errors import MdtpError
from mdtp.node.identity.genesis import Genesis
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import Ledger, account_nonce
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import Tx
from mdtp.node.supervisor import Supervisor
from mdtp.node.txpool.admission import Admission
from mdtp.node.txpool.mempool import Mempool
from mdtp.node.txpool.sigverify import BatchVerifier
from mdtp.storage.blockstore import BlockStore
from mdtp.storage.crashpoints import crash_point
from mdtp.storage.errors import InconsistentStore

__all__ = ["Driver", "DriverLimits", "decode_block", "decode_certificate", "encode_block"]

log = logging.getLogger("mdtp.driver")


@dataclass(frozen=True)
class DriverLimits:
    network_queue_max: int = 20_000
    # peer input: a bounded queue and a budget of signature checks per peer link
    # (``ingress``); consensus frames cost one each, gossip one per transaction
    ingress: IngressLimits = field(default_factory=IngressLimits)
    gossip_ingress: IngressLimits = field(
        default_factory=lambda: IngressLimits(
            items_per_peer_max=4_096, bytes_per_peer_max=64 * 1024 * 1024, work_per_s=20_000
        )
    )
    # a peer whose gossip held a transaction with a bad signature is not listened to
    gossip_shut_out_s: float = 60.0
    # a peer whose queue overflows: its link is not read for this long
    overrun_pause_s: float = 0.05
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
    regossip_interval_s: int = 3
    # PBFT's request timer: a transaction this node holds that no block includes within this
    # long makes it suspect the primary (never less than 10 view timeouts, see below)
    request_timeout_ms: int = 30_000
    # how many waiting transactions a backup reports to the core at a time (request timer)
    requests_offered_max: int = 64
    # Aardvark's primary checks (``consensus/primary_monitor.py``): a view under load ends
    # after ``rotation_ms``; after ``throughput_grace_ms`` one delivering under
    # ``throughput_floor_pct`` % of the best recent view (at today's load) is suspected.
    rotation_ms: int = 5_000
    throughput_grace_ms: int = 1_000
    throughput_floor_pct: int = 50
    # off only in the simulator's control run, which must then catch a censoring primary
    request_timer: bool = True


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
        request_timer=limits.request_timer,
        rotation_ms=limits.rotation_ms,
        throughput_grace_ms=limits.throughput_grace_ms,
        throughput_floor_pct=limits.throughput_floor_pct,
    )


class _Marker:
    """Items of the internal queue that are not core events."""


_START = _Marker()  # calls Replica.start
_PROPOSE = _Marker()  # takes transactions and proposes, inside the loop


@dataclass(frozen=True)
class _Transferred(_Marker):
    """State transfer executed blocks up to ``block``: the core resumes there (or the next
    epoch starts, if the transfer went past this one's end)."""

    block: Block
    roots: tuple[tuple[int, bytes], ...]


InternalItem = Event | Callable[[int], Event] | _Marker
ProposalFilter = Callable[[list[Tx]], list[Tx]]


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
        supervisor: Supervisor,
        outbox: OutboxFactory = WireOutbox,
        clock: Clock | None = None,
        disk: Disk | None = None,
        proposal_filter: ProposalFilter | None = None,
        state_server: StateServer | None = None,
        next_node_key: SigningKey | None = None,
    ) -> None:
        self.node_id = node_id
        self.node_key = node_key
        # a node key rotation under way: the chain says from which epoch each key signs
        self._node_keys = [node_key] + ([next_node_key] if next_node_key is not None else [])
        self._signing_key = node_key
        self.store = store
        self.mempool = mempool
        self.verifier = verifier
        self.metrics = metrics
        self.limits = limits
        self.supervisor = supervisor
        self.clock = clock or SystemClock()
        self.disk = disk or ThreadDisk()
        # what a primary proposes of what the mempool offers (all of it, unless a test entry
        # point installs a censoring one)
        self._select = proposal_filter or (lambda txs: txs)
        genesis_config = consensus_config(genesis, node_id, genesis_root, limits)
        self.wire_limits = WireLimits.from_config(genesis_config)
        self.executor = BlockExecutor(
            chain_id=genesis.chain_id,
            genesis_state_root=genesis_root,
            store=store,
            ledger=ledger,
            disk=self.disk,
            clock=self.clock,
            wire_limits=self.wire_limits,
            metrics=metrics,
        )
        self.epochs = ChainEpochs(genesis_config, lambda: Overlay(store.state), self._epoch_base)
        persisted = self._load_consensus_state()
        self._state_writer = StateWriter(persisted)
        epoch = self._resume_epoch(persisted)
        self.config = self.epochs.config(epoch)
        self._verify = self.epochs.verifier(epoch)
        self._signing_key = self._epoch_key(epoch)
        self.admission = Admission(
            mempool=mempool,
            verifier=verifier,
            ledger=ledger,
            store=store,
            broadcast=broadcast,
            now_ms=self.clock.now_ms,
            supervisor=supervisor,
            on_activity=self._on_mempool_activity,
            verified_cache_max=limits.verified_cache_max,
            gossip_batch_max=limits.gossip_batch_max,
        )
        self.sync = StateSync(
            config=self.config,
            sign=self._sign,
            verify=self.epochs.verify_any,
            certifiers=self.epochs.certifiers,
            executor=self.executor,
            send=send,
            broadcast=broadcast,
            clock=self.clock,
            supervisor=supervisor,
            metrics=metrics,
            limits=SyncLimits(
                request_timeout_s=limits.state_transfer_timeout_s,
                status_interval_s=limits.status_interval_s,
            ),
            view=lambda: self.replica.view,
            on_done=self._state_transfer_done,
            on_diverged=self._halt,
            check_txs=verifier.check_certified,
            server=state_server,
        )
        # the mempool and waiters settle before anyone else hears of a commit
        self.executor.known_txs = mempool.get  # a block's held transactions: not decoded again
        self.executor.listeners.append(self.admission.on_commit)
        self.executor.listeners.append(self._after_commit)
        self.commit_listeners = self.executor.listeners
        self._network: deque[tuple[str, Message, str]] = deque()
        self._internal: deque[InternalItem] = deque()
        peers = sorted(self.epochs.roster - {node_id})
        self._ingress: FairIngress[bytes] = FairIngress(peers, limits.ingress, self.clock.monotonic)
        self._gossip_in: FairIngress[list[bytes]] = FairIngress(
            peers, limits.gossip_ingress, self.clock.monotonic
        )
        self._wake = asyncio.Event()
        self._timers: dict[TimerKind, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._first_seen: dict[int, float] = {}
        # proposals whose transactions were checked, and views whose primary proposed a
        # transaction with a bad signature (``_worth_preverifying``)
        self._preverified: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._bad_proposal_views: set[int] = set()
        self._proposal_handle: asyncio.TimerHandle | None = None
        self._pending_since: float | None = None
        self._last_view = 0
        self._last_proposed = 0
        self._proposal_queued = False
        self._fruitless_at: tuple[int, int, int] | None = None
        self.evidence: deque[dict[str, Any]] = deque(maxlen=1000)
        self.halted_reason: str | None = None
        self.highest_seen = self.executor.height
        own = persisted is not None and persisted.epoch == epoch
        self.replica = self._build_replica(persisted if own else None)
        self._handoff: tuple[Message, ...] = ()
        self._previous_epoch: tuple[str, Verifier, frozenset[str]] | None = None
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
        metrics.export_core(
            rejections=lambda: dict(self.replica.rejections),
            suspicions=lambda: dict(self.replica.suspicions),
            requests_tracked=lambda: self.replica.requests_tracked,
        )

    # -- construction ---------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.executor.height

    @property
    def state_root(self) -> bytes:
        return self.executor.state_root

    def _sign(self, data: bytes) -> bytes:
        return self._signing_key.sign(data)

    def _epoch_key(self, number: int) -> SigningKey:
        """The node key epoch ``number`` lists for this node (a rotated key signs from the
        epoch the rotation took effect); the first key for a node the epoch does not list."""
        epoch = self.epochs.get(number)
        member = None if epoch is None else epoch.member(self.node_id)
        if member is not None:
            for key in self._node_keys:
                if key.public_key.hex() == member.node_public_key:
                    return key
            log.error(
                "no node key of this node is the one epoch %d lists for %s: its votes will "
                "not count (install the rotated key as node_key.next.json)",
                number,
                self.node_id,
            )
        return self._node_keys[0]

    def _load_consensus_state(self) -> PersistedState | None:
        persisted = self.store.load_consensus_state()
        if persisted is None:
            return None
        try:
            return decode_state(*persisted, self.wire_limits)
        except ConsensusError as e:
            raise InconsistentStore(
                f"{self.store.path}: the consensus state (m/consensus, p/) is undecodable ({e})"
            ) from None

    def _resume_epoch(self, persisted: PersistedState | None) -> int:
        """The epoch this node's core works in after a (re)start: the persisted one, unless
        it is over here (its last height is the stable checkpoint and executed, or state
        transfer went past it); a node without consensus state starts in the epoch of the
        next height it executes."""
        height = self.executor.height
        if persisted is None:
            return self.epochs.at(height + 1).number
        number = persisted.epoch
        if self.epochs.get(number) is None:
            raise InconsistentStore(
                f"{self.store.path}: consensus state of epoch {number}, which the chain "
                "executed here never recorded"
            )
        last = self.epochs.last_height(number)
        if last is not None and height >= last and persisted.stable_checkpoint.height >= last:
            return self.epochs.at(height + 1).number
        if last is not None and height > last:
            return self.epochs.at(height + 1).number
        return number

    def _epoch_base(self, height: int) -> EpochBase:
        entry = self.executor.block_and_certificate(height)
        assert entry is not None, "an epoch's base block is executed before the epoch starts"
        block = entry[0]
        return EpochBase(
            height, block.hash(), block.header.timestamp_ms, self.executor.state_root_at(height)
        )

    def _build_replica(self, state: PersistedState | None) -> Replica:
        validate = self.admission.validate_payload
        if state is None:
            if self.config.base is None:
                return Replica(self.config, self._sign, self._verify, validate)
            base = self.config.base
            stable = CheckpointCertificate(base.height, base.block_hash, base.state_root, ())
            state = PersistedState(0, False, stable, (), (), None, self.config.epoch)
        return Replica.restore(
            self.config,
            state,
            self.height,
            self.executor.last_header(),
            self.executor.recent_roots(self.config.pipeline_depth),
            self._sign,
            self._verify,
            validate,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.outbox.start()
        spawn = self.supervisor.spawn
        self._tasks.append(spawn("consensus", self._consensus_loop(), long_lived=True))
        self._tasks.append(spawn("ingress", self._ingress_loop(), long_lived=True))
        self._tasks.append(spawn("gossip", self._gossip_loop(), long_lived=True))
        self._tasks.append(spawn("housekeeping", self._housekeeping(), long_lived=True))
        self._internal.append(_START)
        self._wake.set()

    async def close(self) -> None:
        await self.outbox.close()
        for handle in self._timers.values():
            handle.cancel()
        if self._proposal_handle is not None:
            self._proposal_handle.cancel()
        for task in self._tasks:
            await self.supervisor.cancel(task)
        await self.sync.close()
        self.disk.close()
        self.admission.close()

    @property
    def lagging(self) -> bool:
        return (
            self.highest_seen - self.height > self.limits.lag_blocks_ready_max or self.sync.active
        )

    # -- inputs -------------------------------------------------------------------------------

    def on_consensus_frame(self, peer_id: str, body: Any) -> float | None:
        """Queue a peer's consensus frame; seconds to stop reading its link, if it sends
        faster than its budget is served (see ``p2p.transport.FrameHandler``)."""
        if not isinstance(body, bytes):
            self.metrics.frames_dropped.labels("not_bytes").inc()
            return None
        return self._dropped(self._ingress.put(peer_id, body, len(body)))

    def on_gossip_frame(self, peer_id: str, body: Any) -> float | None:
        dropped = self.admission.check_gossip(body)
        if dropped is None:
            dropped = self._gossip_in.put(peer_id, body, sum(map(len, body)), len(body))
        return self._dropped(dropped)

    def _dropped(self, reason: str | None) -> float | None:
        if reason is None:
            return None
        self.metrics.frames_dropped.labels(reason).inc()
        return self.limits.overrun_pause_s if reason == "peer_queue_full" else None

    def on_status_frame(self, peer_id: str, body: Any) -> None:
        dropped = self.sync.on_status(peer_id, body)
        if dropped is not None:
            self.metrics.frames_dropped.labels(dropped).inc()
            return
        self.highest_seen = max(self.highest_seen, self.sync.beacon_target())

    async def submit(self, raw: bytes) -> Tx:
        """A client transaction: verify, admit, gossip once. Raises TxError/MempoolError."""
        return await self.admission.submit(raw)

    async def submit_many(self, raws: Sequence[bytes]) -> list[Tx | MdtpError]:
        """A client batch: one signature batch, each admitted in order (``Admission``)."""
        return await self.admission.submit_many(raws)

    def wait_committed(self, tx_id: bytes) -> asyncio.Future[None]:
        return self.admission.wait_committed(tx_id)

    def committed_nonce(self, account_id: str) -> int:
        return account_nonce(Overlay(self.store.state), account_id)

    # -- ingress: decode, check the sender's signature, serve state transfer --------------

    async def _ingress_loop(self) -> None:
        while True:
            peer_id, body = await self._ingress.get()
            try:
                msg = decode_message(body, self.wire_limits)
            except ConsensusError as e:
                self.metrics.frames_dropped.labels(e.reason).inc()
                continue
            # msg.sender may differ from peer_id: the core relays others' signed messages
            # (e.g. to help a lagging replica). Nothing is done for a message before its
            # sender and signature check out.
            verify: Verifier
            if isinstance(msg, StateTransferRequest | StateTransferResponse):
                # between members of any epoch and followers: any key the sender ever had
                known = msg.sender in self.epochs.roster
                domain, verify = self.config.chain_id, self.epochs.verify_any
            else:
                known = msg.sender in self.config.members
                domain, verify = self.config.domain, self._verify
            if not known:
                self.metrics.frames_dropped.labels("not_a_member").inc()
                continue
            if not verify_message(msg, domain, verify):
                self.metrics.frames_dropped.labels(self._why_unverified(msg)).inc()
                continue
            if isinstance(msg, StateTransferRequest):
                if self.sync.serve(msg):
                    self._ingress.refund(peer_id)
                else:
                    self.metrics.frames_dropped.labels("bad_state_request").inc()
                continue
            if isinstance(msg, StateTransferResponse):
                if self.sync.on_response(peer_id, msg):
                    self._ingress.refund(peer_id)
                else:
                    self.metrics.frames_dropped.labels("unexpected_response").inc()
                continue
            # A proposal's height is one member's claim, so it never counts as the chain's
            # height (``highest_seen`` moves on certificates, checkpoints and the (f+1)-th
            # highest beacon only): a Byzantine member cannot make this node "catch up".
            if isinstance(msg, PrePrepare | NewView) and self._worth_preverifying(msg):
                blocks = (
                    [msg.block]
                    if isinstance(msg, PrePrepare)
                    else [pp.block for pp in msg.pre_prepares]
                )
                if await self.admission.preverify(blocks):
                    # an honest primary proposes only transactions it verified
                    self._bad_proposal_views.add(msg.view)
            if len(self._network) >= self.limits.network_queue_max:
                self.metrics.frames_dropped.labels("network_queue_full").inc()
                continue
            self._network.append((peer_id, msg, domain))
            self._wake.set()

    def _why_unverified(self, msg: Message) -> str:
        """A message whose signature fails in our epoch: a late one of the previous epoch
        (signed in its domain by one of its members) is no bad signature."""
        prev = self._previous_epoch
        if prev is not None and msg.sender in prev[2] and verify_message(msg, prev[0], prev[1]):
            return "previous_epoch"
        return "bad_signature"

    def _worth_preverifying(self, msg: PrePrepare | NewView) -> bool:
        """Checking a proposal's transactions is the costliest work a member can ask of
        us, so only a proposal the core could accept gets it: from the primary of a view
        not behind ours, the first per (view, height) -- a second one is equivocation --,
        inside the window, and not from a primary already caught proposing a transaction
        with a bad signature in that view. The others go to the core unchecked, which
        refuses them (``unverified_transaction``) or drops them as stale."""
        r = self.replica
        if msg.sender != self.config.primary(msg.view) or msg.view < r.view:
            return False
        if msg.view in self._bad_proposal_views:
            return False
        height = msg.height if isinstance(msg, PrePrepare) else -1
        low = r.stable_checkpoint.height
        if height != -1 and not low < height <= low + self.config.window_size:
            return False
        key = (msg.view, height)
        if key in self._preverified:
            return False
        self._preverified[key] = None
        while len(self._preverified) > 4 * self.config.window_size:
            self._preverified.popitem(last=False)
        self._bad_proposal_views = {v for v in self._bad_proposal_views if v >= r.view}
        return True

    async def _gossip_loop(self) -> None:
        """Peers' gossip, one batch at a time, fairly per peer (``_gossip_in``)."""
        while True:
            peer_id, raws = await self._gossip_in.get()
            bad, useful = await self.admission.admit_gossip(raws)
            if not bad:
                # admitted or known transactions were worth checking: only a flood of ones
                # the ledger refuses runs out of budget
                self._gossip_in.refund(peer_id, useful)
            else:
                log.warning(
                    "peer %s gossiped transactions with bad signatures: ignoring its "
                    "gossip for %.0f s",
                    peer_id,
                    self.limits.gossip_shut_out_s,
                )
                self.metrics.frames_dropped.labels("bad_gossip_transaction").inc()
                self._gossip_in.penalize(peer_id, self.limits.gossip_shut_out_s)

    # -- the consensus loop ---------------------------------------------------------------

    async def _consensus_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (self._internal or self._network) and self.halted_reason is None:
                now = self.clock.now_ms()
                actions: list[Action] = []
                handled = 0
                while self._internal and handled < self.limits.events_per_batch_max:
                    item = self._internal.popleft()
                    if item is _PROPOSE:
                        actions.extend(self._propose(now))
                    elif item is _START:
                        actions.extend(self.replica.start(now))
                        actions.extend(self._epoch_news(now))
                    elif isinstance(item, _Transferred):
                        actions.extend(self._on_transferred(now, item))
                    else:
                        assert not isinstance(item, _Marker), item
                        event = item(now) if callable(item) else item
                        actions.extend(self.replica.handle(event))
                    handled += 1
                while self._network and handled < self.limits.events_per_batch_max:
                    peer_id, msg, verified_in = self._network.popleft()
                    refused = self.replica.rejected_total
                    event = MessageReceived(now, msg, verified_in)
                    actions.extend(self.replica.handle(event))
                    if self.replica.rejected_total == refused:
                        self._ingress.refund(peer_id)  # of use: it costs the peer nothing
                    handled += 1
                await self._execute(actions)
                await self._maybe_next_epoch()
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
            records = self._state_writer.changes(persists[-1].state)
            started = self.clock.monotonic()
            crash_point("before consensus-state persist")
            await self.disk.run(self.store.save_consensus_state, records.head, records.slots)
            self._state_writer.written()
            crash_point("after consensus-state persist")
            self.metrics.store_write_latency.labels("consensus_state").observe(
                self.clock.monotonic() - started
            )
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
                self._set_timer(action)
            elif isinstance(action, CancelTimer):
                old = self._timers.pop(action.kind, None)
                if old is not None:
                    old.cancel()
            elif isinstance(action, Deliver):
                if await self._deliver(action.block, action.certificate):
                    # the core wants BlockExecuted before any other event; what it answers
                    # runs after this list (its own Persist still precedes its own votes).
                    # The height is the block's, not the tip's: state transfer may have
                    # executed the next heights while this one was being written.
                    height = action.block.height
                    root = self.executor.state_root_at(height)
                    now = self.clock.now_ms()
                    follow_up.extend(self._epoch_news(now))  # before the core hears of it
                    follow_up.extend(self.replica.handle(BlockExecuted(now, height, root)))
            elif isinstance(action, RequestStateTransfer):
                self.highest_seen = max(self.highest_seen, action.to_height)
                self.sync.request(action.to_height)
            elif isinstance(action, ReportEvidence):
                self._record_evidence(action)
            elif isinstance(action, ProposalWanted):
                pass  # _maybe_propose runs after every batch
            elif isinstance(action, StateDiverged):
                self._halt(
                    f"state root at height {action.height} is {action.ours.hex()} here but "
                    f"{action.certified.hex()} in the certified chain"
                )
        if follow_up:
            await self._execute(follow_up)

    async def _deliver(self, block: Block, cert: CommitCertificate) -> bool:
        """Execute a block the core delivered. If state transfer executed that height
        first, the block is the same (one block is certified per height), and the core
        hears of it all the same: its executed height must follow its delivered one,
        whichever path wrote the block. False only if the node halted."""
        if await self.executor.deliver(block, cert):
            return True
        log.info("height %d was already executed by state transfer", block.height)
        if self.executor.hash_at(block.height) != block.hash():
            self._halt(f"block {block.height} executed here differs from the one committed")
            return False
        return True

    def _set_timer(self, action: SetTimer) -> None:
        old = self._timers.pop(action.kind, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, (action.at_ms - self.clock.now_ms()) / 1000)
        self._timers[action.kind] = asyncio.get_running_loop().call_later(
            delay, self._timer_fired, action.kind, action.timer_id
        )

    def _record_evidence(self, action: ReportEvidence) -> None:
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

    def _halt(self, reason: str) -> None:
        self.halted_reason = reason
        self.metrics.halted.set(1)
        log.error("HALTED: %s", reason)

    def _note_message(self, msg: Message) -> None:
        if isinstance(msg, PrePrepare):
            self._first_seen.setdefault(msg.height, self.clock.monotonic())
            if msg.sender == self.node_id:
                self._last_proposed = max(self._last_proposed, msg.height)

    def _timer_fired(self, kind: TimerKind, timer_id: int) -> None:
        self._timers.pop(kind, None)
        self._internal.append(lambda now: TimerFired(now, kind, timer_id))
        self._wake.set()

    def _after_commit(self, height: int, _results: object) -> None:
        self.highest_seen = max(self.highest_seen, height)
        first = self._first_seen.pop(height, None)
        if first is not None:
            self.metrics.commit_latency.observe(self.clock.monotonic() - first)
        for h in [h for h in self._first_seen if h < height]:
            del self._first_seen[h]

    # -- state transfer -------------------------------------------------------------------

    def _state_transfer_done(self, block: Block, roots: tuple[tuple[int, bytes], ...]) -> None:
        """Blocks arrived by state transfer (each checked against the state root its header
        commits to): let the core resume from there."""
        if self.halted_reason is None:
            self._internal.append(_Transferred(block, roots))
            self._wake.set()

    def _on_transferred(self, now: int, done: _Transferred) -> list[Action]:
        actions = self._epoch_news(now)
        last = self.replica.epoch_last
        if last is not None and self.height > last:
            return actions  # past this epoch: the next one starts (``_maybe_next_epoch``)
        return actions + self.replica.handle(StateTransferDone(now, done.block, done.roots))

    # -- epochs ---------------------------------------------------------------------------

    def _epoch_news(self, now: int) -> list[Action]:
        """Re-read the membership history after blocks were executed; tell the core where
        its epoch ends once the chain scheduled a change (at most once per epoch)."""
        self.epochs.refresh()
        for peer in sorted(self.epochs.roster - {self.node_id}):  # no-op for known peers
            self._ingress.add_peer(peer)
            self._gossip_in.add_peer(peer)
        last = self.epochs.last_height(self.config.epoch)
        if last is None or self.replica.epoch_last is not None:
            return []
        log.info("epoch %d ends at height %d", self.config.epoch, last)
        return self.replica.handle(EpochEnds(now, last))

    async def _maybe_next_epoch(self) -> None:
        """Start the next epoch's replica once this one is over here: its last height is the
        stable checkpoint and executed, or state transfer took us past it."""
        last = self.replica.epoch_last
        if last is None or self.halted_reason is not None:
            return
        if not (self.replica.finished or self.height > last):
            return
        if self.height < last:
            self.sync.request(last)  # a quorum certified it: fetch what we lack first
            return
        number = self.epochs.at(self.height + 1).number
        assert number > self.config.epoch, "an epoch is over only when a later one exists"
        # members still finishing the last epoch need its final checkpoints; its messages
        # still arriving are no one's bad signature
        self._handoff = self.replica.handoff
        self._previous_epoch = (self.config.domain, self._verify, frozenset(self.config.members))
        self.config = self.epochs.config(number)
        self._verify = self.epochs.verifier(number)
        self._signing_key = self._epoch_key(number)
        self.sync.set_config(self.config)
        self.replica = self._build_replica(None)
        self._preverified.clear()
        self._bad_proposal_views.clear()
        self.mempool.release_in_flight()
        self.metrics.epoch.set(number)
        log.info(
            "epoch %d starts after height %d: %d members (%s)%s",
            number,
            self.config.base_height,
            self.config.n,
            ", ".join(self.config.members),
            "" if self.config.voting else "; this node follows without voting",
        )
        now = self.clock.now_ms()
        await self._execute(self.replica.start(now) + self._epoch_news(now))

    # -- proposals ------------------------------------------------------------------------

    def _on_mempool_activity(self) -> None:
        if self._pending_since is None:
            self._pending_since = self.clock.monotonic()
        self._maybe_propose()

    def _maybe_propose(self) -> None:
        if self.halted_reason is not None or not len(self.mempool):
            self._pending_since = None if not len(self.mempool) else self._pending_since
            return
        if not self.replica.is_primary:
            if not self.replica.in_view_change:
                # tell the core which transactions wait (its request timer), so a primary
                # that leaves them out gets replaced; only proposable ones, or a client could
                # force view changes with a nonce gap
                offered = (
                    self.mempool.take(self.limits.requests_offered_max, self.limits.block_bytes_max)
                    if self._pending_since is not None
                    else []
                )
                if offered:
                    txs = tuple(t.signed_bytes for t in offered)
                    self._internal.append(TransactionsAvailable(self.clock.now_ms(), txs))
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
        now = self.clock.monotonic()
        waited_ms = (now - (self._pending_since or now)) * 1000
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
        txs = self._select(
            self.mempool.take(self.limits.block_txs_max, self.limits.block_bytes_max)
        )
        undelivered = self.replica.undelivered_transaction_ids()
        if undelivered:
            # in a block that may still commit below this one: never twice in the chain
            txs = [t for t in txs if t.id not in undelivered]
        if not txs:
            # nothing proposable until the mempool, the height or the view changes
            self._fruitless_at = generation
            return []
        self._pending_since = self.clock.monotonic() if len(self.mempool) > len(txs) else None
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

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            self.admission.evict_expired()
            if len(self.mempool):
                self._on_mempool_activity()
                if tick % self.limits.regossip_interval_s == 0:
                    self.admission.regossip()
            self.sync.tick()
            if self._handoff and self.replica.stable_checkpoint.height <= self.config.base_height:
                # until our new epoch has a checkpoint of its own, the previous one's last
                # stable checkpoint is shown to whoever still works on it
                for message in self._handoff:
                    self.outbox.broadcast(message)
            self.highest_seen = max(self.highest_seen, self.sync.beacon_target())
            # transactions the core times that left the mempool (expired, evicted)
            gone = tuple(i for i in self.replica.tracked_request_ids if i not in self.mempool)
            if gone:
                self._internal.append(TransactionsRemoved(self.clock.now_ms(), gone))
                self._wake.set()
