"""The consumer's node's fetch session: each chunk's hash starts when its frame arrives, and
next() hands out only chunks whose hash proves against the pinned root, in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from mdtp.node.api.data import add_routes
from mdtp.node.data.crypto import MerkleTree, sha256
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger
from mdtp.node.data.protocol import FetchRequest, Refused, sign_fetch_request
from mdtp.node.data.relay import FetchSession, Relay
from mdtp.node.data.uploads import Uploads
from tests.compute.test_service import Ledger
from tests.ledger.helpers import CHAIN_ID, Market, dataset_body

COUNT = 6


def _sender(sent: list[tuple[str, str, Any]]) -> Any:
    def send(peer: str, kind: str, body: Any) -> bool:
        sent.append((peer, kind, body))
        return True

    return send


def _session(sent: list[tuple[str, str, Any]]) -> tuple[FetchSession, list[bytes], MerkleTree]:
    chunks = [os.urandom(5000 + i) for i in range(COUNT)]
    tree = MerkleTree([sha256(c) for c in chunks])
    relay = Relay(
        node_id="node1",
        chain_id="chain",
        ledger=cast(CommittedLedger, None),
        link=PeerLink("node1", _sender(sent), lambda *a: None),
        limits=DataLimits(window_chunks=4, ack_timeout_ms=2_000),
        metrics=DataMetrics(CollectorRegistry()),
        pool=ThreadPoolExecutor(2),
    )
    request = cast(
        FetchRequest, SimpleNamespace(first_chunk=0, last_chunk=COUNT - 1, contract_id="c1")
    )
    session = FetchSession(relay, b"f" * 16, "node0", request, tree.root, COUNT, "ds")
    relay.fetching[session.fid] = session
    return session, chunks, tree


async def test_chunks_that_prove_are_handed_out_in_order() -> None:
    session, chunks, tree = _session([])
    for i, c in enumerate(chunks[:4]):
        session.deliver("chunk", {"fid": session.fid, "i": i, "data": c, "proof": tree.proof(i)})
    for i in range(4):
        event = await session.next()
        assert event["i"] == i and event["data"] == chunks[i]


@pytest.mark.parametrize("how", ["flipped", "wrong_proof", "bad_proof_type", "out_of_order"])
async def test_a_bad_chunk_is_caught_before_the_client_sees_it(how: str) -> None:
    sent: list[tuple[str, str, Any]] = []
    session, chunks, tree = _session(sent)
    session.deliver(
        "chunk", {"fid": session.fid, "i": 0, "data": chunks[0], "proof": tree.proof(0)}
    )
    data, index = chunks[1], 1
    proof: list[Any] = tree.proof(1)
    if how == "flipped":
        data = data[:-1] + bytes([data[-1] ^ 1])
    elif how == "wrong_proof":
        proof = tree.proof(2)
    elif how == "bad_proof_type":
        proof = [1, 2, 3]
    else:
        index, data, proof = 2, chunks[2], tree.proof(2)
    session.deliver("chunk", {"fid": session.fid, "i": index, "data": data, "proof": proof})
    assert (await session.next())["i"] == 0
    with pytest.raises(Refused) as caught:
        await session.next()
    assert caught.value.reason == "bad_chunk" and caught.value.chunk == 1
    assert session.done and ("node0", "data.cancel", {"fid": session.fid}) in sent


async def test_a_supplier_beyond_the_window_ends_the_fetch() -> None:
    sent: list[tuple[str, str, Any]] = []
    session, chunks, _ = _session(sent)
    bound = session.queue.maxsize
    for i in range(bound + 1):
        c = chunks[i % COUNT]
        session.deliver("chunk", {"fid": session.fid, "i": i, "data": c, "proof": []})
    assert session.done and ("node0", "data.cancel", {"fid": session.fid}) in sent


# -- a Byzantine supplier's malformed frames -------------------------------------------------

FID = b"f" * 16


def _malformed(chunk: bytes, proof: list[bytes], fid: Any = FID) -> list[tuple[str, Any, str]]:
    """(frame kind, body, the refusal the client gets): frames no honest supplier sends."""
    return [
        ("data.chunk", {"fid": fid, "i": 0, "digest": 0}, "bad_chunk"),  # a digest of its own
        ("data.chunk", {"fid": fid, "i": 0, "proof": proof}, "bad_chunk"),  # data missing
        ("data.chunk", {"fid": fid, "i": "0", "data": chunk, "proof": proof}, "bad_chunk"),
        ("data.chunk", [fid, 0, chunk, proof], "bad_chunk"),  # the body is not a map
        ("data.chunk", {"fid": [1, 2], "i": 0, "data": chunk, "proof": proof}, "bad_chunk"),
        ("data.chunk", {"fid": fid, "i": True, "data": chunk, "proof": proof}, "bad_chunk"),
        ("data.chunk", {"fid": fid, "i": 0, "data": chunk, "proof": [bytes(32)] * 99}, "bad_chunk"),
        ("data.chunk", {"fid": fid, "kind": "end", "receipt": None}, "bad_chunk"),
        ("data.end", {"fid": fid, "receipt": 5, "chunks": 0, "bytes": 0}, "interrupted"),
        ("data.end", {"fid": fid, "receipt": None, "chunks": 0, "bytes": 0}, "interrupted"),
        ("data.refuse", {"fid": fid, "reason": 7, "message": None, "chunk": None}, "interrupted"),
        ("data.refuse", {"fid": fid, "reason": "busy", "message": "", "chunk": "x"}, "interrupted"),
    ]


def _failures(relay: Relay, reason: str) -> float:
    value = relay.metrics.fetch_failures.labels(reason)._value.get()
    return float(value)


@pytest.mark.parametrize("case", range(len(_malformed(b"", []))))
async def test_a_malformed_frame_ends_its_fetch_with_a_specific_error(case: int) -> None:
    sent: list[tuple[str, str, Any]] = []
    session, chunks, tree = _session(sent)
    relay = session.relay
    kind, body, reason = _malformed(chunks[0], tree.proof(0))[case]
    relay.on_reply("node0", kind, body)  # nothing escapes the frame handler
    with pytest.raises(Refused) as caught:
        await session.next()
    assert (caught.value.reason, caught.value.chunk) == (reason, 0)
    assert "malformed" in caught.value.message
    assert session.done and relay.fetching == {}
    assert ("node0", "data.cancel", {"fid": session.fid}) in sent
    assert _failures(relay, "malformed_frame") == 1


async def test_chunks_before_a_malformed_frame_are_still_handed_out() -> None:
    session, chunks, tree = _session([])
    session.relay.on_reply(
        "node0", "data.chunk", {"fid": FID, "i": 0, "data": chunks[0], "proof": tree.proof(0)}
    )
    session.relay.on_reply("node0", "data.chunk", {"fid": FID, "i": 1, "digest": 0})
    assert (await session.next())["data"] == chunks[0]
    with pytest.raises(Refused) as caught:
        await session.next()
    assert (caught.value.reason, caught.value.chunk) == ("bad_chunk", 1)


async def test_another_peer_cannot_end_a_fetch_with_malformed_frames() -> None:
    session, _, _ = _session([])
    session.relay.on_reply("node2", "data.chunk", [FID])
    session.relay.on_reply("node2", "data.chunk", {"fid": FID, "i": "x"})
    assert not session.done and session.queue.empty()


class _Supplier:
    """The supplier's node (m1) on the relay's peer link: answers each ``data.req`` with the
    frames ``answer`` makes for its fetch id, on a later turn of the loop as a link would."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.answer: Any = lambda fid, n: []
        self.requests = 0
        self.cancelled: list[bytes] = []
        self.asked, self.told_to_stop = asyncio.Event(), asyncio.Event()

    def send(self, peer: str, kind: str, body: dict[str, Any]) -> bool:
        if kind == "data.cancel":
            self.cancelled.append(body["fid"])
            self.told_to_stop.set()
        if kind == "data.req":
            self.requests += 1
            self.asked.set()
            loop = asyncio.get_running_loop()
            for reply_kind, reply in self.answer(body["fid"], self.requests):
                assert self.relay is not None
                loop.call_soon(self.relay.on_reply, peer, reply_kind, reply)
        return True


