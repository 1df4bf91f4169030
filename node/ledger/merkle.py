"""The Merkle tree over a dataset's ciphertext chunk hashes, and its proof check.

Leaves are ``H(0x00 || chunk_hash)`` in chunk order, inner nodes ``H(0x01 || left || right)``;
a level with an odd count carries its last node up unchanged. The domain bytes keep a leaf
from ever being read as an inner node. A proof for chunk ``i`` is the list of sibling hashes
from the leaf up (levels where ``i``'s node has no sibling contribute nothing); the verifier
recomputes the sides from ``i`` and the chunk count.

Pure hashing, so the ledger's dispute rules (:mod:`.trading.disputes`) check a consumer's
evidence with the very code the chunk service (``node.data.crypto``) builds and checks proofs
with: one implementation.
"""

from __future__ import annotations

import hashlib

HASH_LEN = 32
PROOF_MAX_LEN = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(chunk_digest: bytes) -> bytes:
    return sha256(b"\x00" + chunk_digest)


def _parent(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


class MerkleTree:
    """All levels of the tree over a dataset's chunk hashes (leaves first)."""

    def __init__(self, chunk_digests: list[bytes]) -> None:
        assert chunk_digests, "a dataset has at least one chunk"
        level = [leaf_hash(d) for d in chunk_digests]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def count(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        assert 0 <= index < self.count, index
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def merkle_root(chunk_digests: list[bytes]) -> bytes:
    return MerkleTree(chunk_digests).root


def verify_proof(
    root: bytes, count: int, index: int, chunk_digest: bytes, proof: list[bytes]
) -> bool:
    """True iff ``chunk_digest`` is chunk ``index`` of the ``count``-chunk tree with ``root``."""
    if not 0 <= index < count or len(proof) > PROOF_MAX_LEN:
        return False
    node = leaf_hash(chunk_digest)
    width, steps = count, iter(proof)
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            step = next(steps, None)
            if step is None or len(step) != HASH_LEN:
                return False
            node = _parent(node, step) if index % 2 == 0 else _parent(step, node)
        index //= 2
        width = (width + 1) // 2
    return next(steps, None) is None and node == root
