"""Peer input served fairly per link (Aardvark's fair queueing): consensus frames, gossip.

One queue per authenticated peer link, bounded in items and bytes, served round robin, one
item per peer per turn; and a token bucket per peer on the work an item asks for (a
consensus frame: one signature check; a gossip batch: one per transaction). Work that
proves useful is refunded (a consensus message the core took without refusing it), so the
budget bounds what a peer makes us do in vain. A member that floods -- garbage or validly
signed -- fills and drains only its own queue at its own budget, so every other member's
input is taken at once and a flood costs at most the budget's worth of checks; honest
bursts are only delayed by their own backlog, never dropped for another member's. A
peer caught sending what no honest member sends (a transaction with a bad signature in
its gossip) can be shut out for a while (``penalize``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class IngressLimits:
    # small: a peer's useful messages are taken at once (refunded), so only a flood
    # queues up, and a message of the flooder's own waits behind at most this many
    items_per_peer_max: int = 256
    bytes_per_peer_max: int = 64 * 1024 * 1024
    # work units (signature checks) per second and peer that were of no use (see
    # ``refund``); a second's worth at once
    work_per_s: int = 500

    def __post_init__(self) -> None:
        assert self.items_per_peer_max >= 1 and self.bytes_per_peer_max >= 1
        assert self.work_per_s >= 1


class _Peer(Generic[T]):
    __slots__ = ("bytes", "items", "refilled_at", "shut_until", "tokens")

    def __init__(self, now: float, burst: int) -> None:
        self.items: deque[tuple[T, int, int]] = deque()  # item, bytes, work
        self.bytes = 0
        self.tokens = float(burst)
        self.refilled_at = now
        self.shut_until = 0.0


class FairIngress(Generic[T]):
    """Bounded per-peer queues; ``get`` takes items round robin within each peer's
    budget. An item may cost more than the budget holds: the peer then owes the rest."""

    def __init__(
        self, peers: Iterable[str], limits: IngressLimits, monotonic: Callable[[], float]
    ) -> None:
        self.limits = limits
        self._monotonic = monotonic
        now = monotonic()
        self._peers: dict[str, _Peer[T]] = {p: _Peer(now, limits.work_per_s) for p in peers}
        self._order = list(self._peers)
        self._next = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(p.items) for p in self._peers.values())

    def add_peer(self, peer_id: str) -> None:
        """A node the chain added (a member of a new epoch): give it its own queue. Peers
        are never removed: a removed member's node may still serve blocks, and its queue
        is as bounded as any."""
        if peer_id not in self._peers:
            self._peers[peer_id] = _Peer(self._monotonic(), self.limits.work_per_s)
            self._order.append(peer_id)

    def queued_bytes(self) -> int:
        return sum(p.bytes for p in self._peers.values())

    def put(self, peer_id: str, item: T, size: int, work: int = 1) -> str | None:
        """Queue one item of ``size`` bytes; the reason something was dropped, or None.

        A full queue drops its *oldest* items to make room: a peer's newest message (its
        retransmitted NEW-VIEW, its next proposal) is the one that matters, and it must
        not be refused for ever behind a backlog of the same peer's useless ones."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return "not_a_member"
        if peer.shut_until > self._monotonic():
            return "peer_shut_out"
        if size > self.limits.bytes_per_peer_max:
            return "peer_queue_full"
        dropped = None
        while peer.items and (
            len(peer.items) >= self.limits.items_per_peer_max
            or peer.bytes + size > self.limits.bytes_per_peer_max
        ):
            _, old_size, _ = peer.items.popleft()
            peer.bytes -= old_size
            dropped = "peer_queue_full"
        peer.items.append((item, size, max(1, work)))
        peer.bytes += size
        self._ready.set()
        return dropped

    def refund(self, peer_id: str, work: int = 1) -> None:
        """Give back the budget of an item that proved useful: the budget then bounds
        only the useless work a peer causes, and an honest peer never runs out."""
        peer = self._peers[peer_id]
        peer.tokens = min(float(self.limits.work_per_s), peer.tokens + work)

    def penalize(self, peer_id: str, seconds: float) -> None:
        """Drop what ``peer_id`` queued and everything it sends for ``seconds``."""
        peer = self._peers[peer_id]
        peer.shut_until = self._monotonic() + seconds
        peer.items.clear()
        peer.bytes = 0

    async def get(self) -> tuple[str, T]:
        """The next item in round-robin order among peers with items and budget; waits
        for an item, or for the budget of a peer whose items wait."""
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            wait = self._refill_wait()
            self._ready.clear()
            if wait is None:
                await self._ready.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)

    def _take(self) -> tuple[str, T] | None:
        now = self._monotonic()
        count = len(self._order)
        for i in range(count):
            peer_id = self._order[(self._next + i) % count]
            peer = self._peers[peer_id]
            if not peer.items:
                continue
            self._refill(peer, now)
            if peer.tokens < 1:
                continue
            item, size, work = peer.items.popleft()
            peer.tokens -= work
            peer.bytes -= size
            self._next = (self._next + i + 1) % count
            return peer_id, item
        return None

    def _refill(self, peer: _Peer[T], now: float) -> None:
        rate = self.limits.work_per_s
        peer.tokens = min(float(rate), peer.tokens + (now - peer.refilled_at) * rate)
        peer.refilled_at = now

    def _refill_wait(self) -> float | None:
        """Seconds until a peer with waiting items has a token again; None if none wait."""
        waits = [(1 - p.tokens) / self.limits.work_per_s for p in self._peers.values() if p.items]
        return max(0.0, min(waits)) if waits else None
