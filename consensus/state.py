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
"""

from __future__ import annotations

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

STATE_VERSION = 2


@dataclass(frozen=True, slots=True)
class PersistedState:
    view: int
    in_view_change: bool
    stable_checkpoint: CheckpointCertificate
    accepted: tuple[PrePrepare, ...]
    prepared: tuple[PreparedCertificate, ...]
    new_view: NewView | None
    epoch: int = 0

    def to_wire(self) -> list[Any]:
        return [
            STATE_VERSION,
            self.view,
            self.in_view_change,
            self.stable_checkpoint.to_wire(),
            [message_to_wire(pp) for pp in self.accepted],
            [c.to_wire() for c in self.prepared],
            None if self.new_view is None else message_to_wire(self.new_view),
            self.epoch,
        ]

    @classmethod
    def from_wire(cls, value: object, lim: WireLimits = DEFAULT_LIMITS) -> PersistedState:
        items = read_list(value, "state", length=8)
        if read_int(items[0], "version") != STATE_VERSION:
            raise DecodeError("bad_version", "unknown persisted state version")
        if type(items[2]) is not bool:
            raise DecodeError("bad_field", "in_view_change: bool expected")
        accepted = []
        for raw in read_list(items[4], "accepted", length_max=lim.items_max):
            pp = message_from_wire(raw, lim)
            if not isinstance(pp, PrePrepare):
                raise DecodeError("bad_field", "accepted: pre-prepare expected")
            accepted.append(pp)
        prepared = read_list(items[5], "prepared", length_max=lim.items_max)
        new_view = None
        if items[6] is not None:
            nv = message_from_wire(items[6], lim)
            if not isinstance(nv, NewView):
                raise DecodeError("bad_field", "new_view: new-view expected")
            new_view = nv
        return cls(
            view=read_int(items[1], "view"),
            in_view_change=items[2],
            stable_checkpoint=CheckpointCertificate.from_wire(items[3], lim),
            accepted=tuple(accepted),
            prepared=tuple(PreparedCertificate.from_wire(p, lim) for p in prepared),
            new_view=new_view,
            epoch=read_int(items[7], "epoch"),
        )


def encode_state(state: PersistedState) -> bytes:
    return pack(state.to_wire())


def decode_state(data: bytes, lim: WireLimits = DEFAULT_LIMITS) -> PersistedState:
    return PersistedState.from_wire(unpack_canonical(data, lim.message_bytes_max), lim)
