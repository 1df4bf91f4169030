"""Grants react to what the ledger executed: a successful contract.sign or contract.review
(the transactions that can activate a contract), handed over decoded by the driver; a grant
that fails is retried in a loop with a capped backoff, and stops when its task is cancelled."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import mdtp.node.data.grants as grants_module
from mdtp.node.data.grants import Grants
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import TxResult
from mdtp.node.ledger.tx import decode_tx, sign_tx
from mdtp.storage.chunkstore import ChunkStore
from tests.data.fakes import CHAIN, FakeChain
from tests.ledger.helpers import DAY_MS, Market


class RecordingGrants(Grants):
    granted: list[str]

    async def grant(self, contract_id: str) -> None:
        self.granted.append(contract_id)


def executed(type_: str, body: dict[str, object], *, ok: bool = True) -> TxResult:
    key = SigningKey.generate()
    raw = sign_tx(
        key, chain_id=CHAIN, type_=type_, sender=key.account_id, nonce=1, expires_at_ms=1, body=body
    )
    tx = decode_tx(raw, chain_id=CHAIN)
    return TxResult(tx.id, 0, ok, "" if ok else "bad_version", tx=tx)


def test_grants_follow_executed_sign_and_review_only(tmp_path: Path) -> None:
    chain, node_key = FakeChain(), SigningKey.generate()
    store = ChunkStore(tmp_path / "chunks")

    async def run() -> list[str]:
        tasks = Tasks()
        grants = RecordingGrants(
            node_id="node0",
            ledger=chain,
            submitter=chain,
            store=store,
            keys=KeyStore(store, node_key),
            signer=NodeSigner(node_key, CHAIN, chain, chain, chain),
            tasks=tasks,
            metrics=DataMetrics(CollectorRegistry()),
        )
        grants.granted = []
        grants.on_commit(
            7,
            [
                executed("contract.sign", {"contract_id": "signed"}),
                executed("contract.review", {"contract_id": "reviewed"}),
                executed("contract.sign", {"contract_id": "refused"}, ok=False),
                executed("contract.offer", {"contract_id": "offered"}),
                executed("note.set", {"key": "contract.sign", "value": "contract.sign"}),
                executed("contract.sign", {"contract_id": 5}),
                TxResult(b"\x00" * 32, 6, False, "malformed"),  # did not decode
            ],
        )
        await asyncio.sleep(0)
        await tasks.cancel_all()
        return grants.granted

    try:
        assert sorted(asyncio.run(run())) == ["reviewed", "signed"]
    finally:
        store.close()


def test_a_consumer_rotating_its_encryption_key_is_granted_again(tmp_path: Path) -> None:
    chain, node_key = FakeChain(), SigningKey.generate()
    store = ChunkStore(tmp_path / "chunks")
    regranted: list[str | None] = []

    class RecordingRegrants(Grants):
        async def _grant_all(
            self, *, account: str | None = None, dataset: str | None = None
        ) -> None:
            regranted.append(account)

    async def run() -> None:
        tasks = Tasks()
        grants = RecordingRegrants(
            node_id="node0",
            ledger=chain,
            submitter=chain,
            store=store,
            keys=KeyStore(store, node_key),
            signer=NodeSigner(node_key, CHAIN, chain, chain, chain),
            tasks=tasks,
            metrics=DataMetrics(CollectorRegistry()),
        )
        rotated = executed("account.rotate_key", {"encryption_public_key": b"\x01" * 32})
        signing_only = executed("account.rotate_key", {"public_key": b"\x02" * 32})
        refused = executed("account.rotate_key", {"encryption_public_key": b"\x03" * 32}, ok=False)
        grants.on_commit(8, [rotated, signing_only, refused])
        await asyncio.sleep(0)
        await tasks.cancel_all()
        assert rotated.tx is not None
        assert regranted == [rotated.tx.sender]

    try:
        asyncio.run(run())
    finally:
        store.close()


class _Ledger:
    """The committed state of a :class:`Market` (tests.ledger.helpers), as a node reads it."""

    def __init__(self, market: Market) -> None:
        self.market = market

    @property
    def state(self) -> Any:
        return self.market.chain.kv

    def tip(self) -> tuple[int, bytes]:
        return 0, b""

    def record(self, height: int) -> None:
        return None

    def tx_location(self, tx_id: bytes) -> None:
        return None


def _depth() -> int:
    frame: FrameType | None = sys._getframe(1)
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


class _FailingSigner:
    """Refuses the first ``failures`` submits (as a node whose driver is down would)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.depths: list[int] = []
        self.block = False  # submits wait until cancelled
        self.failed = asyncio.Event()
        self.entered = asyncio.Event()

    async def submit(self, type_: str, body: dict[str, Any]) -> bytes:
        self.calls += 1
        self.depths.append(_depth())
        if self.block:
            self.entered.set()
            await asyncio.Event().wait()
        if self.calls <= self.failures:
            self.failed.set()
            raise RuntimeError("the driver is not running")
        return b"t" * 32


