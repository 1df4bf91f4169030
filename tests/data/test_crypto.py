"""Chunk encryption (AD binds dataset and index) and the Merkle tree with proofs."""

from __future__ import annotations

import os

import nacl.bindings as sodium
import pytest

from mdtp.node.data.crypto import (
    NONCE_BYTES,
    ChunkDecryptError,
    MerkleTree,
    associated_data,
    decrypt_chunk,
    encrypt_chunk,
    hchacha20,
    new_dataset_key,
    sha256,
    verify_proof,
)


def test_chunk_round_trips_under_its_dataset_and_index() -> None:
    key = new_dataset_key()
    stored = encrypt_chunk(key, "ds", 3, b"plain data")
    assert b"plain data" not in stored
    assert decrypt_chunk(key, "ds", 3, stored) == b"plain data"


@pytest.mark.parametrize(("dataset", "index"), [("ds", 4), ("other", 3)])
def test_chunk_moved_to_another_index_or_dataset_does_not_decrypt(dataset: str, index: int) -> None:
    key = new_dataset_key()
    stored = encrypt_chunk(key, "ds", 3, b"plain data")
    with pytest.raises(ChunkDecryptError):
        decrypt_chunk(key, dataset, index, stored)


def test_tampered_chunk_or_wrong_key_does_not_decrypt() -> None:
    key = new_dataset_key()
    stored = bytearray(encrypt_chunk(key, "ds", 0, b"x" * 100))
    with pytest.raises(ChunkDecryptError):
        decrypt_chunk(new_dataset_key(), "ds", 0, bytes(stored))
    stored[40] ^= 1
    with pytest.raises(ChunkDecryptError):
        decrypt_chunk(key, "ds", 0, bytes(stored))


def test_same_plaintext_encrypts_differently_each_time() -> None:
    key = new_dataset_key()
    assert encrypt_chunk(key, "ds", 0, b"a") != encrypt_chunk(key, "ds", 0, b"a")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 64, 100])
def test_every_chunk_proves_against_the_root_for_any_chunk_count(count: int) -> None:
    digests = [sha256(os.urandom(8)) for _ in range(count)]
    tree = MerkleTree(digests)
    for i, d in enumerate(digests):
        assert verify_proof(tree.root, count, i, d, tree.proof(i))


def test_proof_fails_for_wrong_chunk_wrong_index_or_wrong_count() -> None:
    digests = [sha256(bytes([i])) for i in range(7)]
    tree = MerkleTree(digests)
    proof = tree.proof(2)
    assert not verify_proof(tree.root, 7, 2, sha256(b"forged"), proof)
    assert not verify_proof(tree.root, 7, 3, digests[2], proof)
    assert not verify_proof(tree.root, 3, 2, digests[2], proof)
    assert not verify_proof(tree.root, 7, 7, digests[2], proof)
    assert not verify_proof(tree.root, 7, 2, digests[2], [*proof, bytes(32)])
    assert not verify_proof(tree.root, 7, 2, digests[2], proof[:-1])


def test_single_chunk_root_is_its_leaf_and_leaf_cannot_pose_as_inner_node() -> None:
    a, b = sha256(b"a"), sha256(b"b")
    two = MerkleTree([a, b])
    # the inner node's preimage presented as a "chunk hash" of a one-chunk tree fails
    assert MerkleTree([a]).root != two.root
    assert not verify_proof(two.root, 1, 0, two.levels[0][0] + two.levels[0][1], [])


def test_hchacha20_matches_the_xchacha_draft_vector() -> None:
    # draft-irtf-cfrg-xchacha-03, 2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce) == bytes.fromhex(
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 4096, 1024 * 1024 + 7])
def test_chunks_are_libsodium_xchacha20poly1305_both_ways(size: int) -> None:
    key, plain = new_dataset_key(), os.urandom(size)
    ad = associated_data("ds", 9)
    ours = encrypt_chunk(key, "ds", 9, plain)
    nonce = ours[:NONCE_BYTES]
    assert ours[NONCE_BYTES:] == sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, ad, nonce, key
    )
    nonce = os.urandom(NONCE_BYTES)
    theirs = nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)
    assert decrypt_chunk(key, "ds", 9, theirs) == plain
    assert decrypt_chunk(key, "ds", 9, memoryview(theirs)) == plain


def test_short_chunk_or_wrong_key_length_is_a_decrypt_error() -> None:
    with pytest.raises(ChunkDecryptError):
        decrypt_chunk(new_dataset_key(), "ds", 0, b"x" * (NONCE_BYTES + 15))
    stored = encrypt_chunk(new_dataset_key(), "ds", 0, b"x")
    with pytest.raises(ChunkDecryptError):
        decrypt_chunk(b"k" * 31, "ds", 0, stored)
