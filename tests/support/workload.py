"""A transaction workload against a real cluster, recording what was acknowledged."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.retry import NO_RETRY
from mdtp.node.sdk.trading import TradingClient


def chain_id_of(cluster_dir: Path) -> str:
    chain: str = json.loads((cluster_dir / "cluster.json").read_text())["chain_id"]
    return chain


def apis_of(cluster_dir: Path) -> list[str]:
    return [n["api"] for n in json.loads((cluster_dir / "cluster.json").read_text())["nodes"]]


def member_home(cluster_dir: Path) -> Path:
    """The first member's node home: its certificate is the test clients' member certificate."""
    nodes = json.loads((cluster_dir / "cluster.json").read_text())["nodes"]
    return cluster_dir / str(nodes[0]["home"])


def member_admin_key(cluster_dir: Path) -> Path:
    """The first member's admin key file (kept outside its node home, in ``admins/``)."""
    nodes = json.loads((cluster_dir / "cluster.json").read_text())["nodes"]
    return cluster_dir / "admins" / f"{nodes[0]['id']}.json"


def note_tx(
    key: SigningKey, chain_id: str, nonce: int, *, lifetime_ms: int = 600_000, **over: Any
) -> bytes:
    """A signed ``note.set`` by ``key``'s account (``over`` replaces any :func:`sign_tx`
    argument, e.g. ``body=`` or ``sender=``)."""
    args: dict[str, Any] = dict(
        chain_id=chain_id,
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=int(time.time() * 1000) + lifetime_ms,
        body={"key": "k", "value": b"v"},
    )
    args.update(over)
    return sign_tx(key, **args)


def client(cluster_dir: Path, api: str, **kw: Any) -> NodeClient:
    """A client of ``api`` presenting the first member's certificate. It does not retry
    (``NO_RETRY``) unless told to: the tests using it look at the node's own answers."""
    kw.setdefault("retry", NO_RETRY)
    return NodeClient.of_home(api, member_home(cluster_dir), **kw)


@dataclass
class Workload:
    """Senders each submit note.set transactions with consecutive nonces to random nodes; the
    first member's admin registers them first (the ledger takes nothing from unregistered
    keys)."""

    cluster_dir: Path
    senders: int = 8
    acked: dict[str, str] = field(default_factory=dict)  # tx id -> sender
    submitted: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.chain_id = chain_id_of(self.cluster_dir)
        self.keys = [SigningKey.generate(with_encryption=True) for _ in range(self.senders)]
        self.nonces = [0] * self.senders
        self._registered = False

    async def register(self, apis: list[str] | None = None) -> None:
        """Register every sender (once), see :func:`register_keys`."""
        if self._registered:
            return
        await register_keys(self.cluster_dir, self.keys, apis)
        self._registered = True

    def make_tx(self, i: int) -> bytes:
        self.nonces[i] += 1
        key = self.keys[i]
        return sign_tx(
            key,
            chain_id=self.chain_id,
            type_="note.set",
            sender=key.account_id,
            nonce=self.nonces[i],
            expires_at_ms=int(time.time() * 1000) + 3_600_000,
            body={"key": f"k{self.nonces[i]}", "value": b"v"},
        )

    async def run_closed_loop(self, count_per_sender: int, alive: list[str] | None = None) -> None:
        """Each sender submits and waits for commit before its next transaction; a node
        that refuses or is down is retried elsewhere with the same signed bytes."""
        await self.register(alive)

        async def sender(i: int) -> None:
            for _ in range(count_per_sender):
                raw = self.make_tx(i)
                for attempt in range(60):
                    api = random.choice(alive or apis_of(self.cluster_dir))
                    try:
                        async with client(self.cluster_dir, api, timeout_s=40) as c:
                            doc = await c.submit(raw, wait=True, timeout_s=30)
                        if doc["status"] == "committed":
                            self.acked[doc["id"]] = self.keys[i].account_id
                            break
                        if doc["status"] == "failed":
                            self.errors.append(f"{doc}")
                            break
                    except ApiError as e:
                        if e.reason == "duplicate":  # committed through an earlier attempt
                            import hashlib

                            self.acked[hashlib.sha256(raw).hexdigest()] = self.keys[i].account_id
                            break
                        await asyncio.sleep(0.2)
                    except (TimeoutError, OSError):
                        await asyncio.sleep(0.2)
                    if attempt == 59:
                        self.errors.append("gave up on a transaction")

        await asyncio.gather(*(sender(i) for i in range(self.senders)))

    async def submit_open_loop(self, count_per_sender: int) -> list[str]:
        """Submit without waiting (pipelined nonces per sender); returns the tx ids."""
        await self.register()
        apis = apis_of(self.cluster_dir)
        ids: list[str] = []

        async def sender(i: int) -> None:
            async with client(self.cluster_dir, apis[i % len(apis)]) as c:
                for _ in range(count_per_sender):
                    raw = self.make_tx(i)
                    while True:
                        try:
                            ids.append((await c.submit(raw))["id"])
                            break
                        except ApiError as e:
                            if e.status != 503:
                                raise
                            await asyncio.sleep(0.1)

        await asyncio.gather(*(sender(i) for i in range(self.senders)))
        return ids


