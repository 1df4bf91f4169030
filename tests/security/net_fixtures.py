"""A real 4-node cluster with short connection deadlines, and the checks every network
attack ends with: the refusal was counted, the node still commits and serves, and its
memory and file descriptors came back."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from mdtp.node.identity import pki
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.sdk.client import NodeClient
from tests.support.processes import metric_value, wait_until

# Short deadlines so that each attack ends within seconds; per-address bounds below the
# totals, so a flood from 127.0.0.1 meets the per-address bound first.
CONFIG: dict[str, Any] = {
    "api.max_connections": 200,
    "api.max_connections_per_address": 40,
    "api.metrics_max_connections": 12,
    "api.metrics_max_connections_per_address": 64,
    "api.tls_handshake_timeout_ms": 2000,
    "api.header_timeout_ms": 2000,
    "api.body_timeout_ms": 2000,
    "api.idle_timeout_ms": 3000,
    "api.max_header_bytes": 8192,
    "p2p.max_connections": 64,
    "p2p.max_connections_per_address": 20,
    "p2p.handshake_timeout_ms": 2000,
    "log.remote_lines_per_source": 5,
    "log.remote_lines_total": 20,
    "log.remote_window_ms": 60_000,
}
RSS_SLACK_KB = 64 * 1024  # CPython keeps some freed memory in its arenas
FD_SLACK = 8  # peer links may be reconnecting when we look
RECOVERY_S = 60.0


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int


class Net:
    def __init__(self, cluster_dir: Path) -> None:
        self.dir = cluster_dir
        self.nodes = cluster.load_cluster(cluster_dir)
        self.chain_id: str = json.loads((cluster_dir / "cluster.json").read_text())["chain_id"]
        self.admin: SigningKey = load_key(self.nodes[0].admin_key_file)
        self.nonce = 0

    # -- the node process -------------------------------------------------------------------

    def pid(self, node: ClusterNode) -> int:
        pid = cluster.running_pid(node)
        assert pid is not None, f"{node.id} is not running"
        return pid

    def usage(self, node: ClusterNode) -> Usage:
        pid = self.pid(node)
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return Usage(rss, len(os.listdir(f"/proc/{pid}/fd")))

    def metric(self, node: ClusterNode, name: str, **labels: str) -> float:
        return metric_value(node, name, labels or None)

    # -- clients ----------------------------------------------------------------------------

    def client_context(self, member: str = "node1") -> ssl.SSLContext:
        """A member client's TLS context (its node certificate), for the API."""
        home = self.dir / member
        return pki.api_client_context(
            self.dir / "ca" / "ca.pem", home / "node.pem", home / "node.key.pem"
        )

    def client(self, node: ClusterNode) -> NodeClient:
        home = self.dir / "node1"
        return NodeClient(
            node.api,
            ca=self.dir / "ca" / "ca.pem",
            cert=home / "node.pem",
            key=home / "node.key.pem",
            timeout_s=60,
        )

    def fetch_request(self, requester: str, contract_id: str = "c-1") -> bytes:
        """A fetch request signed by a throw-away key; its unsigned fields are the input."""
        key = SigningKey.generate()
        unsigned = msgpack.packb(
            [
                self.chain_id,
                contract_id,
                0,
                0,
                os.urandom(16),
                int(time.time() * 1000) + 60_000,
                requester,
            ]
        )
        signature = key.sign(b"mdtp/v1/fetch\x00" + unsigned)
        packed: bytes = msgpack.packb([unsigned, key.public_key, signature])
        return packed

    # -- after every attack -----------------------------------------------------------------

    def commits_and_serves(self, node: ClusterNode) -> None:
        """A transaction submitted to ``node`` commits, and its API and health answer."""

        async def run() -> None:
            self.nonce += 1
            raw = sign_tx(
                self.admin,
                chain_id=self.chain_id,
                type_="note.set",
                sender=self.admin.account_id,
                nonce=self.nonce,
                expires_at_ms=int(time.time() * 1000) + 600_000,
                body={"key": f"after-attack-{self.nonce}", "value": b"ok"},
            )
            async with self.client(node) as c:
                doc = await c.submit(raw, wait=True, timeout_s=60)
                assert doc.get("status") == "committed", doc
                assert (await c.status())["height"] >= 1

        wait_until(lambda: cluster.is_ready(node), RECOVERY_S, f"{node.id} ready")
        asyncio.run(run())

    def recovered(self, node: ClusterNode, before: Usage) -> None:
        """Memory and descriptors back near their level before the attack."""

        def back() -> bool:
            now = self.usage(node)
            return now.fds <= before.fds + FD_SLACK and now.rss_kb <= before.rss_kb + RSS_SLACK_KB

        wait_until(back, RECOVERY_S, f"{node.id} memory and fds back from {before}")

    def after_attack(self, node: ClusterNode, before: Usage) -> None:
        self.recovered(node, before)
        self.commits_and_serves(node)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    cluster_dir = tmp_path_factory.mktemp("security-net")
    cluster.init_cluster(cluster_dir, 4, extra_config=CONFIG)
    try:
        cluster.up(cluster_dir, timeout_s=90)
        net = Net(cluster_dir)
        net.commits_and_serves(net.nodes[0])  # warm: every later check compares to this
        yield net
    finally:
        cluster.down(cluster_dir)
