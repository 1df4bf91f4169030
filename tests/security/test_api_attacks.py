"""Attacks on the API's authorisation model, on a real 4-node cluster (separate processes,
mutual TLS): outsiders without or with foreign certificates, members reading what is not
theirs, forged, replayed, stale and re-aimed signed reads, auditors of the wrong member,
unregistered and revoked accounts. Each attack asserts the refusal and its reason code, that
the refusal was counted in ``mdtp_api_refusals_total``, and that the legitimate parties are
still served afterwards; after every attack each node's memory and file descriptors come back
and it still commits a registered account's transaction (``recovered_and_committing``).

One cluster and one contract (``c-1``: supplier of member 0, consumer of member 1) serve the
module."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.trading import TradingClient

pytestmark = [pytest.mark.cluster, pytest.mark.security]

DAY_MS = 86_400_000
CONTRACT = "/v1/contracts/c-1"


@dataclass
class World:
    dir: Path
    nodes: list[cluster.ClusterNode]
    chain_id: str
    supplier: SigningKey  # member 0
    consumer: SigningKey  # member 1
    outsider: SigningKey  # member 2, party to nothing
    auditor0: SigningKey  # auditor of member 0 (the supplier's member)
    auditor2: SigningKey  # auditor of member 2 (no party's member)
    revoked: SigningKey  # member 0, revoked

    def member_ctx(self, member: int = 0) -> ssl.SSLContext:
        home = self.nodes[member].home
        return pki.api_client_context(home / "ca.pem", home / "node.pem", home / "node.key.pem")

    def bare_ctx(self) -> ssl.SSLContext:
        return pki.api_client_context(self.dir / "ca" / "ca.pem")

    def signed(self, key: SigningKey, path: str, query: str = "", **kw: Any) -> dict[str, str]:
        return signed_read.sign_headers(key, self.chain_id, "GET", path, query, **kw)


async def call(
    ctx: ssl.SSLContext,
    api: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    data: bytes | None = None,
) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(ssl=ctx)
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.request(method, f"https://{api}{path}", headers=headers, data=data) as r,
    ):
        return r.status, await r.json(content_type=None)


def refusals(node: cluster.ClusterNode) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'^mdtp_api_refusals_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


class Counted:
    """Asserts the refusals of ``reason`` on ``node`` grew by exactly ``by``."""

    def __init__(self, node: cluster.ClusterNode, reason: str, by: int = 1) -> None:
        self.node, self.reason, self.by = node, reason, by

    def __enter__(self) -> None:
        self.before = refusals(self.node).get(self.reason, 0.0)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            after = refusals(self.node).get(self.reason, 0.0)
            assert after - self.before == self.by, (self.reason, self.before, after)


async def parties_still_served(w: World, member: int = 0) -> None:
    """The contract's parties still read it, through a member's certificate, signed."""
    for key in (w.supplier, w.consumer):
        status, doc = await call(
            w.member_ctx(member), w.nodes[member].api, CONTRACT, w.signed(key, CONTRACT)
        )
        assert status == 200 and doc["contract"]["id"] == "c-1", doc


async def _setup(w: World) -> None:
    admins = [load_key(n.admin_key_file) for n in w.nodes]
    async with NodeClient.of_home(w.nodes[0].api, w.nodes[0].home, timeout_s=60) as node:
        t = TradingClient(node)
        for key, member, roles in (
            (w.supplier, 0, ["supplier"]),
            (w.consumer, 1, ["consumer"]),
            (w.outsider, 2, ["consumer"]),
            (w.auditor0, 0, ["auditor"]),
            (w.auditor2, 2, ["auditor"]),
            (w.revoked, 0, ["consumer"]),
        ):
            await t.register_account(
                admins[member],
                public_key=key.public_key,
                encryption_public_key=key.encryption_public_key or b"",
                roles=roles,
                display_name=f"{roles[0]} of node{member}",
            )
        await t.revoke_account(admins[0], w.revoked.account_id, reason="left")
        digest = "ab" * 32
        await t.publish_dataset(
            w.supplier,
            "ds-1",
            {
                "title": "Spindle vibration",
                "description": "traces",
                "tags": ["cnc"],
                "schema": "t:int",
                "format": "csv",
                "size_bytes": 1024,
                "chunk_count": 1,
                "merkle_root": digest,
                "plaintext_digest": digest,
                "supplier_node": "node0",
                "quality": {
                    "collection_start_ms": 1_700_000_000_000,
                    "collection_end_ms": 1_700_000_100_000,
                    "machine_type": "CNC mill",
                    "sampling_rate_millihz": 1000,
                    "validation_method": "none",
                },
            },
        )
        now = int(time.time() * 1000)
        await t.offer(
            w.consumer,
            contract_id="c-1",
            dataset_id="ds-1",
            consumer=w.consumer.account_id,
            terms={
                "delivery_method": "download",
                "purpose": "model training",
                "use_start_ms": now,
                "use_end_ms": now + 30 * DAY_MS,
                "max_downloads": 1,
                "redistribution_banned": True,
                "disposal_method": "crypto-erase",
                "disposal_deadline_ms": now + 31 * DAY_MS,
                "price_minor": 987_654,
                "currency": "EUR",
                "price_model": "one_time",
                "terms_document_hash": digest,
            },
        )
        # every node has executed the setup before the attacks read through any of them
        height = (await node.status())["height"]
    for n in w.nodes:
        async with NodeClient.of_home(n.api, n.home, timeout_s=30) as c:
            for _ in range(300):
                if (await c.status())["height"] >= height:
                    break
                await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cluster_dir = tmp_path_factory.mktemp("security")
    nodes = cluster.init_cluster(cluster_dir, 4)
    try:
        cluster.up(cluster_dir, timeout_s=90)
        chain_id = json.loads((cluster_dir / "cluster.json").read_text())["chain_id"]
        keys = [SigningKey.generate(with_encryption=True) for _ in range(6)]
        w = World(cluster_dir, nodes, chain_id, *keys)
        asyncio.run(_setup(w))
        yield w
    finally:
        cluster.down(cluster_dir)


# ---- outsiders ----------------------------------------------------------------------------


async def test_no_certificate_gets_minimal_status_and_nothing_of_the_ledger(w: World) -> None:
    node = w.nodes[0]
    status, doc = await call(w.bare_ctx(), node.api, "/v1/status")
    assert status == 200 and set(doc) == {"id", "chain_id", "ready"}, doc
    for path in (CONTRACT, "/v1/blocks/1", "/v1/chain", f"/v1/accounts/{w.supplier.account_id}"):
        headers = w.signed(w.consumer, path)  # a party's signature does not replace the cert
        with Counted(node, "certificate_required"):
            status, doc = await call(w.bare_ctx(), node.api, path, headers)
        assert (status, doc["error"]) == (401, "certificate_required"), (path, doc)
    await parties_still_served(w)


async def test_no_certificate_cannot_submit_transactions(w: World) -> None:
    node = w.nodes[1]
    raw = sign_tx(
        w.consumer,
        chain_id=w.chain_id,
        type_="note.set",
        sender=w.consumer.account_id,
        nonce=1,
        expires_at_ms=int(time.time() * 1000) + 60_000,
        body={"key": "k", "value": b"v"},
    )
    with Counted(node, "certificate_required"):
        status, doc = await call(w.bare_ctx(), node.api, "/v1/tx", method="POST", data=raw)
    assert (status, doc["error"]) == (401, "certificate_required")
    await parties_still_served(w, 1)


async def test_a_certificate_from_another_ca_fails_the_tls_handshake(
    w: World, tmp_path: Path
) -> None:
    rogue_ca = pki.create_ca("rogue")
    # the rogue CA even names a real member in its certificate
    leaf = pki.issue_node_certificate(rogue_ca, "node0", ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "k.pem").write_bytes(leaf.key_pem)
    ctx = pki.api_client_context(w.dir / "ca" / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await call(ctx, w.nodes[0].api, CONTRACT, w.signed(w.consumer, CONTRACT))
    await parties_still_served(w)


async def test_a_consortium_certificate_naming_no_member_is_refused(
    w: World, tmp_path: Path
) -> None:
    ca = pki.Issued(
        (w.dir / "ca" / "ca.pem").read_bytes(), (w.dir / "ca" / "ca.key.pem").read_bytes()
    )
    for name, uri in (("mallory", pki.NODE_URI_PREFIX + "mallory"), ("x", "https://example")):
        leaf = pki.issue_certificate(ca, common_name=name, uri=uri, hosts=[], server=False)
        (tmp_path / f"{name}.pem").write_bytes(leaf.cert_pem)
        (tmp_path / f"{name}.key.pem").write_bytes(leaf.key_pem)
        ctx = pki.api_client_context(
            w.dir / "ca" / "ca.pem", tmp_path / f"{name}.pem", tmp_path / f"{name}.key.pem"
        )
        with Counted(w.nodes[2], "not_a_member"):
            status, doc = await call(ctx, w.nodes[2].api, "/v1/blocks/1")
        assert (status, doc["error"]) == (403, "not_a_member"), doc
    await parties_still_served(w, 2)


# ---- members reading what is not theirs ---------------------------------------------------


async def test_a_member_certificate_without_a_signature_reads_no_contract(w: World) -> None:
    node = w.nodes[3]
    for path in (CONTRACT, "/v1/audit/contract/c-1", "/v1/disposals/overdue"):
        with Counted(node, "signature_required"):
            status, doc = await call(w.member_ctx(3), node.api, path)
        assert (status, doc["error"]) == (401, "signature_required"), doc
    # ... but reads the public ledger with it
    status, doc = await call(w.member_ctx(3), node.api, "/v1/datasets/ds-1")
    assert status == 200 and doc["dataset"]["id"] == "ds-1"
    await parties_still_served(w, 3)


async def test_a_non_party_account_reads_no_terms_receipts_or_trail(w: World) -> None:
    node = w.nodes[2]
    for path, query in (
        (CONTRACT, ""),
        (CONTRACT + "/receipts", ""),
        ("/v1/audit/contract/c-1", ""),
        ("/v1/audit/contract/c-1/export", ""),
        ("/v1/contracts", f"account={w.consumer.account_id}"),
        (f"/v1/audit/account/{w.supplier.account_id}", ""),
    ):
        url = f"{path}?{query}" if query else path
        with Counted(node, "not_a_party"):
            status, doc = await call(
                w.member_ctx(2), node.api, url, w.signed(w.outsider, path, query)
            )
        assert (status, doc["error"]) == (403, "not_a_party"), (url, doc)
        assert "987654" not in str(doc)
    await parties_still_served(w, 2)


async def test_an_auditor_of_an_unrelated_member_is_refused_and_of_a_party_served(
    w: World,
) -> None:
    node = w.nodes[0]
    with Counted(node, "not_a_party"):
        status, doc = await call(
            w.member_ctx(2), node.api, CONTRACT, w.signed(w.auditor2, CONTRACT)
        )
    assert (status, doc["error"]) == (403, "not_a_party")
    status, doc = await call(w.member_ctx(0), node.api, CONTRACT, w.signed(w.auditor0, CONTRACT))
    assert status == 200 and doc["contract"]["supplier"] == w.supplier.account_id
    await parties_still_served(w)


async def test_overdue_disposals_show_only_what_the_signer_may_read(w: World) -> None:
    status, doc = await call(
        w.member_ctx(2),
        w.nodes[2].api,
        "/v1/disposals/overdue",
        w.signed(w.outsider, "/v1/disposals/overdue"),
    )
    assert status == 200 and doc["overdue"] == []


# ---- forged, replayed, stale and re-aimed signatures --------------------------------------


async def test_a_forged_signature_is_refused(w: World) -> None:
    node = w.nodes[1]
    # the outsider signs but claims to be the consumer
    headers = w.signed(w.outsider, CONTRACT, account=w.consumer.account_id)
    with Counted(node, "bad_signature"):
        status, doc = await call(w.member_ctx(1), node.api, CONTRACT, headers)
    assert (status, doc["error"]) == (401, "bad_signature")
    # malformed headers are refused the same way
    broken = {**w.signed(w.consumer, CONTRACT), signed_read.HEADER_SIGNATURE: "zz"}
    with Counted(node, "bad_signature"):
        status, doc = await call(w.member_ctx(1), node.api, CONTRACT, broken)
    assert (status, doc["error"]) == (401, "bad_signature")
    await parties_still_served(w, 1)


async def test_a_replayed_signed_read_is_refused(w: World) -> None:
    node = w.nodes[0]
    headers = w.signed(w.consumer, CONTRACT)
    status, _ = await call(w.member_ctx(1), node.api, CONTRACT, headers)
    assert status == 200
    with Counted(node, "replayed_request"):
        status, doc = await call(w.member_ctx(1), node.api, CONTRACT, headers)
    assert (status, doc["error"]) == (401, "replayed_request")
    await parties_still_served(w)


async def test_expired_and_future_signed_reads_are_refused(w: World) -> None:
    node = w.nodes[3]
    now = int(time.time() * 1000)
    for skew in (-120_000, 120_000):
        headers = w.signed(w.consumer, CONTRACT, time_ms=now + skew)
        with Counted(node, "stale_request"):
            status, doc = await call(w.member_ctx(3), node.api, CONTRACT, headers)
        assert (status, doc["error"]) == (401, "stale_request"), skew
    await parties_still_served(w, 3)


async def test_a_signature_for_another_route_chain_or_query_does_not_verify(w: World) -> None:
    node = w.nodes[2]
    for headers, url in (
        # a signature for the consumer's contract list, aimed at the contract itself
        (w.signed(w.consumer, "/v1/contracts", f"account={w.consumer.account_id}"), CONTRACT),
        # the right path with another query
        (w.signed(w.consumer, "/v1/audit/contract/c-1", "proof=0"), "/v1/audit/contract/c-1"),
        # the right request for another consortium
        (signed_read.sign_headers(w.consumer, "other-chain", "GET", CONTRACT, ""), CONTRACT),
    ):
        with Counted(node, "bad_signature"):
            status, doc = await call(w.member_ctx(2), node.api, url, headers)
        assert (status, doc["error"]) == (401, "bad_signature"), url
    await parties_still_served(w, 2)


async def test_unregistered_and_revoked_accounts_read_nothing(w: World) -> None:
    node = w.nodes[0]
    stranger = SigningKey.generate()
    with Counted(node, "unknown_account"):
        status, doc = await call(w.member_ctx(0), node.api, CONTRACT, w.signed(stranger, CONTRACT))
    assert (status, doc["error"]) == (403, "unknown_account")
    path = f"/v1/audit/account/{w.revoked.account_id}"
    with Counted(node, "account_revoked"):
        status, doc = await call(w.member_ctx(0), node.api, path, w.signed(w.revoked, path))
    assert (status, doc["error"]) == (403, "account_revoked")
    # its member's auditor still reads the revoked account's trail
    status, doc = await call(w.member_ctx(0), node.api, path, w.signed(w.auditor0, path))
    assert status == 200 and [e["type"] for e in doc["entries"]][-1] == "account.revoke"
    await parties_still_served(w)


# ---- writes -------------------------------------------------------------------------------


async def test_an_unregistered_key_commits_nothing(w: World) -> None:
    node = w.nodes[1]
    stranger = SigningKey.generate()
    raw = sign_tx(
        stranger,
        chain_id=w.chain_id,
        type_="note.set",
        sender=stranger.account_id,
        nonce=1,
        expires_at_ms=int(time.time() * 1000) + 60_000,
        body={"key": "k", "value": b"spam"},
    )
    async with NodeClient.of_home(node.api, node.home) as c:
        with pytest.raises(ApiError) as refused:
            await c.submit(raw, wait=True, timeout_s=10)
        assert (refused.value.status, refused.value.reason) == (400, "not_registered")
        tx_id = hashlib.sha256(raw).hexdigest()
        with pytest.raises(ApiError) as unknown:
            await c.tx(tx_id)
        assert unknown.value.status == 404  # never reached the mempool or a block
        # a registered account still commits through the same node
        t = TradingClient(c)
        done = await t.submit(w.consumer, "note.set", {"key": "k", "value": b"v"})
        assert done.height > 0
    await parties_still_served(w, 1)


@pytest.fixture
def w(world: World) -> World:
    return world


def _usage(node: cluster.ClusterNode) -> tuple[int, int]:
    pid = cluster.running_pid(node)
    assert pid is not None, f"{node.id} is not running"
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _commit_through(w: World, node: cluster.ClusterNode, key: SigningKey) -> None:
    """A registered account's transaction commits through ``node`` (it still serves)."""
    ctx = w.member_ctx(w.nodes.index(node))
    url = f"https://{node.api}/v1/accounts/{key.account_id}/nonce"
    with urllib.request.urlopen(url, timeout=30, context=ctx) as r:
        nonce = int(json.loads(r.read())["nonce"]) + 1
    raw = sign_tx(
        key,
        chain_id=w.chain_id,
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=int(time.time() * 1000) + 600_000,
        body={"key": "after-attack", "value": b"ok"},
    )
    request = urllib.request.Request(
        f"https://{node.api}/v1/tx?wait=1&timeout=60",
        data=json.dumps({"tx": raw.hex()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=90, context=ctx) as r:
        assert json.loads(r.read())["status"] == "committed"


RSS_SLACK_KB = 64 * 1024  # CPython keeps some freed memory in its arenas
FD_SLACK = 8  # peer links may be reconnecting when we look


@pytest.fixture(autouse=True)
def recovered_and_committing(request: pytest.FixtureRequest) -> Iterator[None]:
    if "w" not in request.fixturenames:
        yield
        return
    w: World = request.getfixturevalue("w")
    before = {n.id: _usage(n) for n in w.nodes}
    yield
    for node in w.nodes:
        rss0, fds0 = before[node.id]
        deadline = time.monotonic() + 60
        while True:
            rss, fds = _usage(node)
            if rss <= rss0 + RSS_SLACK_KB and fds <= fds0 + FD_SLACK:
                break
            assert time.monotonic() < deadline, (node.id, (rss0, fds0), (rss, fds))
            time.sleep(0.5)
    _commit_through(w, w.nodes[0], w.supplier)
