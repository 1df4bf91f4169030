"""Issue #12, data: attacks on the chunk service of a real 4-node cluster (node0 holds the
supplier's datasets, node1 is the consumer's member). Each attack asserts the specific
refusal (reason code, counted), that the attacked node still commits and serves afterwards,
where it applies that descriptors and memory come back, and that the ledger records every
byte the supplier served."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.public
import pytest

from mdtp.node.identity.genesis import load_genesis
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ops import cluster
from mdtp.node.ops.testbed import register_account
from mdtp.node.p2p.frames import encode_frame
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.data import DataError, fetch
from tests.cluster.test_data import MiB, Trade, raw_fetch, served_bytes, signed
from tests.security.data_fixtures import (
    BIG_CHUNKS,
    assert_ledger_records,
    assert_resources_back,
    assert_still_serves,
    contract_for,
    open_fds,
    pid_of,
    receipts_of,
    refusals,
    restart,
    rss_mib,
    sec_cluster,
    trade,
    wait_granted,
)
from tests.support.impersonate import impersonate
from tests.support.processes import metric_value, wait_until

pytestmark = [pytest.mark.security, pytest.mark.cluster]
__all__ = ["sec_cluster", "trade"]  # fixtures used by name
FRAME_MAX = 4 * 1024 * 1024


def stops(t: Trade, reason: str) -> float:
    return metric_value(t.supplier_node, "mdtp_data_stream_stops_total", {"reason": reason})


async def stalled_fetch(
    t: Trade, raw: bytes, then: Any, *, stall_after: int = 1
) -> tuple[list[dict[str, Any]], DataError | None]:
    """Read ``stall_after`` chunks, stop reading while ``then()`` runs, then read the rest."""
    records: list[dict[str, Any]] = []
    error: DataError | None = None
    async with t.consumer_client() as c:
        try:
            async for rec in c.fetch_records(raw):
                records.append(rec)
                if len(records) == stall_after:
                    await then()
        except DataError as e:
            error = e
    return records, error


@pytest.fixture(autouse=True)
def resources_come_back(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every attack the supplier's and the consumer's nodes give their memory and file
    descriptors back (on top of what each attack checks about commits and the ledger)."""
    if "trade" not in request.fixturenames:
        yield
        return
    t: Trade = request.getfixturevalue("trade")
    nodes = [t.supplier_node, t.consumer_node]
    before = [(open_fds(n), rss_mib(n)) for n in nodes]
    yield
    for node, (fds, rss) in zip(nodes, before, strict=True):
        assert_resources_back(node, fds, rss)


async def consumer_terminates(t: Trade, contract_id: str, consumer: SigningKey) -> None:
    async with t.consumer_client() as c:
        await c.send(consumer, b.ContractTerminate(contract_id, "stalled on purpose"))
    await asyncio.sleep(1)  # the supplier's node commits it too


async def test_terminating_mid_stream_stops_the_stream_and_the_download_is_recorded(
    trade: Trade,
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer, "big-ds")
    await wait_granted(t, cid)
    served, stopped = served_bytes(t), stops(t, "contract_terminated")
    records, error = await stalled_fetch(
        t,
        await signed(t, cid, first=0, last=BIG_CHUNKS - 1),
        lambda: consumer_terminates(t, cid, t.consumer),
    )
    chunks = [r for r in records if r["t"] == "chunk"]
    assert (records[-1]["t"], records[-1]["reason"]) == ("error", "contract_terminated")
    assert error is None and len(chunks) < BIG_CHUNKS
    assert stops(t, "contract_terminated") == stopped + 1
    assert refusals(t.supplier_node, "contract_terminated") >= 1
    served = served_bytes(t) - served
    assert served >= len(chunks) * MiB
    await assert_ledger_records(t, [cid], served)
    [receipt] = await receipts_of(t, [cid])
    assert receipt["first_chunk"] == 0 and receipt["request_id"]
    await assert_still_serves(t)


async def test_a_contract_expiring_mid_stream_stops_the_stream_and_is_recorded(
    trade: Trade,
) -> None:
    t = trade
    end_ms = int(time.time() * 1000) + 8000
    cid = await contract_for(t, t.consumer, "big-ds", use_end_ms=end_ms)
    await wait_granted(t, cid)
    served = served_bytes(t)

    async def outlast() -> None:
        await asyncio.sleep(max(0.0, (end_ms - time.time() * 1000) / 1000 + 1))

    records, _ = await stalled_fetch(t, await signed(t, cid, first=0, last=BIG_CHUNKS - 1), outlast)
    assert (records[-1]["t"], records[-1]["reason"]) == ("error", "contract_expired")
    assert len([r for r in records if r["t"] == "chunk"]) < BIG_CHUNKS
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    await assert_still_serves(t)


