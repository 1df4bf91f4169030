"""Fast stand-ins for Ed25519 node keys and client transaction signatures.

A keyed blake2b MAC has the property the protocol needs from a signature in a closed
simulation (only the key holder can produce it) at a fraction of Ed25519's cost, which
is what lets hundreds of seeds run inside the test budget.  Twins share one key because
they share one node id.
"""

from __future__ import annotations

import hashlib
import hmac

from mdtp.consensus.block import Block

SIG_LEN = 64
TX_TAG = b"simtx"
_CLIENT_KEY = b"sim-client-key"


class SimKeys:
    def __init__(self, members: tuple[str, ...], seed: int) -> None:
        self._keys = {
            m: hashlib.blake2b(f"{seed}/{m}".encode(), digest_size=32).digest() for m in members
        }

    def signer(self, node_id: str) -> SimSigner:
        return SimSigner(self._keys[node_id])

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        key = self._keys.get(node_id)
        if key is None or len(signature) != SIG_LEN:
            return False
        expected = hashlib.blake2b(data, key=key, digest_size=SIG_LEN).digest()
        return hmac.compare_digest(expected, signature)


class SimSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._key, digest_size=SIG_LEN).digest()


def make_tx(client: int, seq: int) -> bytes:
    body = TX_TAG + client.to_bytes(4, "big") + seq.to_bytes(8, "big")
    return body + hashlib.blake2b(body, key=_CLIENT_KEY, digest_size=16).digest()


def tx_is_valid(tx: bytes) -> bool:
    if len(tx) != len(TX_TAG) + 12 + 16 or not tx.startswith(TX_TAG):
        return False
    mac = hashlib.blake2b(tx[:-16], key=_CLIENT_KEY, digest_size=16).digest()
    return hmac.compare_digest(mac, tx[-16:])


def validate_payload(block: Block) -> str | None:
    """The application's check: every transaction carries a valid client signature."""
    return None if all(tx_is_valid(tx) for tx in block.payload) else "bad_client_signature"


def tx_client(tx: bytes) -> int:
    """The client number ``make_tx`` put into ``tx``."""
    start = len(TX_TAG)
    return int.from_bytes(tx[start : start + 4], "big")
