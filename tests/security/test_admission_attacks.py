"""Attacks on transaction intake (issue #12 items 1, 2 and 9) on a real 4-node cluster: a
hostile encoding that once killed the verifier task, and transactions that try to hold other
accounts' nonces or slip in expired. Each asserts the refusal with its reason code, that the
node still commits through the same port afterwards, and that memory and descriptors come back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError
from tests.cluster.test_bad_input import reason_of
from tests.support.processes import metric_value, wait_until
from tests.support.workload import chain_id_of, client, note_tx, registered_keys

pytestmark = [pytest.mark.security, pytest.mark.cluster]

RSS_SLACK_KB = 64 * 1024
FD_SLACK = 8


def _usage(node: cluster.ClusterNode) -> tuple[int, int]:
    pid = cluster.running_pid(node)
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.fixture(autouse=True)
def resources_come_back(running_cluster: Path) -> Iterator[None]:
    nodes = cluster.load_cluster(running_cluster)
    before = {n.id: _usage(n) for n in nodes}
    yield
    for n in nodes:
        rss0, fds0 = before[n.id]

        def back(node: cluster.ClusterNode = n, rss0: int = rss0, fds0: int = fds0) -> bool:
            rss, fds = _usage(node)
            return rss <= rss0 + RSS_SLACK_KB and fds <= fds0 + FD_SLACK

        wait_until(back, 60, f"{n.id} memory and descriptors back")


async def test_a_deeply_nested_transaction_is_refused_and_intake_goes_on(
    running_cluster: Path,
) -> None:
    node = cluster.load_cluster(running_cluster)[3]
    chain = chain_id_of(running_cluster)
    body: object = {}
    for _ in range(600):
        body = {"a": body}
    unsigned = msgpack.packb([chain, "note.set", "s", 1, 1, body], use_bin_type=True)
    hostile = msgpack.packb([unsigned, b"k" * 32, b"s" * 64], use_bin_type=True)
    (key,) = await registered_keys(running_cluster, 1)
    async with client(running_cluster, node.api) as c:
        for _ in range(3):
            assert await reason_of(c, hostile) == "malformed"
        done = await c.submit(note_tx(key, chain, 1), wait=True)
        assert done["status"] == "committed"


async def test_nobody_can_squat_another_accounts_nonces(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[2]
    chain = chain_id_of(running_cluster)
    victim, attacker = await registered_keys(running_cluster, 2)
    async with client(running_cluster, node.api) as c:
        for nonce in (1, 2, 3):
            squat = note_tx(attacker, chain, nonce, sender=victim.account_id)
            assert await reason_of(c, squat) == "wrong_key"
        stale = note_tx(victim, chain, 1, expires_at_ms=int(time.time() * 1000) - 1)
        assert await reason_of(c, stale) == "expired"
        for nonce in (1, 2, 3):  # the victim's own transactions are not blocked
            done = await c.submit(note_tx(victim, chain, nonce), wait=True)
            assert done["status"] == "committed"
    assert metric_value(node, "mdtp_mempool_rejected_total", {"reason": "wrong_key"}) >= 3


async def test_a_connection_flooding_refused_transactions_is_slowed_and_others_commit(
    running_cluster: Path,
) -> None:
    """Refusals come back as fast as the node produces them, so a client in a closed loop
    of junk would take the event loop from everyone. Past its budget a connection's
    submissions wait and get ``429 too_many_refused``; another connection still commits."""
    node = cluster.load_cluster(running_cluster)[1]
    chain = chain_id_of(running_cluster)
    (key,) = await registered_keys(running_cluster, 1)
    valid = note_tx(key, chain, 1)
    forged = valid[:-1] + bytes([valid[-1] ^ 1])  # a bad signature
    statuses: list[tuple[int, str]] = []
    started = time.monotonic()
    async with client(running_cluster, node.api, connections=1) as flood:
        for _ in range(60):
            try:
                await flood.submit(forged)
            except ApiError as e:
                statuses.append((e.status, e.reason))
    elapsed = time.monotonic() - started
    assert set(statuses) == {(400, "bad_signature"), (429, "too_many_refused")}, set(statuses)
    # at most a second's worth at once, then about the budget per second
    assert elapsed >= 1.0
    async with client(running_cluster, node.api) as c:
        done = await c.submit(note_tx(key, chain, 1), wait=True)
        assert done["status"] == "committed"
    assert metric_value(node, "mdtp_api_requests_total", {"route": "/v1/tx", "status": "429"}) >= 1