@dataclass
class _Bed:
    """The consumer's node's fetch route over a real :class:`Relay` on a real committed
    ledger (contract ``c2`` on ``ds2``, whose Merkle root is ``tree``'s), and its supplier."""

    market: Market
    chunks: list[bytes]
    tree: MerkleTree
    supplier: _Supplier
    relay: Relay
    app: web.Application

    def request(self) -> bytes:
        return sign_fetch_request(
            self.market.consumer,
            chain_id=CHAIN_ID,
            contract_id="c2",
            first_chunk=0,
            last_chunk=COUNT - 1,
            expires_at_ms=int(time.time() * 1000) + 60_000,
        )


def _bed(ack_timeout_ms: int = 5_000) -> _Bed:
    chunks = [os.urandom(3000 + i) for i in range(COUNT)]
    tree = MerkleTree([sha256(c) for c in chunks])
    market = Market()
    body = dataset_body("ds2", merkle_root=tree.root, chunk_count=COUNT)
    market.chain.ok(market.supplier, "dataset.publish", body)
    offer = {**market.offer_body("c2"), "dataset_id": "ds2"}
    market.chain.ok(market.supplier, "contract.offer", offer)
    market.sign(market.supplier, "c2")
    market.sign(market.consumer, "c2")
    supplier = _Supplier()
    relay = Relay(
        node_id="m2",
        chain_id=CHAIN_ID,
        ledger=Ledger(market),
        link=PeerLink("m2", supplier.send, lambda *a: None),
        limits=DataLimits(window_chunks=8, ack_timeout_ms=ack_timeout_ms),
        metrics=DataMetrics(CollectorRegistry()),
        pool=ThreadPoolExecutor(2),
    )
    supplier.relay = relay
    app = web.Application()
    add_routes(app, uploads=cast(Uploads, None), relay=relay)
    return _Bed(market, chunks, tree, supplier, relay, app)


