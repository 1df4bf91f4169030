"""View-change validation and the deterministic NEW-VIEW plan.

The new primary and every backup run ``plan_new_view`` on the same 2f+1 VIEW-CHANGE
messages and must get the same answer; a NEW-VIEW whose pre-prepares differ from the
plan is rejected.  The plan:

1. start from the highest valid stable checkpoint ``s`` in the set;
2. for each height above ``s`` pick the prepared certificate of the highest view
   (ties, possible only with more than f faults, broken by the smaller digest);
3. re-propose the longest run ``s+1, s+2, ...`` of picked blocks that link by
   ``prev_hash`` to the checkpoint and to each other; stop at the first gap.

Why truncating at the first gap is safe: an honest replica sends COMMIT for ``h`` only
after it holds a commit certificate for ``h-1`` whose block ``h`` links to (see
replica.py).  So if ``h`` is committed anywhere, every height in ``(s, h]`` is committed
somewhere, hence prepared by f+1 honest replicas, hence (PBFT's quorum intersection) its
committed block is the highest-view pick, and those picks link.  A gap therefore lies
above every committed height.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdtp.consensus.block import Block
from mdtp.consensus.certificates import verify_checkpoint_certificate, verify_prepared_certificate
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import InvalidCertificate
from mdtp.consensus.messages import CheckpointCertificate, PreparedCertificate, Verifier, ViewChange


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    checkpoint: CheckpointCertificate
    blocks: tuple[Block, ...]  # heights checkpoint.height + 1, + 2, ...


def validate_view_change(config: ConsensusConfig, vc: ViewChange, verify: Verifier) -> None:
    """Everything about a VIEW-CHANGE except its own signature; raises InvalidCertificate."""
    verify_checkpoint_certificate(config, vc.checkpoint, verify)
    low = vc.checkpoint.height
    heights: set[int] = set()
    for cert in vc.prepared:
        if not low < cert.height <= low + config.window_size:
            raise InvalidCertificate("outside_watermarks")
        if cert.height in heights:
            raise InvalidCertificate("duplicate_height")
        if cert.view >= vc.new_view:
            raise InvalidCertificate("wrong_view")
        heights.add(cert.height)
        verify_prepared_certificate(config, cert, verify)


def plan_new_view(vcs: tuple[ViewChange, ...]) -> NewViewPlan:
    """Deterministic re-proposal plan from already-validated VIEW-CHANGE messages."""
    assert vcs, "a plan needs a quorum of view changes"
    checkpoint = max(
        (vc.checkpoint for vc in vcs), key=lambda c: (c.height, c.block_hash, c.state_root)
    )
    best: dict[int, PreparedCertificate] = {}
    for vc in vcs:
        for cert in vc.prepared:
            if cert.height <= checkpoint.height:
                continue
            current = best.get(cert.height)
            key = (cert.view, _neg(cert.pre_prepare.digest))
            if current is None or key > (current.view, _neg(current.pre_prepare.digest)):
                best[cert.height] = cert
    blocks: list[Block] = []
    prev_hash = checkpoint.block_hash
    height = checkpoint.height + 1
    while height in best:
        block = best[height].pre_prepare.block
        if block.header.prev_hash != prev_hash:
            break
        blocks.append(block)
        prev_hash = block.hash()
        height += 1
    return NewViewPlan(checkpoint=checkpoint, blocks=tuple(blocks))


def _neg(digest: bytes) -> bytes:
    """Order key that prefers the smaller digest when compared with ``>``."""
    return bytes(255 - b for b in digest)