class _Submitter:
    async def wait_committed(self, tx_id: bytes) -> None:
        return None


def _granting_bed(tmp_path: Path, failures: int) -> tuple[Grants, _FailingSigner, ChunkStore]:
    """An ACTIVE contract ``c1`` of this node (m1) that needs a grant until a submit succeeds."""
    market = Market()
    now = int(time.time() * 1000)
    market.chain.time_ms = now - 60_000
    market.activate(
        "c1",
        use_start_ms=now - DAY_MS,
        use_end_ms=now + DAY_MS,
        disposal_deadline_ms=now + 2 * DAY_MS,
    )
    store = ChunkStore(tmp_path / "chunks")
    keys = KeyStore(store, market.node)
    keys.put("ds1", b"k" * 32)
    signer = _FailingSigner(failures)

    class UntilGranted(Grants):
        def _needs_grant(self, contract: dict[str, Any]) -> bool:
            return signer.calls <= signer.failures  # a grant is on the ledger once one went out

    grants = UntilGranted(
        node_id="m1",
        ledger=_Ledger(market),
        submitter=_Submitter(),  # type: ignore[arg-type]
        store=store,
        keys=keys,
        signer=signer,  # type: ignore[arg-type]
        tasks=Tasks(),
        metrics=DataMetrics(CollectorRegistry()),
    )
    return grants, signer, store


def test_a_grant_that_keeps_failing_is_retried_in_a_loop_with_a_capped_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = 3 * sys.getrecursionlimit()  # a retry by recursion runs out of stack long before
    grants, signer, store = _granting_bed(tmp_path, failures)
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:
        pauses.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the pauses grants.py takes
    logging.getLogger("mdtp.data").disabled = True  # one error line per failed attempt
    try:
        asyncio.run(grants.grant("c1"))
    finally:
        logging.getLogger("mdtp.data").disabled = False
        store.close()
    assert signer.calls == failures + 1, "retried until a grant went out, then stopped"
    assert len(set(signer.depths)) == 1, "every attempt runs at the same stack depth"
    cap = grants_module.GRANT_RETRY_MAX_S
    assert pauses[:6] == [2, 4, 8, 16, 32, cap]
    assert set(pauses[6:]) == {cap} and len(pauses) == failures


def test_a_cancelled_grant_stops_retrying_in_its_pause_or_its_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grants, signer, store = _granting_bed(tmp_path, failures=10**9)

    async def run() -> None:
        task = asyncio.create_task(grants.grant("c1"))
        await signer.failed.wait()  # the task is now in the pause after a failed attempt
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        calls = signer.calls
        await asyncio.sleep(0.05)
        assert signer.calls == calls and not grants._granting
        signer.block = True  # now in the submit itself
        task = asyncio.create_task(grants.grant("c1"))
        await signer.entered.wait()
        assert "c1" in grants._granting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not grants._granting, "a cancelled grant does not block the next one"

    monkeypatch.setattr(grants_module, "GRANT_RETRY_S", 0.001)
    logging.getLogger("mdtp.data").disabled = True
    try:
        asyncio.run(run())
    finally:
        logging.getLogger("mdtp.data").disabled = False
        store.close()
