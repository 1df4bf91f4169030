"""Byzantine behaviours: a real replica whose outgoing messages are rewritten.

Running the honest core and corrupting only what leaves it gives attacks that look
exactly like protocol traffic (right views, heights, signatures), which is what an
honest replica must survive.  Twins are not a behaviour here: they are two honest
instances sharing one id and key (see scenario.py).
"""

from __future__ import annotations

import dataclasses

from mdtp.consensus.block import Block, payload_hash
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.messages import Commit, Message, Prepare, PrePrepare, Signer, sign_message

Outgoing = list[tuple[str | None, Message]]  # (destination or None for broadcast, msg)


class Behavior:
    name = "honest"

    def __init__(self, config: ConsensusConfig, sign: Signer) -> None:
        self.config = config
        self.sign = sign
        others = [m for m in config.members if m != config.my_id]
        self.half = others[: len(others) // 2]
        self.rest = others[len(others) // 2 :]

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        return [(dst, msg)]

    def _own_proposal(self, msg: Message) -> bool:
        return isinstance(msg, PrePrepare) and msg.sender == self.config.my_id

    def _resign(self, msg: PrePrepare, block: Block) -> PrePrepare:
        return sign_message(dataclasses.replace(msg, block=block), self.config.chain_id, self.sign)

    def _alternative(self, msg: PrePrepare) -> PrePrepare:
        """A different, equally well-formed block for the same slot."""
        block = msg.block
        header = dataclasses.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1)
        return self._resign(msg, Block(header, block.payload))

    def _split(self, first: Message, second: Message) -> Outgoing:
        out: Outgoing = [(d, first) for d in self.half]
        return out + [(d, second) for d in self.rest]


class Equivocate(Behavior):
    """Signs two blocks (and two votes) for one slot, one for each half of the members."""

    name = "equivocate"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if dst is not None:
            return [(dst, msg)]
        if self._own_proposal(msg):
            assert isinstance(msg, PrePrepare)
            return self._split(msg, self._alternative(msg))
        if isinstance(msg, Prepare):
            fake_prepare = dataclasses.replace(msg, digest=bytes(32))
            return self._split(msg, sign_message(fake_prepare, self.config.chain_id, self.sign))
        if isinstance(msg, Commit):
            fake_commit = dataclasses.replace(msg, digest=bytes(32))
            return self._split(msg, sign_message(fake_commit, self.config.chain_id, self.sign))
        return [(dst, msg)]


class ReuseHeight(Behavior):
    """Proposes a block, then proposes a different block at the same height."""

    name = "reuse"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if dst is None and self._own_proposal(msg):
            assert isinstance(msg, PrePrepare)
            return [(None, msg), (None, self._alternative(msg))]
        return [(dst, msg)]


class AlterTx(Behavior):
    """Tampers with a client transaction (its client signature no longer verifies)."""

    name = "alter"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if self._own_proposal(msg):
            assert isinstance(msg, PrePrepare)
            block = msg.block
            if block.payload:
                tx = block.payload[0]
                altered = (bytes([tx[0] ^ 1]) + tx[1:], *block.payload[1:])
                header = dataclasses.replace(block.header, payload_hash=payload_hash(altered))
                return [(dst, self._resign(msg, Block(header, altered)))]
        return [(dst, msg)]


class Silent(Behavior):
    """A primary that stops proposing (and never opens a view it leads)."""

    name = "silent"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if self._own_proposal(msg) or type(msg).__name__ == "NewView":
            return []
        return [(dst, msg)]


class Withhold(Behavior):
    """Withholds its proposals: on even heights from f members (a quorum still forms
    without them, so they must catch up), on odd heights from half of them (no quorum
    can form: the view has to change)."""

    name = "withhold"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if self._own_proposal(msg):
            assert isinstance(msg, PrePrepare)
            others = self.half + self.rest
            allowed = others[self.config.f :] if msg.height % 2 == 0 else self.half
            targets = allowed if dst is None else [d for d in [dst] if d in allowed]
            return [(d, msg) for d in targets]
        return [(dst, msg)]


BEHAVIORS: dict[str, type[Behavior]] = {
    b.name: b for b in (Equivocate, ReuseHeight, AlterTx, Silent, Withhold)
}
