"""Every download on the ledger: written ahead, one receipt per request, retried until the
ledger holds it, resumed after a restart, and counted against the quota until then."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.receipts import Download, Receipts
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.state import MemoryKV
from mdtp.node.ledger.trading import layout
from mdtp.storage.chunkstore import ChunkStore
from tests.data.fakes import CHAIN, FakeChain


def receipts(chain: FakeChain, store: ChunkStore, tasks: Tasks) -> Receipts:
    key = SigningKey.generate()
    return Receipts(
        space=store.db.prefixed_db(b"r/"),
        store=store,
        ledger=chain,
        submitter=chain,
        signer=NodeSigner(key, CHAIN, chain, chain, chain),
        tasks=tasks,
        metrics=DataMetrics(CollectorRegistry()),
    )


def download(request: bytes = b"\x01" * 32) -> Download:
    return Download(request, "c1", "ds1", 0, authorised_height=7, authorised_at_ms=1_000)


def stored(tmp_path: Path) -> ChunkStore:
    store = ChunkStore(tmp_path)
    for i in range(3):
        store.put_chunk("ds1", i, bytes([i]) * 100)
    return store


def test_a_served_download_is_posted_with_its_request_and_counts_until_recorded(
    tmp_path: Path,
) -> None:
    chain, store = FakeChain(), stored(tmp_path)

    async def run() -> None:
        tasks = Tasks()
        r = receipts(chain, store, tasks)
        d = download()
        r.open(d)
        assert r.uncounted("c1") == 1  # counts before the first chunk leaves
        r.sending(d, 100)
        r.sending(d, 100)
        await r.close(d)
        [tx] = chain.submitted
        assert tx.type == "delivery.receipt"
        assert (tx.body["first_chunk"], tx.body["last_chunk"], tx.body["byte_count"]) == (0, 1, 200)
        assert (tx.body["request_id"], tx.body["authorised_height"]) == (d.request_id, 7)
        assert r.uncounted("c1") == 1  # not on the ledger yet: still counted here
        assert isinstance(chain.state, MemoryKV)
        chain.state.data[layout.receipt_request_key("c1", d.request_id)] = tx.id
        await asyncio.sleep(2.5)
        assert r.uncounted("c1") == 0 and list(store.db.prefixed_db(b"r/")) == []
        await tasks.cancel_all()

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_a_download_that_sent_nothing_is_no_download(tmp_path: Path) -> None:
    chain, store = FakeChain(), stored(tmp_path)

    async def run() -> None:
        tasks = Tasks()
        r = receipts(chain, store, tasks)
        d = download()
        r.open(d)
        assert await r.close(d) is None
        assert r.uncounted("c1") == 0 and chain.submitted == []
        await tasks.cancel_all()

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_a_download_cut_by_a_crash_is_recorded_after_the_restart(tmp_path: Path) -> None:
    chain, store = FakeChain(), stored(tmp_path)

    async def serve_then_crash() -> None:
        r = receipts(chain, store, Tasks())
        d = download()
        r.open(d)
        r.sending(d, 100)  # the process dies here, mid-stream

    asyncio.run(serve_then_crash())
    store.close()
    store = ChunkStore(tmp_path)

    async def restart() -> None:
        tasks = Tasks()
        r = receipts(chain, store, tasks)
        r.resume()
        assert r.uncounted("c1") == 1
        await asyncio.sleep(0.1)
        [tx] = chain.submitted
        assert (tx.body["last_chunk"], tx.body["byte_count"]) == (0, 100)
        await tasks.cancel_all()

    try:
        asyncio.run(restart())
    finally:
        store.close()
