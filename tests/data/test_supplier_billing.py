"""The supplier's chunk service refuses a download while an overdue invoice suspends the
contract's access (terms ``billing.suspend_when_overdue``), before any nonce is claimed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.protocol import Refused, decode_fetch_request, sign_fetch_request
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.supplier import Supplier
from mdtp.node.data.tasks import Tasks
from mdtp.storage.chunkstore import ChunkStore
from tests.compute.test_service import Ledger
from tests.ledger.helpers import CHAIN_ID, DAY_MS, Market


@pytest.mark.parametrize(("suspend", "reason"), [(True, "payment_overdue"), (False, None)])
def test_a_download_is_refused_while_access_is_suspended(
    tmp_path: Path, suspend: bool, reason: str | None
) -> None:
    now = int(time.time() * 1000)  # not at import: the suite may reach this minutes later
    market = Market()
    market.chain.time_ms = now - 60_000
    market.activate(
        "c1",
        use_start_ms=now - DAY_MS,
        use_end_ms=now + DAY_MS,
        disposal_deadline_ms=now + 2 * DAY_MS,
        billing={"payment_due_ms": 0, "suspend_when_overdue": suspend},  # due at activation
    )
    store = ChunkStore(tmp_path / "chunks")
    replay = ReplayGuard(store.db.prefixed_db(b"n/"), 10, now)
    supplier = Supplier(
        node_id="m1",
        chain_id=CHAIN_ID,
        ledger=Ledger(market),
        store=store,
        link=PeerLink("m1", lambda *a: True, lambda *a: None),
        receipts=None,  # type: ignore[arg-type]  # never reached: refused before
        replay=replay,
        pool=ThreadPoolExecutor(1),
        tasks=Tasks(),
        limits=DataLimits(),
        metrics=DataMetrics(CollectorRegistry()),
    )
    raw = sign_fetch_request(
        market.consumer,
        chain_id=CHAIN_ID,
        contract_id="c1",
        first_chunk=0,
        last_chunk=0,
        expires_at_ms=now + 60_000,
    )
    with pytest.raises(Refused) as refused:
        supplier.authorise(decode_fetch_request(raw, CHAIN_ID), "m2")
    # without suspension the next check in line refuses: this node holds no sealed copy
    assert refused.value.reason == (reason or "dataset_unavailable")
    assert replay.held(market.consumer.account_id) == 0
