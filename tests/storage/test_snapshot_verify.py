"""Export and verified import (``node/ops/snapshot.py``) on stores written by the real chain
code of a simulated 4-member consortium: every tampering is refused with its reason and
leaves nothing behind; a state-only restore starts a node at the snapshot's height, which
catches up, serves what it has and counts towards the quorum."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from mdtp.consensus.block import Block
from mdtp.consensus.codec import pack, unpack_canonical
from mdtp.consensus.messages import CheckpointCertificate
from mdtp.node.chain.driver import DriverLimits
from mdtp.node.chain.execution import decode_block, encode_block
from mdtp.node.ops.snapshot import ChainFacts, SnapshotFailure, restore_snapshot, write_snapshot
from mdtp.node.testing.sim.world import SimWorld
from mdtp.storage.blockstore import STATE, BlockStore
from mdtp.storage.errors import StorageError
from mdtp.storage.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter
from tests.chain.world import load, run, world


@dataclasses.dataclass(frozen=True)
class Exported:
    state_only: Path
    full: Path
    facts: ChainFacts  # of member n3, who imports
    height: int
    checkpoint: int
    state: list[tuple[bytes, bytes]]


def facts(w: SimWorld, member: str) -> ChainFacts:
    return ChainFacts.of(w.genesis, member, w.limits)


async def until_checkpoint(w: SimWorld, height: int) -> None:
    while w.nodes[0].driver.replica.stable_checkpoint.height < height:
        await load(w, 1.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    tmp = tmp_path_factory.mktemp("snap")
    with world(tmp) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await until_checkpoint(w, 32)

        run(w, body)
        store = w.nodes[0].store
        chain = facts(w, "n0")
        a = write_snapshot(chain, store, tmp / "state.snap")
        b = write_snapshot(chain, store, tmp / "full.snap", full=True)
        assert (a["height"], a["checkpoint_height"]) == (b["height"], b["checkpoint_height"])
        state = list(store.raw_items(STATE))
        return Exported(
            tmp / "state.snap",
            tmp / "full.snap",
            facts(w, "n3"),
            a["height"],
            a["checkpoint_height"],
            state,
        )


def rewrite(
    src: Path,
    dst: Path,
    *,
    header: Callable[[SnapshotHeader], SnapshotHeader] = lambda h: h,
    checkpoint: Callable[[bytes], bytes] = lambda c: c,
    entry: Callable[[bytes, bytes], bytes] = lambda k, v: v,
) -> Path:
    """A copy of ``src`` with parts changed and a correct checksum: what someone who
    tampers on purpose writes."""
    with open(src, "rb") as f:
        r = SnapshotReader(f)
        out = io.BytesIO()
        w = SnapshotWriter(out, header(r.header), checkpoint(r.checkpoint))
        for batch in r.batches():
            for k, v in batch:
                w.add(k, entry(k, v))
        w.finish()
    dst.write_bytes(out.getvalue())
    return dst


def refused(e: Exported, file: Path, target: Path, chain: ChainFacts | None = None) -> str:
    with pytest.raises((SnapshotFailure, StorageError)) as err:
        restore_snapshot(chain or e.facts, file, target)
    assert not target.exists(), "a refused import left a store behind"
    assert not target.with_name(target.name + ".importing").exists()
    return str(getattr(err.value, "reason", ""))


def test_state_only_and_full_snapshots_restore_the_store(
    exported: Exported, tmp_path: Path
) -> None:
    for file, base in ((exported.state_only, exported.checkpoint), (exported.full, 1)):
        target = tmp_path / file.stem
        doc = restore_snapshot(exported.facts, file, target)
        assert (doc["height"], doc["base"]) == (exported.height, base)
        store = BlockStore(target)
        try:
            assert store.tip()[0] == exported.height and store.base() == base
            assert store.check(deep=True) == exported.height
            assert list(store.raw_items(STATE)) == exported.state
            assert (store.block_bytes(1) is None) == (base > 1)
            assert store.block_bytes(exported.checkpoint) is not None
        finally:
            store.close()


def test_a_changed_byte_in_a_state_entry_is_refused(exported: Exported, tmp_path: Path) -> None:
    data = bytearray(exported.state_only.read_bytes())
    key, value = exported.state[len(exported.state) // 2]
    at = bytes(data).index(key + b"")  # the key, then its value, in the kv frame
    at = bytes(data).index(value, at)
    data[at + len(value) - 1] ^= 0x01
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    assert refused(exported, bad, tmp_path / "ledger") == "checksum_mismatch"


def test_a_truncated_file_is_refused(exported: Exported, tmp_path: Path) -> None:
    data = exported.state_only.read_bytes()
    for cut in (len(data) // 3, len(data) - 10):
        bad = tmp_path / f"cut{cut}.snap"
        bad.write_bytes(data[:cut])
        assert refused(exported, bad, tmp_path / "ledger") == "truncated"


def test_a_checkpoint_certificate_with_a_bad_or_missing_signature_is_refused(
    exported: Exported, tmp_path: Path
) -> None:
    def change(
        fn: Callable[[CheckpointCertificate], CheckpointCertificate],
    ) -> Callable[[bytes], bytes]:
        def go(raw: bytes) -> bytes:
            cp = CheckpointCertificate.from_wire(unpack_canonical(raw, 1 << 20))
            return pack(fn(cp).to_wire())

        return go

    def flip(cp: CheckpointCertificate) -> CheckpointCertificate:
        (signer, sig), *rest = cp.signatures
        return dataclasses.replace(cp, signatures=((signer, bytes([sig[0] ^ 1]) + sig[1:]), *rest))

    def fewer(cp: CheckpointCertificate) -> CheckpointCertificate:
        return dataclasses.replace(cp, signatures=cp.signatures[:2])

    def twice(cp: CheckpointCertificate) -> CheckpointCertificate:
        return dataclasses.replace(cp, signatures=(cp.signatures[0],) * 3)

    def other_root(cp: CheckpointCertificate) -> CheckpointCertificate:
        return dataclasses.replace(cp, state_root=b"\x01" * 32)

    for fn, why in (
        (flip, "bad_signature"),
        (fewer, "too_few_signers"),
        (twice, "strictly sorted"),
        (other_root, "bad_signature"),
    ):
        bad = rewrite(exported.state_only, tmp_path / "bad.snap", checkpoint=change(fn))
        assert refused(exported, bad, tmp_path / "ledger") == "bad_checkpoint_certificate"
        with pytest.raises(SnapshotFailure, match=why):
            restore_snapshot(exported.facts, bad, tmp_path / "ledger")


def test_a_changed_block_or_record_with_a_correct_checksum_is_refused(
    exported: Exported, tmp_path: Path
) -> None:
    cp_key = b"b/" + exported.checkpoint.to_bytes(8, "big")
    rec_key = b"h/" + exported.checkpoint.to_bytes(8, "big")

    def block(k: bytes, v: bytes) -> bytes:
        if k != cp_key:
            return v
        b = decode_block(v, exported.facts.limits)
        header = dataclasses.replace(b.header, timestamp_ms=b.header.timestamp_ms + 1)
        return encode_block(Block(header, b.payload))

    bad = rewrite(exported.state_only, tmp_path / "b.snap", entry=block)
    assert refused(exported, bad, tmp_path / "ledger") == "bad_commit_certificate"

    def record(k: bytes, v: bytes) -> bytes:
        if k != rec_key:
            return v
        block_hash, _root, ts, n = msgpack.unpackb(v)
        return bytes(msgpack.packb([block_hash, b"\x02" * 32, ts, n]))

    bad = rewrite(exported.state_only, tmp_path / "r.snap", entry=record)
    assert refused(exported, bad, tmp_path / "ledger") == "checkpoint_mismatch"
    below = b"h/" + (exported.checkpoint - 1).to_bytes(8, "big")

    def record_below(k: bytes, v: bytes) -> bytes:
        if k != below:
            return v
        _hash, root, ts, n = msgpack.unpackb(v)
        return bytes(msgpack.packb([b"\x03" * 32, root, ts, n]))

    bad = rewrite(exported.state_only, tmp_path / "rb.snap", entry=record_below)
    assert refused(exported, bad, tmp_path / "ledger") == "bad_chain"

    def garbage(k: bytes, v: bytes) -> bytes:
        return b"\xc1" if k == rec_key else v

    bad = rewrite(exported.state_only, tmp_path / "g.snap", entry=garbage)
    assert refused(exported, bad, tmp_path / "ledger") == "bad_record"


def test_a_snapshot_of_another_chain_is_refused(exported: Exported, tmp_path: Path) -> None:
    genesis = dataclasses.replace(exported.facts.genesis, chain_id="another-chain")
    chain = ChainFacts.of(genesis, "n3", DriverLimits(64))
    assert refused(exported, exported.state_only, tmp_path / "ledger", chain) == "wrong_chain"
    bad = rewrite(
        exported.state_only,
        tmp_path / "h.snap",
        header=lambda h: dataclasses.replace(h, chain_id="another-chain"),
    )
    assert refused(exported, bad, tmp_path / "ledger") == "wrong_chain"


def test_a_store_with_blocks_is_not_overwritten(exported: Exported, tmp_path: Path) -> None:
    target = tmp_path / "ledger"
    restore_snapshot(exported.facts, exported.state_only, target)
    with pytest.raises(SnapshotFailure) as err:
        restore_snapshot(exported.facts, exported.full, target)
    assert err.value.reason == "store_not_empty"
    store = BlockStore(target)
    try:  # still the first import's
        assert store.base() == exported.checkpoint and store.tip()[0] == exported.height
        assert list(store.raw_items(STATE)) == exported.state
    finally:
        store.close()


def test_a_node_restored_from_a_state_only_snapshot_catches_up_and_makes_quorum(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        n0, n3 = w.nodes[0], w.nodes[3]

        async def body() -> tuple[int, int]:
            for node in w.nodes:
                node.start()
            await until_checkpoint(w, 16)
            doc = write_snapshot(facts(w, "n0"), n0.store, tmp_path / "s.snap")
            n3.crash()
            await asyncio.sleep(0.5)
            shutil.rmtree(n3.home)
            restore_snapshot(facts(w, "n3"), tmp_path / "s.snap", n3.home)
            n3.restart()
            assert n3.driver.executor.height == doc["height"]  # no block replayed
            await load(w, 4.0)
            await asyncio.sleep(4.0)
            # a peer asking n3 for blocks it does not hold gets what it has: nothing
            assert n3.driver.executor.block_and_certificate(1) is None
            assert n3.store.base() == doc["checkpoint_height"]
            # n0 down: n3 is needed for the quorum of 3
            n0.crash()
            before = max(n.height for n in w.nodes[1:])
            await load(w, 6.0)
            await asyncio.sleep(8.0)
            return doc["height"], before

        height, before = run(w, body)
        live = w.nodes[1:]
        assert len({n.height for n in live}) == 1 and live[0].height > before > height
        fetched = n3.driver.metrics.state_transfer_blocks._value.get()
        assert fetched <= n3.height - height  # never a block at or below the snapshot
        assert w.checker.violations == []
        pending = [s for s in w.submitted if not w.committed_anywhere(s.tx_id)]
        assert len(pending) <= 10


def test_replay_proves_the_state_of_a_full_snapshot(exported: Exported, tmp_path: Path) -> None:
    doc = restore_snapshot(exported.facts, exported.full, tmp_path / "ok", replay=True)
    assert doc["replayed"] and doc["height"] == exported.height
    # a state entry changed on purpose, checksum recomputed: only a replay can tell
    key = exported.state[len(exported.state) // 2][0]

    def state(k: bytes, v: bytes) -> bytes:
        return v + b"!" if k == key else v

    bad = rewrite(exported.full, tmp_path / "s.snap", entry=state)
    with pytest.raises(SnapshotFailure) as err:
        restore_snapshot(exported.facts, bad, tmp_path / "ledger", replay=True)
    assert err.value.reason == "state_mismatch" and "differs" in str(err.value)
    assert not (tmp_path / "ledger").exists() and not (tmp_path / "ledger.replay").exists()

    def extra(k: bytes, v: bytes) -> bytes:  # a record whose root is not what blocks give
        if k != b"h/" + (1).to_bytes(8, "big"):
            return v
        block_hash, _root, ts, n = msgpack.unpackb(v)
        return bytes(msgpack.packb([block_hash, b"\x04" * 32, ts, n]))

    bad = rewrite(exported.full, tmp_path / "r.snap", entry=extra)
    assert refused(exported, bad, tmp_path / "ledger") in ("bad_record", "state_mismatch")


def test_replay_needs_a_full_snapshot(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(SnapshotFailure) as err:
        restore_snapshot(exported.facts, exported.state_only, tmp_path / "ledger", replay=True)
    assert err.value.reason == "replay_needs_full" and not (tmp_path / "ledger").exists()
