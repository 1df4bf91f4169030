"""State synchronisation: catching up with the certified chain, serving peers that catch up,
and the status beacons that tell a replica on an idle chain that it is behind.

Catching up (:meth:`StateSync.request`): one task fetches the missing blocks with their commit
certificates, verifies them (``consensus.state_transfer``) and executes them through the one
delivery path (:class:`.execution.BlockExecutor`), so it never races the core's deliveries.
Every transaction's signature is checked too (``check_txs``: the batch verifier's worker
processes, block by block ahead of execution, each transaction decoded once and handed to the
ledger);
a block with a transaction whose signature does not verify is never executed. While it
executes one response it has already asked the next peer for the range after it (one
request ahead), so the peer's reading and the round trip overlap the execution.
It asks the peers in turn — a different peer for every request — and measures each answer: a
peer that times out, answers with a chain that does not verify, or drips fewer blocks than it
could, collects strikes and is asked only when no better peer is left. So one Byzantine member
can slow a catch-up by at most one timeout per round, never stall it; and the task gives up
after ``stall_s`` without progress (the core or the next beacons start it again).

Beacons: every ``status_interval_s`` each replica broadcasts its height. The target is the
(f+1)-th highest height reported, so at least one honest member has it; a replica that stays
behind it for two intervals starts catching up, at once (on the beacon) if it is behind by
more than the watermark window (those blocks cannot come by consensus any more); a running catch-up
extends its target to the latest beacons' instead of ending short of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdtp.consensus import state_transfer
from mdtp.consensus.block import Block
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.messages import (
    Signer,
    StateTransferRequest,
    StateTransferResponse,
    Verifier,
    encode_message,
)
from mdtp.node.chain.execution import BlockExecutor
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.ports import BroadcastFn, Clock, SendFn
from mdtp.node.ledger.tx import Tx, TxError
from mdtp.node.supervisor import Supervisor

log = logging.getLogger("mdtp.statesync")

# Called when a catch-up ends with blocks executed: the last block and the state roots the
# core needs to resume from there.
DoneFn = Callable[[Block, tuple[tuple[int, bytes], ...]], None]


@dataclass(frozen=True)
class ServeContext:
    """What a :data:`StateServer` may use: the requester, the chain id and this node's
    signer (to sign a response it changed), the requester's timeout (the same configuration
    as ours) and a way to send a response to the requester."""

    requester: str
    chain_id: str
    sign: Signer
    timeout_s: float
    send: Callable[[StateTransferResponse], None]


# Decodes and signature-checks a block's transactions (``BatchVerifier.check_certified``).
CheckTxs = Callable[[Sequence[bytes]], Awaitable[list[Tx | TxError]]]


@dataclass
class _Asked:
    """A request in flight: to whom, the range's first height and its predecessor's hash,
    when it left and when its answer came."""

    peer: str
    start: int
    start_prev: bytes
    asked_at: float
    fut: asyncio.Future[StateTransferResponse] = field(repr=False)
    answered_at: float | None = None


# How this node answers a member's request, given the honest answer; None (production) sends
# it as it is. Only a test entry point installs one (``mdtp.node.testing.state_server``).
StateServer = Callable[[StateTransferResponse, ServeContext], None]


@dataclass(frozen=True)
class SyncLimits:
    request_timeout_s: float = 5.0
    stall_s: float = 60.0
    status_interval_s: int = 2
    # strikes after which a peer is asked only when no peer with fewer is left
    strikes_max: int = 2


class StateSync:
    def __init__(
        self,
        *,
        config: ConsensusConfig,
        sign: Signer,
        verify: Verifier,
        certifiers: state_transfer.CertifierFn,
        executor: BlockExecutor,
        send: SendFn,
        broadcast: BroadcastFn,
        clock: Clock,
        supervisor: Supervisor,
        metrics: DriverMetrics,
        limits: SyncLimits,
        view: Callable[[], int],
        on_done: DoneFn,
        on_diverged: Callable[[str], None],
        check_txs: CheckTxs,
        server: StateServer | None = None,
    ) -> None:
        self.config = config
        self._sign = sign
        self._verify = verify
        self._certifiers = certifiers
        self.executor = executor
        self._send = send
        self._broadcast = broadcast
        self.clock = clock
        self.supervisor = supervisor
        self.metrics = metrics
        self.limits = limits
        self._view = view
        self._on_done = on_done
        self._on_diverged = on_diverged
        self._server = server
        self._check_txs = check_txs
        self.target = 0
        self._task: asyncio.Task[None] | None = None
        self._asked: list[_Asked] = []
        self._strikes: dict[str, int] = {}
        self._next_peer = 0
        self._peer_heights: dict[str, int] = {}
        self._behind_ticks = 0
        self._tick = 0

    def set_config(self, config: ConsensusConfig) -> None:
        """A new epoch: its members are whom we ask and whose beacons count."""
        self.config = config
        self._peer_heights = {p: h for p, h in self._peer_heights.items() if p in config.members}

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def peers(self) -> list[str]:
        return [m for m in self.config.members if m != self.config.my_id]

    # -- catching up -----------------------------------------------------------------------

    def request(self, to_height: int) -> None:
        """Catch up to at least ``to_height`` (a certified height some peer has)."""
        self.target = max(self.target, to_height)
        self.metrics.state_transfer_target.set(self.target)
        if not self.active:
            self._task = self.supervisor.spawn("state-transfer", self._run())

    def _pick_peer(self) -> str:
        """The next peer in turn among those that behaved; the least-struck if none did."""
        peers = self.peers
        strikes = {p: self._strikes.get(p, 0) for p in peers}
        fewest = min(strikes.values())
        allowed = [p for p in peers if strikes[p] < self.limits.strikes_max] or [
            p for p in peers if strikes[p] == fewest
        ]
        peer = allowed[self._next_peer % len(allowed)]
        self._next_peer += 1
        return peer

    def _strike(self, peer: str, why: str) -> None:
        self._strikes[peer] = self._strikes.get(peer, 0) + 1
        self.metrics.frames_dropped.labels(f"state_transfer_{why}").inc()
        self.metrics.state_transfer_peer_strikes.labels(peer, why).inc()

    async def _run(self) -> None:
        self.metrics.state_transfer_active.set(1)
        last_block: Block | None = None
        last_progress = self.clock.monotonic()
        ahead: _Asked | None = None
        try:
            while self.executor.height < self.target:
                if self.clock.monotonic() - last_progress > self.limits.stall_s:
                    log.warning(
                        "state transfer: no progress for %.0f s at height %d (target %d)",
                        self.limits.stall_s,
                        self.executor.height,
                        self.target,
                    )
                    return
                asked = ahead or self._ask(self.executor.height + 1, self.executor.tip_hash)
                ahead = None
                if asked.start > self.executor.height + 1:
                    # asked ahead of a response that turned out short or bad: not this
                    # peer's fault, and its answer (if it comes) is not used
                    self._asked.remove(asked)
                    continue
                struck = self._strikes.get(asked.peer, 0)
                response = await self._answer(asked)
                if response is None:
                    continue
                if response.entries and asked.start + len(response.entries) <= self.target:
                    # ask for the range after this one now; it comes while we execute this
                    last = response.entries[-1][0]
                    ahead = self._ask(asked.start + len(response.entries), last.hash())
                blocks = await self._apply(asked, response)
                if blocks is None:
                    continue
                if blocks:
                    last_block = blocks[-1]
                    last_progress = self.clock.monotonic()
                    if self._strikes.get(asked.peer, 0) == struck:
                        # a full, timely answer forgives the past; a drip (a block, slowly)
                        # moved us on too, but keeps its strike
                        self._strikes.pop(asked.peer, None)
        finally:
            self._asked.clear()
            self.metrics.state_transfer_active.set(0)
            if last_block is not None:
                self._finished(last_block)

    def _ask(self, start: int, start_prev: bytes) -> _Asked:
        """Send a request for ``start``.. (whose predecessor hashes to ``start_prev``) to the
        next peer in turn."""
        peer = self._pick_peer()
        request = state_transfer.build_request(self.config, self._sign, start, self.target)
        fut: asyncio.Future[StateTransferResponse] = asyncio.get_running_loop().create_future()
        asked = _Asked(peer, start, start_prev, self.clock.monotonic(), fut)
        self._asked.append(asked)
        self._send(peer, "blocks", encode_message(request))
        return asked

    async def _answer(self, asked: _Asked) -> StateTransferResponse | None:
        """The answer to ``asked``, or None (struck) if it did not come within the timeout
        from when the request left."""
        left = asked.asked_at + self.limits.request_timeout_s - self.clock.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(asked.fut), max(0.0, left))
        except TimeoutError:
            log.info("state transfer: no answer from %s, asking another peer", asked.peer)
            self._strike(asked.peer, "timeout")
            return None
        finally:
            if asked in self._asked:
                self._asked.remove(asked)

    async def _apply(self, asked: _Asked, response: StateTransferResponse) -> list[Block] | None:
        """Verify and execute the blocks of ``response``; those executed, None on a bad
        answer. Each block's transactions are checked on the verifier's threads, all queued
        at once, so the next blocks are checked while one executes."""
        checks = [
            asyncio.ensure_future(self._check_txs(block.payload)) for block, _ in response.entries
        ]
        try:
            return await self._apply_checked(asked, response, checks)
        finally:
            for check in checks:
                check.cancel()

    async def _apply_checked(
        self,
        asked: _Asked,
        response: StateTransferResponse,
        checks: Sequence[Awaitable[list[Tx | TxError]]],
    ) -> list[Block] | None:
        executed: list[Block] = []
        height, prev_hash = asked.start, asked.start_prev
        for (block, cert), check in zip(response.entries, checks, strict=True):
            # one by one: a block may schedule the membership that certifies the next ones
            try:
                state_transfer.verify_entry(self._certifiers, block, cert, height, prev_hash)
            except ConsensusError as e:
                log.warning("state transfer: bad response from %s: %s", asked.peer, e)
                self._strike(asked.peer, "bad_response")
                return executed or None
            diverged = self._diverged(block)
            if diverged is not None:
                self._on_diverged(diverged)
                self.target = 0  # nothing more to fetch: this node's state is wrong
                return executed
            decoded = await check
            forged = next(
                (
                    i
                    for i, d in enumerate(decoded)
                    if isinstance(d, TxError) and d.reason == "bad_signature"
                ),
                None,
            )
            if forged is not None:
                # certified, yet not signed by its key: more than f members vouched for it,
                # or the certificate checks are wrong; never executed, whoever sent it
                log.warning(
                    "state transfer: block %d from %s holds transaction %d whose signature "
                    "does not verify",
                    block.height,
                    asked.peer,
                    forged,
                )
                self._strike(asked.peer, "bad_response")
                return executed or None
            if await self.executor.deliver(block, cert, decoded):
                self.metrics.state_transfer_blocks.inc()
            executed.append(block)
            height, prev_hash = height + 1, block.hash()
        # A peer that has the blocks answers with as many as fit, at once. One that takes
        # more than half the timeout is struck as slow, whether it brought fewer (a drip) or
        # all that was asked (a drip of a one-block request looks complete): either way
        # another peer is preferred next time, and only a full, timely answer clears it.
        answered_at = asked.answered_at if asked.answered_at is not None else asked.asked_at
        if answered_at - asked.asked_at > self.limits.request_timeout_s / 2:
            self._strike(asked.peer, "slow")
        return executed

    def _diverged(self, block: Block) -> str | None:
        """Why our state differs from the certified chain, judged by the root ``block``'s
        header commits to (that of height - pipeline depth), or None."""
        height = block.height - self.config.pipeline_depth
        if not 0 <= height <= self.executor.height:
            return None
        ours = self.executor.state_root_at(height)
        if ours == block.header.state_root:
            return None
        return (
            f"state root at height {height} is {ours.hex()} here but block {block.height} "
            f"commits to {block.header.state_root.hex()}"
        )

    def _finished(self, block: Block) -> None:
        depth = self.config.pipeline_depth
        height = self.executor.height
        roots = tuple(
            (h, self.executor.state_root_at(h))
            for h in range(max(0, height - depth + 1), height + 1)
        )
        if block.height != height:  # the core delivered past the transferred blocks meanwhile
            entry = self.executor.block_and_certificate(height)
            if entry is None:
                return
            block = entry[0]
        log.info("state transfer done at height %d", height)
        self._on_done(block, roots)

    def on_response(self, peer: str, response: StateTransferResponse) -> bool:
        """A response frame; False if nobody asked ``peer`` for one (answers come in the
        order of the requests on a peer's link)."""
        first = response.entries[0][0].height if response.entries else None
        asked = next(
            (
                a
                for a in self._asked
                if a.peer == peer and not a.fut.done() and first in (None, a.start)
            ),
            None,
        )
        if asked is None:
            return False
        asked.answered_at = self.clock.monotonic()
        asked.fut.set_result(response)
        return True

    async def close(self) -> None:
        await self.supervisor.cancel(self._task)

    # -- serving ---------------------------------------------------------------------------

    def serve(self, request: StateTransferRequest) -> bool:
        """Answer a peer's request from our store; False if it is not acceptable. The
        caller checked that the requester is on the roster and signed it (``verify``: any
        key it had in any epoch)."""
        response = state_transfer.serve_request(
            self.config,
            self._sign,
            self._verify,
            request,
            self.executor.block_and_certificate,
        )
        if response is None:
            return False

        def send(answer: StateTransferResponse) -> None:
            # "blocks", not "consensus": a bulk answer travels on the p2p channel that never
            # holds votes back; the receiver feeds both kinds to the same core.
            self._send(request.sender, "blocks", encode_message(answer))

        if self._server is None:
            send(response)
        else:
            timeout_s = self.limits.request_timeout_s
            chain_id = self.config.chain_id
            context = ServeContext(request.sender, chain_id, self._sign, timeout_s, send)
            self._server(response, context)
        return True

    # -- beacons ---------------------------------------------------------------------------

    def on_status(self, peer: str, body: Any) -> str | None:
        """A peer's status beacon; the reason it was dropped, or None."""
        height = body.get("h") if isinstance(body, dict) else None
        if isinstance(height, bool) or not isinstance(height, int) or not 0 <= height < 2**63:
            return "bad_status"
        if peer in self.config.members:
            self._peer_heights[peer] = height
            if self.active and self.beacon_target() > self.target:
                # the chain moved on (or we heard it only now): the running catch-up goes
                # on to there instead of ending and waiting for the next beacons
                self.target = self.beacon_target()
                self.metrics.state_transfer_target.set(self.target)
            elif not self.active and self._far_behind():
                log.info(
                    "far behind the chain (%d < %d): catching up",
                    self.executor.height,
                    self.beacon_target(),
                )
                self.request(self.beacon_target())
        return None

    def _far_behind(self) -> bool:
        """Behind the beacons' target by more than the watermark window: those blocks can no
        longer come by consensus (e.g. a restarted node), so no reason to wait."""
        return (
            self.heard_chain
            and self.beacon_target() - self.executor.height > self.config.window_size
        )

    @property
    def heard_chain(self) -> bool:
        """Whether enough peers told their heights for :meth:`beacon_target` to be the
        chain's (f+1 of them, or all when fewer): until then a restarted node cannot know
        that it is behind, so it must not say it is ready."""
        return len(self._peer_heights) >= min(self.config.f + 1, len(self.peers))

    def beacon_target(self) -> int:
        heights = sorted(self._peer_heights.values(), reverse=True)
        f = self.config.f
        return heights[f] if len(heights) > f else 0

    def _beacon(self) -> dict[str, int]:
        return {"h": self.executor.height, "v": self._view()}

    def greet(self, peer: str) -> None:
        """A link to ``peer`` just came up: tell it our height now rather than at the next
        beacon, so a node that restarted behind learns it at once (its catch-up starts up to
        ``status_interval_s`` earlier) and says ready sooner."""
        self._send(peer, "status", self._beacon())

    def tick(self) -> None:
        """Once a second: send our beacon on schedule; catch up if we stay behind."""
        self._tick += 1
        if self._tick % self.limits.status_interval_s == 0:
            self._broadcast("status", self._beacon())
        # An idle chain carries no consensus messages, so a replica that missed the last
        # blocks would never hear of them; peers' beacons tell it.
        target = self.beacon_target()
        if target > self.executor.height and not self.active:
            self._behind_ticks += 1
            # less than the window behind may be blocks still in flight: wait two intervals
            if self._far_behind() or self._behind_ticks >= 2 * self.limits.status_interval_s:
                log.info("behind the chain (%d < %d): catching up", self.executor.height, target)
                self.request(target)
                self._behind_ticks = 0
        else:
            self._behind_ticks = 0
