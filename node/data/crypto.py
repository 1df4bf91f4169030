"""Dataset cryptography: chunk encryption and the Merkle tree over ciphertext chunk hashes.

Chunks: each plaintext chunk is sealed with XChaCha20-Poly1305 (IETF) under the dataset key
with a fresh random 24-byte nonce; the stored chunk is ``nonce || ciphertext+tag``. The
associated data binds the dataset id and the chunk index, so a chunk moved to another
position or another dataset fails to decrypt even under the same key.

XChaCha20-Poly1305 is computed as its definition reads (draft-irtf-cfrg-xchacha, as
libsodium's ``crypto_aead_xchacha20poly1305_ietf``): the HChaCha20 subkey of the key and the
nonce's first 16 bytes, then ChaCha20-Poly1305 (RFC 8439) under that subkey with the nonce
``0^4 || nonce[16:24]``. The AEAD runs in OpenSSL (``cryptography``), about four times faster
than PyNaCl's build on this machine, and releases the GIL, so a client decrypts beside its
event loop; HChaCha20 is taken from OpenSSL's ChaCha20 keystream block (the block minus the
input words it adds at the end). ``tests/data/test_crypto.py`` checks both directions
against libsodium.

Merkle tree: the tree over ciphertext chunk hashes and its proofs live in
``node.ledger.merkle`` (the ledger checks dispute evidence with them); they are re-exported
here for the chunk service.
"""

from __future__ import annotations

import hashlib
import struct

import nacl.bindings as sodium
import nacl.utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

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
_WORDS4 = struct.Struct("<4I")
_WORDS16 = struct.Struct("<16I")
_SIGMA = _WORDS4.unpack(b"expand 32-byte k")
_MASK32 = 0xFFFFFFFF


class ChunkDecryptError(ValueError):
    """A chunk does not decrypt: wrong key, wrong dataset/index, or tampered bytes."""


def new_dataset_key() -> bytes:
    return nacl.utils.random(KEY_BYTES)


def associated_data(dataset_id: str, index: int) -> bytes:
    encoded = dataset_id.encode()
    return AD_TAG + _U32.pack(len(encoded)) + encoded + _U32.pack(index)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20(key, nonce16): the 32-byte XChaCha20 subkey.

    OpenSSL's ChaCha20 with the 16-byte IV ``nonce16`` (its counter and nonce words are the
    IV's words, as HChaCha20's input) yields the block ``rounds(state) + state``; HChaCha20 is
    ``rounds(state)`` at words 0-3 and 12-15, so the input words are subtracted back."""
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(bytes(64))
    words = _WORDS16.unpack(block)
    ivw = _WORDS4.unpack(nonce16)
    return _WORDS4.pack(*((words[i] - _SIGMA[i]) & _MASK32 for i in range(4))) + _WORDS4.pack(
        *((words[12 + i] - ivw[i]) & _MASK32 for i in range(4))
    )


def _aead(key: bytes, nonce: bytes | memoryview) -> tuple[ChaCha20Poly1305, bytes]:
    nonce = bytes(nonce)
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])), bytes(4) + nonce[16:]


def encrypt_chunk(key: bytes, dataset_id: str, index: int, plaintext: bytes) -> bytes:
    nonce = nacl.utils.random(NONCE_BYTES)
    aead, inner = _aead(key, nonce)
    return nonce + aead.encrypt(inner, plaintext, associated_data(dataset_id, index))


def decrypt_chunk(key: bytes, dataset_id: str, index: int, stored: bytes | memoryview) -> bytes:
    """The plaintext of a stored chunk (``stored`` is not copied); ChunkDecryptError if it
    does not authenticate under ``key``, ``dataset_id`` and ``index``."""
    if len(stored) < CHUNK_OVERHEAD or len(key) != KEY_BYTES:
        raise ChunkDecryptError(f"chunk {index} is too short or the key is not {KEY_BYTES} bytes")
    view = memoryview(stored)
    aead, inner = _aead(key, view[:NONCE_BYTES])
    try:
        return aead.decrypt(inner, view[NONCE_BYTES:], associated_data(dataset_id, index))
    except InvalidTag:
        raise ChunkDecryptError(f"chunk {index} does not decrypt") from None


def sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def range_content_hash(chunk_digests: list[bytes]) -> bytes:
    """The ``content_hash`` of a delivery receipt: the hash of the range's chunk hashes."""
    return sha256(b"mdtp/v1/range\x00" + b"".join(chunk_digests))
