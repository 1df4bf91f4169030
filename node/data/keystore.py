"""Dataset keys at rest on the supplier's node, sealed under a key derived from the node key.

The wrapping key is ``BLAKE2b(node key seed, key=domain tag, person=...)``: it never leaves
the process, changes with the node key, and a copy of the chunk store without the node key
file (itself 0600 and optionally passphrase-sealed) holds no readable dataset key. Each
sealed key is ``secretbox(dataset key)`` with the dataset id as associated context (the box
is bound to its id by prefixing the id into the plaintext and checking it on open).
"""

from __future__ import annotations

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret

from mdtp.node.data.crypto import KEY_BYTES
from mdtp.node.identity.keys import SigningKey
from mdtp.storage.chunkstore import ChunkStore

_DOMAIN = b"mdtp/v1/datakeys"


class KeyStoreError(Exception):
    pass


class KeyStore:
    def __init__(self, store: ChunkStore, node_key: SigningKey) -> None:
        wrapping = nacl.hash.blake2b(
            bytes(node_key.signing),
            digest_size=nacl.secret.SecretBox.KEY_SIZE,
            key=_DOMAIN,
            person=b"mdtp-datakey\x00\x00\x00\x00",
            encoder=nacl.encoding.RawEncoder,
        )
        self._box = nacl.secret.SecretBox(wrapping)
        self._store = store

    def put(self, dataset_id: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyStoreError(f"a dataset key is {KEY_BYTES} bytes")
        self._store.put_meta(dataset_id, bytes(self._box.encrypt(dataset_id.encode() + key)))

    def get(self, dataset_id: str) -> bytes | None:
        sealed = self._store.get_meta(dataset_id)
        if sealed is None:
            return None
        try:
            opened = self._box.decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise KeyStoreError(f"sealed key of {dataset_id} does not open") from None
        prefix = dataset_id.encode()
        if not opened.startswith(prefix) or len(opened) != len(prefix) + KEY_BYTES:
            raise KeyStoreError(f"sealed key of {dataset_id} belongs to another dataset")
        return opened[len(prefix) :]
