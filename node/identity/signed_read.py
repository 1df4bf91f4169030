"""Signed reads: how an account proves to a node's API that it is the one asking.

Confidential routes (a contract's terms, receipts and audit trail) answer only requests that
carry four headers: the account id, the client's clock in milliseconds, a fresh random nonce
and an Ed25519 signature by the account's current key over::

    "mdtp/v1/read\\0" + JSON [chain id, METHOD, raw path, raw query, SHA-256(body) hex,
                              account, time ms, nonce hex]

The chain id keeps a signature for one consortium from being used on another, the method,
path, query and body hash keep it to this one request, and the time (within a bounded skew)
and the nonce (remembered by the node for that long) keep it from being replayed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from mdtp.node.identity.keys import SigningKey

HEADER_ACCOUNT = "X-Mdtp-Account"
HEADER_TIME = "X-Mdtp-Time"
HEADER_NONCE = "X-Mdtp-Nonce"
HEADER_SIGNATURE = "X-Mdtp-Signature"
HEADERS = (HEADER_ACCOUNT, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)
TAG = b"mdtp/v1/read\x00"
NONCE_LEN = 16
SIGNATURE_LEN = 64


def message(
    chain_id: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    account: str,
    time_ms: int,
    nonce: bytes,
) -> bytes:
    """The bytes an account signs for one request (``path`` and ``query`` as sent, raw)."""
    fields = [
        chain_id,
        method.upper(),
        path,
        query,
        hashlib.sha256(body).hexdigest(),
        account,
        time_ms,
        nonce.hex(),
    ]
    return TAG + json.dumps(fields, separators=(",", ":")).encode()


def sign_headers(
    key: SigningKey,
    chain_id: str,
    method: str,
    path: str,
    query: str,
    body: bytes = b"",
    *,
    account: str | None = None,
    time_ms: int | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The headers of a signed read by ``account`` (the key's own account by default)."""
    account = account or key.account_id
    time_ms = int(time.time() * 1000) if time_ms is None else time_ms
    nonce = secrets.token_bytes(NONCE_LEN) if nonce is None else nonce
    signature = key.sign(message(chain_id, method, path, query, body, account, time_ms, nonce))
    return {
        HEADER_ACCOUNT: account,
        HEADER_TIME: str(time_ms),
        HEADER_NONCE: nonce.hex(),
        HEADER_SIGNATURE: signature.hex(),
    }
