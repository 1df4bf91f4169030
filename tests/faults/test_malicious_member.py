"""A malicious member against a real 4-node cluster (f = 1): what it sends over its own
authenticated peer link, signed with its own node key where that helps it, and what it
does as primary. The honest nodes must refuse it before doing work, stay ready and keep
committing every client's transactions.

The attacker is node3's identity (its certificate and node key), connected by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from mdtp.consensus.block import Block, BlockHeader, payload_hash
from mdtp.consensus.messages import Checkpoint, PrePrepare, encode_message, sign_message
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.p2p.frames import encode_frame
from tests.faults.runner import FaultCluster
from tests.support.impersonate import impersonate
from tests.support.processes import metric_value, wait_until
from tests.support.workload import Workload, client, note_tx, register_keys, registered_keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

FRAME_MAX = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def fc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    c = FaultCluster(Path(tmp_path_factory.mktemp("malicious")) / "c")
    c.create()
    try:
        c.start_all()
        yield c
    finally:
        c.close()


def dropped(node: ClusterNode, reason: str) -> float:
    return metric_value(node, "mdtp_consensus_frames_dropped_total", {"reason": reason})


def ready(node: ClusterNode) -> bool:
    try:
        with urllib.request.urlopen(f"http://{node.metrics}/readyz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def rss_kib(node: ClusterNode) -> int:
    pid = cluster.running_pid(node)
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def commits(fc: FaultCluster, node: ClusterNode, key: SigningKey, nonce: int) -> None:
    """A client transaction through ``node`` commits (the node still serves); ``key`` is a
    registered account (:func:`sender`)."""
    raw = note_tx(key, load_genesis(fc.dir / "genesis.json").chain_id, nonce)
    async with client(fc.dir, node.api) as c:
        doc = await c.submit(raw, wait=True, timeout_s=60)
    assert doc["status"] == "committed", doc


async def sender(fc: FaultCluster) -> SigningKey:
    """A fresh account, registered by the first member (the ledger takes nothing else)."""
    (key,) = await registered_keys(fc.dir, 1)
    return key


def attacker_key(fc: FaultCluster) -> SigningKey:
    return load_key(fc.dir / "node3" / "node_key.json")


def far_block(chain_id: str, height: int, txs: tuple[bytes, ...] = ()) -> Block:
    header = BlockHeader(chain_id, height, bytes(32), bytes(32), 1, "node0", payload_hash(txs))
    return Block(header, txs)


async def test_unsigned_proposals_with_hostile_payloads_are_dropped_before_any_work(
    fc: FaultCluster,
) -> None:
    victim = fc.node("node0")
    chain_id = load_genesis(fc.dir / "genesis.json").chain_id
    nested: object = []
    for _ in range(600):
        nested = [nested]
    junk_tx = msgpack.packb(
        [msgpack.packb([chain_id, "x", "s", 1, 1, nested]), b"k" * 32, b"s" * 64]
    )
    before = dropped(victim, "bad_signature")
    _, writer, accepted = await impersonate(fc.dir, victim, "node3", attacker_key(fc))
    assert accepted
    for height in (5, 6):
        pp = PrePrepare(0, height, far_block(chain_id, height, (junk_tx,)), "node0", bytes(64))
        writer.write(encode_frame("consensus", encode_message(pp), FRAME_MAX))
    await writer.drain()
    wait_until(lambda: dropped(victim, "bad_signature") >= before + 2, 30, "both dropped")
    writer.close()
    await commits(fc, victim, await sender(fc), 1)
    assert fc.alive(victim) and ready(victim)


async def test_a_members_far_future_proposal_never_makes_a_node_catch_up(fc: FaultCluster) -> None:
    victim = fc.node("node1")
    chain_id = load_genesis(fc.dir / "genesis.json").chain_id
    key = attacker_key(fc)
    _, writer, accepted = await impersonate(fc.dir, victim, "node3", key)
    assert accepted
    far = 10**9
    # unsigned, and signed by the member itself: neither is the chain's height
    for pp in (
        PrePrepare(0, far, far_block(chain_id, far), "node0", bytes(64)),
        sign_message(PrePrepare(0, far, far_block(chain_id, far), "node3"), chain_id, key.sign),
    ):
        writer.write(encode_frame("consensus", encode_message(pp), FRAME_MAX))
    await writer.drain()
    await asyncio.sleep(3)
    writer.close()
    status = (await fc.status(victim)) or {}
    assert status.get("lagging") is False and status.get("ready") is True, status
    await commits(fc, victim, await sender(fc), 1)


async def test_far_future_checkpoints_from_a_member_do_not_grow_memory(fc: FaultCluster) -> None:
    victim = fc.node("node2")
    chain_id = load_genesis(fc.dir / "genesis.json").chain_id
    key = attacker_key(fc)
    _, writer, accepted = await impersonate(fc.dir, victim, "node3", key)
    assert accepted
    start_kib = rss_kib(victim)
    for batch in range(20):
        for i in range(1000):
            height = 10**6 + (batch * 1000 + i) * 8
            cp = sign_message(
                Checkpoint(height, os.urandom(32), os.urandom(32), "node3"), chain_id, key.sign
            )
            writer.write(encode_frame("consensus", encode_message(cp), FRAME_MAX))
        await writer.drain()
    await asyncio.sleep(3)
    writer.close()
    grown_mib = (rss_kib(victim) - start_kib) / 1024
    assert grown_mib < 40, f"node grew by {grown_mib:.0f} MiB on 20,000 far checkpoints"
    await commits(fc, victim, await sender(fc), 1)
    assert ready(victim)


async def test_a_node_restarted_on_an_idle_chain_resumes_without_phantom_work(
    fc: FaultCluster,
) -> None:
    node = fc.node("node1")
    await commits(fc, node, await sender(fc), 1)
    views_before = {n.id: ((await fc.status(n)) or {}).get("view") for n in fc.nodes}
    fc.stop(node)
    fc.start(node)
    fc.wait_ready(node)
    await asyncio.sleep(12)  # four view timeouts of an idle chain
    assert metric_value(node, "mdtp_consensus_view_changes_total") == 0
    views_after = {n.id: ((await fc.status(n)) or {}).get("view") for n in fc.nodes}
    assert views_after == views_before
    assert ready(node)


def test_a_censoring_primary_is_replaced_and_the_victims_transactions_commit(
    tmp_path: Path,
) -> None:
    victim_key, other = (SigningKey.generate(with_encryption=True) for _ in range(2))
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        # node0 leads view 0 and never proposes the victim's transactions
        c.start_all({"node0": {"MDTP_TEST_CENSOR": victim_key.account_id}})
        node1 = c.node("node1")

        async def run() -> None:
            await register_keys(c.dir, [victim_key, other])

            async def traffic() -> None:  # blocks keep committing while the victim waits
                for nonce in range(1, 1000):
                    await commits(c, node1, other, nonce)
                    await asyncio.sleep(0.2)

            task = asyncio.create_task(traffic())
            try:
                await asyncio.wait_for(commits(c, node1, victim_key, 1), 180)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, AssertionError):
                    await task

        asyncio.run(run())
        views = [metric_value(n, "mdtp_consensus_view") for n in c.nodes[1:]]
        assert min(views) >= 1, views
    finally:
        c.close()


def _suspicions(node: ClusterNode, cause: str) -> float:
    return metric_value(node, "mdtp_consensus_suspicions_total", {"cause": cause})


def test_a_slow_primary_is_replaced_for_throughput_against_the_view_before(
    tmp_path: Path,
) -> None:
    """Aardvark's slow primary (node1, primary of view 1) proposes everything just under
    the progress timeout, so PBFT's timers never fire. Under load view 0 (honest) ends by
    rotation, since nothing has been measured yet; in view 1 the backups measure node1
    against view 0 and suspect it for throughput, and the views then settle on an honest
    primary."""
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        c.start_all({"node1": {"MDTP_TEST_BYZANTINE": "slow-primary"}})
        honest = [c.nodes[0], *c.nodes[2:]]
        load = Workload(c.dir, senders=8)

        async def run() -> None:
            await load.register([n.api for n in honest])
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                await load.run_closed_loop(5, alive=[n.api for n in honest])
                if any(_suspicions(n, "throughput") >= 1 for n in honest):
                    return

        asyncio.run(run())
        assert not load.errors, load.errors[:3]
        assert any(_suspicions(n, "rotation") >= 1 for n in honest)
        assert any(_suspicions(n, "throughput") >= 1 for n in honest)
        assert min(metric_value(n, "mdtp_consensus_view") for n in honest) >= 2
    finally:
        c.close()


def test_a_replica_flooding_signed_messages_costs_only_its_own_budget(tmp_path: Path) -> None:
    """node3 floods every peer with validly signed, useless consensus messages (thousands
    a second). They wait in node3's own queue at the honest nodes, which drop what exceeds
    it and check signatures only within its budget of useless frames, while the clients'
    transactions keep committing through every honest node."""
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        c.start_all({"node3": {"MDTP_TEST_BYZANTINE": "flood-signed"}})
        honest = c.nodes[:3]
        load = Workload(c.dir, senders=8)

        async def run() -> None:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                await load.run_closed_loop(5, alive=[n.api for n in honest])
                if all(dropped(n, "peer_queue_full") > 0 for n in honest):
                    return

        asyncio.run(run())
        assert not load.errors, load.errors[:3]
        # the flood outran its budget at every honest node, and the clients were served
        assert all(dropped(n, "peer_queue_full") > 0 for n in honest)
        assert len(load.acked) >= 40
        assert all(ready(n) for n in honest)
    finally:
        c.close()
