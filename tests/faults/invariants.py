"""The invariants every fault scenario must keep, checked against live nodes.

1. **Agreement**: at every height that two nodes both have, they report the same block hash
   and state root; and the chain never changes under us: every (height, hash, root) seen in
   an earlier check is still there, on every node, in every later check.
2. **Durability, exactly once**: every transaction a node acknowledged as committed is
   committed on every node at the same (height, index); the block at that height lists it
   at that index; if it appears in more than one block (re-proposed after a view change),
   the index points at its first appearance; and each sender's committed nonce on every
   node equals the number of its transactions that committed (nonces rise by exactly one
   per applied transaction, so none was applied twice and none skipped).
3. **Recovery**: after a fault heals, every node is within ``LAG_BOUND`` blocks of the
   highest within ``RECOVERY_TIMEOUT_S`` (see :mod:`tests.faults.runner`).
4. **No evidence against honest nodes**: with no Byzantine node, ``GET /v1/evidence`` is
   empty everywhere; an honest node that forgot its votes across a crash and voted again
   differently shows up here as an equivocator.
5. **Monotone metrics**: ``mdtp_consensus_height`` and
   ``mdtp_consensus_stable_checkpoint_height`` of a node never go backwards — not within a
   process, not across a kill -9 and restart (:class:`MetricSampler`).

A violation is recorded as a line of text, not raised, so a long run can report all of them;
the CI tests assert the list is empty.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.sdk.client import ApiError
from tests.support.workload import client

MONOTONE_METRICS = ("mdtp_consensus_height", "mdtp_consensus_stable_checkpoint_height")


@dataclass
class Checker:
    cluster_dir: Path
    acked: dict[str, str] = field(default_factory=dict)  # tx id -> sender account
    violations: list[str] = field(default_factory=list)
    known_chain: list[tuple[str, str]] = field(default_factory=list)  # (hash, root) by height
    first_seen: dict[str, int] = field(default_factory=dict)  # tx id -> first height in chain
    _block_txs: dict[int, list[str]] = field(default_factory=dict)
    _checked_acked: set[str] = field(default_factory=set)
    _sender_nonces: dict[str, int] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.cluster_dir / "ca" / "ca.pem"

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def record_acked(self, acked: dict[str, str]) -> None:
        self.acked.update(acked)

    async def check_chains(self, apis: list[str]) -> int:
        """Agreement and prefix stability over ``apis``; returns the common height."""

        async def fetch_rows(api: str) -> list[list[Any]]:
            async with client(self.cluster_dir, api, timeout_s=30) as c:
                height = (await c.status())["height"]
                return await c.chain(1, height) if height else []

        rows_by_node = dict(zip(apis, await asyncio.gather(*map(fetch_rows, apis)), strict=True))
        common = min(len(r) for r in rows_by_node.values())
        longest = max(rows_by_node.values(), key=len)
        for api, rows in rows_by_node.items():
            for i, row in enumerate(rows):
                if row[0] != i + 1:
                    self.violation(f"{api}: chain row {i} has height {row[0]}, not {i + 1}")
                    break
                entry = (row[1], row[2])
                if entry != (longest[i][1], longest[i][2]):
                    self.violation(
                        f"height {i + 1}: {api} has hash {row[1][:12]} root {row[2][:12]}, "
                        f"another node has {longest[i][1][:12]} {longest[i][2][:12]}"
                    )
                    break
                if i < len(self.known_chain) and entry != self.known_chain[i]:
                    self.violation(f"height {i + 1} changed on {api} since an earlier check")
                    break
        for i in range(len(self.known_chain), len(longest)):
            self.known_chain.append((longest[i][1], longest[i][2]))
        return common

    async def _index_blocks(self, api: str, upto: int) -> None:
        async with client(self.cluster_dir, api, timeout_s=30) as c:
            for h in range(len(self._block_txs) + 1, upto + 1):
                doc = await c.block(h)
                self._block_txs[h] = list(doc["transactions"])
                for tx in doc["transactions"]:
                    self.first_seen.setdefault(tx, h)

    async def check_acked(self, apis: list[str], *, full: bool = False) -> None:
        """Every acknowledged transaction committed once, at the same place, everywhere.

        Call when the nodes have converged (same height, no load)."""
        common = await self.check_chains(apis)
        await self._index_blocks(apis[0], common)
        todo = [t for t in self.acked if full or t not in self._checked_acked]
        await asyncio.gather(*(self._check_acked_on(api, todo) for api in apis))
        self._checked_acked.update(todo)

    async def _check_acked_on(self, api: str, todo: list[str]) -> None:
        async with client(self.cluster_dir, api, timeout_s=30) as c:
            for tx_id in todo:
                try:
                    doc = await c.tx(tx_id)
                except ApiError as e:
                    self.violation(f"acked tx {tx_id[:12]} unknown on {api} ({e})")
                    continue
                if doc["status"] != "committed":
                    self.violation(f"acked tx {tx_id[:12]} is {doc['status']} on {api}")
                    continue
                h, i = doc["height"], doc["index"]
                listed = self._block_txs.get(h)
                if listed is None or i >= len(listed) or listed[i] != tx_id:
                    self.violation(f"{api}: tx {tx_id[:12]} indexed at {h}/{i}, not there")
                elif self.first_seen.get(tx_id) != h:
                    self.violation(
                        f"{api}: tx {tx_id[:12]} indexed at height {h} but first applied "
                        f"at {self.first_seen.get(tx_id)}"
                    )

    async def check_no_evidence(self, apis: list[str]) -> None:
        for api in apis:
            async with client(self.cluster_dir, api, timeout_s=30) as c:
                for ev in await c.get("/v1/evidence"):
                    self.violation(
                        f"{api}: evidence against honest node {ev.get('offender')}: "
                        f"conflicting {ev.get('kind')} messages"
                    )

    async def check_nonces(self, apis: list[str], committed_per_sender: dict[str, int]) -> None:
        """Each sender's committed nonce equals the count of its committed transactions."""
        for api in apis:
            async with client(self.cluster_dir, api, timeout_s=30) as c:
                for sender, count in committed_per_sender.items():
                    doc = await c.get(f"/v1/accounts/{sender}/nonce")
                    if doc["nonce"] != count:
                        self.violation(
                            f"{api}: sender {sender[:20]} has nonce {doc['nonce']} after "
                            f"{count} committed transactions"
                        )


def scrape(node: ClusterNode, timeout_s: float = 2.0) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=timeout_s) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in MONOTONE_METRICS:
            out[name] = float(value)
    return out


class MetricSampler:
    """Polls every node's height and checkpoint gauges in a thread; records any decrease.

    A node that does not answer (stopped, paused, restarting) is skipped; when it answers
    again its values must not be below the last ones it reported."""

    def __init__(self, nodes: list[ClusterNode], interval_s: float = 0.5) -> None:
        self.nodes = nodes
        self.interval_s = interval_s
        self.last: dict[tuple[str, str], float] = {}
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="metric-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def forget(self, node_id: str) -> None:
        """The node's data was deliberately wiped: its metrics start again from zero."""
        with self._lock:
            for key in [k for k in self.last if k[0] == node_id]:
                del self.last[key]

    def sample_once(self) -> None:
        for node in self.nodes:
            try:
                values = scrape(node)
            except OSError:
                continue
            with self._lock:
                for name, value in values.items():
                    key = (node.id, name)
                    before = self.last.get(key)
                    if before is not None and value < before:
                        self.violations.append(
                            f"{node.id}: {name} went back from {before:g} to {value:g}"
                        )
                    self.last[key] = value
                self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()
