"""Membership changes decided on a real 4-node cluster: admins of three of the four members
add a fifth member (its public facts only — member.json as ``mdtp init`` writes it and the
certificate the CA signed; no node runs for it) through the ``mdtp member`` CLI with
``--json``, and it appears in ``GET /v1/members/history`` at the activation height
every replica derives; then a proposal the members reject (SDK and CLI) and one that expires
by block time. Every node answers the history byte for byte the same."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity import csr, pki
from mdtp.node.identity.ca import load_ca
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.identity.members import member_document
from mdtp.node.ledger.governance.bodies import RotateCertificate
from mdtp.node.ledger.governance.membership import activation_height
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.governance import GovernanceClient
from mdtp.node.sdk.trading import TradingClient, TxFailed

pytestmark = pytest.mark.cluster

CLI_TIMEOUT_S = 120


def cli(cluster_dir: Path, *args: str, member: str = "node0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDTP_CLUSTER": str(cluster_dir), "MDTP_MEMBER": member}
    return subprocess.run(
        [sys.executable, "-m", "mdtp.node", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        check=False,
    )


def cli_json(cluster_dir: Path, *args: str, member: str = "node0", rc: int = 0) -> Any:
    done = cli(cluster_dir, *args, "--json", member=member)
    assert done.returncode == rc, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


def admin_key(cluster_dir: Path, member: int) -> str:
    """Member ``nodeI``'s admin key file (kept outside its node home)."""
    return str(cluster.admin_key_path(cluster_dir, f"node{member}"))


def client(cluster_dir: Path, member: int = 0) -> NodeClient:
    node = cluster.load_cluster(cluster_dir)[member]
    return NodeClient.of_home(node.api, node.home, timeout_s=60)


@pytest.fixture(scope="module")
def chain(running_cluster: Path) -> Iterator[Path]:
    yield running_cluster


def test_three_of_four_members_add_a_fifth(chain: Path, tmp_path: Path) -> None:
    """node4 made its keys and certificate request as `mdtp init` does, the CA signed it;
    an admin proposes its member.json with the signed certificate."""
    genesis = load_genesis(chain / "node0" / "genesis.json")
    node_key = SigningKey.generate()
    admin = SigningKey.generate(with_encryption=True)
    csr_pem = csr.build_node_csr(csr.new_tls_key(), "node4", ["127.0.0.1"])
    cert_pem, request = csr.sign_node_csr(load_ca(chain / "ca"), csr_pem)
    node_cert = tmp_path / "node4.pem"
    node_cert.write_bytes(cert_pem)
    member_file = tmp_path / "member.json"
    member_file.write_text(
        json.dumps(
            member_document(
                node_id="node4",
                name="Delta Foundry",
                node_key=node_key,
                admin_key=admin,
                p2p="127.0.0.1:1",
                api="127.0.0.1:2",
                request=request,
            )
        )
    )
    admins = [admin]
    # a certificate for another TLS key than the request's is refused locally
    other_pem, _ = csr.sign_node_csr(
        load_ca(chain / "ca"), csr.build_node_csr(csr.new_tls_key(), "node4", ["127.0.0.1"])
    )
    (tmp_path / "other.pem").write_bytes(other_pem)
    failed = cli_json(
        chain,
        "member", "propose", "add", "--member-file", str(member_file),
        "--node-cert", str(tmp_path / "other.pem"), "--key", admin_key(chain, 0),
        rc=2,
    )  # fmt: skip
    assert failed["status"] == "failed"
    done = cli_json(
        chain,
        "member", "propose", "add", "--member-file", str(member_file),
        "--node-cert", str(node_cert), "--id", "add-node4", "--key", admin_key(chain, 0),
    )  # fmt: skip
    assert done["status"] == "committed" and done["result"]["status"] == "open"
    assert [v["member"] for v in done["result"]["votes"]] == ["node0"]
    done = cli_json(chain, "member", "vote", "add-node4", "--key", admin_key(chain, 1))
    assert done["result"]["status"] == "open"
    done = cli_json(
        chain, "member", "vote", "add-node4", "--key", admin_key(chain, 2), member="node2"
    )
    proposal = done["result"]
    assert proposal["status"] == "passed"
    passed_at = proposal["decided"]["height"]
    assert passed_at == done["height"]
    expected = activation_height(
        passed_at, genesis.consensus.checkpoint_interval, genesis.consensus.window, 0
    )
    assert proposal["activation_height"] == expected and proposal["epoch"] == 1
    assert proposal["change"]["member"]["tls_fingerprint"] == pki.fingerprint_pem(cert_pem)
    assert [v["member"] for v in proposal["votes"]] == ["node0", "node1", "node2"]
    assert all(v["approve"] and len(v["tx_id"]) == 64 for v in proposal["votes"])

    epochs = cli_json(chain, "member", "history")
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[1]["activation_height"] == expected
    assert epochs[1]["proposal_id"] == "add-node4"
    assert [m["id"] for m in epochs[1]["members"]] == [f"node{i}" for i in range(5)]
    assert (epochs[1]["n"], epochs[1]["f"], epochs[1]["quorum"]) == (5, 1, 4)
    assert {a["account_id"] for a in epochs[1]["admins"] if a["member"] == "node4"} == {
        k.account_id for k in admins
    }
    # the text forms print too
    listing = cli(chain, "member", "list")
    assert listing.returncode == 0 and "node0" in listing.stdout, listing.stderr
    shown = cli(chain, "member", "proposal", "add-node4")
    assert shown.returncode == 0 and "passed" in shown.stdout, shown.stderr

    async def reads() -> None:
        bodies = set()
        for i in range(4):
            async with client(chain, i) as node:
                g = GovernanceClient(TradingClient(node))
                members = await g.members()
                if members["as_of_height"] < expected:
                    assert [e["epoch"] for e in members["scheduled"]] == [1]
                    assert members["current"]["epoch"] == 0
                else:
                    assert members["current"]["epoch"] == 1
                bodies.add(json.dumps(await g.history(), sort_keys=True))
        assert len(bodies) == 1  # every replica derived the same history
        async with client(chain, 3) as node:
            t = TradingClient(node)
            trail = await t.audit_trail(
                "member", "node4", reader=load_key(Path(admin_key(chain, 3)))
            )
            assert [e["type"] for e in trail] == ["member.propose", "member.vote", "member.vote"]
            assert "passed" in trail[-1]["summary"]

    asyncio.run(reads())


