"""A small whole trade with :class:`~mdtp.node.sdk.trading.TradingClient`: the member's
admin registers a supplier and a consumer, the supplier publishes a dataset, the consumer
offers a contract, both sign it, and the contract is ACTIVE.

    python -m mdtp.node.sdk.examples.trade --node HOST:PORT --home HOME --key ADMIN_KEY

``--key`` must be the admin key of the member whose home is given (the default). Prints each
step's transaction and ends with ``contract ID ACTIVE``; exits 0 when it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

from mdtp.node.identity.keys import SigningKey
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.examples._cli import parse, print_retry
from mdtp.node.sdk.trading import Committed, TradingClient, TxFailed

DAY_MS = 86_400_000


def hex_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def metadata(member: str) -> dict[str, Any]:
    """A dataset's catalog entry in its JSON form (hashes as hex)."""
    return {
        "title": "Spindle vibration, line 3",
        "description": "Three-axis accelerometer traces, one file per shift.",
        "tags": ["vibration", "cnc"],
        "schema": "time_ms:int,x:int,y:int,z:int",
        "format": "csv",
        "size_bytes": 10_485_760,
        "chunk_count": 10,
        "merkle_root": hex_digest("ciphertext chunks"),
        "plaintext_digest": hex_digest("plaintext"),
        "quality": {
            "collection_start_ms": 1_700_000_000_000,
            "collection_end_ms": 1_700_000_000_000 + 30 * DAY_MS,
            "machine_type": "CNC milling centre",
            "sampling_rate_millihz": 1_000_000,
            "validation_method": "range checks",
        },
        "supplier_node": member,  # the supplier's own member serves the data
    }


def terms(now_ms: int) -> dict[str, Any]:
    """A contract's terms in their JSON form."""
    return {
        "delivery_method": "download",
        "purpose": "predictive maintenance model training",
        "use_start_ms": now_ms,
        "use_end_ms": now_ms + 30 * DAY_MS,
        "max_downloads": 3,
        "redistribution_banned": True,
        "disposal_method": "crypto-erase",
        "disposal_deadline_ms": now_ms + 37 * DAY_MS,
        "price_minor": 150_000,
        "currency": "EUR",
        "price_model": "one_time",
        "terms_document_hash": hex_digest("Model training only; no redistribution."),
    }


def step(what: str, done: Committed) -> None:
    print(f"{what}: {done.type} {done.id} at height {done.height}")


async def trade(node: NodeClient, admin: SigningKey) -> bool:
    t = TradingClient(node)
    member = str((await node.status())["id"])
    suffix = secrets.token_hex(4)  # fresh ids: the example runs again on the same chain
    dataset_id, contract_id = f"spindle-{suffix}", f"c-{suffix}"
    supplier = SigningKey.generate(with_encryption=True)
    consumer = SigningKey.generate(with_encryption=True)
    for key, role in ((supplier, "supplier"), (consumer, "consumer")):
        done = await t.register_account(
            admin,
            public_key=key.public_key,
            encryption_public_key=key.encryption_public_key or b"",
            roles=[role],
            display_name=f"Example {role}",
        )
        step(f"registered {role} {key.account_id}", done)
    step("published", await t.publish_dataset(supplier, dataset_id, metadata(member)))
    found = await t.search_datasets(text="spindle", tag="cnc")
    print(f"search found {dataset_id}: {dataset_id in [d['id'] for d in found['datasets']]}")
    offer = await t.offer(
        consumer,
        contract_id=contract_id,
        dataset_id=dataset_id,
        consumer=consumer.account_id,
        terms=terms(int(time.time() * 1000)),
    )
    step("offered", offer)
    try:
        await t.sign_contract(supplier, contract_id, version=2)  # no such version
    except TxFailed as e:  # refused with a reason code, a description and a hint
        print(f"refused as expected: {e.reason}: {e.description}")
    step("signed by the consumer", await t.sign_contract(consumer, contract_id))
    step("signed by the supplier", await t.sign_contract(supplier, contract_id))
    contract = await t.contract(contract_id, reader=consumer)  # a party's signed read
    print(f"contract {contract_id} {contract['effective_status']}")
    return bool(contract["effective_status"] == "ACTIVE")


async def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(__doc__, argv)
    async with NodeClient.of_home(opts.node, opts.home, on_retry=print_retry) as node:
        active = await trade(node, opts.key)
    return 0 if active else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
