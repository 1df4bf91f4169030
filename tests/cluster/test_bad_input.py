"""Bad input from clients and peers gets a reason code and a metric, never a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgpack
import pytest

from mdtp.node.ledger.tx import canonical
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError, NodeClient
from tests.support.processes import metric_value, wait_until
from tests.support.workload import chain_id_of, client, note_tx, registered_keys

pytestmark = pytest.mark.cluster


async def reason_of(client: NodeClient, raw: bytes) -> str:
    with pytest.raises(ApiError) as e:
        await client.submit(raw)
    assert e.value.status == 400
    return e.value.reason


async def test_bad_transactions_are_refused_with_reason_codes(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[0]
    chain = chain_id_of(running_cluster)
    (key,) = await registered_keys(running_cluster, 1)
    async with client(running_cluster, node.api) as c:
        forged = msgpack.unpackb(note_tx(key, chain, 1))
        forged[2] = bytes(64)
        assert await reason_of(c, canonical(forged)) == "bad_signature"
        assert await reason_of(c, note_tx(key, "other-chain", 1)) == "wrong_chain"
        assert await reason_of(c, b"\x93garbage") == "malformed"
        assert await reason_of(c, note_tx(key, chain, 5000)) == "future_nonce"
        big = note_tx(key, chain, 1, body={"key": "k", "value": b"x" * 70_000})
        assert await reason_of(c, big) == "oversized"
        ok = await c.submit(note_tx(key, chain, 1), wait=True)
        assert ok["status"] == "committed"
        assert await reason_of(c, note_tx(key, chain, 1, body={"key": "r"})) == "stale_nonce"
        with pytest.raises(ApiError) as e:
            await c.get("/v1/tx/nothex")
        assert e.value.status == 400
    assert metric_value(node, "mdtp_mempool_rejected_total", {"reason": "future_nonce"}) >= 1
    assert metric_value(node, "mdtp_api_requests_total", {"route": "/v1/tx", "status": "400"}) >= 5


async def test_garbage_on_the_api_port_does_not_hurt_the_node(running_cluster: Path) -> None:
    node = cluster.load_cluster(running_cluster)[1]
    host, _, port = node.api.rpartition(":")
    for payload in (b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256))):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(payload)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert cluster.is_ready(node)


def test_inconsistent_store_is_named_and_the_node_refuses_to_start(tmp_path: Path) -> None:
    import plyvel

    node = cluster.init_cluster(tmp_path, 1)[0]
    cluster.up(tmp_path, timeout_s=60)
    cluster.down(tmp_path)
    db = plyvel.DB(str(node.home / "data" / "ledger"))
    db.put(b"b/" + (7).to_bytes(8, "big"), b"stray block")
    db.close()
    proc = cluster.start_node(node)
    assert proc.wait(timeout=60) == 2
    log = node.log_file.read_text()
    assert "key space 'blocks' has height 7 above the tip 0" in log
    assert "Traceback" not in log
    wait_until(lambda: cluster.running_pid(node) is None, 10, "no process left")
