"""A small market on a real cluster for the explorer test: accounts registered by member
admins, a dataset published, a contract offered, countered, signed by both parties and
approved by a reviewer, so the contract has versions, signatures, a review and an audit
trail. Everything is written through node0, the node the browser reads."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtp.node.identity.keys import SigningKey, load_key, save_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.trading import TradingClient

DAY_MS = 86_400_000
CONTRACT_ID = "ct-explorer-1"
DATASET_ID = "spindle-line7"


@dataclass(frozen=True)
class Market:
    cluster_dir: Path
    node: cluster.ClusterNode
    keys: Path  # key files by name: supplier.json, consumer.json, reviewer.json
    supplier: SigningKey
    consumer: SigningKey
    reviewer: SigningKey
    contract_id: str
    dataset_id: str
    trail: list[dict[str, Any]]  # the contract's audit entries with proofs, as node0 serves them

    def key_file(self, name: str) -> Path:
        return self.keys / f"{name}.json"

    def client(self) -> NodeClient:
        return NodeClient.of_home(self.node.api, self.node.home, timeout_s=60)


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


async def make_market(cluster_dir: Path, keys: Path) -> Market:
    nodes = cluster.load_cluster(cluster_dir)
    named = {
        n: SigningKey.generate(with_encryption=True) for n in ("supplier", "consumer", "reviewer")
    }
    for name, key in named.items():
        save_key(keys / f"{name}.json", key)
    supplier, consumer, reviewer = named["supplier"], named["consumer"], named["reviewer"]
    async with NodeClient.of_home(nodes[0].api, nodes[0].home, timeout_s=60) as node:
        t = TradingClient(node, reader=consumer)
        for key, member, roles, name in (
            (supplier, 0, ["supplier"], "Acme Machining"),
            (consumer, 1, ["consumer"], "Beta Analytics"),
            (reviewer, 2, ["reviewer"], "Gamma Quality Institute"),
        ):
            await t.register_account(
                load_key(nodes[member].admin_key_file),
                public_key=key.public_key,
                encryption_public_key=key.encryption_public_key or b"",
                roles=roles,
                display_name=name,
            )
        now = int(time.time() * 1000)
        await t.publish_dataset(
            supplier,
            DATASET_ID,
            {
                "title": "Spindle vibration, line 7",
                "description": "Three-axis accelerometer traces, one file per shift.",
                "tags": ["vibration", "cnc"],
                "schema": "time_ms:int,x:int,y:int,z:int",
                "format": "csv",
                "size_bytes": 10_485_760,
                "chunk_count": 10,
                "merkle_root": _digest("chunks").hex(),
                "plaintext_digest": _digest("plain").hex(),
                "supplier_node": nodes[0].id,
                "quality": {
                    "collection_start_ms": now - 30 * DAY_MS,
                    "collection_end_ms": now - DAY_MS,
                    "machine_type": "CNC milling centre",
                    "sampling_rate_millihz": 1_000_000,
                    "validation_method": "range checks",
                },
            },
        )
        terms = b.Terms(
            delivery_method="download",
            purpose="train and evaluate tool-wear prediction models",
            use_start_ms=now - 60_000,
            use_end_ms=now + 30 * DAY_MS,
            max_downloads=3,
            redistribution_banned=True,
            disposal_method="secure-delete",
            disposal_deadline_ms=now + 37 * DAY_MS,
            price_minor=500_000,
            currency="EUR",
            price_model="one_time",
            terms_document_hash=_digest("terms document"),
            reviewer=reviewer.account_id,
        )
        await t.offer(
            consumer,
            contract_id=CONTRACT_ID,
            dataset_id=DATASET_ID,
            consumer=consumer.account_id,
            terms=terms,
        )
        await t.counter(
            supplier, CONTRACT_ID, terms=dataclasses.replace(terms, price_minor=650_000)
        )
        await t.sign_contract(consumer, CONTRACT_ID)
        await t.sign_contract(supplier, CONTRACT_ID)
        await t.review(reviewer, CONTRACT_ID, approve=True, comment="purpose fits the policy")
        trail = await t.audit_trail("contract", CONTRACT_ID, proof=True)
    return Market(
        cluster_dir=cluster_dir,
        node=nodes[0],
        keys=keys,
        supplier=supplier,
        consumer=consumer,
        reviewer=reviewer,
        contract_id=CONTRACT_ID,
        dataset_id=DATASET_ID,
        trail=trail,
    )
