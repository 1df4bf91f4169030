"""Small, dependency-free encodings shared by keys, genesis, the API and its clients."""

from __future__ import annotations

import hashlib
import json
from typing import Any

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# multicodec prefix of an Ed25519 public key (varint 0xed), as used by did:key.
_ED25519_MULTICODEC = b"\xed\x01"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + _B58_INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def account_id_from_public_key(public_key: bytes) -> str:
    """Self-certifying account id: ``did:key:z<base58btc(0xed01 || ed25519 public key)>``."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return "did:key:z" + b58encode(_ED25519_MULTICODEC + public_key)


def public_key_from_account_id(account_id: str) -> bytes:
    """Inverse of :func:`account_id_from_public_key`; ValueError on anything else."""
    if not account_id.startswith("did:key:z") or len(account_id) > 64:
        raise ValueError("an account id looks like did:key:z6Mk...")
    raw = b58decode(account_id[len("did:key:z") :])
    if len(raw) != 34 or raw[:2] != _ED25519_MULTICODEC:
        raise ValueError("account id is not an Ed25519 did:key")
    return raw[2:]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(doc: Any) -> str:
    """Canonical JSON of an API body: sorted keys, no spaces, so every node at one height
    answers with identical bytes (and an exported audit line reads the same as the API's)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