def test_a_proposal_the_members_reject(chain: Path) -> None:
    async def go() -> None:
        async with client(chain, 0) as node:
            g = GovernanceClient(TradingClient(node))
            change = RotateCertificate("node3", hashlib.sha256(b"node3 new").digest())
            await g.propose(load_key(Path(admin_key(chain, 0))), "rotate-node3", change)
            await g.vote(load_key(Path(admin_key(chain, 1))), "rotate-node3", approve=False)
            assert (await g.proposal("rotate-node3"))["status"] == "open"

    asyncio.run(go())
    done = cli_json(
        chain, "member", "vote", "rotate-node3", "--reject", "--key", admin_key(chain, 3)
    )
    proposal = done["result"]
    assert proposal["status"] == "rejected" and proposal["decided"]["reason"] == "unreachable"
    assert proposal["activation_height"] is None
    # decided: no further vote
    failed = cli_json(chain, "member", "vote", "rotate-node3", "--key", admin_key(chain, 2), rc=1)
    assert failed["status"] == "failed" and failed["reason"] == "proposal_decided"
    listed = cli_json(chain, "member", "proposals", "--status", "rejected")
    assert [p["id"] for p in listed["proposals"]] == ["rotate-node3"]


def test_a_proposal_expires_by_block_time(chain: Path) -> None:
    fingerprint = hashlib.sha256(b"node2 new").hexdigest()
    done = cli_json(
        chain,
        "member", "propose", "rotate-cert", "node2", "--fingerprint", fingerprint,
        "--id", "rotate-node2", "--expires", "+3s", "--key", admin_key(chain, 2),
    )  # fmt: skip
    assert done["result"]["status"] == "open"
    time.sleep(4)
    failed = cli_json(chain, "member", "vote", "rotate-node2", "--key", admin_key(chain, 0), rc=1)
    assert failed["reason"] == "proposal_expired"
    listed = cli_json(chain, "member", "proposals", "--status", "expired")
    assert [p["id"] for p in listed["proposals"]] == ["rotate-node2"]

    async def go() -> None:
        async with client(chain, 1) as node:
            g = GovernanceClient(TradingClient(node))
            # the lock on node2 is free again: a new proposal sweeps the expired one
            change = RotateCertificate("node2", bytes.fromhex(fingerprint))
            await g.propose(load_key(Path(admin_key(chain, 1))), "rotate-node2-again", change)
            old = await g.proposal("rotate-node2")
            assert old["status"] == "expired" and old["decided"]["reason"] == "expired"
            with pytest.raises(TxFailed) as e:
                await g.propose(load_key(Path(admin_key(chain, 1))), "rotate-node2-again", change)
            assert e.value.reason == "proposal_exists"

    asyncio.run(go())


def test_the_other_changes_through_the_cli(chain: Path) -> None:
    # node4's addition is scheduled, so the latest membership has five: one may go
    done = cli_json(
        chain, "member", "propose", "remove", "node3", "--id", "remove-node3",
        "--key", admin_key(chain, 0),
    )  # fmt: skip
    assert done["result"]["status"] == "open" and done["result"]["subject"] == "node3"
    new_key = SigningKey.generate().public_key.hex()
    done = cli_json(
        chain, "member", "propose", "rotate-node-key", "node1", "--node-key", new_key,
        "--key", admin_key(chain, 1),
    )  # fmt: skip
    assert done["result"]["change"] == {
        "kind": "rotate_node_key",
        "member_id": "node1",
        "node_public_key": new_key,
    }
    done = cli_json(
        chain, "member", "propose", "policy", "--threshold", "3/4", "--key", admin_key(chain, 2)
    )
    assert done["result"]["change"]["threshold_num"] == 3
    failed = cli_json(
        chain, "member", "propose", "policy", "--threshold", "1/3", "--key", admin_key(chain, 3),
        rc=1,
    )  # fmt: skip
    assert failed["reason"] == "change_pending"  # the policy has an open change
    listed = cli_json(chain, "member", "proposals", "--status", "open", "--limit", "2")
    assert len(listed["proposals"]) == 2 and listed["next_after"]
