"""The README's ``mdtp`` commands that no other test ran (``tests/test_readme_commands.py``
finds them): ``account show``, ``account rotate``, ``account revoke`` and ``data dispose``,
run as the README shows them against a real cluster, on a contract the SDK made ACTIVE."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity.keys import SigningKey, load_key, save_key
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.examples.trade import metadata, terms
from mdtp.node.sdk.trading import TradingClient
from tests.support.workload import member_admin_key

pytestmark = pytest.mark.cluster


def mdtp(cluster_dir: Path, data_home: Path, *argv: str) -> Any:
    """``mdtp ARGV --cluster DIR --json`` in its own process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "mdtp.node", *argv, "--cluster", str(cluster_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MDTP_DATA_HOME": str(data_home)},
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return json.loads(done.stdout)


async def active_contract(cluster_dir: Path, consumer: SigningKey) -> str:
    """A contract on a fresh dataset, signed by both parties (ACTIVE), made with the SDK."""
    home = cluster_dir / "node0"
    admin = load_key(member_admin_key(cluster_dir))
    supplier = SigningKey.generate(with_encryption=True)
    async with NodeClient.of_home(cluster.load_cluster(cluster_dir)[0].api, home) as node:
        t = TradingClient(node)
        for key, role in ((supplier, "supplier"), (consumer, "consumer")):
            await t.register_account(
                admin,
                public_key=key.public_key,
                encryption_public_key=key.encryption_public_key or b"",
                roles=[role],
                display_name=f"README {role}",
            )
        await t.publish_dataset(supplier, "readme-ds", metadata("node0"))
        now = int(time.time() * 1000)
        await t.offer(
            consumer,
            contract_id="readme-c",
            dataset_id="readme-ds",
            consumer=consumer.account_id,
            terms=terms(now),
        )
        for party in (consumer, supplier):
            await t.sign_contract(party, "readme-c")
        contract = await t.contract("readme-c", reader=consumer)
    assert contract["effective_status"] == "ACTIVE"
    return "readme-c"


def test_account_show_rotate_revoke_and_data_dispose(running_cluster: Path, tmp_path: Path) -> None:
    consumer = SigningKey.generate(with_encryption=True)
    contract_id = asyncio.run(active_contract(running_cluster, consumer))
    key_file, new_file = tmp_path / "consumer.json", tmp_path / "new.json"
    save_key(key_file, consumer)
    c = running_cluster

    shown = mdtp(c, tmp_path, "account", "show", "--key", str(key_file))
    assert (shown["id"], shown["roles"]) == (consumer.account_id, ["consumer"])

    disposed = mdtp(c, tmp_path, "data", "dispose", contract_id, "--key", str(key_file))
    assert disposed["method"] == "crypto-erase" and len(disposed["tx"]) == 64

    save_key(new_file, SigningKey.generate(with_encryption=True))
    rotated = mdtp(
        c, tmp_path, "account", "rotate", "--key", str(key_file), "--new-key", str(new_file)
    )
    assert rotated["status"] == "committed"
    shown = mdtp(c, tmp_path, "account", "show", consumer.account_id)
    assert shown["public_key"] == load_key(new_file).public_key.hex()

    # by itself, with its new key: the key signs for the account (--sender), whose id stays
    # that of its first key
    new_key, account = str(new_file), consumer.account_id
    revoked = mdtp(c, tmp_path, "account", "revoke", account, "--key", new_key, "--sender", account)
    assert revoked["status"] == "committed"
    assert mdtp(c, tmp_path, "account", "show", consumer.account_id)["status"] == "revoked"
