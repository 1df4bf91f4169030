"""Damaged files on disk: a node repairs provably or refuses to start, naming the file and
the problem; it never serves wrong data.

One node of a real cluster is stopped, its LevelDB directory (``data/ledger``) is saved, and
each case restores the saved copy, damages one file and starts the node again:

- a flipped byte in a table (``.ldb``), the write-ahead log (``.log``) or the descriptor
  (``MANIFEST-*``), a truncated table, a deleted table, an emptied ``CURRENT``: ``mdtp
  start`` exits 2 and its message names the damaged file and what is wrong with it;
- a write-ahead log cut short (a torn tail, what a crash mid-write leaves): LevelDB drops
  the incomplete tail; since every block commit is one batch, the store is a consistent
  earlier prefix, the node starts lower and catches up by state transfer; the proof is the
  full invariant check, every block it serves included.

Chunk files (``storage/chunkstore.py``) are checked directly: a truncated, flipped or
missing chunk file is refused with ``ChunkCorrupt`` / ``ChunkMissing``, never returned.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mdtp.node.ops.cluster import ClusterNode, log_tail
from tests.faults.runner import RECOVERY_TIMEOUT_S, FaultCluster
from tests.support.workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

REFUSED_EXIT_CODE = 2
Damaged = tuple[FaultCluster, ClusterNode, Path, Path]  # cluster, victim, ledger, pristine


def _files(ledger: Path, suffix: str) -> list[Path]:
    return sorted(
        p for p in ledger.iterdir() if p.name.endswith(suffix) or p.name.startswith(suffix)
    )


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_table(ledger: Path) -> str:
    table = max(_files(ledger, ".ldb"), key=lambda p: p.stat().st_size)
    _flip(table, table.stat().st_size // 3)
    return table.name


def truncate_table(ledger: Path) -> str:
    table = max(_files(ledger, ".ldb"), key=lambda p: p.stat().st_size)
    os.truncate(table, table.stat().st_size // 2)
    return table.name


def delete_table(ledger: Path) -> str:
    table = _files(ledger, ".ldb")[0]
    table.unlink()
    return table.name


def flip_log(ledger: Path) -> str:
    log = max(_files(ledger, ".log"), key=lambda p: p.stat().st_size)
    _flip(log, log.stat().st_size // 2)
    return log.name


def flip_manifest(ledger: Path) -> str:
    manifest = _files(ledger, "MANIFEST-")[-1]
    _flip(manifest, manifest.stat().st_size // 2)
    return manifest.name


def empty_current(ledger: Path) -> str:
    (ledger / "CURRENT").write_text("")
    return "CURRENT"


REFUSALS: list[tuple[str, Callable[[Path], str], str]] = [
    ("flipped byte in a table", flip_table, "checksum mismatch"),
    ("truncated table", truncate_table, "error"),
    ("deleted table", delete_table, "missing files"),
    ("flipped byte in the write-ahead log", flip_log, "checksum mismatch"),
    ("flipped byte in the descriptor", flip_manifest, "Corruption"),
    ("emptied CURRENT", empty_current, "CURRENT"),
]


@pytest.fixture(scope="module")
def damaged(fault_cluster: FaultCluster, tmp_path_factory: pytest.TempPathFactory) -> Damaged:
    """The victim node stopped, with tables and a non-empty log; the pristine copy saved."""
    fc = fault_cluster
    victim = fc.nodes[3]
    ledger = victim.home / "data" / "ledger"

    async def load(count: int) -> None:
        w = Workload(fc.dir, senders=3)
        await w.run_closed_loop(count)
        fc.checker.record_acked(w.acked)
        assert not w.errors

    asyncio.run(load(4))
    fc.stop(victim)
    fc.start(victim)  # reopening turns the old log into a table
    fc.wait_ready(victim)
    asyncio.run(load(3))  # and the new log gets records
    asyncio.run(fc.wait_within(0, RECOVERY_TIMEOUT_S, "before damage"))
    fc.stop(victim)
    assert _files(ledger, ".ldb") and max(p.stat().st_size for p in _files(ledger, ".log")) > 0
    pristine = Path(tmp_path_factory.mktemp("pristine")) / "ledger"
    shutil.copytree(ledger, pristine)
    return fc, victim, ledger, pristine


def _restore(pristine: Path, ledger: Path) -> None:
    shutil.rmtree(ledger)
    shutil.copytree(pristine, ledger)


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_damaged_store_is_refused_naming_the_file_and_the_problem(
    damaged: Damaged, case: tuple[str, Callable[[Path], str], str]
) -> None:
    fc, victim, ledger, pristine = damaged
    label, damage, problem = case
    _restore(pristine, ledger)
    name = damage(ledger)
    mark = victim.log_file.stat().st_size
    fc.start(victim)
    code = fc.exit_code(victim, 60)
    output = victim.log_file.read_bytes()[mark:].decode(errors="replace")
    assert code == REFUSED_EXIT_CODE, f"{label}: exit {code}\n{log_tail(victim, 20)}"
    assert name in output, f"{label}: the message does not name {name}:\n{output}"
    assert problem.lower() in output.lower(), f"{label}: no {problem!r} in:\n{output}"
    assert "Traceback" not in output


async def test_torn_log_tail_restarts_lower_and_catches_up_with_identical_blocks(
    damaged: Damaged,
) -> None:
    fc, victim, ledger, pristine = damaged
    _restore(pristine, ledger)
    log = max(_files(ledger, ".log"), key=lambda p: p.stat().st_size)
    os.truncate(log, log.stat().st_size * 2 // 3)
    assert fc.sampler is not None
    fc.sampler.forget(victim.id)  # the disk lost data: its height may restart lower
    fc.start(victim)
    await asyncio.to_thread(fc.wait_ready, victim)
    w = Workload(fc.dir, senders=3)
    await w.run_closed_loop(3)
    fc.checker.record_acked(w.acked)
    await fc.wait_within(0, RECOVERY_TIMEOUT_S, "after the torn log")
    apis = [n.api for n in fc.nodes]
    await fc.checker.check_acked(apis, full=True)
    await _assert_every_served_block_matches(fc, victim)
    assert not w.errors and not fc.checker.violations, fc.checker.violations


async def _assert_every_served_block_matches(fc: FaultCluster, victim: ClusterNode) -> None:
    from tests.support.workload import client

    other = next(n for n in fc.nodes if n is not victim)
    async with (
        client(fc.dir, victim.api) as mine,
        client(fc.dir, other.api) as theirs,
    ):
        height = (await mine.status())["height"]
        for h in range(1, height + 1):
            a, b = await mine.block(h), await theirs.block(h)
            assert a["block_bytes"] == b["block_bytes"], f"height {h}"
            assert a["certificate"]["view"] >= 0 and a["state_root"] == b["state_root"]


def test_damaged_chunk_files_are_refused_never_served(tmp_path: Path) -> None:
    chunkstore = pytest.importorskip("mdtp.storage.chunkstore")
    store = chunkstore.ChunkStore(tmp_path / "chunks")
    try:
        chunks = [os.urandom(4096 + i) for i in range(4)]
        for i, data in enumerate(chunks):
            store.put_chunk("ds1", i, data)
        paths = [store.path_of(store.chunk_digest("ds1", i)) for i in range(4)]
        os.truncate(paths[0], 100)
        _flip(paths[1], 2000)
        paths[2].unlink()
        for i, err in ((0, chunkstore.ChunkCorrupt), (1, chunkstore.ChunkCorrupt)):
            with pytest.raises(err) as info:
                store.read_chunk("ds1", i)
            assert f"chunk {i}" in str(info.value) and "ds1" in str(info.value)
        with pytest.raises(chunkstore.ChunkMissing):
            store.read_chunk("ds1", 2)
        assert store.read_chunk("ds1", 3) == chunks[3]
    finally:
        store.close()
