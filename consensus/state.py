"""The durable part of a replica: enough that a restarted replica never signs a vote
that conflicts with one it signed before the crash.

- ``view`` / ``in_view_change``: a replica never returns to a lower view.
- ``accepted``: pre-prepares accepted in ``view`` (our PREPARE votes, or our own proposals
  when primary): we never prepare or propose a different block for the same slot.
- ``prepared``: the highest-view prepared certificate per height above the stable
  checkpoint; our COMMIT votes rest on them and view changes must report them.
- ``new_view``: the NEW-VIEW that opened ``view`` (a primary must not send two).
- ``stable_checkpoint``: with its proof; the low watermark.
- ``epoch``: the membership epoch all of the above belongs to; a replica starting a later
  epoch starts from that epoch's base instead (nothing of an older epoch binds it).

Stored as records (:class:`StateRecords`): a head (view, flags, stable checkpoint, new-view,
epoch) and one record per height holding that height's pre-prepare and prepared
certificate, so a vote writes what it changed rather than every block of the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdtp.consensus.codec import pack, read_int, read_list, unpack_canonical
from mdtp.consensus.errors import DecodeError
from mdtp.consensus.messages import (
    DEFAULT_LIMITS,
    CheckpointCertificate,
    NewView,
    PreparedCertificate,
    PrePrepare,
    WireLimits,
    message_from_wire,
    message_to_wire,
)

STATE_VERSION = 3  # 2: the whole state in one record (still read, never written)


@dataclass(frozen=True, slots=True)
class PersistedState:
    view: int
    in_view_change: bool
    stable_checkpoint: CheckpointCertificate
    accepted: tuple[PrePrepare, ...]
    prepared: tuple[PreparedCertificate, ...]
    new_view: NewView | None
    epoch: int = 0

    def head_to_wire(self) -> list[Any]:
        return [
            STATE_VERSION,
            self.view,
            self.in_view_change,
            self.stable_checkpoint.to_wire(),
            None if self.new_view is None else message_to_wire(self.new_view),
            self.epoch,
        ]

    def slots(self) -> dict[int, tuple[PrePrepare | None, PreparedCertificate | None]]:
        """Per height: the pre-prepare accepted there and the prepared certificate held."""
        out: dict[int, tuple[PrePrepare | None, PreparedCertificate | None]] = {
            pp.height: (pp, None) for pp in self.accepted
        }
        for cert in self.prepared:
            out[cert.height] = (out.get(cert.height, (None, None))[0], cert)
        return out


def _slot_to_wire(
    height: int, pp: PrePrepare | None, cert: PreparedCertificate | None
) -> list[Any]:
    return [
        height,
        None if pp is None else message_to_wire(pp),
        None if cert is None else cert.to_wire(),
    ]


@dataclass(frozen=True, slots=True)
class StateRecords:
    """A persisted state as stored: one small head (view, flags, stable checkpoint,
    new-view, epoch) and one record per height of the window that holds a vote. A write
    holds only what changed since the last one (:class:`StateWriter`): ``head`` None if the
    head is unchanged, a slot None if its record is to be deleted."""

    head: bytes | None
    slots: dict[int, bytes | None]

    def stored(self) -> tuple[bytes, dict[int, bytes]]:
        """What a store holds after writing these records into an empty one."""
        assert self.head is not None, "a first write holds the head"
        return self.head, {h: r for h, r in self.slots.items() if r is not None}


class StateWriter:
    """What a ``Persist`` has to write, given what the store already holds.

    The core persists its whole durable state before its votes leave; written whole, that is
    every block of the window, twice (its pre-prepare and its prepared certificate), at every
    vote. The state's parts are immutable, so a part that is the very object last written is
    unchanged, and only the others are encoded: per block, its pre-prepare once and its
    prepared certificate once. A part rebuilt equal is written again, which is harmless.
    """

    def __init__(self, written: PersistedState | None) -> None:
        self._head: PersistedState | None = written
        self._slots: dict[int, tuple[PrePrepare | None, PreparedCertificate | None]] = {}
        self._pending: tuple[PersistedState, dict[int, Any]] | None = None
        if written is not None:
            self._slots = written.slots()

    @staticmethod
    def _same_head(old: PersistedState | None, new: PersistedState) -> bool:
        # identity for the certificates (immutable), value for the rest
        return (
            old is not None
            and old.view == new.view
            and old.in_view_change == new.in_view_change
            and old.epoch == new.epoch
            and old.stable_checkpoint is new.stable_checkpoint
            and old.new_view is new.new_view
        )

    def changes(self, state: PersistedState) -> StateRecords:
        """The records to write for ``state``; call :meth:`written` once they are durable."""
        same_head = self._same_head(self._head, state)
        slots = state.slots()
        out: dict[int, bytes | None] = {}
        for height, (pp, cert) in slots.items():
            was = self._slots.get(height)
            if was is None or was[0] is not pp or was[1] is not cert:
                out[height] = pack(_slot_to_wire(height, pp, cert))
        for height in self._slots.keys() - slots.keys():
            out[height] = None
        self._pending = (state, slots)
        return StateRecords(None if same_head else pack(state.head_to_wire()), out)

    def written(self) -> None:
        assert self._pending is not None, "written() without changes()"
        self._head, self._slots = self._pending
        self._pending = None


def encode_state(state: PersistedState) -> StateRecords:
    """The whole state as records (a fresh store, tests)."""
    return StateWriter(None).changes(state)


def encode_head(state: PersistedState) -> bytes:
    """The head record alone: the whole state of one with no votes in its window (a store
    restored from a snapshot)."""
    assert not state.accepted and not state.prepared, "votes need their height records"
    return pack(state.head_to_wire())


def decode_state(
    head: bytes, slots: Mapping[int, bytes], lim: WireLimits = DEFAULT_LIMITS
) -> PersistedState:
    """The state from its stored records; raises ``DecodeError`` on anything malformed."""
    value = unpack_canonical(head, lim.message_bytes_max)
    items = read_list(value, "state", length_max=8)
    if items and items[0] == 2:  # the whole state in one record, as version 2 wrote it
        if slots:
            raise DecodeError("bad_field", "version 2 state with per-height records")
        return _decode_v2(items, lim)
    if len(items) != 6 or read_int(items[0], "version") != STATE_VERSION:
        raise DecodeError("bad_version", "unknown persisted state version")
    if type(items[2]) is not bool:
        raise DecodeError("bad_field", "in_view_change: bool expected")
    if len(slots) > lim.items_max:
        raise DecodeError("too_many", "more per-height records than a window holds")
    accepted: list[PrePrepare] = []
    prepared: list[PreparedCertificate] = []
    for height in sorted(slots):
        rec = read_list(
            unpack_canonical(slots[height], 2 * lim.message_bytes_max), "slot", length=3
        )
        if read_int(rec[0], "slot.height") != height:
            raise DecodeError("bad_field", "slot: record of another height")
        if rec[1] is not None:
            pp = message_from_wire(rec[1], lim)
            if not isinstance(pp, PrePrepare) or pp.height != height:
                raise DecodeError("bad_field", "slot: pre-prepare of this height expected")
            accepted.append(pp)
        if rec[2] is not None:
            cert = PreparedCertificate.from_wire(rec[2], lim)
            if cert.height != height:
                raise DecodeError("bad_field", "slot: prepared certificate of another height")
            prepared.append(cert)
    return PersistedState(
        view=read_int(items[1], "view"),
        in_view_change=items[2],
        stable_checkpoint=CheckpointCertificate.from_wire(items[3], lim),
        accepted=tuple(accepted),
        prepared=tuple(prepared),
        new_view=_new_view(items[4], lim),
        epoch=read_int(items[5], "epoch"),
    )


def _new_view(raw: object, lim: WireLimits) -> NewView | None:
    if raw is None:
        return None
    nv = message_from_wire(raw, lim)
    if not isinstance(nv, NewView):
        raise DecodeError("bad_field", "new_view: new-view expected")
    return nv


def _decode_v2(items: list[Any], lim: WireLimits) -> PersistedState:
    if len(items) != 8:
        raise DecodeError("bad_field", "state: 8 items expected")
    if type(items[2]) is not bool:
        raise DecodeError("bad_field", "in_view_change: bool expected")
    accepted = []
    for raw in read_list(items[4], "accepted", length_max=lim.items_max):
        pp = message_from_wire(raw, lim)
        if not isinstance(pp, PrePrepare):
            raise DecodeError("bad_field", "accepted: pre-prepare expected")
        accepted.append(pp)
    prepared = read_list(items[5], "prepared", length_max=lim.items_max)
    return PersistedState(
        view=read_int(items[1], "view"),
        in_view_change=items[2],
        stable_checkpoint=CheckpointCertificate.from_wire(items[3], lim),
        accepted=tuple(accepted),
        prepared=tuple(PreparedCertificate.from_wire(p, lim) for p in prepared),
        new_view=_new_view(items[6], lim),
        epoch=read_int(items[7], "epoch"),
    )
