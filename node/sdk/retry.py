"""When the SDK asks a node again: a retry policy for answers that say "not now".

A node answers ``503`` (``mempool_full``, ``verifier_busy``, ``no_quorum``, ``busy``) or
``429`` (``too_many_refused``, ``too_many_reads``) when it cannot take a request *now*; most
such answers carry ``Retry-After`` (seconds). :class:`RetryPolicy` says how often and how
long a client asks again: the server's ``Retry-After`` when it gives one (capped at
``retry_after_max_s``), else a capped exponential backoff with jitter; never more than
``max_attempts`` tries nor more than ``max_total_wait_s`` of waiting in all.

Only requests that are safe to repeat are retried (:class:`mdtp.node.sdk.client.NodeClient`
decides which): reads, and submissions of signed transactions — a transaction's id is the
hash of its signed bytes, so sending it twice cannot make it happen twice (a node answers a
copy it holds as pending, and one it committed as ``duplicate``, which the client reports as
the transaction's status).
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "RETRY_STATUSES",
    "TRANSIENT_REASONS",
    "RetryEvent",
    "RetryPolicy",
    "parse_retry_after",
]

# HTTP statuses that mean "ask again later".
RETRY_STATUSES = frozenset({429, 503})
# Per-transaction refusals of a batch (``POST /v1/txs``) that mean the same.
TRANSIENT_REASONS = frozenset({"mempool_full", "verifier_busy", "no_quorum"})


@dataclass(frozen=True)
class RetryEvent:
    """One decision to ask again, as given to a client's ``on_retry`` callback."""

    method: str
    path: str
    attempt: int  # the attempt that was answered "not now" (1 = the first)
    wait_s: float  # how long the client waits before the next attempt
    status: int | None  # the HTTP status, None for a connection error
    reason: str  # the answer's reason code, or the connection error's type
    retry_after_s: float | None  # what the server asked for, if it did


def parse_retry_after(value: str | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent
    or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = (when - (now or datetime.datetime.now(datetime.UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries an idempotent request answered 429/503 (or not answered at all).

    ``max_attempts``: tries in all (1: never retry). ``max_total_wait_s``: the most the client
    waits between tries in all; a wait that would pass it is not made and the last answer
    is raised. ``honour_retry_after``: wait what the server's ``Retry-After`` says, capped at
    ``retry_after_max_s``. Without one, the n-th retry waits a random time between half and
    all of ``min(backoff_max_s, backoff_base_s * 2 ** (n - 1))``.
    ``retry_connection_errors``: a refused or broken connection (not a TLS failure) is
    retried too. ``known_is_success``: a submitted transaction the node committed already
    (``duplicate``) is reported with its status, as a retry after a lost answer needs.
    """

    max_attempts: int = 5
    max_total_wait_s: float = 30.0
    honour_retry_after: bool = True
    retry_after_max_s: float = 10.0
    backoff_base_s: float = 0.25
    backoff_max_s: float = 5.0
    retry_connection_errors: bool = True
    known_is_success: bool = True
    statuses: frozenset[int] = RETRY_STATUSES
    uniform: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("max_total_wait_s", "retry_after_max_s", "backoff_base_s", "backoff_max_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt: every answer reaches the caller as it is."""
        return cls(max_attempts=1, retry_connection_errors=False, known_is_success=False)

    def retries_status(self, status: int) -> bool:
        return status in self.statuses

    def backoff_s(self, retry: int) -> float:
        """The jittered wait before the ``retry``-th retry (1 = the first) without a
        ``Retry-After``."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry - 1))
        return ceiling / 2 + self.uniform() * ceiling / 2

    def wait_s(self, retry: int, retry_after_s: float | None) -> float:
        """How long to wait before the ``retry``-th retry."""
        if retry_after_s is not None and self.honour_retry_after:
            return min(retry_after_s, self.retry_after_max_s)
        return self.backoff_s(retry)

    def next_wait(self, attempt: int, waited_s: float, retry_after_s: float | None) -> float | None:
        """After ``attempt`` tries answered "not now" and ``waited_s`` seconds of waiting,
        how long to wait before the next; None to give up."""
        if attempt >= self.max_attempts:
            return None
        wait = self.wait_s(attempt, retry_after_s)
        if waited_s + wait > self.max_total_wait_s:
            return None
        return wait


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy.never()
