"""The consumer's node's fetch session: each chunk's hash starts when its frame arrives, and
next() hands out only chunks whose hash proves against the pinned root, in order."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.data.crypto import MerkleTree, sha256
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger
from mdtp.node.data.protocol import FetchRequest, Refused
from mdtp.node.data.relay import FetchSession, Relay

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
