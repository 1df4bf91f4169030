"""``POST /v1/tx`` and ``POST /v1/txs`` of a real node with hostile bodies, content types and
query strings:
every answer is a 4xx (or a 2xx for a valid transaction) with ``{"error", "message"}`` —
never a 5xx, never a hang. One single-node cluster serves the whole module."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdtp.node.identity import pki
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import cluster
from tests.fuzz.strategies import untrusted
from tests.support.processes import wait_until
from tests.support.workload import chain_id_of, registered_keys

pytestmark = pytest.mark.faults

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
TIMEOUT_S = 30
# Registered senders for the valid transactions (the ledger takes nothing from a key no
# member registered), one per transaction, registered once for the module.
SENDERS = 200
_senders: list[SigningKey] = []


@pytest.fixture(scope="module")
def node_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ssl.SSLContext, Path]]:
    cluster_dir = Path(tmp_path_factory.mktemp("api-fuzz")) / "c"
    (node,) = cluster.init_cluster(cluster_dir, 1)
    cluster.start_node(node)
    try:
        wait_until(lambda: cluster.is_ready(node), 90, "single node ready")
        _senders[:] = asyncio.run(registered_keys(cluster_dir, SENDERS))
        # the member's client certificate: POST /v1/tx is for members' clients
        ctx = pki.api_client_context(
            cluster_dir / "ca" / "ca.pem", node.home / "node.pem", node.home / "node.key.pem"
        )
        yield node.api, ctx, cluster_dir
    finally:
        cluster.down(cluster_dir)


def post(
    api: str, ctx: ssl.SSLContext, body: bytes, ctype: str, query: str = "", path: str = "/v1/tx"
) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"https://{api}{path}{query}", data=body, method="POST", headers={"Content-Type": ctype}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=ctx) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    assert time.monotonic() - started < TIMEOUT_S
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def assert_typed_answer(status: int, doc: Any) -> None:
    assert status < 500, (status, doc)
    if status >= 400:
        assert isinstance(doc, dict) and set(doc) >= {"error", "message"}, (status, doc)
        assert isinstance(doc["error"], str) and doc["error"]


def _valid(cluster_dir: Path, nonce: int) -> bytes:
    # a fresh registered sender while they last (then an unregistered one, refused 4xx)
    key = _senders.pop() if _senders else SigningKey.generate()
    return sign_tx(
        key,
        chain_id=chain_id_of(cluster_dir),
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=int(time.time() * 1000) + 600_000,
        body={"key": "k", "value": b"v"},
    )


def test_raw_and_json_bodies_get_typed_4xx_answers(
    node_api: tuple[str, ssl.SSLContext, Path],
) -> None:
    api, ctx, cluster_dir = node_api
    valid = [_valid(cluster_dir, 1)]
    json_bodies = st.one_of(
        st.binary(max_size=200),
        untrusted(valid).map(lambda b: json.dumps({"tx": b.hex()}).encode()),
        st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=3).map(
            lambda d: json.dumps(d).encode()
        ),
        st.sampled_from([b"null", b"[]", b'{"tx": 5}', b'{"tx": "zz"}', b'"tx"']),
    )

    @FUZZ
    @given(
        st.one_of(
            untrusted(valid).map(lambda b: (b, "application/octet-stream")),
            json_bodies.map(lambda b: (b, "application/json")),
        )
    )
    def check(case: tuple[bytes, str]) -> None:
        assert_typed_answer(*post(api, ctx, *case))

    check()


def test_wait_and_timeout_query_values_never_cause_a_server_error(
    node_api: tuple[str, ssl.SSLContext, Path],
) -> None:
    api, ctx, cluster_dir = node_api
    texts = st.one_of(
        st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "", "abc", "0x10", "1" * 400]),
        st.text(max_size=12),
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(texts)
    def check(timeout: str) -> None:
        query = "?" + urllib.parse.urlencode({"wait": "1", "timeout": timeout})
        assert_typed_answer(
            *post(api, ctx, _valid(cluster_dir, 1), "application/octet-stream", query)
        )

    check()


def test_batch_bodies_get_typed_answers_one_per_transaction(
    node_api: tuple[str, ssl.SSLContext, Path],
) -> None:
    api, ctx, cluster_dir = node_api
    valid = [_valid(cluster_dir, 1), _valid(cluster_dir, 1)]
    items = st.lists(untrusted(valid), max_size=5)
    bodies = st.one_of(
        items.map(lambda ts: (msgpack.packb(ts, use_bin_type=True), "application/msgpack")),
        items.map(
            lambda ts: (json.dumps({"txs": [t.hex() for t in ts]}).encode(), "application/json")
        ),
        st.binary(max_size=200).map(lambda b: (b, "application/msgpack")),
        st.binary(max_size=200).map(lambda b: (b, "application/json")),
        st.sampled_from(
            [
                (b'{"txs": "00"}', "application/json"),
                (b'{"txs": [5, null]}', "application/json"),
                (msgpack.packb([[b"x"]]), "application/msgpack"),
                (msgpack.packb({"txs": []}), "application/msgpack"),
                (b"\xdd\xff\xff\xff\xff", "application/msgpack"),
                (b"\x90", "application/msgpack"),
            ]
        ),
    )

    @FUZZ
    @given(bodies)
    def check(case: tuple[bytes, str]) -> None:
        status, doc = post(api, ctx, *case, path="/v1/txs")
        assert_typed_answer(status, doc)
        if status == 200:
            for i, r in enumerate(doc["results"]):
                assert ("id" in r and "status" in r) or (r["index"] == i and r["error"]), r

    check()
