"""Signed requests of the chunk service and its refusal reasons.

A *signed envelope* is ``msgpack([unsigned, public_key, signature])`` where ``unsigned`` is
the canonical msgpack of a field list and the signature is Ed25519 over ``tag || unsigned``.
The tag separates the envelope kinds from each other and from transactions, so no signature
is valid in two places.

- fetch request (tag ``mdtp/v1/fetch``): ``[chain_id, contract_id, first_chunk, last_chunk,
  nonce(16 bytes), expires_at_ms, requester]``, signed by the requester account. The
  supplier's node checks it against its committed ledger state.
- upload authorisation (tag ``mdtp/v1/upload``): ``[chain_id, action, dataset_id, index,
  sha256(body), expires_at_ms, account]``, signed by a supplier account of the node's own
  member; lets a member's client store chunks and dataset keys on its own node.

The verifier takes the public key from the ledger (the account's current key), never from
the envelope alone: a valid signature by a key that is not the account's is ``bad_signature``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgpack

from mdtp.node.encoding import public_key_from_account_id
from mdtp.node.identity.keys import verify_signature
from mdtp.node.ledger.trading.schema import ID_RE
from mdtp.node.ledger.tx import canonical

FETCH_TAG = b"mdtp/v1/fetch\x00"
UPLOAD_TAG = b"mdtp/v1/upload\x00"
NONCE_BYTES = 16
ENVELOPE_MAX_BYTES = 4096

# Every reason a fetch or upload is refused, with its meaning: the API returns the code,
# the metric ``mdtp_data_refusals_total{reason}`` counts it, the audit log line names it.
REFUSALS: dict[str, str] = {
    "malformed": "the request does not decode",
    "wrong_chain": "the request is for another chain",
    "request_expired": "the request's expires_at_ms has passed",
    "expiry_too_far": "the request expires further ahead than the node accepts",
    "bad_signature": "the signature is not by the requester account's current key",
    "replayed_nonce": "the request's nonce was already used",
    "nonce_quota": "the account has too many unexpired requests remembered; retry later",
    "foreign_relay": "the request was relayed by a member other than the account's own",
    "bad_id": "an id does not match the ledger's id grammar",
    "unknown_contract": "no such contract",
    "not_consumer": "the requester is not the contract's consumer",
    "not_active": "the contract is not active yet (or never became active)",
    "contract_expired": "the contract's use period has ended",
    "contract_terminated": "the contract was terminated",
    "outside_use_period": "the use period has not started yet",
    "payment_overdue": "an invoice is overdue and the terms suspend access until it is paid",
    "bad_chunk_range": "the chunk range is empty or outside the dataset",
    "quota_exhausted": "every download the contract allows has been used",
    "busy": "too many fetches in progress; retry later",
    "dataset_unavailable": "this node does not hold the dataset's chunks or key",
    "chunk_corrupt": "a stored chunk failed its hash check on the supplier and was not served",
    "bad_chunk": "a chunk from the supplier did not match the dataset's Merkle root",
    "supplier_unreachable": "the supplier's node did not answer in time",
    "not_member_account": "the account is not an account of this node's member",
    "not_supplier": "the account does not have the supplier role",
    "interrupted": "the transfer stopped before the range was complete",
}


class Refused(Exception):
    def __init__(self, reason: str, message: str = "", chunk: int | None = None) -> None:
        assert reason in REFUSALS, f"undocumented refusal {reason!r}"
        super().__init__(f"{reason}: {message or REFUSALS[reason]}")
        self.reason = reason
        self.message = message or REFUSALS[reason]
        self.chunk = chunk


@dataclass(frozen=True)
class Envelope:
    fields: list[Any]
    public_key: bytes
    signature: bytes
    unsigned: bytes


def sign_envelope(signer: Any, tag: bytes, fields: list[Any]) -> bytes:
    unsigned = canonical(fields)
    return canonical([unsigned, signer.public_key, signer.sign(tag + unsigned)])


def open_envelope(raw: bytes, tag: bytes, arity: int) -> Envelope:
    """Decode (not yet authenticate) an envelope: ``malformed`` on anything odd."""
    if len(raw) > ENVELOPE_MAX_BYTES:
        raise Refused("malformed", "request too large")
    try:
        outer = msgpack.unpackb(raw, raw=False)
        unsigned, public_key, signature = outer
        fields = msgpack.unpackb(unsigned, raw=False)
    except Exception:
        raise Refused("malformed", "request is not a signed envelope") from None
    if (
        not isinstance(unsigned, bytes)
        or not isinstance(public_key, bytes)
        or not isinstance(signature, bytes)
        or not isinstance(fields, list)
        or len(fields) != arity
    ):
        raise Refused("malformed", f"expected a signed list of {arity} fields")
    return Envelope(fields, public_key, signature, unsigned)


def check_signature(env: Envelope, tag: bytes, account_public_key: bytes | None) -> None:
    if (
        account_public_key is None
        or env.public_key != account_public_key
        or not verify_signature(account_public_key, tag + env.unsigned, env.signature)
    ):
        raise Refused("bad_signature")


@dataclass(frozen=True)
class FetchRequest:
    chain_id: str
    contract_id: str
    first_chunk: int
    last_chunk: int
    nonce: bytes
    expires_at_ms: int
    requester: str
    envelope: Envelope


def sign_fetch_request(
    signer: Any,
    *,
    chain_id: str,
    contract_id: str,
    first_chunk: int,
    last_chunk: int,
    expires_at_ms: int,
    nonce: bytes | None = None,
) -> bytes:
    return sign_envelope(
        signer,
        FETCH_TAG,
        [
            chain_id,
            contract_id,
            first_chunk,
            last_chunk,
            nonce if nonce is not None else os.urandom(NONCE_BYTES),
            expires_at_ms,
            signer.account_id,
        ],
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def decode_fetch_request(raw: bytes, chain_id: str) -> FetchRequest:
    env = open_envelope(raw, FETCH_TAG, 7)
    chain, contract_id, first, last, nonce, expires, requester = env.fields
    if not (
        isinstance(chain, str)
        and isinstance(contract_id, str)
        and _is_int(first)
        and _is_int(last)
        and isinstance(nonce, bytes)
        and len(nonce) == NONCE_BYTES
        and _is_int(expires)
        and isinstance(requester, str)
    ):
        raise Refused("malformed", "fetch request fields have the wrong types")
    if chain != chain_id:
        raise Refused("wrong_chain", "request is for another chain")
    # Ids in the ledger's grammar only: no field of a request reaches a log line, a key or a
    # path unless it could name something on the ledger.
    check_id(contract_id)
    if not is_account_id(requester):
        raise Refused("bad_id", "requester is not an account id")
    return FetchRequest(chain, contract_id, first, last, nonce, expires, requester, env)


def check_id(value: str) -> None:
    """:class:`Refused` ``bad_id`` unless ``value`` is an id the ledger could hold."""
    if not ID_RE.match(value):
        raise Refused("bad_id", f"ids must match {ID_RE.pattern}")


def is_account_id(value: str) -> bool:
    try:
        public_key_from_account_id(value)
    except ValueError:
        return False
    return True


def check_expiry(expires_at_ms: int, now_ms: int, max_ttl_ms: int) -> None:
    if expires_at_ms <= now_ms:
        raise Refused("request_expired", f"request expired at {expires_at_ms}, now {now_ms}")
    if expires_at_ms - now_ms > max_ttl_ms:
        raise Refused("expiry_too_far", f"requests may expire at most {max_ttl_ms} ms ahead")
