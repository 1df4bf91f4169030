"""Batched submission, ``POST /v1/txs``, on a real 4-node cluster: a batch commits in order,
each transaction gets its own answer, bounds are checked before any work, and a batch of
junk costs its connection the refusal budget of as many single submissions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from mdtp.node.api.chain import BATCH_TXS_MAX
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError, NodeClient
from tests.support.workload import chain_id_of, client, note_tx, registered_keys

pytestmark = pytest.mark.cluster


async def post_txs(c: NodeClient, body: bytes, content_type: str, **params: str) -> dict[str, Any]:
    doc: dict[str, Any] = await c._request(
        "POST",
        "/v1/txs",
        data=body,
        params=params or None,
        headers={"Content-Type": content_type},
    )
    return doc


def _forge(raw: bytes) -> bytes:
    """The transaction with a broken signature."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


async def test_a_batch_commits_in_order_with_wait(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[0]
    chain = chain_id_of(running_cluster)
    a, b = await registered_keys(running_cluster, 2)
    raws = [note_tx(a, chain, n) for n in range(1, 31)] + [note_tx(b, chain, 1)]
    async with client(running_cluster, node.api) as c:
        results = await c.submit_many(raws, wait=True, timeout_s=30)
        assert [r["status"] for r in results] == ["committed"] * len(raws)
        assert (await c.tx(results[0]["id"]))["status"] == "committed"
        heights = [(r["height"], r["index"]) for r in results[:30]]
        assert heights == sorted(heights)  # a's nonces in order
        # the same batch again: every one is a duplicate, refused by index
        again = await c.submit_many(raws[:3])
        assert [(r["index"], r["error"]) for r in again] == [(i, "duplicate") for i in range(3)]


async def test_mixed_batch_answers_each_transaction_in_order(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[1]
    chain = chain_id_of(running_cluster)
    (key,) = await registered_keys(running_cluster, 1)
    stranger = type(key).generate()  # never registered
    good1, good2 = note_tx(key, chain, 1), note_tx(key, chain, 2)
    batch = [
        good1,
        _forge(good1),
        b"\x00garbage",
        note_tx(stranger, chain, 1),
        note_tx(key, "another-chain", 2),
        good2,
    ]
    async with client(running_cluster, node.api) as c:
        results = await c.submit_many(batch, wait=True, timeout_s=30)
    assert results[0]["status"] == "committed" and results[5]["status"] == "committed"
    errors = {r["index"]: r["error"] for r in results if "error" in r}
    assert sorted(errors) == [1, 2, 3, 4]
    assert errors[1] == "bad_signature"
    assert errors[3] == "not_registered"
    assert all(r["message"] for r in results if "error" in r)


async def test_json_body_and_msgpack_body_are_both_taken(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[2]
    chain = chain_id_of(running_cluster)
    (key,) = await registered_keys(running_cluster, 1)
    async with client(running_cluster, node.api) as c:
        doc = await post_txs(
            c,
            json.dumps({"txs": [note_tx(key, chain, n).hex() for n in (1, 2)]}).encode(),
            "application/json",
            wait="1",
        )
        assert [r["status"] for r in doc["results"]] == ["committed", "committed"]
        doc = await post_txs(
            c, msgpack.packb([note_tx(key, chain, 3)]), "application/msgpack", wait="1"
        )
        assert [r["status"] for r in doc["results"]] == ["committed"]
        # without wait: pending, with the id
        doc = await post_txs(c, msgpack.packb([note_tx(key, chain, 4)]), "application/msgpack")
        assert doc["results"][0]["status"] == "pending" and len(doc["results"][0]["id"]) == 64
        for body, content_type in (
            (b'{"tx": "00"}', "application/json"),
            (b'{"txs": ["zz"]}', "application/json"),
            (msgpack.packb({"txs": []}), "application/msgpack"),
            (msgpack.packb([1, 2]), "application/msgpack"),
            (b"\x92\xc4", "application/msgpack"),  # truncated
            # nested bodies, refused before the parser builds them (one value per byte
            # would cost ~20-64 bytes of memory per byte of body)
            (b'{"txs": [' + b"[]," * 200_000 + b"[]]}", "application/json"),
            (b'{"txs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
            (
                b"\xdc\x03\xe8" + (b"\xdd" + (100_000).to_bytes(4, "big") + b"\x90" * 100_000),
                "application/msgpack",
            ),
        ):
            with pytest.raises(ApiError) as e:
                await post_txs(c, body, content_type)
            assert (e.value.status, e.value.reason) == (400, "bad_request"), body[:40]
        # one transaction: deep JSON got a server error (the parser's recursion), now a 400
        for body in (b'{"tx": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"tx": {"a": 1}}'):
            with pytest.raises(ApiError) as e:
                await c._request(
                    "POST", "/v1/tx", data=body, headers={"Content-Type": "application/json"}
                )
            assert (e.value.status, e.value.reason) == (400, "bad_request"), body[:40]


async def test_oversized_batches_are_refused_before_any_work(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[3]
    async with client(running_cluster, node.api, connections=1) as c:
        # the count is read from the array header: the announced items need not be there
        header = b"\xdc" + (BATCH_TXS_MAX + 1).to_bytes(2, "big")
        with pytest.raises(ApiError) as e:
            await post_txs(c, header, "application/msgpack")
        assert (e.value.status, e.value.reason) == (413, "too_many_txs")
        assert str(BATCH_TXS_MAX) in e.value.message
        too_many = json.dumps({"txs": ["00"] * (BATCH_TXS_MAX + 1)}).encode()
        with pytest.raises(ApiError) as e:
            await post_txs(c, too_many, "application/json")
        assert (e.value.status, e.value.reason) == (413, "too_many_txs")
        big = msgpack.packb([bytes(2_200_000), bytes(2_200_000)])  # above the 4 MiB body
        with pytest.raises(ApiError) as e:
            await post_txs(c, big, "application/msgpack")
        assert (e.value.status, e.value.reason) == (413, "oversized")


async def test_a_junk_batch_spends_the_connections_refusal_budget(running_cluster: Path) -> None:
    """One refusal per refused transaction: a batch of 50 forged transactions leaves its
    connection over budget (20 a second), so its next request is answered 429
    ``too_many_refused``; another connection still commits."""
    node = cluster.load_cluster(running_cluster)[1]
    chain = chain_id_of(running_cluster)
    (key,) = await registered_keys(running_cluster, 1)
    forged = [_forge(note_tx(key, chain, n)) for n in range(1, 51)]
    async with client(running_cluster, node.api, connections=1) as flood:
        results = await flood.submit_many(forged)
        assert {r["error"] for r in results} == {"bad_signature"}
        assert [r["index"] for r in results] == list(range(50))
        with pytest.raises(ApiError) as e:
            await flood.submit_many(forged[:1])
        assert (e.value.status, e.value.reason) == (429, "too_many_refused")
        with pytest.raises(ApiError) as e:  # single submissions share the budget
            await flood.submit(forged[0])
        assert (e.value.status, e.value.reason) == (429, "too_many_refused")
    async with client(running_cluster, node.api) as c:
        (done,) = await c.submit_many([note_tx(key, chain, 1)], wait=True)
        assert done["status"] == "committed"
