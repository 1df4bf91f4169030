"""Grants react to what the ledger executed: a successful contract.sign or contract.review
(the transactions that can activate a contract), handed over decoded by the driver."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

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
