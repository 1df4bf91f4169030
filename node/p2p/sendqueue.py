"""One peer's outbound frames: a bounded FIFO per channel, drained by byte-weighted round robin.

Scheduling is deficit round robin over bytes in its "surplus" form: a channel with frames
may send while its credit is positive, each frame costs its size (the credit may go
negative, so a frame larger than the quantum needs no empty rounds), and when no channel
with frames has credit left, every such channel gets ``priority * quantum_bytes`` more --
as many rounds at once as it takes for one of them to be positive again. Inside a round the
highest priority goes first, so a vote queued behind a chunk backlog is the next frame
written, unless the consensus channel has used up its (large) share of this round.

A channel that runs empty drops its debt and its surplus and starts its next burst with one
quantum: an idle channel cannot bank credit, and a vote after a big proposal is not held
back for the proposal's bytes. Within a channel frames keep their order.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from prometheus_client import Gauge

from mdtp.node.p2p.channels import Channel, kinds_of
from mdtp.node.p2p.metrics import P2PMetrics

QUANTUM_BYTES = 64 * 1024
"""Credit per unit of priority per round: a priority-1 channel moves one 64 KiB share while
the consensus channel (priority 16) may move 1 MiB."""


@dataclass
class _Lane:
    channel: Channel
    quantum: int
    queued_gauge: Gauge  # this channel's series of the queued-bytes gauge
    frames: collections.deque[bytes] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    credit: int = 0


class SendQueues:
    def __init__(
        self,
        channels: tuple[Channel, ...],
        metrics: P2PMetrics,
        quantum_bytes: int = QUANTUM_BYTES,
    ) -> None:
        self._metrics = metrics
        by_priority = sorted(channels, key=lambda c: c.priority, reverse=True)
        self._lanes = [
            _Lane(c, c.priority * quantum_bytes, metrics.send_queue_bytes.labels(c.name))
            for c in by_priority
        ]
        lane_of_channel = {lane.channel.name: lane for lane in self._lanes}
        self._lane_of_kind = {k: lane_of_channel[c.name] for k, c in kinds_of(channels).items()}
        self._frames = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._frames

    def put(self, kind: str, frame: bytes, *, newest: int | None = None) -> bool:
        """Queue ``frame`` on the channel of ``kind``; False (and counted) if that one is full.

        One frame always fits an empty queue, whatever its size: a byte bound below the
        frame size then means one at a time, never none. With ``newest``, the channel keeps
        only its ``newest`` latest frames: the oldest are dropped (and counted) to make room."""
        lane = self._lane_of_kind.get(kind)
        if lane is None:
            raise ValueError(f"frame kind {kind!r} is on no p2p channel (see p2p/channels.py)")
        channel = lane.channel
        if newest is not None:
            while len(lane.frames) >= max(1, newest):
                old = lane.frames.popleft()
                lane.queued_bytes -= len(old)
                self._frames -= 1
                lane.queued_gauge.dec(len(old))
                self._metrics.send_queue_stale.labels(channel.name).inc()
        if lane.frames and (
            len(lane.frames) >= channel.queue_max_frames
            or lane.queued_bytes + len(frame) > channel.queue_max_bytes
        ):
            self._metrics.send_queue_full.labels(channel.name).inc()
            return False
        if not lane.frames:
            lane.credit = lane.quantum
        lane.frames.append(frame)
        lane.queued_bytes += len(frame)
        self._frames += 1
        lane.queued_gauge.inc(len(frame))
        self._ready.set()
        return True

    async def next_batch(self, max_bytes: int) -> list[bytes]:
        """Wait for frames, then take them in schedule order up to ``max_bytes`` (at least one)."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        return self.take_batch(max_bytes)

    def take_batch(self, max_bytes: int) -> list[bytes]:
        """The frames to write next, in schedule order, up to ``max_bytes`` (at least one)."""
        batch: list[bytes] = []
        size = 0
        while self._frames and (not batch or size < max_bytes):
            lane = self._next_lane()
            frame = lane.frames.popleft()
            lane.queued_bytes -= len(frame)
            lane.credit -= len(frame)
            self._frames -= 1
            lane.queued_gauge.dec(len(frame))
            batch.append(frame)
            size += len(frame)
        return batch

    def _next_lane(self) -> _Lane:
        active = [lane for lane in self._lanes if lane.frames]
        assert active, "no frames queued"
        for lane in active:
            if lane.credit > 0:
                return lane
        rounds = min(-lane.credit // lane.quantum + 1 for lane in active)
        for lane in active:
            lane.credit += rounds * lane.quantum
        return next(lane for lane in active if lane.credit > 0)
