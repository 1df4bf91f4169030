"""The persisted state as records: a vote writes what changed, and a store that applied every
write holds the state the core last persisted."""

from __future__ import annotations

import pytest

from mdtp.consensus.codec import pack
from mdtp.consensus.errors import DecodeError
from mdtp.consensus.messages import (
    CheckpointCertificate,
    PreparedCertificate,
    PrePrepare,
    message_to_wire,
)
from mdtp.consensus.state import (
    PersistedState,
    StateRecords,
    StateWriter,
    decode_state,
    encode_head,
    encode_state,
)
from tests.consensus.helpers import pre_prepare, prepare

GENESIS_CP = CheckpointCertificate(0, b"\x01" * 32, b"\x00" * 32, ())


def _prepared(pp: PrePrepare) -> PreparedCertificate:
    return PreparedCertificate(pp, tuple((s, prepare(pp, s).signature) for s in ("n1", "n2")))


class _Store:
    """What BlockStore.save_consensus_state does, in a dict."""

    def __init__(self) -> None:
        self.head: bytes | None = None
        self.slots: dict[int, bytes] = {}

    def apply(self, records: StateRecords) -> None:
        if records.head is not None:
            self.head = records.head
        for height, record in records.slots.items():
            if record is None:
                self.slots.pop(height, None)
            else:
                self.slots[height] = record

    def state(self) -> PersistedState:
        assert self.head is not None
        return decode_state(self.head, self.slots)


def _write(writer: StateWriter, store: _Store, state: PersistedState) -> StateRecords:
    records = writer.changes(state)
    store.apply(records)
    writer.written()
    assert store.state() == state
    return records


def test_a_vote_writes_only_the_height_it_changed() -> None:
    pps = [pre_prepare(height=h) for h in (1, 2, 3)]
    writer, store = StateWriter(None), _Store()
    state = PersistedState(0, False, GENESIS_CP, tuple(pps[:2]), (), None)
    first = _write(writer, store, state)
    assert first.head is not None and set(first.slots) == {1, 2}

    again = _write(writer, store, state)
    assert again == StateRecords(None, {})  # nothing changed, nothing written

    state = PersistedState(0, False, GENESIS_CP, tuple(pps), (), None)
    assert _write(writer, store, state) == StateRecords(
        None, {3: pack([3, message_to_wire(pps[2]), None])}
    )

    cert = _prepared(pps[0])
    state = PersistedState(0, False, GENESIS_CP, tuple(pps), (cert,), None)
    assert set(_write(writer, store, state).slots) == {1}

    # the stable checkpoint moves past height 1: the head changes and height 1 is deleted
    cp = CheckpointCertificate(1, pps[0].block.hash(), b"\x00" * 32, ())
    state = PersistedState(0, False, cp, tuple(pps[1:]), (), None)
    records = _write(writer, store, state)
    assert records.head is not None and records.slots == {1: None}


def test_a_write_that_failed_is_planned_again() -> None:
    writer, store = StateWriter(None), _Store()
    state = PersistedState(0, False, GENESIS_CP, (pre_prepare(height=1),), (), None)
    lost = writer.changes(state)  # never reaches the store, never marked written
    assert writer.changes(state) == lost
    store.apply(lost)
    writer.written()
    assert store.state() == state


def test_a_restarted_writer_starts_from_what_the_store_holds() -> None:
    pp = pre_prepare(height=1)
    state = PersistedState(2, True, GENESIS_CP, (pp,), (_prepared(pp),), None, epoch=1)
    head, slots = encode_state(state).stored()
    loaded = decode_state(head, slots)
    assert loaded == state
    assert StateWriter(loaded).changes(loaded) == StateRecords(None, {})


def test_version_2_single_record_is_still_read() -> None:
    pp = pre_prepare(height=1)
    cert = _prepared(pp)
    old = pack(
        [2, 1, False, GENESIS_CP.to_wire(), [message_to_wire(pp)], [cert.to_wire()], None, 0]
    )
    assert decode_state(old, {}) == PersistedState(1, False, GENESIS_CP, (pp,), (cert,), None)
    with pytest.raises(DecodeError):
        decode_state(old, {1: b"\x90"})


def test_records_under_the_wrong_height_are_refused() -> None:
    state = PersistedState(0, False, GENESIS_CP, (pre_prepare(height=1),), (), None)
    head, slots = encode_state(state).stored()
    with pytest.raises(DecodeError, match="another height"):
        decode_state(head, {2: slots[1]})
    with pytest.raises(DecodeError):
        decode_state(head, {1: b"\xc1"})  # not msgpack


def test_a_snapshot_head_holds_no_votes() -> None:
    state = PersistedState(0, False, GENESIS_CP, (), (), None)
    assert decode_state(encode_head(state), {}) == state
    with pytest.raises(AssertionError):
        encode_head(PersistedState(0, False, GENESIS_CP, (pre_prepare(),), (), None))
