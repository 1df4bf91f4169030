"""A trade set up on a local cluster for the data benchmark and the cluster tests: accounts
registered by the members' admins, a published dataset, contracts signed by both parties.

Every step is an ordinary signed transaction through a node's API, as a real member's
client would send it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.sdk.data import DataClient, now_ms

DAY_MS = 86_400_000


def client_for(
    cluster_dir: Path, node: ClusterNode, timeout_s: float = 120.0, **kw: Any
) -> DataClient:
    """A client of ``node`` presenting its member's certificate (``reader=`` signs
    confidential reads)."""
    return DataClient.of_home(node.api, node.home, timeout_s=timeout_s, **kw)


async def register_account(
    cluster_dir: Path, node: ClusterNode, roles: list[str], name: str
) -> SigningKey:
    """A fresh account of ``node``'s member, registered by that member's admin."""
    admin = load_key(node.admin_key_file)
    key = SigningKey.generate(with_encryption=True)
    enc = key.encryption_public_key or b""
    async with client_for(cluster_dir, node) as c:
        await c.send(admin, b.AccountRegister.for_key(key.public_key, enc, roles, name))
    return key


def terms(
    *,
    max_downloads: int = 10,
    use_start_ms: int | None = None,
    use_end_ms: int | None = None,
    disposal_deadline_ms: int | None = None,
    analysis_rule: b.AnalysisRule | None = None,
    billing: b.Billing | None = None,
    arbiter: str | None = None,
    price_model: str = "one_time",
    price_minor: int = 1000,
) -> b.Terms:
    """Download terms, or clean-room terms when an ``analysis_rule`` is given; by default
    a one-time price of 1000 EUR minor units, billed on the ledger with ``billing``."""
    start = now_ms() - 60_000 if use_start_ms is None else use_start_ms
    end = now_ms() + DAY_MS if use_end_ms is None else use_end_ms
    return b.Terms(
        delivery_method="download" if analysis_rule is None else "clean_room",
        purpose="model training",
        use_start_ms=start,
        use_end_ms=end,
        max_downloads=max_downloads,
        redistribution_banned=True,
        disposal_method="delete",
        disposal_deadline_ms=end if disposal_deadline_ms is None else disposal_deadline_ms,
        price_minor=price_minor,
        currency="EUR",
        price_model=price_model,
        terms_document_hash=bytes(32),
        analysis_rule=analysis_rule,
        billing=billing,
        arbiter=arbiter,
    )


async def make_contract(
    client: DataClient,
    supplier: SigningKey,
    consumer: SigningKey,
    dataset_id: str,
    contract_id: str | None = None,
    *,
    sign: bool = True,
    **term_args: Any,
) -> str:
    """Offer (by the supplier) and, with ``sign``, sign by both parties: ACTIVE."""
    contract_id = contract_id or f"c-{os.urandom(6).hex()}"
    t = terms(**term_args)
    await client.send(supplier, b.ContractOffer(contract_id, dataset_id, consumer.account_id, t))
    if sign:
        for party in (supplier, consumer):
            await client.send(party, b.ContractSign(contract_id, 1, t.hash()))
    return contract_id