def _records(stream: bytes) -> list[dict[str, Any]]:
    out, at = [], 0
    while at < len(stream):
        (length,) = struct.unpack(">I", stream[at : at + 4])
        out.append(msgpack.unpackb(stream[at + 4 : at + 4 + length], raw=False))
        at += 4 + length
    return out


async def test_a_supplier_answering_with_malformed_frames_leaves_no_fetch_held() -> None:
    """20 fetches (more than max_fetches) answered with malformed frames, through the API:
    each ends with its own error, is counted, and releases its session, so the next,
    well-formed fetch is served (before the fix a non-awaitable ``digest`` escaped as a
    TypeError, the sessions stayed held and the node answered ``busy`` until restarted)."""
    bed = _bed()
    relay, chunks, tree = bed.relay, bed.chunks, bed.tree
    cases = _malformed(b"", [])
    bed.supplier.answer = lambda fid, n: [
        _malformed(chunks[0], tree.proof(0), fid)[(n - 1) % len(cases)][:2]
    ]
    attacks = 20
    assert attacks > relay.limits.max_fetches
    async with TestClient(TestServer(bed.app)) as client:
        for n in range(attacks):
            resp = await client.post("/v1/data/fetch", data=bed.request())
            assert resp.status == 403, (n, resp.status, await resp.text())
            doc = await resp.json()
            assert (resp.status, doc["error"]) == (403, cases[n % len(cases)][2]), doc
            assert "malformed" in doc["message"]
            assert relay.fetching == {}
        assert _failures(relay, "malformed_frame") == attacks
        assert relay.metrics.active_fetching._value.get() == 0

        served = sum(map(len, chunks))
        bed.supplier.answer = lambda fid, n: (
            [
                ("data.chunk", {"fid": fid, "i": i, "data": c, "proof": tree.proof(i)})
                for i, c in enumerate(chunks)
            ]
            + [("data.end", {"fid": fid, "receipt": bytes(32), "chunks": COUNT, "bytes": served})]
        )
        resp = await client.post("/v1/data/fetch", data=bed.request())
        assert resp.status == 200
        records = _records(await resp.read())
    assert [r["t"] for r in records] == ["chunk"] * COUNT + ["end"]
    assert [r["data"] for r in records[:-1]] == chunks
    assert relay.fetching == {} and _failures(relay, "malformed_frame") == attacks


async def test_a_fetch_whose_handler_is_cancelled_before_the_first_chunk_is_released() -> None:
    """The client goes away while the supplier has not answered yet: the cancelled handler
    releases the session at once (not only when the supplier's silence times out)."""
    bed = _bed(ack_timeout_ms=60_000)  # the supplier never answers
    async with TestClient(TestServer(bed.app, handler_cancellation=True)) as client:
        task = asyncio.create_task(client.post("/v1/data/fetch", data=bed.request()))
        await asyncio.wait_for(bed.supplier.asked.wait(), 5)
        [fid] = bed.relay.fetching
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.wait_for(bed.supplier.told_to_stop.wait(), 5)
        assert bed.relay.fetching == {} and bed.supplier.cancelled == [fid]
