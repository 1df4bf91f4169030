"""A connection that keeps sending transactions the node refuses is slowed down.

Refusing a transaction is cheap for the node but not free (TLS, HTTP, decoding, often a
signature check), and a client in a closed loop gets refusals back as fast as the node
can produce them: a few flooding connections would take the event loop from everyone
else. Each connection may have ``per_s`` submissions refused per second (a second's worth
at once: a client's mistakes in a burst are fine); beyond that, its submissions are
answered ``429 too_many_refused`` with ``Retry-After`` after ``penalty_s``, before any
work is done for them. The wait bounds how fast one connection can make the node work,
and the connection gate bounds how many connections one address holds, so a flood costs
a bounded share of the node. Honest connections never notice: they are budgeted apart.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable


class RefusalBudget:
    def __init__(
        self,
        per_s: float = 20.0,
        penalty_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert per_s > 0 and penalty_s >= 0
        self.per_s = per_s
        self.penalty_s = penalty_s
        self._monotonic = monotonic
        # per connection (its transport): [tokens, refilled at]; gone with the connection
        self._buckets: weakref.WeakKeyDictionary[object, list[float]] = weakref.WeakKeyDictionary()

    def _bucket(self, conn: object) -> list[float]:
        now = self._monotonic()
        bucket = self._buckets.get(conn)
        if bucket is None:
            bucket = self._buckets[conn] = [self.per_s, now]
        bucket[0] = min(self.per_s, bucket[0] + (now - bucket[1]) * self.per_s)
        bucket[1] = now
        return bucket

    def exhausted(self, conn: object) -> bool:
        return self._bucket(conn)[0] < 1

    def refused(self, conn: object) -> None:
        self._bucket(conn)[0] -= 1
