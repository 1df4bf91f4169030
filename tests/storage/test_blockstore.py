import pytest

from mdtp.storage.blockstore import BlockStore, CommittedBlock
from mdtp.storage.errors import InconsistentStore, WrongChain

ROOT0 = b"\x00" * 32


def committed(height: int, writes: dict[bytes, bytes | None] | None = None) -> CommittedBlock:
    return CommittedBlock(
        height=height,
        block_bytes=b"block%d" % height,
        certificate_bytes=b"cert%d" % height,
        block_hash=bytes([height]) * 32,
        state_root=bytes([height + 100]) * 32,
        timestamp_ms=1000 + height,
        tx_results=((bytes([height]) * 32, 0, True, ""),),
        state_writes=writes or {},
    )


@pytest.fixture
def store(tmp_path):
    s = BlockStore(tmp_path / "db")
    s.bind_chain("c1", b"g" * 32, ROOT0)
    yield s
    s.close()


def test_committed_blocks_survive_reopen_with_index_and_state(tmp_path, store):
    store.commit_block(committed(1, {b"k": b"v"}))
    store.commit_block(committed(2, {b"k": None, b"j": b"w"}))
    store.close()
    s = BlockStore(tmp_path / "db")
    s.bind_chain("c1", b"g" * 32, ROOT0)
    assert s.check(deep=True) == 2
    assert s.tip() == (2, bytes([102]) * 32)
    assert s.block_bytes(2) == b"block2" and s.certificate_bytes(1) == b"cert1"
    loc = s.tx_location(bytes([2]) * 32)
    assert loc is not None and (loc.height, loc.index, loc.ok) == (2, 0, True)
    assert s.state.get(b"k") is None and s.state.get(b"j") == b"w"
    assert [h for h, _, _ in s.blocks(1, 5)] == [1, 2]
    s.close()


def test_store_of_another_chain_is_refused(tmp_path, store):
    store.close()
    s = BlockStore(tmp_path / "db")
    with pytest.raises(WrongChain):
        s.bind_chain("other", b"g" * 32, ROOT0)
    s.close()


def test_missing_block_is_reported_with_key_space_and_height(tmp_path, store):
    for h in (1, 2, 3):
        store.commit_block(committed(h))
    store._db.delete(b"c/" + (2).to_bytes(8, "big"))
    with pytest.raises(InconsistentStore) as e:
        store.check(deep=True)
    assert "key space 'commit certificates' has no entry at height 2" in str(e.value)


def test_block_above_the_tip_is_reported(store):
    store.commit_block(committed(1))
    store._db.put(b"b/" + (7).to_bytes(8, "big"), b"stray")
    with pytest.raises(InconsistentStore, match="height 7 above the tip 1"):
        store.check()


def test_commit_must_extend_the_tip(store):
    with pytest.raises(AssertionError):
        store.commit_block(committed(2))


def test_consensus_state_round_trips(store):
    assert store.load_consensus_state() is None
    store.save_consensus_state(b"head", {3: b"three", 4: b"four"})
    assert store.load_consensus_state() == (b"head", {3: b"three", 4: b"four"})
    store.save_consensus_state(None, {3: None, 5: b"five"})  # head kept, 3 deleted
    assert store.load_consensus_state() == (b"head", {4: b"four", 5: b"five"})
    store.save_consensus_state(b"head2", {})
    assert store.load_consensus_state() == (b"head2", {4: b"four", 5: b"five"})
