"""Byzantine behaviours: a real replica whose outgoing messages are rewritten.

Running the honest core and corrupting only what leaves it gives attacks that look
exactly like protocol traffic (right views, heights, signatures), which is what an
honest replica must survive.  Twins are not a behaviour here: they are two honest
instances sharing one id and key (see scenario.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mdtp.consensus.block import Block, BlockHeader, genesis_hash, payload_hash
from mdtp.consensus.codec import SIGNATURE_LEN
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.messages import (
    Checkpoint,
    CheckpointCertificate,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Signer,
    StateTransferRequest,
    StateTransferResponse,
    Suspect,
    ViewChange,
    sign_message,
)

Outgoing = list[tuple[str | None, Message]]  # (destination or None for broadcast, msg)


class Behavior:
    name = "honest"

    def __init__(self, config: ConsensusConfig, sign: Signer) -> None:
        self.config = config
        self.sign = sign
        others = [m for m in config.members if m != config.my_id]
        self.half = others[: len(others) // 2]
        self.rest = others[len(others) // 2 :]
        # The node's committed height; the simulated node binds it.
        self.height: Callable[[], int] = lambda: 0

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        """What actually leaves for ``msg`` that the honest core sent."""
        return [(dst, msg)]

    def offer(self, txs: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """The transactions the node's own core is told about (its mempool policy)."""
        return txs

    def tick(self, now_ms: int) -> Outgoing:
        """Messages sent on its own initiative, every simulation tick."""
        return []

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


# ------------------------------------------------------------------ censorship (issue #11)


class CensorEmpty(Behavior):
    """A primary that keeps the chain growing with empty blocks: every proposal it
    sends is its block with the transactions stripped, so nothing of any client ever
    commits while it leads (the progress timer sees commits; only request timers help)."""

    name = "censor-empty"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        if self._own_proposal(msg):
            assert isinstance(msg, PrePrepare)
            block = msg.block
            header = dataclasses.replace(block.header, payload_hash=payload_hash(()))
            return [(dst, self._resign(msg, Block(header, ())))]
        return [(dst, msg)]


class SilentAfter(Behavior):
    """Behaves until its chain reaches ``SILENT_AFTER_HEIGHT``, then sends nothing at
    all (a member that stops voting mid-run while its process keeps running)."""

    name = "silent-after"
    SILENT_AFTER_HEIGHT = 5

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        return [] if self.height() >= self.SILENT_AFTER_HEIGHT else [(dst, msg)]


class Flood(Behavior):
    """Besides its honest traffic, sends on every tick to every peer one more piece of
    junk, cycling through every message type in three forms: unsigned under a spoofed
    sender, signed with its own key under a spoofed sender, and validly signed for a
    far-future view or height.  Receivers must refuse the first two before any work and
    keep what the third costs inside their per-sender bounds."""

    name = "flood"
    FAR = 10**9

    def __init__(self, config: ConsensusConfig, sign: Signer) -> None:
        super().__init__(config, sign)
        self._turn = 0

    def tick(self, now_ms: int) -> Outgoing:
        others = [m for m in self.config.members if m != self.config.my_id]
        junk = self._junk(now_ms)
        self._turn += 1
        piece = junk[self._turn % len(junk)]
        return [(dst, piece) for dst in others]

    def _junk(self, now_ms: int) -> list[Message]:
        me = self.config.my_id
        others = [m for m in self.config.members if m != me]
        victim = others[self._turn % len(others)]
        far = self.FAR + self._turn
        header = BlockHeader(
            self.config.chain_id, far, bytes(32), bytes(32), now_ms, me, payload_hash(())
        )
        block = Block(header, ())
        genesis = CheckpointCertificate(
            0,
            genesis_hash(self.config.chain_id, self.config.genesis_state_root),
            self.config.genesis_state_root,
            (),
        )
        shapes: list[Message] = [
            PrePrepare(far, far, block, me),
            Prepare(far, far, bytes(32), me),
            Commit(far, far, bytes(32), me),
            Checkpoint(far * self.config.checkpoint_interval, bytes(32), bytes(32), me),
            ViewChange(far, genesis, (), me),
            NewView(far, (), (), me),
            Suspect(far, me),
            StateTransferRequest(1, far, me),
            StateTransferResponse((), me),
        ]
        out: list[Message] = []
        for shape in shapes:
            spoofed = dataclasses.replace(shape, sender=victim)
            out.append(dataclasses.replace(spoofed, signature=bytes(SIGNATURE_LEN)))
            # The flooder's signature over bytes naming another sender: mis-signed.
            forged = self.sign(spoofed.signing_bytes(self.config.chain_id))
            out.append(dataclasses.replace(spoofed, signature=forged))
            own = self.sign(shape.signing_bytes(self.config.chain_id))
            out.append(dataclasses.replace(shape, signature=own))
        return out


class Forge(Behavior):
    """Forges certificates inside its VIEW-CHANGE and NEW-VIEW messages: a prepared
    certificate whose prepares nobody signed, a checkpoint certificate for a height no
    quorum reached, a NEW-VIEW whose view changes were tampered with; each re-signed
    with its own key, so only the checks of what is inside can catch it."""

    name = "forge"

    def outgoing(self, dst: str | None, msg: Message) -> Outgoing:
        chain = self.config.chain_id
        if isinstance(msg, ViewChange) and msg.sender == self.config.my_id:
            forged = dataclasses.replace(msg, prepared=(*msg.prepared, self._fake_prepared(msg)))
            if msg.new_view % 2:
                cp = msg.checkpoint
                fake_cp = CheckpointCertificate(
                    cp.height + self.config.checkpoint_interval,
                    bytes(32),
                    bytes(32),
                    tuple((m, bytes(SIGNATURE_LEN)) for m in sorted(self.config.members)),
                )
                forged = dataclasses.replace(forged, checkpoint=fake_cp)
            return [(dst, sign_message(forged, chain, self.sign))]
        if isinstance(msg, NewView) and msg.sender == self.config.my_id and msg.view_changes:
            first, *rest = msg.view_changes
            tampered = dataclasses.replace(first, prepared=(self._fake_prepared(first),))
            forged_nv = dataclasses.replace(msg, view_changes=(tampered, *rest))
            return [(dst, sign_message(forged_nv, chain, self.sign))]
        return [(dst, msg)]

    def _fake_prepared(self, vc: ViewChange) -> PreparedCertificate:
        height = vc.checkpoint.height + 1
        view = max(0, vc.new_view - 1)
        primary = self.config.primary(view)
        header = BlockHeader(
            self.config.chain_id, height, bytes(32), bytes(32), 1, primary, payload_hash(())
        )
        pp = PrePrepare(view, height, Block(header, ()), primary, bytes(SIGNATURE_LEN))
        backups = sorted(m for m in self.config.members if m != primary)
        return PreparedCertificate(pp, tuple((m, bytes(SIGNATURE_LEN)) for m in backups))


BEHAVIORS.update({b.name: b for b in (CensorEmpty, SilentAfter, Flood, Forge)})
