"""The consumer's signed query request, and the frames between the two nodes.

A query request is a signed envelope (:mod:`node.data.protocol`) with the tag
``mdtp/v1/query``: ``[chain_id, contract_id, sql, nonce(16 bytes), expires_at_ms,
requester]``, signed by the consumer account. Its *request id* is the SHA-256 of the signed
field list; the *query hash* is the SHA-256 of the SQL text (UTF-8). Both are named in the
``compute.receipt``.

Frames (msgpack maps; ``qid`` is a 16-byte id chosen by the consumer's node)::

    compute.req     consumer -> supplier  {qid, req}
    compute.result  supplier -> consumer  {qid, result, receipt}
    compute.refuse  supplier -> consumer  {qid, reason, message}

``result`` is the canonical JSON of the result (:func:`node.compute.result.canonical_result`,
the bytes the receipt's ``result_hash`` names): one byte string, so a frame of many small
values is never what a peer's result decodes into. ``receipt`` holds the receipt's fields
(hex for hashes) and its transaction id: the supplier's node answers only once the receipt
is committed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.data.protocol import (
    NONCE_BYTES,
    Envelope,
    Refused,
    check_id,
    is_account_id,
    open_envelope,
    sign_envelope,
)

QUERY_TAG = b"mdtp/v1/query\x00"
SQL_MAX_BYTES = 2000  # of a request's SQL text; checked here and again by .check


@dataclass(frozen=True)
class QueryRequest:
    chain_id: str
    contract_id: str
    sql: str
    nonce: bytes
    expires_at_ms: int
    requester: str
    envelope: Envelope

    @property
    def request_id(self) -> bytes:
        return hashlib.sha256(self.envelope.unsigned).digest()

    @property
    def query_hash(self) -> bytes:
        return query_hash(self.sql)


def query_hash(sql: str) -> bytes:
    return hashlib.sha256(sql.encode()).digest()


def sign_query_request(
    signer: Any,
    *,
    chain_id: str,
    contract_id: str,
    sql: str,
    expires_at_ms: int,
    nonce: bytes | None = None,
) -> bytes:
    return sign_envelope(
        signer,
        QUERY_TAG,
        [
            chain_id,
            contract_id,
            sql,
            nonce if nonce is not None else os.urandom(NONCE_BYTES),
            expires_at_ms,
            signer.account_id,
        ],
    )


def decode_query_request(raw: bytes, chain_id: str) -> QueryRequest:
    """Decoded (not yet authenticated); :class:`QueryRefused` on anything odd."""
    try:
        env = open_envelope(raw, QUERY_TAG, 6)
    except Refused as r:
        raise QueryRefused("malformed", r.message) from None
    chain, contract_id, sql, nonce, expires, requester = env.fields
    if not (
        isinstance(chain, str)
        and isinstance(contract_id, str)
        and isinstance(sql, str)
        and isinstance(nonce, bytes)
        and len(nonce) == NONCE_BYTES
        and isinstance(expires, int)
        and not isinstance(expires, bool)
        and 0 <= expires < 2**63
        and isinstance(requester, str)
    ):
        raise QueryRefused("malformed", "query request fields have the wrong types")
    if chain != chain_id:
        raise QueryRefused("wrong_chain", "request is for another chain")
    try:
        check_id(contract_id)
    except Refused as r:
        raise QueryRefused("bad_id", r.message) from None
    if not is_account_id(requester):
        raise QueryRefused("bad_id", "requester is not an account id")
    if len(sql.encode()) > SQL_MAX_BYTES:
        raise QueryRefused("query_too_long", f"at most {SQL_MAX_BYTES} bytes of SQL")
    return QueryRequest(chain, contract_id, sql, nonce, expires, requester, env)
