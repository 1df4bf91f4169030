"""No transaction a node accepted ends without a definitive status, even one it accepted
while it lagged behind the chain. Real 4-node cluster; everything node3 sends and hears is
delayed by seconds, so it stays connected (it reaches a quorum and takes submissions) while
its state is seconds old.

Through node3 a client sends, for nonces that node0 has just committed, a second
transaction of the same sender (node3 still thinks each nonce free), transactions of a fresh
account (they must commit) and one with a nonce gap (it can never run, so it expires). Every
one node3 accepted must end, on node3, committed, failed or dropped with its reason; one
submitted with ``wait`` hears its end at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity.genesis import load_genesis
from mdtp.node.sdk.client import ApiError, NodeClient
from tests.faults.runner import FaultCluster
from tests.support.processes import metric_value
from tests.support.workload import client, note_tx, registered_keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

DELAY_MS = 2_000  # how late node3 hears (and is heard)
ROUNDS = 8  # nonces taken twice: through node0 (first) and through node3
GAP_LIFETIME_MS = 4_000
SETTLE_S = 90.0
DEFINITIVE = {"committed", "failed", "dropped"}


def test_a_lagging_node_gives_every_transaction_it_accepted_a_definitive_status(
    tmp_path: Path,
) -> None:
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        c.start_all()
        asyncio.run(scenario(c))
    finally:
        c.close()


async def scenario(c: FaultCluster) -> None:
    node0, lagger = c.node("node0"), c.node("node3")
    chain_id = load_genesis(c.dir / "genesis.json").chain_id
    twice, fresh, gap = await registered_keys(c.dir, 3)
    c.proxies.set_mode(c.links_of(lagger), "delay", DELAY_MS)
    expect: dict[str, set[tuple[str, str]]] = {}  # tx id -> acceptable (status, reason)
    stale_ok = {("dropped", "nonce_used"), ("failed", "bad_nonce")}
    async with client(c.dir, node0.api) as fast, client(c.dir, lagger.api) as slow:
        refused = 0
        waiting: asyncio.Task[dict[str, Any]] | None = None
        for nonce in range(1, ROUNDS + 1):
            first = note_tx(twice, chain_id, nonce, body={"key": "k", "value": b"node0"})
            done = await fast.submit(first, wait=True, timeout_s=60)
            assert done["status"] == "committed", done
            second = note_tx(twice, chain_id, nonce, body={"key": "k", "value": b"node3"})
            if waiting is None:  # a client that waits hears the end, not a timeout
                waiting = asyncio.create_task(slow.submit(second, wait=True, timeout_s=60))
                continue
            try:
                doc = await slow.submit(second)
            except ApiError as e:  # node3 already knew: refused at once is definitive too
                assert e.reason in {"stale_nonce", "nonce_taken"}, e
                refused += 1
                continue
            expect[doc["id"]] = stale_ok
        for nonce in (1, 2, 3):
            doc = await slow.submit(note_tx(fresh, chain_id, nonce))
            expect[doc["id"]] = {("committed", "")}
        doc = await slow.submit(note_tx(gap, chain_id, 2, lifetime_ms=GAP_LIFETIME_MS))
        expect[doc["id"]] = {("dropped", "expired")}
        assert refused <= ROUNDS // 2, f"node3 was not behind: it refused {refused}"

        assert waiting is not None
        started = time.monotonic()
        ended = await waiting
        assert (ended["status"], ended.get("reason", "")) in stale_ok, ended
        assert time.monotonic() - started < 50, "the waiter heard of the drop only at timeout"

        ends = await settle(slow, expect)
    wrong = {i: e for i, e in ends.items() if e not in expect[i]}
    assert not wrong, f"ended otherwise than expected: {wrong} (expected {expect})"
    assert metric_value(lagger, "mdtp_mempool_dropped_total", {"reason": "nonce_used"}) >= 1


async def settle(
    node: NodeClient, expect: dict[str, set[tuple[str, str]]]
) -> dict[str, tuple[str, str]]:
    """Poll ``GET /v1/tx`` on ``node`` until every transaction has a definitive status;
    (status, reason) of each."""
    ends: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        for tx_id in sorted(set(expect) - set(ends)):
            doc = await node.tx(tx_id)  # never 404: the node that accepted it remembers
            if doc["status"] in DEFINITIVE:
                ends[tx_id] = (doc["status"], str(doc.get("reason") or ""))
        if len(ends) == len(expect):
            return ends
        await asyncio.sleep(0.5)
    raise AssertionError(f"no definitive status after {SETTLE_S:g} s: {set(expect) - set(ends)}")
