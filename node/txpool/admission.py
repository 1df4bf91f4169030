"""Transaction admission and gossip: how a signed transaction gets into this node's mempool.

Order of checks, cheapest first and before the transaction holds anything: size, form and
signature (batched, off the event loop, :mod:`.sigverify`); not already committed; signed by
its sender's *current* key, sender not revoked, not expired (so nobody can squat another
account's nonces); then the mempool's own checks (nonce window, bounds). A client's
transaction admitted here is gossiped once to every peer; a peer's gossip is admitted the same
way and never forwarded again.

Verified transactions are remembered (bounded, oldest first out), so a transaction is verified
once whether it arrives by API, by gossip or inside a proposal, and a proposal whose
transactions are all known is validated without signature checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from mdtp.consensus.block import Block
from mdtp.node.errors import MdtpError
from mdtp.node.ledger.machine import Ledger, Refusal, TxResult
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import Tx, TxError, decode_tx
from mdtp.node.supervisor import Supervisor
from mdtp.node.txpool.mempool import Mempool, MempoolFull, MempoolReject
from mdtp.node.txpool.sigverify import BatchVerifier
from mdtp.storage.blockstore import BlockStore

BroadcastFn = Callable[[str, Any], None]


class Admission:
    def __init__(
        self,
        *,
        mempool: Mempool,
        verifier: BatchVerifier,
        ledger: Ledger,
        store: BlockStore,
        broadcast: BroadcastFn,
        now_ms: Callable[[], int],
        supervisor: Supervisor,
        on_activity: Callable[[], None],
        verified_cache_max: int,
        gossip_batch_max: int,
    ) -> None:
        self.mempool = mempool
        self.verifier = verifier
        self.ledger = ledger
        self.store = store
        self._broadcast = broadcast
        self._now_ms = now_ms
        self._supervisor = supervisor
        self._on_activity = on_activity
        self._verified_cache_max = verified_cache_max
        self.gossip_batch_max = gossip_batch_max
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._gossip_buffer: list[bytes] = []
        self._gossip_handle: asyncio.Handle | None = None

    # -- verified transactions --------------------------------------------------------------

    def remember(self, tx_id: bytes) -> None:
        self._verified[tx_id] = None
        self._verified.move_to_end(tx_id)
        while len(self._verified) > self._verified_cache_max:
            self._verified.popitem(last=False)

    def validate_payload(self, block: Block) -> str | None:
        """The core's payload check: every transaction was verified before the core saw it."""
        for tx_id in block.tx_ids:
            if tx_id not in self._verified:
                return "unverified_transaction"
        return None

    async def preverify(self, blocks: Sequence[Block]) -> int:
        """Verify the signatures of proposed transactions not seen yet, in one batch;
        returns how many failed (a proposal with any is invalid)."""
        unknown = [
            tx
            for b in blocks
            for tx, tx_id in zip(b.payload, b.tx_ids, strict=True)
            if tx_id not in self._verified
        ]
        failed = 0
        for result in await self.verifier.check_many(unknown) if unknown else []:
            if isinstance(result, TxError):
                failed += 1
            else:
                self.remember(result.id)
        return failed

    # -- admission ---------------------------------------------------------------------------

    async def submit(self, raw: bytes) -> Tx:
        """A client transaction: verify, admit, gossip once. Raises TxError/MempoolError."""
        tx = await self.verifier.check(raw)
        if self.admit(tx):
            self._gossip(raw)
        return tx

    async def submit_many(self, raws: Sequence[bytes]) -> list[Tx | MdtpError]:
        """A client's batch: every signature checked in one batch off the event loop, then
        each admitted in order; per transaction the admitted :class:`Tx` or the error that
        refused it (``TxError``, ``MempoolReject``, ``MempoolFull``). The admitted ones are
        gossiped together (one frame per ``gossip_batch_max``). Raises :class:`VerifierBusy`,
        with nothing admitted, if the verifier has no room for the batch."""
        out: list[Tx | MdtpError] = []
        added = False
        for raw, result in zip(raws, await self.verifier.check_batch(raws), strict=True):
            if isinstance(result, TxError):
                out.append(result)
                continue
            try:
                if self.admit(result, notify=False):
                    added = True
                    self._gossip(raw)
            except (MempoolReject, MempoolFull) as e:
                out.append(e)
            else:
                out.append(result)
        if added:
            self._on_activity()
        return out

    def admit(self, tx: Tx, *, notify: bool = True) -> bool:
        """Keep a verified transaction; False if the mempool already has it. ``notify=False``:
        the caller admits a batch in one turn of the event loop and tells the driver once
        (its proposal check reads the whole mempool, so once per transaction would make a
        batch cost its square)."""
        self.remember(tx.id)
        if self.store.tx_location(tx.id) is not None:
            raise MempoolReject("transaction already committed", reason="duplicate")
        try:
            self.ledger.check_sender(Overlay(self.store.state), tx)
        except Refusal as r:
            raise self.mempool.reject(r.reason, r.detail or r.reason) from None
        if tx.expires_at_ms < self._now_ms():
            raise self.mempool.reject("expired", "the transaction's expires_at has passed")
        added = self.mempool.add(tx)
        if added and notify:
            self._on_activity()
        return added

    def check_gossip(self, body: Any) -> str | None:
        """The shape of a peer's gossip frame: the reason to drop it, or None."""
        if not isinstance(body, list) or not all(isinstance(t, bytes) for t in body):
            return "bad_gossip"
        if len(body) > self.gossip_batch_max * 4:
            return "gossip_too_large"
        return None

    async def admit_gossip(self, raws: list[bytes]) -> tuple[int, int]:
        """Verify and admit a peer's gossip (one batch at a time: the driver's gossip
        intake); returns (bad, useful): how many carry a signature that does not verify,
        which an honest peer never sends (it gossips only what it verified, and unlike size
        or encoding rules a signature does not depend on a node's configuration or
        version), and how many were known already or admitted now."""
        fresh = [(r, i) for r in raws if not self._held(i := hashlib.sha256(r).digest())]
        # one this node verified already (a proposal carried it first, or it was refused
        # for a passing reason) is decoded, not checked again: a signature's validity is a
        # function of the bytes, which its id names
        seen = [i in self._verified for _, i in fresh]
        unseen = [r for (r, _), known in zip(fresh, seen, strict=True) if not known]
        checked = iter(await self.verifier.check_many(unseen) if unseen else [])
        failed = 0
        useful = len(raws) - len(fresh)
        added = False
        for (raw, _), known in zip(fresh, seen, strict=True):
            result = self._decode_verified(raw) if known else next(checked)
            if isinstance(result, TxError):
                self.mempool.metrics.rejected.labels(result.reason).inc()
                failed += result.reason == "bad_signature"
                continue
            with contextlib.suppress(MempoolReject, MempoolFull):  # counted by the mempool
                admitted = self.admit(result, notify=False)
                added |= admitted
                useful += 1
        if added:
            self._on_activity()
        return failed, useful

    def _decode_verified(self, raw: bytes) -> Tx | TxError:
        try:
            return decode_tx(
                raw,
                chain_id=self.verifier.chain_id,
                max_bytes=self.verifier.max_tx_bytes,
                verify=False,
            )
        except TxError as e:  # it decoded when it was verified: only a limit changed since
            return e

    def _held(self, tx_id: bytes) -> bool:
        """Gossip of a transaction we verified is dropped unread only while we hold it or it
        is committed. One verified and then refused for a passing reason (the pool full
        during a burst, its sender's registration or an earlier nonce not here yet) is
        admitted when a peer gossips it again: remembering it as done would leave this node
        without it for good -- as primary it could then never propose the sender's later
        nonces, and one backup's suspicion alone does not change the view."""
        if tx_id not in self._verified:
            return False
        return tx_id in self.mempool or self.store.tx_location(tx_id) is not None

    def regossip(self) -> None:
        """Offer the oldest waiting transactions to every peer again. Gossip is sent once and
        may be lost, and a primary that never saw a transaction cannot propose it; peers that
        already verified one drop it unread (by its hash)."""
        batch = self.mempool.sample(self.gossip_batch_max)
        if batch:
            self._broadcast("txs", batch)

    def _gossip(self, raw: bytes) -> None:
        self._gossip_buffer.append(raw)
        if len(self._gossip_buffer) >= self.gossip_batch_max:
            self._flush_gossip()
        elif self._gossip_handle is None:
            # everything submitted in this turn of the event loop travels in one frame
            self._gossip_handle = asyncio.get_running_loop().call_soon(self._flush_gossip)

    def _flush_gossip(self) -> None:
        if self._gossip_handle is not None:
            self._gossip_handle.cancel()
            self._gossip_handle = None
        if self._gossip_buffer:
            self._broadcast("txs", self._gossip_buffer)
            self._gossip_buffer = []

    # -- commits -----------------------------------------------------------------------------

    def wait_committed(self, tx_id: bytes) -> asyncio.Future[None]:
        """Done when ``tx_id`` is committed, failed or dropped; a waiter that gives up
        cancels it, and then it is forgotten at once (a batch's ``wait`` leaves up to 1,000
        behind at a timeout, and a transaction that never settles would otherwise keep
        them)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        settled = self.store.tx_location(tx_id) is not None
        if settled or self.mempool.dropped_reason(tx_id) is not None:
            fut.set_result(None)
        else:
            self._waiters.setdefault(tx_id, []).append(fut)
            fut.add_done_callback(lambda f: self._forget_waiter(tx_id, f))
        return fut

    def _forget_waiter(self, tx_id: bytes, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled():
            return
        waiters = self._waiters.get(tx_id)
        if waiters is not None and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._waiters[tx_id]

    def on_commit(self, _height: int, results: Sequence[TxResult]) -> None:
        dropped = self.mempool.committed(
            [(r.tx_id, r.tx.sender if r.tx else None, r.ok, r.reason) for r in results]
        )
        self._settle([r.tx_id for r in results])
        self._settle(dropped)

    def evict_expired(self) -> None:
        """Drop what expired unexecuted; whoever waits for it hears now."""
        self._settle(self.mempool.evict_expired(self._now_ms()))

    def _settle(self, tx_ids: Sequence[bytes]) -> None:
        """These have a definitive status (committed, failed or dropped): wake their
        waiters."""
        for tx_id in tx_ids:
            for fut in self._waiters.pop(tx_id, []):
                if not fut.done():
                    fut.set_result(None)

    def close(self) -> None:
        if self._gossip_handle is not None:
            self._gossip_handle.cancel()
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()
