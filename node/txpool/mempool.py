"""The bounded mempool: validated transactions waiting to be proposed.

Entry (``add``) checks, cheapest first: size (before decoding), form and chain id, duplicate
by id, the nonce window against the committed state, then the bounds — by count and by
bytes — and only then is the transaction kept. Signature verification happens before
``add`` in batches off the event loop (see ``node.sigverify``). A full pool raises
``MempoolFull``: the API turns that into HTTP 503 with Retry-After, gossip into a counted drop.

Proposals take transactions in arrival order, at most one run of consecutive nonces per
sender starting at the sender's next committed nonce, so a proposal never contains a
nonce gap that would make the rest of the sender's transactions fail. Transactions handed to
a proposal are marked in flight until their block commits (then evicted) or the view changes
(then released).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from mdtp.node.errors import MdtpError
from mdtp.node.ledger.tx import Tx

# how many dropped transactions ``GET /v1/tx`` can still explain (about 100 bytes each)
DROPPED_REMEMBERED = 50_000
# senders whose committed nonce is remembered between two commits (then the cache starts over)
NONCE_CACHE_MAX = 10_000


class MempoolFull(MdtpError):
    reason = "mempool_full"


class MempoolReject(MdtpError):
    reason = "rejected"


@dataclass(frozen=True)
class MempoolLimits:
    max_txs: int = 50_000
    max_bytes: int = 64 * 1024 * 1024
    nonce_window: int = 1_000


class MempoolMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.size = Gauge(
            "mdtp_mempool_transactions", "Transactions in the mempool", registry=registry
        )
        self.bytes = Gauge(
            "mdtp_mempool_bytes", "Bytes of transactions in the mempool", registry=registry
        )
        self.rejected = Counter(
            "mdtp_mempool_rejected_total",
            "Transactions refused on entry, by reason",
            ["reason"],
            registry=registry,
        )
        self.added = Counter("mdtp_mempool_added_total", "Transactions accepted", registry=registry)
        self.dropped = Counter(
            "mdtp_mempool_dropped_total",
            "Accepted transactions that left without being executed, by reason",
            ["reason"],
            registry=registry,
        )


class Mempool:
    def __init__(
        self,
        limits: MempoolLimits,
        committed_nonce: Callable[[str], int],
        metrics: MempoolMetrics,
    ) -> None:
        self.limits = limits
        self._read_nonce = committed_nonce
        # committed nonces read since the last commit (each sender's read and decoded once
        # per block, not once per transaction); cleared by :meth:`committed`, bounded
        self._nonces: dict[str, int] = {}
        self.metrics = metrics
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()
        self._by_sender: dict[str, dict[int, bytes]] = {}
        self._in_flight: set[bytes] = set()
        self._bytes = 0
        # transactions that left without being executed, and why (bounded, newest kept):
        # ``GET /v1/tx`` reports them as dropped instead of not knowing them
        self._dropped: OrderedDict[bytes, str] = OrderedDict()
        # bumped whenever the set of proposable transactions may have changed
        self.generation = 0
        # read when scraped (set per transaction, they cost more than the rest of ``add``)
        metrics.size.set_function(lambda: len(self._txs))
        metrics.bytes.set_function(lambda: self._bytes)

    def committed_nonce(self, sender: str) -> int:
        """The sender's last committed nonce. Remembered until the next commit: between
        two commits the committed state does not change (read during a commit, it may be
        the new nonce already, never a stale one after :meth:`committed`)."""
        nonce = self._nonces.get(sender)
        if nonce is None:
            if len(self._nonces) >= NONCE_CACHE_MAX:
                self._nonces.clear()
            nonce = self._nonces[sender] = self._read_nonce(sender)
        return nonce

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Tx | None:
        """The held transaction with this id, as admission decoded and verified it."""
        return self._txs.get(tx_id)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def reject(self, reason: str, message: str) -> MempoolReject:
        self.metrics.rejected.labels(reason).inc()
        return MempoolReject(message, reason=reason)

    def add(self, tx: Tx) -> bool:
        """Keep ``tx``; False if already here. Raises MempoolReject / MempoolFull."""
        tx_id = tx.id
        if tx_id in self._txs:
            return False
        committed = self.committed_nonce(tx.sender)
        if tx.nonce <= committed:
            raise self.reject("stale_nonce", f"nonce {tx.nonce} already used (last {committed})")
        if tx.nonce > committed + self.limits.nonce_window:
            raise self.reject(
                "future_nonce",
                f"nonce {tx.nonce} is more than {self.limits.nonce_window} ahead of {committed}",
            )
        slots = self._by_sender.setdefault(tx.sender, {})
        if tx.nonce in slots:
            raise self.reject(
                "nonce_taken", f"another transaction with nonce {tx.nonce} is pending"
            )
        size = len(tx.signed_bytes)
        if len(self._txs) >= self.limits.max_txs or self._bytes + size > self.limits.max_bytes:
            if not slots:
                del self._by_sender[tx.sender]
            self.metrics.rejected.labels("mempool_full").inc()
            raise MempoolFull("mempool is full; retry later")
        self._txs[tx_id] = tx
        self._dropped.pop(tx_id, None)
        slots[tx.nonce] = tx_id
        self._bytes += size
        self.metrics.added.inc()
        self._changed()
        return True

    def _changed(self) -> None:
        self.generation += 1

    def _remove(self, tx_id: bytes) -> None:
        tx = self._txs.pop(tx_id, None)
        if tx is None:
            return
        self._bytes -= len(tx.signed_bytes)
        self._in_flight.discard(tx_id)
        slots = self._by_sender.get(tx.sender)
        if slots is not None:
            slots.pop(tx.nonce, None)
            if not slots:
                del self._by_sender[tx.sender]

    def _drop(self, tx_id: bytes, reason: str) -> None:
        """Remove a transaction that will never be executed, and remember why."""
        self._remove(tx_id)
        self._dropped[tx_id] = reason
        self._dropped.move_to_end(tx_id)
        while len(self._dropped) > DROPPED_REMEMBERED:
            self._dropped.popitem(last=False)
        self.metrics.dropped.labels(reason).inc()

    def dropped_reason(self, tx_id: bytes) -> str | None:
        """Why a transaction this node accepted left without being executed, if it did."""
        return self._dropped.get(tx_id)

    def take(self, max_txs: int, max_bytes: int) -> list[Tx]:
        """Transactions for a proposal, in arrival order, gap-free per sender, after the
        ones in flight. Nothing is marked: see :meth:`mark_in_flight`."""
        out: list[Tx] = []
        size = 0
        next_nonce: dict[str, int] = {}
        for tx_id, tx in self._txs.items():
            if len(out) >= max_txs:
                break
            if tx_id in self._in_flight:
                nxt = next_nonce.get(tx.sender)
                if nxt is None or tx.nonce >= nxt:
                    next_nonce[tx.sender] = tx.nonce + 1
                continue
            want = next_nonce.get(tx.sender)
            if want is None:
                want = self.committed_nonce(tx.sender) + 1
                # nonces already in flight come before this one
                slots = self._by_sender.get(tx.sender, {})
                while slots.get(want) in self._in_flight:
                    want += 1
            if tx.nonce != want:
                continue
            n = len(tx.signed_bytes)
            if size + n > max_bytes:
                break
            out.append(tx)
            size += n
            next_nonce[tx.sender] = tx.nonce + 1
        return out

    def mark_in_flight(self, tx_ids: list[bytes]) -> None:
        """These were proposed (seen in our own PRE-PREPARE): not offered again until their
        block commits or the view changes."""
        self._in_flight.update(i for i in tx_ids if i in self._txs)

    def committed(self, results: list[tuple[bytes, str | None, bool, str]]) -> list[bytes]:
        """After a block: evict what it settled, keep what may still succeed; returns the
        ids dropped (see :meth:`dropped_reason`).

        ``results`` are (tx id, sender or None if it did not decode, ok, reason) of every
        transaction the block executed. A transaction that failed only because its nonce
        was not yet due (``bad_nonce`` with a nonce above the committed one) stays and is
        offered again; everything else in the block leaves, and every pending transaction
        whose nonce the block consumed is dropped (``nonce_used``: another transaction of its
        sender took that nonce — one this pool may never have seen, e.g. when this node
        accepted its rival while it lagged behind the chain).
        """
        self._nonces.clear()  # the block moved them
        senders = {sender for _, sender, _, _ in results if sender in self._by_sender}
        for tx_id, _, ok, reason in results:
            if tx_id not in self._txs:
                continue
            if ok or reason != "bad_nonce":
                self._remove(tx_id)
            else:
                self._in_flight.discard(tx_id)
        dropped = []
        for sender in senders:
            nonce = self.committed_nonce(sender)
            for n, tx_id in list(self._by_sender.get(sender, {}).items()):
                if n <= nonce:
                    self._drop(tx_id, "nonce_used")
                    dropped.append(tx_id)
        self._changed()
        return dropped

    def has_proposable(self) -> bool:
        """True if some pending transaction is not in flight and is its sender's next."""
        for sender, slots in self._by_sender.items():
            want = self.committed_nonce(sender) + 1
            while slots.get(want) in self._in_flight:
                want += 1
            if want in slots:
                return True
        return False

    def sample(self, count: int) -> list[bytes]:
        """Signed bytes of up to ``count`` pending transactions (oldest first)."""
        out: list[bytes] = []
        for tx in self._txs.values():
            if len(out) >= count:
                break
            out.append(tx.signed_bytes)
        return out

    def release_in_flight(self) -> None:
        """The proposals these were in did not commit (view change): offer them again."""
        self._in_flight.clear()
        self.generation += 1

    def evict_expired(self, now_ms: int) -> list[bytes]:
        """Drop what expired before it was executed (``expired``); returns their ids."""
        expired = [i for i, tx in self._txs.items() if tx.expires_at_ms < now_ms]
        for tx_id in expired:
            self._drop(tx_id, "expired")
        self._changed()
        return expired
