"""A simulated node: the driver around one ``Replica`` instance.

It does what the real node's driver will do, minus I/O: executes actions in order,
keeps the block store and the persisted consensus state across crashes, executes
delivered blocks (the state root is a hash chain), serves and consumes state transfer,
and offers mempool transactions.  It also reports to the checker.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

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
from mdtp.consensus.block import Block, genesis_hash
from mdtp.consensus.codec import hash_bytes, transaction_id
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
    Commit,
    CommitCertificate,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    StateTransferRequest,
    StateTransferResponse,
    ViewChange,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.byzantine import Behavior
from mdtp.consensus.sim.checker import Checker
from mdtp.consensus.sim.crypto import SimKeys, validate_payload
from mdtp.consensus.state import PersistedState, decode_state, encode_state
from mdtp.consensus.state_transfer import build_request, serve_request, verify_response


class Simulation(Protocol):
    """What a node needs of the simulation that runs it (scenario.Simulation provides it)."""

    now: int
    checker: Checker
    submitted: dict[int, list[bytes]]

    def schedule_timer(self, node: SimNode, kind: TimerKind, timer_id: int, at_ms: int) -> None: ...

    def schedule_offer(self, node: SimNode, at_ms: int) -> None: ...

    def decode(self, data: bytes) -> Message: ...

    def is_byzantine(self, node_id: str) -> bool: ...

    def transmit(self, src: SimNode, dst: str | None, msg: Message, now_ms: int) -> None: ...


BATCH_TXS_MAX = 8
IN_FLIGHT_MS = 2_000


class SimNode:
    def __init__(
        self,
        sim: Simulation,
        instance: str,
        config: ConsensusConfig,
        keys: SimKeys,
        behavior: Behavior | None,
        stream: int,
    ) -> None:
        self.sim = sim
        self.instance = instance
        self.node_id = config.my_id
        self.config = config
        self.keys = keys
        self.sign = keys.signer(config.my_id)
        self.behavior = behavior
        if behavior is not None:
            behavior.height = lambda: self.height
        self.stream = stream
        self.honest = behavior is None and not sim.is_byzantine(config.my_id)
        self.chain: list[tuple[Block, CommitCertificate]] = []
        self.roots: list[bytes] = [config.genesis_state_root]
        self.tip_hash = genesis_hash(config.chain_id, config.genesis_state_root)
        self.persisted: PersistedState | None = None
        self.timers: dict[TimerKind, int] = {}
        self.crashed = False
        self.committed_txs: set[bytes] = set()
        self.mempool_index = 0
        self.in_flight: dict[bytes, int] = {}
        self.transfer_peer_index = 0
        self.decode_errors = 0
        self.evidence = 0
        self.restarts = 0
        self.replica = Replica(config, self.sign, keys.verify, validate_payload)
        self._events: deque[Event] = deque()

    # ---------------------------------------------------------------- lifecycle

    def start(self, now_ms: int) -> None:
        self._run(self.replica.start(now_ms), now_ms)
        self._drain()

    def crash(self) -> None:
        self.crashed = True
        self.timers.clear()
        self._events.clear()

    def restart(self, now_ms: int) -> None:
        """Rebuild the replica from what a real node would find on disk."""
        self.crashed = False
        self.restarts += 1
        if self.persisted is not None:
            # Round-trip through the canonical encoding, as a real restart would.
            state = decode_state(encode_state(self.persisted))
            last = self.chain[-1][0].header if self.chain else None
            height = len(self.chain)
            depth = self.config.pipeline_depth
            roots = {h: self.roots[h] for h in range(max(0, height - depth), height + 1)}
            self.replica = Replica.restore(
                self.config,
                state,
                height,
                last,
                roots,
                self.sign,
                self.keys.verify,
                validate_payload,
            )
        else:
            self.replica = Replica(self.config, self.sign, self.keys.verify, validate_payload)
        self.start(now_ms)

    @property
    def height(self) -> int:
        return len(self.chain)

    # ---------------------------------------------------------------- events in

    def feed(self, event: Event) -> None:
        if self.crashed:
            return
        self._events.append(event)
        self._drain()

    def _drain(self) -> None:
        while self._events and not self.crashed:
            ev = self._events.popleft()
            try:
                actions = self.replica.handle(ev)
            except Exception as exc:  # a bug in the core: the checker must hear of it
                self.sim.checker.violation(
                    f"{self.instance}: replica raised {type(exc).__name__}: {exc}"
                )
                self.crash()
                return
            self._run(actions, ev.now_ms)

    def on_frame(self, data: bytes, now_ms: int) -> None:
        if self.crashed:
            return
        try:
            msg = self.sim.decode(data)
        except ConsensusError:
            self.decode_errors += 1
            return
        if isinstance(msg, StateTransferRequest):
            self._serve(msg)
        elif isinstance(msg, StateTransferResponse):
            self._consume(msg, now_ms)
        else:
            self.feed(MessageReceived(now_ms, msg))

    def on_timer(self, kind: TimerKind, timer_id: int, now_ms: int) -> None:
        if not self.crashed and self.timers.get(kind) == timer_id:
            del self.timers[kind]
            self.feed(TimerFired(now_ms, kind, timer_id))

    def on_tick(self, now_ms: int) -> None:
        if self.crashed:
            return
        if self.behavior is not None:
            for to, msg in self.behavior.tick(now_ms):
                self.sim.transmit(self, to, msg, now_ms)
        self.offer_transactions(now_ms)

    def offer_transactions(self, now_ms: int) -> None:
        if self.crashed:
            return
        pool = self.sim.submitted[self.stream]
        while self.mempool_index < len(pool) and pool[self.mempool_index] in self.committed_txs:
            self.mempool_index += 1
        batch: list[bytes] = []
        for tx in pool[self.mempool_index :]:
            if tx in self.committed_txs or self.in_flight.get(tx, -1) > now_ms:
                continue
            batch.append(tx)
            if len(batch) == BATCH_TXS_MAX:
                break
        offered = tuple(batch) if self.behavior is None else self.behavior.offer(tuple(batch))
        if offered:
            self.feed(TransactionsAvailable(now_ms, offered))

    # ---------------------------------------------------------------- actions out

    def _run(self, actions: list[Action], now_ms: int) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self._check_persisted(action.message)
                self._send(None, action.message, now_ms)
            elif isinstance(action, Send):
                self._check_persisted(action.message)
                self._send(action.to, action.message, now_ms)
            elif isinstance(action, Persist):
                self.persisted = action.state
            elif isinstance(action, SetTimer):
                self.timers[action.kind] = action.timer_id
                self.sim.schedule_timer(self, action.kind, action.timer_id, action.at_ms)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.kind, None)
            elif isinstance(action, Deliver):
                self._append(action.block, action.certificate)
                root = self.roots[-1]
                self._events.append(BlockExecuted(now_ms, action.block.height, root))
            elif isinstance(action, RequestStateTransfer):
                self._request(action, now_ms)
            elif isinstance(action, ProposalWanted):
                self.sim.schedule_offer(self, now_ms + 1)
            elif isinstance(action, ReportEvidence):
                self.evidence += 1
            elif isinstance(action, StateDiverged) and self.honest:
                self.sim.checker.violation(f"{self.instance}: state diverged {action}")

    def _send(self, dst: str | None, msg: Message, now_ms: int) -> None:
        if isinstance(msg, PrePrepare) and msg.sender == self.node_id:
            for tx in msg.block.payload:
                self.in_flight[tx] = now_ms + IN_FLIGHT_MS
        outgoing = [(dst, msg)] if self.behavior is None else self.behavior.outgoing(dst, msg)
        for to, out in outgoing:
            self.sim.transmit(self, to, out, now_ms)

    def _check_persisted(self, msg: Message) -> None:
        """A vote must be covered by the last Persist executed before it."""
        if not self.honest:
            return
        state = self.persisted
        ok = True
        if isinstance(msg, Prepare):
            ok = state is not None and any(
                (p.view, p.height, p.digest) == (msg.view, msg.height, msg.digest)
                for p in state.accepted
            )
        elif isinstance(msg, Commit):
            ok = state is not None and any(
                (c.view, c.height, c.pre_prepare.digest) == (msg.view, msg.height, msg.digest)
                for c in state.prepared
            )
        elif isinstance(msg, PrePrepare) and msg.sender == self.node_id:
            ok = state is not None and (state.view > msg.view or msg in state.accepted)
        elif isinstance(msg, ViewChange) and msg.sender == self.node_id:
            ok = state is not None and state.view >= msg.new_view
        elif isinstance(msg, NewView) and msg.sender == self.node_id:
            ok = state is not None and (state.view > msg.view or state.new_view == msg)
        if not ok:
            self.sim.checker.violation(
                f"{self.instance}: sent {type(msg).__name__} before persisting it"
            )

    def _append(self, block: Block, cert: CommitCertificate) -> None:
        self.sim.checker.on_append(
            self.node_id, self.instance, (self.height, self.tip_hash), block, cert
        )
        self.chain.append((block, cert))
        self.tip_hash = block.hash()
        self.roots.append(hash_bytes(self.roots[-1] + block.hash()))
        self.committed_txs.update(block.payload)

    # ---------------------------------------------------------------- state transfer

    def _request(self, action: RequestStateTransfer, now_ms: int) -> None:
        request = build_request(self.config, self.sign, self.height + 1, action.to_height)
        peer = action.peers[0] if action.peers else self.config.members[0]
        self.sim.transmit(self, peer, request, now_ms)

    def _serve(self, request: StateTransferRequest) -> None:
        def source(height: int) -> tuple[Block, CommitCertificate] | None:
            return self.chain[height - 1] if 1 <= height <= self.height else None

        response = serve_request(self.config, self.sign, self.keys.verify, request, source)
        if response is not None:
            self.sim.transmit(self, request.sender, response, self.sim.now)

    def _consume(self, response: StateTransferResponse, now_ms: int) -> None:
        fresh = tuple(e for e in response.entries if e[0].height > self.height)
        if not fresh:
            return
        trimmed = StateTransferResponse(fresh, response.sender, response.signature)
        try:
            entries = verify_response(
                self.config, self.keys.verify, trimmed, self.height + 1, self.tip_hash
            )
        except ConsensusError:
            self.decode_errors += 1
            return
        for block, cert in entries:
            self._append(block, cert)
        # What committed in blocks the core never saw: stop their request timers, as the
        # real driver does for transactions that leave its pool unseen.
        gone = tuple(transaction_id(tx) for block, _ in entries for tx in block.payload)
        if gone:
            self.feed(TransactionsRemoved(now_ms, gone))
        last = entries[-1][0]
        depth = self.config.pipeline_depth
        roots = tuple(
            (h, self.roots[h]) for h in range(max(0, self.height - depth), self.height + 1)
        )
        self.feed(StateTransferDone(now_ms, last, roots))