async def test_a_consumer_revoked_mid_stream_gets_no_further_window(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    victim = await register_account(t.dir, t.consumer_node, ["consumer"], "to be revoked")
    cid = await contract_for(t, victim, "big-ds")
    await wait_granted(t, cid)
    served, stopped = served_bytes(t), stops(t, "bad_signature")

    async def revoke() -> None:
        admin = load_key(t.consumer_node.admin_key_file)
        async with t.consumer_client() as c:
            await c.send(admin, b.AccountRevoke(victim.account_id, "key stolen"))
        await asyncio.sleep(1)

    records, _ = await stalled_fetch(
        t, await signed(t, cid, signer=victim, first=0, last=BIG_CHUNKS - 1), revoke
    )
    assert (records[-1]["t"], records[-1]["reason"]) == ("error", "bad_signature")
    assert stops(t, "bad_signature") == stopped + 1
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    await assert_still_serves(t)


async def test_a_consumer_vanishing_mid_stream_is_still_on_the_ledger(trade: Trade) -> None:
    t = trade
    cid = await contract_for(t, t.consumer, "big-ds")
    await wait_granted(t, cid)
    served, fds, rss = served_bytes(t), open_fds(t.supplier_node), rss_mib(t.supplier_node)
    gone = metric_value(
        t.consumer_node, "mdtp_data_fetch_failures_total", {"reason": "interrupted"}
    )
    async with t.consumer_client() as c:
        async for rec in c.fetch_records(await signed(t, cid, first=0, last=BIG_CHUNKS - 1)):
            if rec["t"] == "chunk" and rec["i"] == 2:
                break  # the client disappears with the stream open
    wait_until(
        lambda: (
            metric_value(
                t.consumer_node, "mdtp_data_fetch_failures_total", {"reason": "interrupted"}
            )
            > gone
        ),
        60,
        "the relay noticed the client left",
    )
    wait_until(
        lambda: metric_value(t.supplier_node, "mdtp_data_serving_active") == 0, 60, "stream over"
    )
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    assert_resources_back(t.supplier_node, fds, rss)
    await assert_still_serves(t)


async def test_requests_for_another_accounts_contract_claim_no_nonce_or_slot(
    trade: Trade,
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    served, before = served_bytes(t), refusals(t.supplier_node, "not_consumer")
    fds, rss = open_fds(t.supplier_node), rss_mib(t.supplier_node)
    flood = 200
    async with t.consumer_client() as c:
        for _ in range(flood):
            raw = await signed(t, cid, signer=t.other_consumer, first=0, last=0)
            with pytest.raises(DataError) as e:
                [r async for r in c.fetch_records(raw)]
            assert e.value.reason == "not_consumer"
    assert refusals(t.supplier_node, "not_consumer") == before + flood
    assert served_bytes(t) == served
    records = await raw_fetch(t, await signed(t, cid, first=0, last=2))
    assert records[-1]["t"] == "end"
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    assert_resources_back(t.supplier_node, fds, rss)
    await assert_still_serves(t)


async def test_a_forged_copy_of_a_request_cannot_burn_its_nonce(trade: Trade) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    genuine = await signed(t, cid, first=0, last=2)
    forged = bytearray(genuine)
    forged[-5] ^= 0x01  # same nonce, signature no longer valid
    served, before = served_bytes(t), refusals(t.supplier_node, "bad_signature")
    with pytest.raises(DataError) as e:
        await raw_fetch(t, bytes(forged))
    assert e.value.reason == "bad_signature"
    assert refusals(t.supplier_node, "bad_signature") == before + 1
    assert (await raw_fetch(t, genuine))[-1]["t"] == "end"
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    await assert_still_serves(t)


async def test_a_captured_request_is_refused_after_the_supplier_restarts(trade: Trade) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    raw = await signed(t, cid, first=0, last=2, expires_in_ms=240_000)
    served = served_bytes(t)
    assert (await raw_fetch(t, raw))[-1]["t"] == "end"
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    restart(t.supplier_node)
    with pytest.raises(DataError) as e:
        await asyncio.wait_for(raw_fetch(t, raw), 120)
    assert e.value.reason == "replayed_nonce"
    assert refusals(t.supplier_node, "replayed_nonce") == 1
    assert served_bytes(t) == 0
    [receipt] = await receipts_of(t, [cid])
    assert (receipt["first_chunk"], receipt["last_chunk"]) == (0, 2)
    await assert_still_serves(t)


async def test_a_download_cut_by_a_supplier_crash_is_recorded_after_its_restart(
    trade: Trade,
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer, "big-ds")
    await wait_granted(t, cid)

    async def crash() -> None:
        os.kill(pid_of(t.supplier_node), signal.SIGKILL)

    records, error = await stalled_fetch(
        t, await signed(t, cid, first=0, last=BIG_CHUNKS - 1), crash, stall_after=3
    )
    received = sum(len(r["data"]) for r in records if r["t"] == "chunk")
    assert received >= 3 * MiB and received < BIG_CHUNKS * MiB
    assert error is not None or records[-1]["t"] == "error"
    wait_until(lambda: cluster.running_pid(t.supplier_node) is None, 60, "supplier gone")
    cluster.start_node(t.supplier_node)
    wait_until(lambda: cluster.is_ready(t.supplier_node), 120, "supplier ready again")
    deadline = time.monotonic() + 120
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = await receipts_of(t, [cid])
        await asyncio.sleep(0.5)
    [receipt] = found
    # written ahead of each chunk: at least what arrived (more sat in buffers when it died)
    assert received <= receipt["byte_count"] < BIG_CHUNKS * MiB
    assert receipt["last_chunk"] - receipt["first_chunk"] + 1 == receipt["byte_count"] // MiB
    wait_until(
        lambda: metric_value(t.supplier_node, "mdtp_data_receipts_pending") == 0,
        60,
        "the written-ahead download cleared once its receipt committed",
    )
    await assert_still_serves(t)


async def test_a_request_relayed_by_a_member_other_than_the_consumers_is_refused(
    trade: Trade,
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    raw = await signed(t, cid, first=0, last=2)
    served, before = served_bytes(t), refusals(t.supplier_node, "foreign_relay")
    relay_id = "node2"  # a member, but not the consumer account's (node1)
    key = load_key(t.dir / relay_id / "node_key.json")
    # node2 speaks for itself on its inbound link to node0 (replies go out on node0's own
    # outbound link to node2, so the refusal is seen in node0's metrics and audit log)
    _, writer, accepted = await impersonate(t.dir, t.supplier_node, relay_id, key)
    assert accepted
    writer.write(encode_frame("data.req", {"fid": os.urandom(16), "req": raw}, FRAME_MAX))
    await writer.drain()
    wait_until(
        lambda: refusals(t.supplier_node, "foreign_relay") == before + 1, 30, "refused as relayed"
    )
    writer.close()
    assert ": foreign_relay" in t.supplier_node.log_file.read_text()
    assert refusals(t.supplier_node, "foreign_relay") == before + 1
    assert served_bytes(t) == served
    # the consumer's own node relays the very same request (its nonce was not claimed)
    assert (await raw_fetch(t, raw))[-1]["t"] == "end"
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    await assert_still_serves(t)


@pytest.mark.parametrize("dataset_id", ["../../pwn", "a\nb", "x" * 65, "-dash"])
async def test_upload_ids_outside_the_id_grammar_touch_nothing(
    trade: Trade, dataset_id: str
) -> None:
    t = trade
    before_files = set(t.dir.rglob("*pwn*"))
    before = refusals(t.supplier_node, "bad_id")
    chain_id = load_genesis(t.dir / "genesis.json").chain_id
    quoted = dataset_id.replace("/", "%2F").replace("\n", "%0A")
    statuses = []
    async with t.supplier_client() as c:
        for action, method, path, body in [
            ("key", "PUT", f"/v1/data/datasets/{quoted}/key", os.urandom(32)),
            ("chunk", "PUT", f"/v1/data/datasets/{quoted}/chunks/0", b"x" * 100),
            ("seal", "POST", f"/v1/data/datasets/{quoted}/seal", b"{}"),
        ]:
            with pytest.raises(ApiError) as e:
                await c.upload(t.supplier, chain_id, method, path, action, dataset_id, 0, body)
            # refused by the id check, or never routed to a handler at all
            assert (e.value.status, e.value.reason) in ((400, "bad_id"), (404, "not_found"))
            statuses.append(e.value.status)
    assert refusals(t.supplier_node, "bad_id") == before + statuses.count(400)
    assert set(t.dir.rglob("*pwn*")) == before_files
    await assert_still_serves(t)


async def test_forged_log_lines_in_a_fetch_request_are_refused_unlogged(trade: Trade) -> None:
    t = trade
    forged = "c1\n2030-01-01 00:00:00 INFO mdtp.data.audit serving everything to mallory"
    raw = await signed(t, forged)
    before = refusals(t.consumer_node, "bad_id")
    with pytest.raises(DataError) as e:
        await raw_fetch(t, raw)
    assert e.value.reason == "bad_id"
    assert refusals(t.consumer_node, "bad_id") == before + 1
    assert "serving everything to mallory" not in t.consumer_node.log_file.read_text()
    await assert_still_serves(t)


async def test_concurrent_fetches_cannot_overdraw_the_download_quota(trade: Trade) -> None:
    t = trade
    cid = await contract_for(t, t.consumer, max_downloads=2)
    await wait_granted(t, cid)
    served, before = served_bytes(t), refusals(t.supplier_node, "quota_exhausted")

    async def one() -> str:
        try:
            return str((await raw_fetch(t, await signed(t, cid, first=0, last=2)))[-1]["t"])
        except DataError as e:
            return e.reason

    outcomes = await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(outcomes) == ["end", "end", "quota_exhausted", "quota_exhausted"]
    assert refusals(t.supplier_node, "quota_exhausted") == before + 2
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    async with t.consumer_client() as c:
        assert (await c.contract_view(cid))["contract"]["downloads"] == 2
    with pytest.raises(DataError) as e:
        await raw_fetch(t, await signed(t, cid, first=0, last=0))
    assert e.value.reason == "quota_exhausted"
    await assert_still_serves(t)


async def test_a_consumer_rotating_a_leaked_encryption_key_is_granted_to_the_new_key(
    trade: Trade,
) -> None:
    t = trade
    consumer = await register_account(t.dir, t.consumer_node, ["consumer"], "rotating")
    cid = await contract_for(t, consumer)
    [first] = await wait_granted(t, cid)
    new = SigningKey.generate(with_encryption=True)
    async with t.consumer_client() as c:
        chain_id = await c.chain_id()
        await c.send(consumer, b.AccountRotateKey.to_key(new, chain_id, consumer.account_id))
    grants = await wait_granted(t, cid, grants=2)
    assert new.encryption is not None and consumer.encryption is not None
    assert grants[-1]["sealed_to"] == bytes(new.encryption.public_key).hex()
    old_key = nacl.public.SealedBox(consumer.encryption).decrypt(bytes.fromhex(first["sealed_key"]))
    new_key = nacl.public.SealedBox(new.encryption).decrypt(bytes.fromhex(grants[-1]["sealed_key"]))
    assert new_key == old_key
    assert metric_value(t.supplier_node, "mdtp_data_records_posted_total", {"type": "access.grant"})
    await assert_still_serves(t)


async def test_what_the_node_and_the_client_write_is_owner_only(
    trade: Trade, tmp_path: Path
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    out, registry = tmp_path / "plain.bin", tmp_path / "registry"
    served = served_bytes(t)
    async with t.consumer_client() as c:
        await fetch(c, t.consumer, cid, out, progress=False, registry=registry)
    assert out.read_bytes() == t.small.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(registry.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in registry.iterdir())
    chunks = t.supplier_node.home / "data" / "chunks"
    assert stat.S_IMODE(chunks.stat().st_mode) == 0o700
    await assert_ledger_records(t, [cid], served_bytes(t) - served)
    await assert_still_serves(t)


async def test_a_flood_of_expired_and_unsigned_requests_is_refused_cheaply(
    trade: Trade,
) -> None:
    t = trade
    cid = await contract_for(t, t.consumer)
    await wait_granted(t, cid)
    served = served_bytes(t)
    fds, rss = open_fds(t.consumer_node), rss_mib(t.consumer_node)
    before = refusals(t.supplier_node, "request_expired")
    expired = await signed(t, cid, expires_in_ms=-1000)
    async with t.consumer_client() as c:
        for _ in range(150):
            with pytest.raises(DataError) as e:
                [r async for r in c.fetch_records(expired)]
            assert e.value.reason == "request_expired"
            with pytest.raises(DataError) as e:
                [r async for r in c.fetch_records(os.urandom(200))]
            assert e.value.reason == "malformed"
    assert refusals(t.supplier_node, "request_expired") == before + 150
    assert served_bytes(t) == served
    assert_resources_back(t.consumer_node, fds, rss)
    await assert_ledger_records(t, [cid], 0)
    await assert_still_serves(t)
