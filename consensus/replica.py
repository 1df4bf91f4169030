"""The replica: every transition of the PBFT core lives in this module.

Theory of operation
===================

PBFT (Castro & Liskov) over a chain of blocks: the sequence number is the block height.
n members, f = (n-1)//3 Byzantine tolerated, quorum q = 2f+1 (config.quorum).  The
primary of view v is members[v % n].  Nothing here does I/O: events come in
(``handle``), a list of actions goes out, executed by the driver in order.

Phases of a height h in view v (the *slot*):

  PRE-PREPARE  the primary proposes block B for h.  A backup accepts it once it is
               signed by the primary, well-formed, inside the watermarks, not in
               conflict with an earlier proposal, acceptable to the application, and
               its header links to the block we hold for h-1 and carries the state root
               of h-d.  Until h-1 and h-d are known the proposal waits in the slot
               (``pending``).  Accepting sends PREPARE.
  PREPARED     the pre-prepare plus q-1 PREPAREs from distinct backups for the same
               (v, h, digest) form a prepared certificate.
  COMMIT       sent for h only when prepared in v AND we hold a commit certificate for
               h-1 whose block B links to.  This keeps the commit phase in height order
               while pre-prepare/prepare run ahead inside the window, and it is what
               makes a NEW-VIEW that stops at the first gap safe (view_change.py).
  COMMITTED    q COMMITs for (v', h, digest) from distinct members, any view v' <= v,
               form the commit certificate.  Blocks are delivered strictly in height
               order, once each.  A certificate whose block we never saw makes us ask
               for state transfer.

Watermarks: heights in (low, low + window] are accepted, low = last stable checkpoint.
Every K heights each replica signs CHECKPOINT(h, block hash, state root) after
executing h; q matching make it stable, which moves ``low`` and garbage-collects the
log below it.  A stable checkpoint above what we have delivered means we fell behind:
we request state transfer and deliver nothing until the driver reports it done.

Suspicion: two timers judge the primary of view v.  The progress timer runs while
there is pending work (an accepted but uncommitted proposal, or transactions the driver
told a backup about) and restarts on every commit.  The request timer (PBFT's
per-request timer) runs on a backup for every transaction the driver offered
(``TransactionsAvailable``; bounded set, oldest first); a transaction stops it when it
appears in a block we commit or the driver reports it gone (``TransactionsRemoved``).
Its deadline is ``request_timeout_ms`` after max(first seen, start of the view), and
commits of other blocks do not move it: a primary that proposes only empty blocks, or
only some clients' transactions, is suspected although the chain grows.  A third judge
(``primary_monitor``, after Aardvark) measures each view a backup spends under load: a
primary delivering far less than recent views did is suspected (``throughput``), and
views 0..f end after ``rotation_ms`` of time under load (``rotation``), so a first
primary that proposes just under every timeout crawls for one turn at most.  Each of these
makes the replica broadcast SUSPECT(v) and keep working in v.  f+1 SUSPECTs for v or
later (so one at least from an honest replica) make a replica start the view change.
A suspicion promises nothing, so a replica whose timer alone fired (partitioned,
or holding a transaction no one else has) is never left alone in a view change.  A
replica that receives SUSPECT(v) while working in v answers with the NEW-VIEW that
opened v, in case the suspicion comes from one still waiting for it.

View change: a replica moves to v+1, sends VIEW-CHANGE(v+1, stable checkpoint proof,
prepared certificates) and takes part in nothing of view v any more (it still learns
commit certificates).  f+1 VIEW-CHANGEs for higher views make a replica join the
lowest of them.  Once q VIEW-CHANGEs for its view are in, a replica waits one more
timeout for NEW-VIEW, then suspects v (a late NEW-VIEW is still accepted) and moves
to v+1 with f+1 such suspicions.  The new primary sends NEW-VIEW with
the q VIEW-CHANGEs and the re-proposals computed by ``plan_new_view``; every backup
recomputes the plan and rejects a NEW-VIEW that differs.  Timeouts double on every
view change and reset when a block commits.

Durability: anything that must survive a crash for us never to sign a conflicting
vote (view, accepted proposals, prepared certificates, NEW-VIEW, stable checkpoint) is
in ``PersistedState``.  Every call that changed it returns ``Persist`` as its first
action, before any vote the change protects.

Restore: proposals of heights already executed are not restored as pending work, so
a node restarted on an idle chain arms no timer for them.

Byzantine input: the order of checks on every message is fixed: size and nesting
depth (``decode_message``), sender is a member, signature verifies; only then any
other work (view, primary, watermarks, digest, duplicates), bookkeeping or buffering,
so nothing is kept or answered for input no member signed.  A failure is a counted
rejection (``rejections[reason]``), never an exception.  Two validly signed
conflicting messages of one replica for one slot become ``Evidence``.  Every buffer is
bounded per sender: future-view messages in count and bytes; checkpoints per sender,
and only up to ``checkpoint_horizon`` above what we hold (beyond it one height per
sender, enough to see that f+1 are far ahead and catch up); one view change and one
suspicion per sender.  ``_check_invariants`` asserts these bounds after every event.

Epochs: a membership change the chain schedules takes effect right after a checkpoint
height ``C`` that lies at least a window above the block that scheduled it
(``node/ledger/governance/membership.py``).  The driver reports ``EpochEnds(C)`` right
after executing that block; from then on this replica works on no height above ``C``
(``_high``), ignores checkpoints above it, and once ``C`` is its stable checkpoint it is
*finished*: it handles nothing more, and the driver starts the next epoch's replica (new
members, quorum and keys, views from 0, signatures in the new epoch's domain) from ``C`` as
its base (``ConsensusConfig.base``).  Why no honest replica disagrees about who votes at a
height: a replica works on a height only while it is at most a window above what it has
executed (``_high``), so before it touches ``C + 1`` it has executed the block that
scheduled the change and knows it; and ``C`` is certified by the old members' stable
checkpoint, so the new epoch starts from one agreed block.  A view change of the new epoch
starts from ``C`` or a later checkpoint of its own (``stale_epoch`` for older ones).

Followers: a replica whose id is not among the epoch's members (an observer, a member
that joins at a later epoch, a removed one) runs the same code but never signs anything:
it learns proposals, commit certificates, checkpoints and new views, delivers what a
quorum committed, and catches up by state transfer like any replica.

Invariants asserted here: one block committed per height, quorum-sized certificates,
monotone stable checkpoint, executed height moving by exactly one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mdtp.consensus.actions import (
    Action,
    Broadcast,
    CancelTimer,
    Deliver,
    Evidence,
    Persist,
    ProposalWanted,
    ReportEvidence,
    RequestStateTransfer,
    Send,
    SetTimer,
    StateDiverged,
)
from mdtp.consensus.block import Block, BlockHeader, genesis_hash
from mdtp.consensus.certificates import verify_block_shape
from mdtp.consensus.codec import transaction_id
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.events import (
    BlockExecuted,
    EpochEnds,
    Event,
    MessageReceived,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
    TransactionsRemoved,
)
from mdtp.consensus.messages import (
    Checkpoint,
    CheckpointCertificate,
    Commit,
    CommitCertificate,
    M,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Signer,
    StateTransferRequest,
    StateTransferResponse,
    Suspect,
    Verifier,
    ViewChange,
    sign_message,
    sorted_signatures,
    verify_message,
)
from mdtp.consensus.primary_monitor import PrimaryMonitor
from mdtp.consensus.state import PersistedState
from mdtp.consensus.view_change import NewViewPlan, plan_new_view, validate_view_change

PayloadValidator = Callable[[Block], str | None]

# A block body is remembered per slot for at most this many distinct digests: one per
# view we spent at that height, so a small number; older ones are evicted first.
BODIES_PER_SLOT_MAX = 8
# Commits of older views are kept to learn commit certificates; per sender and slot
# only the newest few views count.
COMMIT_VIEWS_PER_SENDER_MAX = 4
TIMEOUT_DOUBLINGS_MAX = 30
# Estimated wire bytes of a message's fixed part (kind, sender, signature, view, height,
# digest, header): what a buffered message costs besides its transactions.
MESSAGE_OVERHEAD_BYTES = 512
TX_OVERHEAD_BYTES = 8


def _accept_all(_block: Block) -> str | None:
    return None


@dataclass
class _Slot:
    """Everything we know about one height inside the window."""

    height: int
    pre_prepare: PrePrepare | None = None  # accepted in the current view
    pending: PrePrepare | None = None  # current view, waiting for h-1 / root of h-d
    bodies: dict[bytes, Block] = field(default_factory=dict)
    prepares: dict[bytes, dict[str, bytes]] = field(default_factory=dict)  # current view
    commits: dict[tuple[int, bytes], dict[str, bytes]] = field(default_factory=dict)
    commit_views: dict[str, list[int]] = field(default_factory=dict)
    prepared: PreparedCertificate | None = None  # highest view
    my_prepare: Prepare | None = None
    my_commit: Commit | None = None  # current view
    certificate: CommitCertificate | None = None
    committed: Block | None = None
    # First validly signed message per (kind, view, sender): duplicates and evidence.
    seen: dict[tuple[int, int, str], Message] = field(default_factory=dict)


class Replica:
    """One PBFT replica.  Construct with ``Replica(...)`` for a fresh chain or
    ``Replica.restore(...)`` after a crash, call ``start`` once, then ``handle`` every
    event.  Both return the actions to execute in order."""

    def __init__(
        self,
        config: ConsensusConfig,
        sign: Signer,
        verify: Verifier,
        validate_payload: PayloadValidator = _accept_all,
    ) -> None:
        self.config = config
        self._sign = sign
        self._verify = verify
        self._validate_payload = validate_payload
        self._me = config.my_id
        self._members = frozenset(config.members)
        base = config.base
        if base is None:
            genesis = genesis_hash(config.chain_id, config.genesis_state_root)
            self._stable = CheckpointCertificate(0, genesis, config.genesis_state_root, ())
            base_link: tuple[bytes, int | None] = (genesis, 0)
            base_root = config.genesis_state_root
        else:
            self._stable = CheckpointCertificate(base.height, base.block_hash, base.state_root, ())
            base_link = (base.block_hash, base.timestamp_ms)
            base_root = base.state_root
        self._view = 0
        self._in_view_change = False
        self._new_view_msg: NewView | None = None
        self._my_view_change: ViewChange | None = None
        self._view_changes: dict[str, ViewChange] = {}  # newest per sender
        self._slots: dict[int, _Slot] = {}
        # Committed chain we can link to: height -> (block hash, timestamp or None when
        # only the hash is certified, e.g. a stable checkpoint we have not fetched).
        self._chain: dict[int, tuple[bytes, int | None]] = {self._low: base_link}
        self._roots: dict[int, bytes] = {self._low: base_root}
        self._delivered = self._low
        self._executed = self._low
        self._max_committed = self._low
        # The last height of this epoch once the chain scheduled a change (``EpochEnds``).
        self._epoch_last: int | None = None
        self._finished = False
        # The CHECKPOINTs that made the epoch's last height stable: what the driver keeps
        # showing members still finishing the epoch once we moved on (``handoff``).
        self._handoff: tuple[Checkpoint, ...] = ()
        self._checkpoint_votes: dict[int, dict[str, Checkpoint]] = {}
        self._checkpoint_heights: dict[str, list[int]] = {}
        # Beyond the horizon only each sender's highest checkpoint height is kept.
        self._far_checkpoints: dict[str, int] = {}
        self._my_checkpoint: Checkpoint | None = None
        # Verified messages of later views, per sender, with their estimated size.
        self._future: dict[str, deque[tuple[Message, int]]] = {}
        self._future_bytes: dict[str, int] = {}
        # Highest view each member suspects (SUSPECT); ours while we suspect our view.
        self._suspects: dict[str, int] = {}
        self._my_suspect: Suspect | None = None
        # Request timers: transaction id -> when we first held it, oldest first.
        self._requests: OrderedDict[bytes, int] = OrderedDict()
        self._request_timer_at: int | None = None
        self._view_started_ms = 0
        self._monitor = PrimaryMonitor(
            grace_ms=config.throughput_grace_ms,
            floor_pct=config.throughput_floor_pct,
            rotation_ms=config.rotation_ms,
            history=config.n,
            f=config.f,
        )
        self._transfer: tuple[int, bytes | None, tuple[str, ...]] | None = None
        self._transfer_attempts = 0
        self._failed_views = 0
        self._work_pending = False
        self._timer_ids: dict[TimerKind, int] = dict.fromkeys(TimerKind, 0)
        self._timer_armed: dict[TimerKind, bool] = dict.fromkeys(TimerKind, False)
        self._helped_at: dict[str, int] = {}
        self._wanted_height = -1
        self._halted = False
        self._now = 0
        self._out: list[Action] = []
        self._dirty = False
        self.rejections: dict[str, int] = {}
        self.rejected_total = 0  # sum of ``rejections``: did the last event help?
        # Why this replica suspected a primary: "progress", "request", ...
        self.suspicions: dict[str, int] = {}
        self.evidence: list[Evidence] = []

    # ------------------------------------------------------------------ public API

    @classmethod
    def restore(
        cls,
        config: ConsensusConfig,
        state: PersistedState,
        last_executed_height: int,
        last_block: BlockHeader | None,
        state_roots: Mapping[int, bytes],
        sign: Signer,
        verify: Verifier,
        validate_payload: PayloadValidator = _accept_all,
    ) -> Replica:
        """Rebuild a replica after a crash from its last ``Persist``ed state and the
        driver's executed chain: ``last_block`` is the header at
        ``last_executed_height`` (None at genesis) and ``state_roots`` holds the roots
        of at least the last ``pipeline_depth`` executed heights."""
        r = cls(config, sign, verify, validate_payload)
        assert state.epoch == config.epoch, "persisted state of another epoch"
        r._view = state.view
        r._in_view_change = state.in_view_change
        r._new_view_msg = state.new_view
        if state.stable_checkpoint.height > r._low:
            r._stable = state.stable_checkpoint
            r._chain[r._low] = (state.stable_checkpoint.block_hash, None)
        assert last_executed_height >= config.base_height, "executed below the epoch's base"
        r._delivered = r._executed = r._max_committed = last_executed_height
        if last_block is not None:
            assert last_block.height == last_executed_height, "header/height mismatch"
            r._chain[last_block.height] = (last_block.digest, last_block.timestamp_ms)
        r._roots.update(state_roots)
        for cert in state.prepared:
            if r._in_window(cert.height):
                slot = r._slot(cert.height)
                slot.prepared = cert
                r._store_body(slot, cert.pre_prepare.block)
                if cert.view == r._view and not r._in_view_change:
                    slot.prepares[cert.pre_prepare.digest] = dict(cert.prepares)
        for pp in state.accepted:
            # A proposal of a height we already executed is done, not pending work: keeping
            # it would arm the progress timer of an idle chain into a view change.
            if pp.height <= last_executed_height:
                continue
            if pp.view == r._view and r._in_window(pp.height) and not r._in_view_change:
                slot = r._slot(pp.height)
                slot.pre_prepare = pp
                slot.seen[(PrePrepare.KIND, pp.view, pp.sender)] = pp
                r._store_body(slot, pp.block)
                if pp.sender != r._me:
                    # Re-signing the same vote is not a conflict; we need the message
                    # to retransmit it.
                    slot.my_prepare = r._signed(Prepare(pp.view, pp.height, pp.digest, r._me))
                    slot.prepares.setdefault(pp.digest, {})[r._me] = slot.my_prepare.signature
        if r._in_view_change and config.voting:
            r._my_view_change = r._build_view_change()
            r._view_changes[r._me] = r._my_view_change
        return r

    def start(self, now_ms: int) -> list[Action]:
        """First call after construction or restore: arms timers, resumes work."""
        self._begin(now_ms)
        self._view_started_ms = now_ms
        self._monitor.view_started(now_ms, view=self._view, judging=self._judging)
        self._set_timer(TimerKind.RETRANSMIT, now_ms + self.config.retransmit_interval_ms)
        if self._in_view_change and self._my_view_change is not None:
            self._out.append(Broadcast(self._my_view_change))
            self._check_view_change_quorum()
        if self._delivered < self._low:
            self._start_transfer(self._low, self._stable.block_hash, self._stable_signers())
        for slot in self._ordered_slots():
            self._maybe_commit(slot.height)
        self._arm_progress_timer()
        self._maybe_want_proposal()
        self._arm_request_timer()
        return self._finish()

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; returns the actions to execute in order."""
        self._begin(event.now_ms)
        if self._halted or self._finished:
            return []
        self._monitor.advance(event.now_ms)
        if isinstance(event, MessageReceived):
            self._on_message(event.message, event.verified_in)
        elif isinstance(event, TimerFired):
            self._on_timer(event.kind, event.timer_id)
        elif isinstance(event, TransactionsAvailable):
            self._on_transactions(event.txs)
        elif isinstance(event, TransactionsRemoved):
            for tx_id in event.tx_ids:
                self._requests.pop(tx_id, None)
        elif isinstance(event, BlockExecuted):
            self._on_block_executed(event.height, event.state_root)
        elif isinstance(event, EpochEnds):
            self._on_epoch_ends(event.last_height)
        else:
            self._on_state_transfer_done(event.block, event.state_roots)
        if not self._halted and not self._finished:
            self._judge_primary()
            self._arm_request_timer()
            self._check_invariants()
        return self._finish()

    @property
    def view(self) -> int:
        return self._view

    @property
    def in_view_change(self) -> bool:
        return self._in_view_change

    @property
    def delivered_height(self) -> int:
        return self._delivered

    @property
    def executed_height(self) -> int:
        return self._executed

    @property
    def stable_checkpoint(self) -> CheckpointCertificate:
        return self._stable

    @property
    def halted(self) -> bool:
        return self._halted

    @property
    def finished(self) -> bool:
        """This epoch is over here: its last height is our stable checkpoint (see
        "Epochs" above); the driver starts the next epoch's replica."""
        return self._finished

    @property
    def epoch_last(self) -> int | None:
        return self._epoch_last

    @property
    def handoff(self) -> tuple[Checkpoint, ...]:
        """Once finished: the members' CHECKPOINTs of the epoch's last height, a quorum
        that lets a member that missed them finish the epoch too (messages of this epoch's
        domain; no later epoch's replica could use them)."""
        return self._handoff

    @property
    def is_primary(self) -> bool:
        return self.config.primary(self._view) == self._me

    def undelivered_transaction_ids(self) -> set[bytes]:
        """Ids of the transactions in proposals we accepted above what we delivered: what a
        primary leaves out of its next proposal, since those blocks may still commit (a
        NEW-VIEW re-proposes another primary's block, whose transactions our pool holds)."""
        ids: set[bytes] = set()
        for slot in self._slots.values():
            pp = slot.pre_prepare
            if pp is not None and slot.height > self._delivered:
                ids.update(pp.block.tx_ids)
        return ids

    @property
    def requests_tracked(self) -> int:
        """Transactions whose request timer runs (bounded by ``requests_tracked_max``)."""
        return len(self._requests)

    @property
    def tracked_request_ids(self) -> tuple[bytes, ...]:
        """Ids of the transactions under a request timer, oldest first: a driver checks
        them against its pool and reports the ones gone (``TransactionsRemoved``)."""
        return tuple(self._requests)

    @property
    def wants_proposal(self) -> bool:
        """True when a ``TransactionsAvailable`` would make this replica propose now."""
        return self._proposal_slot() is not None

    def snapshot(self) -> PersistedState:
        """The state a ``Persist`` action carries (exposed for tests and drivers)."""
        live = [s for s in self._ordered_slots() if s.height > self._low]
        return PersistedState(
            view=self._view,
            in_view_change=self._in_view_change,
            stable_checkpoint=self._stable,
            accepted=tuple(s.pre_prepare for s in live if s.pre_prepare is not None),
            prepared=tuple(s.prepared for s in live if s.prepared is not None),
            new_view=self._new_view_msg,
            epoch=self.config.epoch,
        )

    # ------------------------------------------------------------------ plumbing

    @property
    def _low(self) -> int:
        return self._stable.height

    @property
    def _high(self) -> int:
        # Never more than a window above what we executed: every change of membership that
        # could apply to a height we work on was scheduled in a block we executed ("Epochs").
        high = min(self._stable.height, self._executed) + self.config.window_size
        return high if self._epoch_last is None else min(high, self._epoch_last)

    def _begin(self, now_ms: int) -> None:
        self._now = now_ms
        self._out = []
        self._dirty = False

    def _finish(self) -> list[Action]:
        out = self._out
        self._out = []
        if self._dirty and not self._halted:  # a finished replica's last state persists too
            # First: durable before any vote in this batch leaves the process.
            out.insert(0, Persist(self.snapshot()))
        self._dirty = False
        return out

    def _reject(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        self.rejected_total += 1

    def _signed(self, msg: M) -> M:
        return sign_message(msg, self.config.domain, self._sign)

    def _slot(self, height: int) -> _Slot:
        slot = self._slots.get(height)
        if slot is None:
            assert self._low < height <= self._high, "slot outside the window"
            slot = self._slots[height] = _Slot(height)
        return slot

    def _ordered_slots(self) -> list[_Slot]:
        return [self._slots[h] for h in sorted(self._slots)]

    def _in_window(self, height: int) -> bool:
        return self._low < height <= self._high

    def _set_timer(self, kind: TimerKind, at_ms: int) -> None:
        self._timer_ids[kind] += 1
        self._timer_armed[kind] = True
        self._out.append(SetTimer(kind, self._timer_ids[kind], at_ms))

    def _cancel_timer(self, kind: TimerKind) -> None:
        if self._timer_armed[kind]:
            self._timer_ids[kind] += 1
            self._timer_armed[kind] = False
            self._out.append(CancelTimer(kind))

    def _timeout_ms(self) -> int:
        doublings = min(self._failed_views, TIMEOUT_DOUBLINGS_MAX)
        return min(self.config.timeout_ms_base << doublings, self.config.timeout_ms_cap)

    def _store_body(self, slot: _Slot, block: Block) -> None:
        digest = block.hash()
        if digest in slot.bodies:
            return
        if len(slot.bodies) >= BODIES_PER_SLOT_MAX:
            del slot.bodies[next(iter(slot.bodies))]
        slot.bodies[digest] = block
        cert = slot.certificate
        if cert is not None and slot.committed is None and cert.block_hash == digest:
            self._commit(slot, block, cert)

    def _report(self, kind: str, first: Message, second: Message) -> None:
        self._reject("equivocation")
        if len(self.evidence) < self.config.evidence_max:
            ev = Evidence(offender=second.sender, kind=kind, first=first, second=second)
            self.evidence.append(ev)
            self._out.append(ReportEvidence(ev))

    def _first_seen(self, slot: _Slot, msg: PrePrepare | Prepare | Commit, view: int) -> bool:
        """Duplicate / equivocation gate for slot votes (already verified).  True if
        ``msg`` is new and consistent with what its sender said before."""
        key = (msg.KIND, view, msg.sender)
        prior = slot.seen.get(key)
        if prior is not None and prior == msg:
            self._reject("duplicate")
            return False
        if prior is not None:
            self._report(type(msg).__name__, prior, msg)
            return False
        slot.seen[key] = msg
        return True

    # ------------------------------------------------------------------ dispatch

    def _on_message(self, msg: Message, verified_in: str | None = None) -> None:
        # Order of checks (DESIGN §3): size and nesting were bounded by decode_message; then
        # the sender must be a member and the signature must verify (here, or at the driver's
        # ingress in this same domain: ``MessageReceived.verified_in``), before any other work.
        # Nothing below this point (buffers, per-sender maps, heights, replies) ever sees
        # input that a member did not sign.
        if msg.sender not in self._members:
            self._reject("unknown_sender")
            return
        if msg.sender == self._me:
            self._reject("own_message")
            return
        if isinstance(msg, StateTransferRequest | StateTransferResponse):
            # Served and consumed by the driver (state_transfer.py), never here.
            self._reject("not_for_replica")
            return
        checked = verified_in == self.config.domain
        if not checked and not verify_message(msg, self.config.domain, self._verify):
            self._reject("bad_signature")
            return
        try:
            if isinstance(msg, PrePrepare):
                self._on_pre_prepare(msg)
            elif isinstance(msg, Prepare):
                self._on_prepare(msg)
            elif isinstance(msg, Commit):
                self._on_commit(msg)
            elif isinstance(msg, Checkpoint):
                self._on_checkpoint(msg)
            elif isinstance(msg, ViewChange):
                self._on_view_change(msg)
            elif isinstance(msg, NewView):
                self._on_new_view(msg)
            elif isinstance(msg, Suspect):
                self._on_suspect(msg)
        except ConsensusError as exc:
            self._reject(exc.reason)

    def _view_gate(self, msg: PrePrepare | Prepare | Commit, view: int) -> bool:
        """True if ``msg`` belongs to the view we are active in.  Later views are
        buffered (verified messages only, bounded per sender in count and bytes, so no
        sender can crowd out another) and replayed when we get there."""
        if view > self._view or (view == self._view and self._in_view_change):
            self._buffer_future(msg)
            return False
        if view < self._view:
            self._help(msg.sender)
            if not isinstance(msg, Commit):
                self._reject("wrong_view")
                return False
        return True

    def _buffer_future(self, msg: PrePrepare | Prepare | Commit) -> None:
        size = _size_estimate(msg)
        if size > self.config.future_bytes_per_sender_max:
            self._reject("future_message_too_large")
            return
        queue = self._future.setdefault(msg.sender, deque())
        used = self._future_bytes.get(msg.sender, 0)
        while queue and (
            len(queue) >= self.config.future_messages_per_sender_max
            or used + size > self.config.future_bytes_per_sender_max
        ):
            # Drop this sender's oldest: its newest messages are the ones still useful.
            _, dropped = queue.popleft()
            used -= dropped
            self._reject("future_buffer_full")
        queue.append((msg, size))
        self._future_bytes[msg.sender] = used + size
        assert used + size <= self.config.future_bytes_per_sender_max
        assert len(queue) <= self.config.future_messages_per_sender_max

    def _help(self, peer: str) -> None:
        """A peer is still in an older view: send it the NEW-VIEW that opened ours."""
        if self._in_view_change or self._new_view_msg is None:
            return
        last = self._helped_at.get(peer)
        if last is None or self._now - last >= self.config.retransmit_interval_ms:
            self._helped_at[peer] = self._now
            self._out.append(Send(peer, self._new_view_msg))

    # ------------------------------------------------------------ normal case

    def _on_pre_prepare(self, pp: PrePrepare) -> None:
        if not self._view_gate(pp, pp.view):
            return
        if pp.sender != self.config.primary(pp.view):
            self._reject("wrong_primary")
            return
        if not self._in_window(pp.height):
            self._reject("outside_watermarks")
            return
        if pp.height <= self._delivered and not self._is_committed_block(pp):
            # committed here already (a proposal we accepted before a restart is not kept
            # for it): preparing another block there would be a second vote for the slot.
            # The committed block itself we still prepare in a later view: replicas that
            # missed its certificate need our votes in the view they are in.
            self._reject("already_committed")
            return
        shape = verify_block_shape(self.config, pp.block, pp.height)
        if shape is not None:
            self._reject(shape)
            return
        # Time-dependent: checked before the message is remembered, so a proposal that
        # arrives early is judged again when it is retransmitted.
        if abs(pp.block.header.timestamp_ms - self._now) > self.config.clock_skew_ms_max:
            self._reject("timestamp_skew")
            return
        slot = self._slot(pp.height)
        if not self._first_seen(slot, pp, pp.view):
            return
        if slot.pre_prepare is not None or slot.pending is not None:
            # Only possible after a NEW-VIEW re-proposed this height: the primary's
            # re-proposal is already in ``seen``, so this is a second proposal.
            self._reject("slot_taken")
            return
        if pp.block.header.proposer != pp.sender:
            self._reject("bad_proposer")
            return
        reason = self._validate_payload(pp.block)
        if reason is not None:
            self._reject("invalid_payload")
            return
        self._store_body(slot, pp.block)
        slot.pending = pp
        self._try_accept(slot)
        self._arm_progress_timer()

    def _predecessor(self, height: int) -> tuple[bytes, int | None] | None:
        """(hash, timestamp) of the block a proposal at ``height`` must extend."""
        linked = self._chain.get(height - 1)
        if linked is not None:
            return linked
        prev = self._slots.get(height - 1)
        if prev is not None and prev.pre_prepare is not None:
            header = prev.pre_prepare.block.header
            return header.digest, header.timestamp_ms
        return None

    def _root_for(self, height: int) -> bytes | None:
        base = height - self.config.pipeline_depth
        return self.config.genesis_state_root if base <= 0 else self._roots.get(base)

    def _try_accept(self, slot: _Slot) -> None:
        pp = slot.pending
        if pp is None:
            return
        pred = self._predecessor(pp.height)
        root = self._root_for(pp.height)
        if pred is None or pred[1] is None or root is None:
            return  # waits for h-1 or for executing h-d
        slot.pending = None
        header = pp.block.header
        if header.prev_hash != pred[0]:
            self._reject("bad_prev_hash")
        elif header.timestamp_ms <= pred[1]:
            self._reject("bad_timestamp")
        elif header.state_root != root:
            self._reject("bad_state_root")
        else:
            self._accept(pp)

    def _accept(self, pp: PrePrepare) -> None:
        slot = self._slot(pp.height)
        slot.pre_prepare = pp
        slot.pending = None
        self._dirty = True
        if pp.sender != self._me and self.config.voting:
            prepare = self._signed(Prepare(pp.view, pp.height, pp.digest, self._me))
            slot.my_prepare = prepare
            slot.prepares.setdefault(pp.digest, {})[self._me] = prepare.signature
            self._out.append(Broadcast(prepare))
        self._check_prepared(slot)
        nxt = self._slots.get(pp.height + 1)
        if nxt is not None:
            self._try_accept(nxt)

    def _on_prepare(self, prepare: Prepare) -> None:
        if not self._view_gate(prepare, prepare.view):
            return
        if prepare.sender == self.config.primary(prepare.view):
            self._reject("prepare_from_primary")
            return
        if not self._in_window(prepare.height):
            self._reject("outside_watermarks")
            return
        slot = self._slot(prepare.height)
        if not self._first_seen(slot, prepare, prepare.view):
            return
        slot.prepares.setdefault(prepare.digest, {})[prepare.sender] = prepare.signature
        self._check_prepared(slot)

    def _check_prepared(self, slot: _Slot) -> None:
        pp = slot.pre_prepare
        if pp is None or (slot.prepared is not None and slot.prepared.view == pp.view):
            return
        primary = self.config.primary(pp.view)
        votes = {s: sig for s, sig in slot.prepares.get(pp.digest, {}).items() if s != primary}
        if len(votes) < self.config.quorum - 1:
            return
        slot.prepared = PreparedCertificate(pp, sorted_signatures(votes))
        self._dirty = True  # the prepared certificate protects our COMMIT
        self._maybe_commit(slot.height)

    def _maybe_commit(self, height: int) -> None:
        slot = self._slots.get(height)
        if slot is None or self._in_view_change or slot.my_commit is not None:
            return
        if not self.config.voting:
            return
        cert = slot.prepared
        if cert is None or cert.view != self._view:
            return
        linked = self._chain.get(height - 1)
        if linked is None or linked[0] != cert.pre_prepare.block.header.prev_hash:
            return  # commit phase stays in height order (see header)
        commit = self._signed(Commit(self._view, height, cert.pre_prepare.digest, self._me))
        slot.my_commit = commit
        self._add_commit(slot, commit)
        self._out.append(Broadcast(commit))
        self._check_committed(slot, commit.view, commit.digest)

    def _on_commit(self, commit: Commit) -> None:
        if not self._view_gate(commit, commit.view):
            return
        if not self._in_window(commit.height):
            self._reject("outside_watermarks")
            return
        slot = self._slot(commit.height)
        if not self._first_seen(slot, commit, commit.view):
            return
        self._add_commit(slot, commit)
        self._check_committed(slot, commit.view, commit.digest)

    def _add_commit(self, slot: _Slot, commit: Commit) -> None:
        views = slot.commit_views.setdefault(commit.sender, [])
        views.append(commit.view)
        if len(views) > COMMIT_VIEWS_PER_SENDER_MAX:
            oldest = min(views)
            views.remove(oldest)
            for (view, digest), sigs in list(slot.commits.items()):
                if view == oldest:
                    sigs.pop(commit.sender, None)
                    if not sigs:
                        del slot.commits[(view, digest)]
            slot.seen.pop((Commit.KIND, oldest, commit.sender), None)
        slot.commits.setdefault((commit.view, commit.digest), {})[commit.sender] = commit.signature

    def _check_committed(self, slot: _Slot, view: int, digest: bytes) -> None:
        sigs = slot.commits.get((view, digest), {})
        if len(sigs) < self.config.quorum:
            return
        if slot.certificate is not None:
            assert slot.certificate.block_hash == digest, "two blocks committed at one height"
            return
        cert = CommitCertificate(view, slot.height, digest, sorted_signatures(sigs))
        assert len(cert.signatures) >= self.config.quorum
        slot.certificate = cert
        body = slot.bodies.get(digest)
        if body is not None:
            self._commit(slot, body, cert)
        elif slot.height > self._delivered:
            # Committed by a quorum, but the proposal never reached us.
            self._start_transfer(slot.height, digest, tuple(s for s, _ in cert.signatures))

    def _commit(self, slot: _Slot, block: Block, cert: CommitCertificate) -> None:
        assert block.hash() == cert.block_hash
        assert slot.committed is None or slot.committed.hash() == block.hash(), (
            "two blocks committed at one height"
        )
        slot.committed = block
        slot.certificate = cert
        linked = self._chain.get(slot.height)
        assert linked is None or linked[0] == block.hash(), "committed block contradicts chain"
        self._chain[slot.height] = (block.hash(), block.header.timestamp_ms)
        if self._requests:
            for tx_id in block.tx_ids:
                self._requests.pop(tx_id, None)
        self._monitor.committed(len(block.payload), sum(len(tx) for tx in block.payload))
        self._progress(slot.height)
        self._deliver_ready()
        self._maybe_commit(slot.height + 1)
        nxt = self._slots.get(slot.height + 1)
        if nxt is not None:
            self._try_accept(nxt)
        self._maybe_want_proposal()

    def _deliver_ready(self) -> None:
        if self._transfer is not None:
            return  # the driver is catching up; it reports where it ends
        while True:
            slot = self._slots.get(self._delivered + 1)
            if slot is None or slot.committed is None or slot.certificate is None:
                return
            self._delivered += 1
            self._out.append(Deliver(slot.committed, slot.certificate))

    def _progress(self, height: int) -> None:
        """A block committed (or arrived by state transfer): reset the back-off."""
        if height <= self._max_committed:
            return
        self._max_committed = height
        self._failed_views = 0
        self._work_pending = False
        if not self._in_view_change:
            self._cancel_timer(TimerKind.VIEW_CHANGE)
            self._arm_progress_timer()

    def _has_work(self) -> bool:
        if self._work_pending:
            return True
        return any(
            (s.pre_prepare is not None or s.pending is not None)
            and s.committed is None
            and s.height > self._delivered
            for s in self._slots.values()
        )

    def _arm_progress_timer(self) -> None:
        if self._in_view_change or self._timer_armed[TimerKind.VIEW_CHANGE]:
            return
        if self._has_work():
            self._set_timer(TimerKind.VIEW_CHANGE, self._now + self._timeout_ms())

    # ------------------------------------------------------------ proposals

    def _proposal_slot(self) -> tuple[int, bytes, int, bytes] | None:
        """(height, prev hash, prev timestamp, state root) if we should propose now."""
        if self._halted or self._in_view_change or not self.is_primary:
            return None
        if self._transfer is not None:
            return None
        top = max(self._delivered, self._low)
        for slot in self._slots.values():
            if slot.pre_prepare is not None and slot.height > top:
                top = slot.height
        nv = self._new_view_msg
        if nv is not None and nv.view == self._view:
            # the NEW-VIEW's re-proposals are this view's proposals for their heights, even
            # those still above our window: never a second one there
            top = max([top, *(pp.height for pp in nv.pre_prepares)])
        height = top + 1
        if height > self._high:
            return None
        pred = self._predecessor(height)
        root = self._root_for(height)
        if pred is None or pred[1] is None or root is None:
            return None
        return height, pred[0], pred[1], root

    def _maybe_want_proposal(self) -> None:
        nxt = self._proposal_slot()
        if nxt is not None and nxt[0] != self._wanted_height:
            self._wanted_height = nxt[0]
            self._out.append(ProposalWanted(nxt[0]))

    def _track_requests(self, txs: tuple[bytes, ...]) -> None:
        """Start the request timer of every transaction not yet tracked.  The set is
        bounded; once full, newer transactions wait untracked: the oldest are the ones
        whose deadline matters, and the driver offers the rest again later."""
        if self.is_primary and not self._in_view_change:
            return  # our own proposals are not a primary's to suspect
        for tx in txs:
            tx_id = transaction_id(tx)
            if tx_id in self._requests:
                continue
            if len(self._requests) >= self.config.requests_tracked_max:
                self._reject("requests_full")
                return
            self._requests[tx_id] = self._now

    def _request_deadline(self) -> int | None:
        if not self.config.request_timer or not self._requests:
            return None
        if self._in_view_change or self.is_primary or self._my_suspect is not None:
            return None
        if not self.config.voting:
            return None
        if self._transfer is not None:
            return None  # behind: our view of what is committed is out of date
        oldest = next(iter(self._requests.values()))
        return max(oldest, self._view_started_ms) + self.config.request_timeout_ms

    def _arm_request_timer(self) -> None:
        """Keep the REQUEST timer at the oldest tracked transaction's deadline; runs after
        every event, so it emits an action only when the deadline changes."""
        if not self._requests and not self._timer_armed[TimerKind.REQUEST]:
            return  # the common case of an idle backup or a primary: nothing to do
        deadline = self._request_deadline()
        if deadline is None:
            if self._timer_armed[TimerKind.REQUEST]:
                self._cancel_timer(TimerKind.REQUEST)
            self._request_timer_at = None
        elif deadline != self._request_timer_at or not self._timer_armed[TimerKind.REQUEST]:
            self._request_timer_at = deadline
            self._set_timer(TimerKind.REQUEST, deadline)

    @property
    def _judging(self) -> bool:
        """Whether this replica measures the primary of its view: a backup, in the view."""
        return not self._in_view_change and not self.is_primary and self.config.voting

    def _judge_primary(self) -> None:
        """Aardvark: suspect a primary that delivers far less than recent views did, or
        whose turn under load is over (``primary_monitor``).  Runs after every event; the
        retransmit timer makes one at least every ``retransmit_interval_ms``."""
        self._monitor.advance(self._now, len(self._requests))
        if not self._judging or self._my_suspect is not None or self._transfer is not None:
            return
        cause = self._monitor.verdict(self._now)
        if cause is not None:
            self._suspect(cause)

    def _check_invariants(self) -> None:
        """Bounds every structure fed by other members must keep (cheap: sizes only)."""
        n = self.config.n
        assert len(self._requests) <= self.config.requests_tracked_max
        assert len(self._slots) <= self.config.window_size
        assert len(self._checkpoint_votes) <= n * self.config.checkpoints_per_sender_max
        assert len(self._far_checkpoints) <= n and len(self._suspects) <= n
        assert len(self._future) <= n and len(self._view_changes) <= n
        assert self._executed <= self._delivered

    def _on_transactions(self, txs: tuple[bytes, ...]) -> None:
        self._track_requests(txs)
        nxt = self._proposal_slot()
        if nxt is None or not txs:
            if txs and not self.is_primary:
                self._work_pending = True
                self._arm_progress_timer()
            return
        height, prev_hash, prev_ts, root = nxt
        payload: list[bytes] = []
        size = 0
        for tx in txs[: self.config.block_txs_max]:
            if size + len(tx) > self.config.block_bytes_max:
                break
            payload.append(tx)
            size += len(tx)
        if not payload:
            return
        timestamp = max(self._now, prev_ts + 1)
        block = Block.build(self.config, height, prev_hash, root, timestamp, tuple(payload))
        pp = self._signed(PrePrepare(self._view, height, block, self._me))
        slot = self._slot(height)
        slot.seen[(PrePrepare.KIND, pp.view, self._me)] = pp
        self._store_body(slot, block)
        self._out.append(Broadcast(pp))
        self._accept(pp)
        self._arm_progress_timer()
        self._maybe_want_proposal()

    # ------------------------------------------------------------ execution, checkpoints

    def _on_block_executed(self, height: int, state_root: bytes) -> None:
        assert height == self._executed + 1, "executed height must move by exactly one"
        assert height <= self._delivered, "executed a block that was not delivered"
        self._executed = height
        self._roots[height] = state_root
        if height == self._low and state_root != self._stable.state_root:
            self._diverge(height, state_root, self._stable.state_root)
            return
        if height % self.config.checkpoint_interval == 0 and height > self._low:
            self._send_checkpoint(height, state_root)
        self._install_new_view_proposals()  # the window moved with what we executed
        for slot in self._ordered_slots():
            self._try_accept(slot)
        self._maybe_want_proposal()

    def _send_checkpoint(self, height: int, state_root: bytes) -> None:
        if not self.config.voting:
            return
        linked = self._chain.get(height)
        assert linked is not None, "executed block is on the chain"
        cp = self._signed(Checkpoint(height, linked[0], state_root, self._me))
        self._my_checkpoint = cp
        self._out.append(Broadcast(cp))
        self._record_checkpoint(cp)

    def _on_checkpoint(self, cp: Checkpoint) -> None:
        if cp.height % self.config.checkpoint_interval != 0:
            self._reject("bad_checkpoint_height")
            return
        if cp.height <= self._low:
            self._reject("stale_checkpoint")
            return
        if self._epoch_last is not None and cp.height > self._epoch_last:
            self._reject("beyond_epoch")
            return
        if cp.height > self._checkpoint_top():
            self._far_checkpoint(cp)
            return
        prior = self._checkpoint_votes.get(cp.height, {}).get(cp.sender)
        if prior is not None and prior == cp:
            self._reject("duplicate")
            return
        if prior is not None:
            self._report("Checkpoint", prior, cp)
            return
        self._record_checkpoint(cp)

    def _checkpoint_top(self) -> int:
        """Highest checkpoint height stored with its votes: a horizon above what we hold,
        so signed CHECKPOINTs for far-future heights cost no memory per height."""
        return max(self._low, self._delivered) + self.config.checkpoint_horizon

    def _far_checkpoint(self, cp: Checkpoint) -> None:
        """A checkpoint beyond the horizon: remember only its sender's highest height.
        Once f+1 members (one of them honest) are that far ahead, fetch up to the
        (f+1)-th highest; the checkpoints there are then inside the horizon."""
        self._reject("checkpoint_beyond_horizon")
        if cp.height <= self._far_checkpoints.get(cp.sender, 0):
            return
        self._far_checkpoints[cp.sender] = cp.height
        top = self._checkpoint_top()
        for sender in [s for s, h in self._far_checkpoints.items() if h <= top]:
            del self._far_checkpoints[sender]
        heights = sorted(self._far_checkpoints.values(), reverse=True)
        if len(heights) <= self.config.f:
            return
        target = heights[self.config.f]
        peers = tuple(s for s, h in sorted(self._far_checkpoints.items()) if h >= target)
        self._start_transfer(target, None, peers)

    def _record_checkpoint(self, cp: Checkpoint) -> None:
        heights = self._checkpoint_heights.setdefault(cp.sender, [])
        heights.append(cp.height)
        if len(heights) > self.config.checkpoints_per_sender_max:
            # Keep the newest: a lagging replica learns from what is current.
            oldest = min(heights)
            heights.remove(oldest)
            votes = self._checkpoint_votes.get(oldest)
            if votes is not None:
                votes.pop(cp.sender, None)
                if not votes:
                    # An emptied height must go too, or one member signing checkpoints
                    # for ever new heights grows this map without bound.
                    del self._checkpoint_votes[oldest]
        self._checkpoint_votes.setdefault(cp.height, {})[cp.sender] = cp
        matching = [
            c
            for c in self._checkpoint_votes[cp.height].values()
            if c.block_hash == cp.block_hash and c.state_root == cp.state_root
        ]
        if len(matching) >= self.config.quorum:
            sigs = sorted_signatures({c.sender: c.signature for c in matching})
            self._adopt_stable(CheckpointCertificate(cp.height, cp.block_hash, cp.state_root, sigs))

    def _stable_signers(self) -> tuple[str, ...]:
        signers = tuple(s for s, _ in self._stable.signatures if s != self._me)
        return signers or tuple(m for m in self.config.members if m != self._me)

    def _adopt_stable(self, cert: CheckpointCertificate) -> None:
        if cert.height <= self._low:
            return
        assert cert.height > self._stable.height, "stable checkpoint is monotone"
        self._deliver_ready()  # deliver what we hold before the log below is dropped
        ours = self._roots.get(cert.height)
        if self._executed >= cert.height and ours is not None and ours != cert.state_root:
            self._diverge(cert.height, ours, cert.state_root)
            return
        linked = self._chain.get(cert.height)
        if linked is not None and linked[0] != cert.block_hash:
            self._diverge(cert.height, linked[0], cert.block_hash)
            return
        self._stable = cert
        self._dirty = True
        if self._epoch_last is not None and cert.height >= self._epoch_last:
            assert cert.height == self._epoch_last, "stable checkpoint past the epoch's end"
            votes = self._checkpoint_votes.get(cert.height, {})
            signers = {s for s, _ in cert.signatures}
            self._handoff = tuple(v for s, v in sorted(votes.items()) if s in signers)
            self._finished = True
            self._cancel_all_timers()
            return
        if linked is None:
            self._chain[cert.height] = (cert.block_hash, None)
        for height in [h for h in self._slots if h <= cert.height]:
            del self._slots[height]
        for height in [h for h in self._checkpoint_votes if h <= cert.height]:
            del self._checkpoint_votes[height]
        keep_from = min(cert.height, self._delivered)
        for height in [h for h in self._chain if h < keep_from]:
            del self._chain[height]
        root_floor = min(keep_from, self._executed) - self.config.pipeline_depth
        for height in [h for h in self._roots if h < root_floor]:
            del self._roots[height]
        if self._delivered < cert.height:
            self._start_transfer(cert.height, cert.block_hash, self._stable_signers())
        self._install_new_view_proposals()
        self._maybe_want_proposal()

    def _on_epoch_ends(self, last_height: int) -> None:
        assert last_height % self.config.checkpoint_interval == 0, "an epoch ends at a checkpoint"
        if self._epoch_last is not None:
            assert last_height == self._epoch_last, "one end per epoch"
            return
        self._epoch_last = last_height
        if last_height <= self._low:
            # we learn of the end only now (after a restart, or a catch-up that took us to
            # it): the epoch is over here already
            self._finished = True
            self._cancel_all_timers()
            return
        assert all(h <= last_height for h in self._slots), "a slot beyond the epoch's end"
        for height in [h for h in self._checkpoint_votes if h > last_height]:
            del self._checkpoint_votes[height]
        self._far_checkpoints = {s: h for s, h in self._far_checkpoints.items() if h <= last_height}

    def _cancel_all_timers(self) -> None:
        for kind in TimerKind:
            self._cancel_timer(kind)

    def _diverge(self, height: int, ours: bytes, certified: bytes) -> None:
        self._halted = True
        self._out.append(StateDiverged(height, ours, certified))

    # ------------------------------------------------------------ state transfer

    def _start_transfer(
        self, height: int, block_hash: bytes | None, peers: tuple[str, ...]
    ) -> None:
        if self._transfer is not None and self._transfer[0] >= height:
            return
        peers = tuple(p for p in peers if p != self._me) or tuple(
            m for m in self.config.members if m != self._me
        )
        self._transfer = (height, block_hash, peers)
        self._transfer_attempts = 0
        self._request_transfer()

    def _request_transfer(self) -> None:
        assert self._transfer is not None
        height, block_hash, peers = self._transfer
        shift = self._transfer_attempts % len(peers)
        rotated = peers[shift:] + peers[:shift]
        self._out.append(RequestStateTransfer(self._delivered + 1, height, block_hash, rotated))
        self._set_timer(TimerKind.STATE_TRANSFER, self._now + self.config.state_transfer_timeout_ms)

    def _on_state_transfer_done(self, block: Block, roots: tuple[tuple[int, bytes], ...]) -> None:
        height = block.height
        if height > self._delivered:
            linked = self._chain.get(height)
            assert linked is None or linked[0] == block.hash(), "transfer contradicts chain"
            self._delivered = self._executed = height
            self._chain[height] = (block.hash(), block.header.timestamp_ms)
            self._roots.update(dict(roots))
            assert height in self._roots, "state transfer must report the root it reached"
            self._progress(height)
            if height % self.config.checkpoint_interval == 0 and height > self._low:
                self._send_checkpoint(height, self._roots[height])
        if self._transfer is not None:
            if self._delivered >= self._transfer[0]:
                self._transfer = None
                self._cancel_timer(TimerKind.STATE_TRANSFER)
            else:
                self._transfer_attempts += 1
                self._request_transfer()
        self._deliver_ready()
        self._install_new_view_proposals()
        for slot in self._ordered_slots():
            self._maybe_commit(slot.height)
            self._try_accept(slot)
        self._maybe_want_proposal()

    # ------------------------------------------------------------ timers

    def _on_timer(self, kind: TimerKind, timer_id: int) -> None:
        if timer_id != self._timer_ids[kind] or not self._timer_armed[kind]:
            return  # superseded
        self._timer_armed[kind] = False
        if kind is TimerKind.VIEW_CHANGE:
            # In a view change: a quorum moved but no NEW-VIEW came.  Moving on alone
            # could leave us in a view no one else reaches if the NEW-VIEW was merely
            # late, so this too is a suspicion: f+1 of them try the next view together.
            self._suspect("new_view" if self._in_view_change else "progress")
        elif kind is TimerKind.REQUEST:
            self._request_timer_at = None
            self._suspect("request")
        elif kind is TimerKind.RETRANSMIT:
            self._retransmit()
            self._set_timer(kind, self._now + self.config.retransmit_interval_ms)
        elif self._transfer is not None:
            self._transfer_attempts += 1
            self._request_transfer()

    def _retransmit(self) -> None:
        """Resend our own latest votes: PBFT assumes eventual delivery, the network
        only promises to try."""
        if self._my_suspect is not None:
            self._out.append(Broadcast(self._my_suspect))
        if self._in_view_change:
            if self._my_view_change is not None:
                self._out.append(Broadcast(self._my_view_change))
        else:
            last_commit: Commit | None = None
            for slot in self._ordered_slots():
                if slot.committed is not None:
                    last_commit = slot.my_commit or last_commit
                    continue
                pp = slot.pre_prepare
                if pp is not None and pp.sender == self._me:
                    self._out.append(Broadcast(pp))
                if slot.my_prepare is not None:
                    self._out.append(Broadcast(slot.my_prepare))
                if slot.my_commit is not None:
                    self._out.append(Broadcast(slot.my_commit))
            if last_commit is not None:
                # Lets a replica that missed the proposal learn that a quorum committed
                # and fetch the block, instead of waiting for the next checkpoint.
                self._out.append(Broadcast(last_commit))
        if self._my_checkpoint is not None:
            self._out.append(Broadcast(self._my_checkpoint))

    # ------------------------------------------------------------ view change

    def _build_view_change(self) -> ViewChange:
        prepared = tuple(
            s.prepared
            for s in self._ordered_slots()
            if s.prepared is not None and s.height > self._low
        )
        return self._signed(ViewChange(self._view, self._stable, prepared, self._me))

    def _leave_view(self) -> None:
        for slot in self._slots.values():
            slot.pre_prepare = None
            slot.pending = None
            slot.prepares = {}
            slot.my_prepare = None
            slot.my_commit = None
            slot.seen = {k: m for k, m in slot.seen.items() if k[0] == Commit.KIND}
        self._wanted_height = -1

    def _start_view_change(self, new_view: int) -> None:
        assert new_view > self._view, "views only grow"
        self._leave_view()
        self._view = new_view
        self._in_view_change = True
        self._new_view_msg = None
        self._my_suspect = None
        self._suspects = {s: v for s, v in self._suspects.items() if v >= new_view}
        self._monitor.view_started(self._now, view=self._view, judging=False)
        self._failed_views += 1
        self._cancel_timer(TimerKind.VIEW_CHANGE)
        self._dirty = True
        if self.config.voting:
            vc = self._build_view_change()
            self._my_view_change = vc
            self._view_changes[self._me] = vc
            self._out.append(Broadcast(vc))
        self._check_view_change_quorum()

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.new_view < self._view or (vc.new_view == self._view and not self._in_view_change):
            self._help(vc.sender)
            self._reject("stale_view")
            return
        prior = self._view_changes.get(vc.sender)
        if prior is not None and prior.new_view >= vc.new_view:
            self._reject("duplicate" if prior == vc else "stale_view")
            return
        validate_view_change(self.config, vc, self._verify)  # raises: counted by caller
        self._view_changes[vc.sender] = vc
        higher = sorted(
            (v.new_view for v in self._view_changes.values() if v.new_view > self._view),
            reverse=True,
        )
        if len(higher) >= self.config.f + 1:
            # f+1 replicas (one of them honest) want a later view: join the lowest view
            # that enough of them support instead of waiting for our own timeout.
            self._start_view_change(higher[self.config.f])
            return
        self._check_view_change_quorum()

    def _suspect(self, cause: str) -> None:
        """Our timer says the primary of our view fails: tell everyone.  We keep voting in
        this view (or keep waiting for its NEW-VIEW); f+1 suspicions (ours included) make
        every replica move on together."""
        if self._my_suspect is not None or not self.config.voting:
            return
        self.suspicions[cause] = self.suspicions.get(cause, 0) + 1
        self._my_suspect = self._signed(Suspect(self._view, self._me))
        self._suspects[self._me] = self._view
        self._out.append(Broadcast(self._my_suspect))
        self._check_suspects()

    def _on_suspect(self, sus: Suspect) -> None:
        # A peer suspecting a view we work in (or left) may be waiting for the NEW-VIEW
        # that opened it: show it (rate-limited per peer).
        self._help(sus.sender)
        if sus.view < self._view:
            self._reject("stale_view")
            return
        prior = self._suspects.get(sus.sender)
        if prior is not None and prior >= sus.view:
            self._reject("duplicate")
            return
        self._suspects[sus.sender] = sus.view
        self._check_suspects()

    def _check_suspects(self) -> None:
        suspecting = sum(1 for v in self._suspects.values() if v >= self._view)
        if suspecting >= self.config.f + 1:
            # At least one honest replica's timer expired in this view (or a later one).
            self._start_view_change(self._view + 1)

    def _check_view_change_quorum(self) -> None:
        if not self._in_view_change:
            return
        vcs = sorted(
            (v for v in self._view_changes.values() if v.new_view == self._view),
            key=lambda v: v.sender,
        )
        if len(vcs) < self.config.quorum:
            return
        if not self._timer_armed[TimerKind.VIEW_CHANGE]:
            # PBFT: wait for NEW-VIEW only once a quorum moved, so a lone replica that
            # timed out does not climb views by itself.
            self._set_timer(TimerKind.VIEW_CHANGE, self._now + self._timeout_ms())
        if self.is_primary and self._new_view_msg is None:
            chosen = tuple(vcs[: self.config.quorum])
            plan = plan_new_view(chosen)
            pps = tuple(
                self._signed(PrePrepare(self._view, b.height, b, self._me)) for b in plan.blocks
            )
            nv = self._signed(NewView(self._view, chosen, pps, self._me))
            self._out.append(Broadcast(nv))
            self._enter_view(nv, plan)

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self._view or (nv.view == self._view and not self._in_view_change):
            self._reject("duplicate" if nv == self._new_view_msg else "stale_view")
            return
        if nv.sender != self.config.primary(nv.view):
            self._reject("wrong_primary")
            return
        senders = [vc.sender for vc in nv.view_changes]
        if (
            len(set(senders)) != len(senders)
            or len(senders) < self.config.quorum
            or any(s not in self._members for s in senders)
            or any(vc.new_view != nv.view for vc in nv.view_changes)
        ):
            self._reject("bad_new_view")
            return
        for vc in nv.view_changes:
            if self._view_changes.get(vc.sender) == vc:
                continue  # validated on arrival
            if not verify_message(vc, self.config.domain, self._verify):
                self._reject("bad_new_view")
                return
            validate_view_change(self.config, vc, self._verify)
        plan = plan_new_view(nv.view_changes)
        if len(plan.blocks) != len(nv.pre_prepares):
            self._reject("bad_new_view")
            return
        for pp, block in zip(nv.pre_prepares, plan.blocks, strict=True):
            if (
                pp.view != nv.view
                or pp.sender != nv.sender
                or pp.height != block.height
                or pp.digest != block.hash()
                or verify_block_shape(self.config, pp.block, pp.height) is not None
                or not verify_message(pp, self.config.domain, self._verify)
            ):
                self._reject("bad_new_view")
                return
        self._enter_view(nv, plan)

    def _enter_view(self, nv: NewView, plan: NewViewPlan) -> None:
        if nv.view > self._view or not self._in_view_change:
            self._leave_view()
        self._view = nv.view
        self._in_view_change = False
        self._new_view_msg = nv
        self._my_view_change = None
        self._my_suspect = None
        self._suspects = {s: v for s, v in self._suspects.items() if v >= nv.view}
        # Request timers restart: the new primary gets a full timeout for every
        # transaction, whatever its predecessor left waiting.
        self._view_started_ms = self._now
        self._monitor.view_started(self._now, view=self._view, judging=self._judging)
        self._dirty = True
        self._cancel_timer(TimerKind.VIEW_CHANGE)
        self._view_changes = {s: v for s, v in self._view_changes.items() if v.new_view > nv.view}
        if plan.checkpoint.height > self._low:
            self._adopt_stable(plan.checkpoint)
            if self._halted:
                return
        self._install_new_view_proposals()
        for slot in self._ordered_slots():
            self._maybe_commit(slot.height)
        self._replay_future()
        self._arm_progress_timer()
        self._maybe_want_proposal()

    def _install_new_view_proposals(self) -> None:
        """Accept the re-proposals of the NEW-VIEW that opened our view, for every height
        inside our window. One above it (our window stops a window above what we executed,
        and we may have adopted the plan's checkpoint before executing up to it) waits here
        until the window reaches it: it is the view's proposal for that height, so neither we
        nor the primary ever take another one there (``_proposal_slot``)."""
        nv = self._new_view_msg
        if nv is None or nv.view != self._view or self._in_view_change:
            return
        for pp in nv.pre_prepares:
            if not self._in_window(pp.height):
                continue
            slot = self._slot(pp.height)
            if slot.pre_prepare is not None:
                continue
            if pp.height <= self._delivered and not self._is_committed_block(pp):
                self._reject("already_committed")  # a plan can only re-propose it
                continue
            key = (PrePrepare.KIND, pp.view, pp.sender)
            prior = slot.seen.get(key)
            if prior is not None and prior != pp:
                self._report("PrePrepare", prior, pp)
                continue
            slot.seen[key] = pp
            slot.pending = None
            self._store_body(slot, pp.block)
            # Re-proposals skip content checks: each carried a prepared certificate,
            # so f+1 honest replicas validated it in its original view.
            self._accept(pp)

    def _is_committed_block(self, pp: PrePrepare) -> bool:
        linked = self._chain.get(pp.height)
        return linked is not None and linked[0] == pp.digest

    def _replay_future(self) -> None:
        for sender in sorted(self._future):
            queue = self._future[sender]
            ready = [m for m, _ in queue if _view_of(m) == self._view]
            later = [(m, size) for m, size in queue if _view_of(m) > self._view]
            queue.clear()
            queue.extend(later)
            self._future_bytes[sender] = sum(size for _, size in later)
            for msg in ready:
                # buffered only after its signature checked out in this replica's domain
                self._on_message(msg, self.config.domain)


def _view_of(msg: Message) -> int:
    if isinstance(msg, PrePrepare | Prepare | Commit):
        return msg.view
    return -1


def _size_estimate(msg: PrePrepare | Prepare | Commit) -> int:
    """Wire bytes of a buffered message, from above up to the fixed overhead: cheap
    enough to compute for every message a flooding member sends."""
    if isinstance(msg, PrePrepare):
        payload = msg.block.payload
        return MESSAGE_OVERHEAD_BYTES + sum(len(tx) + TX_OVERHEAD_BYTES for tx in payload)
    return MESSAGE_OVERHEAD_BYTES
