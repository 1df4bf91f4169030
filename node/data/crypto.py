"""Dataset cryptography: chunk encryption and the Merkle tree over ciphertext chunk hashes.

Chunks: each plaintext chunk is sealed with XChaCha20-Poly1305 (IETF) under the dataset key
with a fresh random 24-byte nonce; the stored chunk is ``nonce || ciphertext+tag``. The
associated data binds the dataset id and the chunk index, so a chunk moved to another
position or another dataset fails to decrypt even under the same key.

Merkle tree: the tree over ciphertext chunk hashes and its proofs live in
``node.ledger.merkle`` (the ledger checks dispute evidence with them); they are re-exported
here for the chunk service.
"""

from __future__ import annotations

import hashlib
import struct

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from mdtp.node.ledger.merkle import MerkleTree as MerkleTree
from mdtp.node.ledger.merkle import leaf_hash as leaf_hash
from mdtp.node.ledger.merkle import merkle_root as merkle_root
from mdtp.node.ledger.merkle import verify_proof as verify_proof

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


def range_content_hash(chunk_digests: list[bytes]) -> bytes:
    """The ``content_hash`` of a delivery receipt: the hash of the range's chunk hashes."""
    return sha256(b"mdtp/v1/range\x00" + b"".join(chunk_digests))