async def register_keys(
    cluster_dir: Path, keys: list[SigningKey], apis: list[str] | None = None
) -> None:
    """Register ``keys`` as accounts of the first member: its admin's registrations are
    pipelined with consecutive nonces through the first node that answers, then awaited (the
    ledger takes nothing from keys no member registered)."""
    admin = load_key(member_admin_key(cluster_dir))
    chain_id = chain_id_of(cluster_dir)
    failures = []
    for api in apis or apis_of(cluster_dir):
        try:
            async with client(cluster_dir, api, timeout_s=60) as c:
                base = await TradingClient(c).nonce(admin.account_id)
                ids = []
                for i, k in enumerate(keys):
                    body = b.AccountRegister.for_key(
                        k.public_key, k.encryption_public_key or b"", ["consumer"], f"s{i}"
                    )
                    raw = sign_tx(
                        admin,
                        chain_id=chain_id,
                        type_=body.TYPE,
                        sender=admin.account_id,
                        nonce=base + 1 + i,
                        expires_at_ms=int(time.time() * 1000) + 600_000,
                        body=body.to_body(),
                    )
                    ids.append((await c.submit(raw))["id"])
                for tx_id in ids:
                    for _ in range(600):
                        doc = await c.tx(tx_id)
                        if doc["status"] != "pending":
                            break
                        await asyncio.sleep(0.1)
                    assert doc["status"] == "committed", doc
            return
        except (ApiError, OSError, TimeoutError) as e:
            failures.append(f"through {api}: {e!r}")  # a node may be down: the next one
    raise AssertionError(f"could not register the keys: {failures}")


async def registered_keys(
    cluster_dir: Path, count: int, apis: list[str] | None = None
) -> list[SigningKey]:
    """``count`` fresh keys, registered as accounts of the first member."""
    keys = [SigningKey.generate(with_encryption=True) for _ in range(count)]
    await register_keys(cluster_dir, keys, apis)
    return keys


async def chains(cluster_dir: Path, apis: list[str] | None = None) -> dict[str, list[list[Any]]]:
    out = {}
    for api in apis or apis_of(cluster_dir):
        async with client(cluster_dir, api) as c:
            height = (await c.status())["height"]
            out[api] = await c.chain(1, height)
    return out


def assert_chains_agree(chains_by_node: dict[str, list[list[Any]]]) -> int:
    """Identical (hash, state root) at every height every node has; returns the min height."""
    lists = list(chains_by_node.values())
    common = min(len(c) for c in lists)
    for h in range(common):
        entries = {(c[h][1], c[h][2]) for c in lists}
        assert len(entries) == 1, f"nodes disagree at height {h + 1}: {entries}"
    return common
