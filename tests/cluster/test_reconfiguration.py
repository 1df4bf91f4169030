"""The consortium changes on a running chain of real node processes, under a transaction
load that never stops:

0. an observer (``node5``, a regulator's node) is added by vote and follows the whole time:
   it votes in no epoch, and holds the same blocks as every member;
1. a fifth member's node (made as a joining member makes it: own keys, request signed by the
   CA, the chain's genesis that does not list it) starts, not a member; three of four admins
   add it; from the block that scheduled it the members accept its links and it catches up
   without voting; from its epoch on it votes, and the commit certificates carry its
   signature;
2. then four of five admins remove ``node3``: from its epoch on no certificate carries its
   signature, the others refuse its links (``not_member``), and commits go on;
3. then ``node1``'s certificate is rotated: a new key and request (``mdtp tls rotate``), the
   CA signs it, three of four admins approve its fingerprint, node1 installs it and restarts;
   it signs certificates after the change takes effect, and commits never stop;
4. every transaction a client got committed is in the chain exactly once, and every node
   (the new one included) holds the same blocks;
5. audit entries from before and after each change verify offline with genesis and the
   membership history proven from genesis (``mdtp member history --proofs``); a forged
   history does not.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mdtp.node.identity import pki
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.ledger.governance.proofs import HistoryError, verify_history
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import KNOWN_REASON, ApiError, tx_id_of
from tests.cluster.test_governance import admin_key, cli, cli_json
from tests.support.workload import Workload, assert_chains_agree, chains, client

pytestmark = pytest.mark.cluster

PHASE_TIMEOUT_S = 120


class SteadyLoad:
    """Senders submit and wait, one transaction after another, until told to stop."""

    def __init__(self, work: Workload, apis: list[str]) -> None:
        self.work = work
        self.apis = apis
        self.stop = asyncio.Event()
        self.committed: list[str] = []

    async def run(self) -> None:
        await self.work.register(self.apis)
        await asyncio.gather(*(self._sender(i) for i in range(self.work.senders)))

    async def _sender(self, i: int) -> None:
        while not self.stop.is_set():
            raw = self.work.make_tx(i)
            while True:  # the same signed bytes until committed: once in the chain
                api = random.choice(self.apis)
                try:
                    async with client(self.work.cluster_dir, api, timeout_s=40) as c:
                        doc = await c.submit(raw, wait=True, timeout_s=30)
                    if doc["status"] == "committed":
                        self.committed.append(doc["id"])
                        break
                    assert doc["status"] != "failed", doc
                except ApiError as e:
                    if e.reason == KNOWN_REASON:  # committed through an earlier attempt
                        self.committed.append(tx_id_of(raw))
                        break
                    await asyncio.sleep(0.2)
                except (TimeoutError, OSError, aiohttp.ClientError):
                    await asyncio.sleep(0.2)  # a node restarting (node1's new certificate)


def _status(api: str, cluster_dir: Path) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        async with client(cluster_dir, api) as c:
            return await c.status()

    return asyncio.run(get())


async def _signers(cluster_dir: Path, api: str, heights: range) -> dict[int, set[str]]:
    """Who signed the commit certificate of each height (one client for all)."""
    out = {}
    async with client(cluster_dir, api) as c:
        for height in heights:
            block = await c.block(height)
            out[height] = {signer for signer, _ in block["certificate"]["signatures"]}
    return out


async def _wait(what: str, check: Any, timeout_s: float = PHASE_TIMEOUT_S) -> Any:
    import time as _t

    print(f"WAIT {what} at {_t.monotonic():.1f}", flush=True)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            got = await check()
        except (OSError, TimeoutError, ApiError, aiohttp.ClientError):
            got = None  # not up yet, or busy: asked again
        if got:
            return got
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


def _refused_not_member(node: cluster.ClusterNode) -> float:
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mdtp_p2p_connections_refused_total") and 'reason="not_member"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_member_joins_and_votes_then_another_leaves_under_load(running_cluster: Path) -> None:
    chain = running_cluster
    node4, member_file = cluster.add_node(chain, name="Delta Foundry")
    node_cert = member_file.parent / "node.pem"
    cluster.add_node(chain, name="Regulator")  # node5: an observer
    nodes = {n.id: n for n in cluster.load_cluster(chain)}
    apis = {n.id: n.api for n in nodes.values()}
    cluster.start_node(node4)
    try:
        asyncio.run(_scenario(chain, apis, member_file, node_cert, nodes))
    finally:
        cluster.down(chain)


async def _scenario(
    chain: Path,
    apis: dict[str, str],
    member_file: Path,
    node_cert: Path,
    nodes: dict[str, cluster.ClusterNode],
) -> None:
    load = SteadyLoad(Workload(chain, senders=4), [apis[f"node{i}"] for i in range(3)])
    running = asyncio.create_task(load.run())

    # 0. an observer (a regulator's node: no vote, not in any quorum) follows from the start
    def propose_observer() -> dict[str, Any]:
        observer_file = chain / "members" / "node5" / "member.json"
        cli_json(
            chain,
            "member", "propose", "add-observer", "--member-file", str(observer_file),
            "--node-cert", str(observer_file.parent / "node.pem"), "--id", "observe-node5",
            "--key", admin_key(chain, 0),
        )  # fmt: skip
        cli_json(chain, "member", "vote", "observe-node5", "--key", admin_key(chain, 1))
        done = cli_json(chain, "member", "vote", "observe-node5", "--key", admin_key(chain, 3))
        proposal: dict[str, Any] = done["result"]
        return proposal

    observed = await asyncio.to_thread(propose_observer)
    assert observed["status"] == "passed", observed
    cluster.start_node(nodes["node5"])

    async def observer_follows() -> bool:
        async with client(chain, apis["node5"]) as c:
            status = await c.status()
        return bool(status["height"] >= observed["activation_height"] and not status["voting"])

    await _wait("the observer to follow", observer_follows)

    # the joining node runs, not a member: the members refuse its links until a block
    # schedules it
    async def started() -> bool:
        async with client(chain, apis["node4"]) as c:
            status = await c.status()
        return not status["voting"] and status["epoch"] == 0

    await _wait("node4 to start", started)

    # 1. three of four admins add node4
    def propose_add() -> dict[str, Any]:
        cli_json(
            chain,
            "member", "propose", "add", "--member-file", str(member_file),
            "--node-cert", str(node_cert), "--id", "add-node4", "--key", admin_key(chain, 0),
        )  # fmt: skip
        cli_json(chain, "member", "vote", "add-node4", "--key", admin_key(chain, 1))
        done = cli_json(chain, "member", "vote", "add-node4", "--key", admin_key(chain, 2))
        proposal: dict[str, Any] = done["result"]
        return proposal

    proposal = await asyncio.to_thread(propose_add)
    assert proposal["status"] == "passed", proposal
    joined_at = proposal["activation_height"]

    async def node4_votes() -> bool:
        async with client(chain, apis["node4"]) as c:
            status = await c.status()
        in_epoch = status["epoch"] == proposal["epoch"]
        if not (in_epoch and status["voting"] and status["height"] > joined_at + 4):
            return False
        signers = await _signers(chain, apis["node0"], range(joined_at, status["height"] - 1))
        return any("node4" in s for s in signers.values())

    await _wait("node4 to vote in its epoch", node4_votes)
    before = await _signers(chain, apis["node0"], range(1, joined_at))
    assert not [h for h, s in before.items() if "node4" in s]

    # 2. four of five admins remove node3
    def propose_remove() -> dict[str, Any]:
        cli_json(
            chain, "member", "propose", "remove", "node3", "--id", "remove-node3",
            "--key", admin_key(chain, 0),
        )  # fmt: skip
        for voter in (1, 2):
            cli_json(chain, "member", "vote", "remove-node3", "--key", admin_key(chain, voter))
        done = cli_json(
            chain, "member", "vote", "remove-node3",
            "--key", str(cluster.admin_key_path(chain, "node4")),
        )  # fmt: skip
        proposal: dict[str, Any] = done["result"]
        return proposal

    removal = await asyncio.to_thread(propose_remove)
    assert removal["status"] == "passed", removal
    removed_at = removal["activation_height"]
    refused_before = _refused_not_member(nodes["node0"])

    async def past_removal() -> bool:
        async with client(chain, apis["node0"]) as c:
            status = await c.status()
        return bool(status["epoch"] == removal["epoch"] and status["height"] > removed_at + 8)

    await _wait("commits to go on after node3's removal", past_removal)
    async with client(chain, apis["node0"]) as c:
        top = (await c.status())["height"]
    after = await _signers(chain, apis["node0"], range(removed_at, top + 1))
    assert not [h for h, s in after.items() if "node3" in s]

    # node3's node keeps dialling: its links are refused
    async def refused() -> bool:
        return await asyncio.to_thread(_refused_not_member, nodes["node0"]) > refused_before

    await _wait("node3's links to be refused", refused)

    # 3. node1's certificate is rotated while the chain runs
    rotated_at, rotation_epoch = await asyncio.to_thread(_rotate_certificate, chain, nodes["node1"])

    async def node1_signs_again() -> bool:
        async with client(chain, apis["node0"]) as c:
            status = await c.status()
        if status["epoch"] != rotation_epoch or status["height"] < rotated_at + 8:
            return False
        last = status["height"] - 1
        return "node1" in (await _signers(chain, apis["node0"], range(last, last + 1)))[last]

    await _wait("node1 to vote with its new certificate", node1_signs_again)

    # 4. stop the load: every committed transaction once, the same chain everywhere
    load.stop.set()
    await asyncio.wait_for(running, PHASE_TIMEOUT_S)
    assert len(load.committed) > 20
    # the members and the observer, which followed the whole time
    nodes_now = [apis[n] for n in ("node0", "node1", "node2", "node4", "node5")]
    top = min([(await _st(chain, a))["height"] for a in nodes_now])
    by_node = await chains(chain, nodes_now)
    assert assert_chains_agree(by_node) >= top
    assert (await _st(chain, apis["node5"]))["voting"] is False
    async with client(chain, apis["node5"]) as c:
        seen: list[str] = []
        where: dict[str, list[int]] = {}
        for h in range(1, top + 1):
            block = await c.block(h)
            assert "node5" not in {s for s, _ in block["certificate"]["signatures"]}
            txs = block["transactions"]
            seen.extend(txs)
            for t in txs:
                where.setdefault(t, []).append(h)
    twice = {t: hs for t, hs in where.items() if len(hs) > 1}
    assert not twice, f"transactions in the chain twice (tx: heights): {twice}"
    committed = set(load.committed)
    assert committed <= set(seen) | set(await _late(chain, apis["node4"], committed - set(seen)))
    # 5. audit entries of every epoch verify offline, with genesis and the proven history
    _verify_offline(chain)
    # the observer's end is proposed like any change (one approval of four: still open)
    done = await asyncio.to_thread(
        cli_json,
        chain, "member", "propose", "remove-observer", "node5", "--id", "end-node5",
        "--key", admin_key(chain, 0),
    )  # fmt: skip
    assert done["result"]["status"] == "open" and done["result"]["subject"] == "node5"


async def _st(chain: Path, api: str) -> dict[str, Any]:
    async with client(chain, api) as c:
        return await c.status()


async def _late(chain: Path, api: str, ids: set[str]) -> list[str]:
    """Transactions committed after ``top``: their status says so."""
    out = []
    async with client(chain, api) as c:
        for tx_id in sorted(ids):
            if (await c.tx(tx_id))["status"] == "committed":
                out.append(tx_id)
    return out


def _rotate_certificate(chain: Path, node1: cluster.ClusterNode) -> tuple[int, int]:
    """node1 makes a new TLS key and request, the CA signs it, three of four admins approve
    its fingerprint, node1 installs it and restarts (the others accept both certificates
    until the change takes effect, then only the new one). Returns the activation height."""
    work = node1.home.parent / "node1-rotation"
    made = cli_json(chain, "tls", "rotate", "--home", str(node1.home), "--request-out", str(work))
    signed = work / "node1-new.pem"
    cli_json(chain, "ca", "sign", made["csr"], "--ca", str(chain / "ca"), "--out", str(signed))
    fingerprint = pki.fingerprint_pem(signed.read_bytes())
    cli_json(
        chain, "member", "propose", "rotate-cert", "node1", "--fingerprint", fingerprint,
        "--id", "rotate-node1", "--key", admin_key(chain, 0),
    )  # fmt: skip
    cli_json(chain, "member", "vote", "rotate-node1", "--key", admin_key(chain, 1))
    done = cli_json(chain, "member", "vote", "rotate-node1", "--key", admin_key(chain, 2))
    assert done["result"]["status"] == "passed", done
    installed = cli_json(
        chain, "install-cert", "--home", str(node1.home), "--cert", str(signed),
        "--ca-cert", str(chain / "ca" / "ca.pem"),
    )  # fmt: skip
    assert installed["tls_fingerprint"] == fingerprint
    cluster.restart(chain, "node1", timeout_s=90)
    return int(done["result"]["activation_height"]), int(done["result"]["epoch"])


def _verify_offline(chain: Path) -> None:
    work = chain / "offline"
    work.mkdir()
    history = cli_json(chain, "member", "history", "--proofs")
    assert [e["epoch"] for e in history["epochs"]] == [0, 1, 2, 3, 4]
    assert [[o["id"] for o in e.get("observers", [])] for e in history["epochs"]] == [
        [],
        ["node5"],
        ["node5"],
        ["node5"],
        ["node5"],
    ]
    (work / "history.json").write_text(json.dumps(history))
    genesis = load_genesis(chain / "genesis.json")
    epochs = verify_history(history, genesis)
    assert [e.member_ids for e in epochs] == [
        ("node0", "node1", "node2", "node3"),
        ("node0", "node1", "node2", "node3"),
        ("node0", "node1", "node2", "node3", "node4"),
        ("node0", "node1", "node2", "node4"),
        ("node0", "node1", "node2", "node4"),
    ]
    # one trail per change: heights in epoch 0 (adding node4), 1 (removing node3), 2 (node1)
    for subject in ("node4", "node3", "node1"):
        trail = work / f"{subject}.jsonl"
        done = cli(
            chain, "audit", "export", "member", subject, "--out", str(trail),
            "--key", admin_key(chain, 2),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        checked = cli_json(
            chain, "verify-receipt", str(trail), "--genesis", str(chain / "genesis.json"),
            "--history", str(work / "history.json"),
        )  # fmt: skip
        assert checked and all(r["verified"] for r in checked), checked
    # without the history, entries of later epochs are not provable by genesis alone
    alone = cli_json(
        chain, "verify-receipt", str(work / "node1.jsonl"),
        "--genesis", str(chain / "genesis.json"), rc=1,
    )  # fmt: skip
    assert {r["reason"] for r in alone} == {"bad_certificate"}
    # a forged history does not verify
    forged = copy.deepcopy(history)
    forged["epochs"][2]["members"][0]["node_public_key"] = "00" * 32
    _refused(forged, genesis, "history_mismatch")
    forged = copy.deepcopy(history)
    forged["epochs"][2]["proof"]["approvals"] = []
    _refused(forged, genesis, "not_approved")
    forged = copy.deepcopy(history)
    cert = forged["epochs"][3]["proof"]["proposal"]["certificate_bytes"]
    forged["epochs"][3]["proof"]["proposal"]["certificate_bytes"] = cert[:-2] + (
        "00" if cert[-2:] != "00" else "01"
    )
    _refused(forged, genesis, "bad_certificate", "bad_block")


def _refused(doc: dict[str, Any], genesis: Any, *reasons: str) -> None:
    with pytest.raises(HistoryError) as err:
        verify_history(doc, genesis)
    assert err.value.reason in reasons, err.value
