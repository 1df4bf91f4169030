"""Dataset cryptography: chunk encryption and the Merkle tree over ciphertext chunk hashes.

Chunks: each plaintext chunk is sealed with XChaCha20-Poly1305 (IETF) under the dataset key
with a fresh random 24-byte nonce; the stored chunk is ``nonce || ciphertext+tag``. The
associated data binds the dataset id and the chunk index, so a chunk moved to another
position or another dataset fails to decrypt even under the same key.

Merkle tree: leaves are ``H(0x00 || chunk_hash)`` in chunk order, inner nodes
``H(0x01 || left || right)``; a level with an odd count carries its last node up unchanged.
The domain bytes keep a leaf from ever being read as an inner node. A proof for chunk ``i``
is the list of sibling hashes from the leaf up (levels where ``i``'s node has no sibling
contribute nothing); the verifier recomputes the sides from ``i`` and the chunk count.
"""

from __future__ import annotations

import hashlib
import struct

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

KEY_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
CHUNK_OVERHEAD = NONCE_BYTES + TAG_BYTES
DEFAULT_CHUNK_BYTES = 1024 * 1024
AD_TAG = b"mdtp/v1/chunk\x00"
HASH_LEN = 32
_U32 = struct.Struct(">I")


class ChunkDecryptError(ValueError):
    """A chunk does not decrypt: wrong key, wrong dataset/index, or tampered bytes."""


def new_dataset_key() -> bytes:
    return nacl.utils.random(KEY_BYTES)


def associated_data(dataset_id: str, index: int) -> bytes:
    encoded = dataset_id.encode()
    return AD_TAG + _U32.pack(len(encoded)) + encoded + _U32.pack(index)


def encrypt_chunk(key: bytes, dataset_id: str, index: int, plaintext: bytes) -> bytes:
    nonce = nacl.utils.random(NONCE_BYTES)
    ct: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, associated_data(dataset_id, index), nonce, key
    )
    return nonce + ct


def decrypt_chunk(key: bytes, dataset_id: str, index: int, stored: bytes) -> bytes:
    if len(stored) < CHUNK_OVERHEAD:
        raise ChunkDecryptError(f"chunk {index} is too short")
    try:
        pt: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            stored[NONCE_BYTES:], associated_data(dataset_id, index), stored[:NONCE_BYTES], key
        )
    except nacl.exceptions.CryptoError:
        raise ChunkDecryptError(f"chunk {index} does not decrypt") from None
    return pt


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(chunk_digest: bytes) -> bytes:
    return sha256(b"\x00" + chunk_digest)


def _parent(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def range_content_hash(chunk_digests: list[bytes]) -> bytes:
    """The ``content_hash`` of a delivery receipt: the hash of the range's chunk hashes."""
    return sha256(b"mdtp/v1/range\x00" + b"".join(chunk_digests))


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
    if not 0 <= index < count or len(proof) > 64:
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
