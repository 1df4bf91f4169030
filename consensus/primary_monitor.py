"""Judging a primary by the throughput it delivers (Aardvark, NSDI 2009), free of I/O.

PBFT's timers only catch a primary that stops: one that proposes just under the progress
timeout, or fills each block with a single transaction, keeps every timer quiet while the
chain crawls. Aardvark's answer, kept here:

- **Expectation from recent views.** A backup measures, for every view it spends as a
  backup under load, the committed transactions and bytes per millisecond of *busy* time
  (time during which it held at least one transaction under a request timer) and the mean
  backlog while busy. After ``throughput_grace_ms`` of a view, the primary must deliver at
  least ``throughput_floor_pct`` % of the best of the last ``n`` views' rates -- scaled down
  by the ratio of today's backlog to that view's when the load is lighter now, since a
  closed loop of fewer clients commits fewer transactions under any primary (Little's
  law). A view below it in transactions *and* in bytes is suspected (cause
  ``throughput``).
- **Rotation until there is something to expect.** In the first view of a chain nothing
  can be expected, and a Byzantine primary would set the bar itself. So views 0..f (led
  by f+1 different members, one of them honest) end after ``rotation_ms`` of busy time
  (cause ``rotation``): a slow first primary holds one turn, and from then on is judged
  against the views after it. Rotation then stops: rotating for ever would hand every
  faulty member (a crashed one included) a turn, and a view-change timeout, every n
  views. The view number decides, so every replica agrees which views rotate. Busy time,
  not age: a chain with a transaction now and then rotates rarely.

A verdict is only this replica's suspicion: f+1 of them are needed to change the view
(``Replica._check_suspects``), so one replica's noisy measurement changes nothing.
Everything is integer milliseconds and counts, so the simulator replays it exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# A view is only remembered if it was busy this long: shorter ones measure noise.
MEASURE_MS_MIN = 500


@dataclass(frozen=True, slots=True)
class ViewRate:
    """What one view delivered while this backup held work: per ms of busy time."""

    txs: int
    tx_bytes: int
    busy_ms: int
    backlog_ms: int  # integral of the backlog (transactions x ms) over busy time


class PrimaryMonitor:
    def __init__(
        self, *, grace_ms: int, floor_pct: int, rotation_ms: int, history: int, f: int
    ) -> None:
        assert grace_ms > 0 and 0 <= floor_pct <= 100 and rotation_ms >= 0
        assert 0 <= f < history
        self.grace_ms = grace_ms
        self.floor_pct = floor_pct
        self.rotation_ms = rotation_ms
        self.rotating_views = f + 1  # views 0..f rotate
        self.history: deque[ViewRate] = deque(maxlen=history)
        self._view = 0
        self._started_ms = 0
        self._judging = False  # a backup of a view not in view change
        self._last_ms = 0
        self._backlog = 0
        self._txs = 0
        self._bytes = 0
        self._busy_ms = 0
        self._backlog_ms = 0

    def view_started(self, now_ms: int, *, view: int, judging: bool) -> None:
        """``view`` begins (or this replica stops judging it):
        close the last view's measurement and start a new one."""
        self.advance(now_ms)
        if self._judging and self._busy_ms >= MEASURE_MS_MIN and self._txs > 0:
            self.history.append(ViewRate(self._txs, self._bytes, self._busy_ms, self._backlog_ms))
        self._view = view
        self._started_ms = now_ms
        self._judging = judging
        self._txs = self._bytes = self._busy_ms = self._backlog_ms = 0

    def advance(self, now_ms: int, backlog: int | None = None) -> None:
        """Time passes at the current backlog; then the backlog becomes ``backlog``."""
        elapsed = max(0, now_ms - self._last_ms)
        if self._backlog > 0:
            self._busy_ms += elapsed
            self._backlog_ms += elapsed * self._backlog
        self._last_ms = max(self._last_ms, now_ms)
        if backlog is not None:
            self._backlog = backlog

    def committed(self, txs: int, tx_bytes: int) -> None:
        self._txs += txs
        self._bytes += tx_bytes

    def verdict(self, now_ms: int) -> str | None:
        """``throughput`` or ``rotation`` if the primary of this view should be replaced."""
        if not self._judging or self._backlog == 0:
            return None
        if (
            self.rotation_ms
            and self._view < self.rotating_views
            and self._busy_ms >= self.rotation_ms
        ):
            return "rotation"
        age = now_ms - self._started_ms
        if not self.floor_pct or age < self.grace_ms or self._busy_ms < MEASURE_MS_MIN:
            return None
        if not self.history:
            return None
        if self._below(self._txs, [r.txs for r in self.history]) and self._below(
            self._bytes, [r.tx_bytes for r in self.history]
        ):
            return "throughput"
        return None

    def _below(self, now_amount: int, past_amounts: list[int]) -> bool:
        """Is ``now_amount`` per busy ms under the floor of the best recent view, each
        past view's rate scaled by min(1, backlog now / backlog then)?  Cross-multiplied
        so that everything stays an integer."""
        for past, amount in zip(self.history, past_amounts, strict=True):
            # rate_now < floor% * rate_past * min(1, load_now / load_past), where
            # rate = amount / busy_ms and load = backlog_ms / busy_ms.
            lhs = now_amount * past.busy_ms * 100
            rhs = self.floor_pct * amount * self._busy_ms
            load_now = self._backlog_ms * past.busy_ms
            load_past = past.backlog_ms * self._busy_ms
            if load_now < load_past:
                lhs *= load_past
                rhs *= load_now
            if lhs < rhs:
                return True  # a recent view did clearly better under as much load
        return False
