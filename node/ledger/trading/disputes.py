"""Disputes: a consumer's complaint about what was delivered, answered and resolved on the
ledger, and the supplier's track record derived from them.

Theory of operation
-------------------
``dispute.open`` (by the contract's consumer) names the contract and binds its evidence to
what was delivered:

- download contracts: 1..:data:`MAX_CHUNKS` chunks, each ``{index, chunk_hash, proof}``;
  the proof must verify (``node.ledger.merkle``, the chunk service's own tree) against the
  Merkle root and chunk count the contract's active version pinned (``bad_merkle_proof``),
  and a committed ``delivery.receipt`` of the contract must cover the index
  (``chunk_not_delivered``). A ``receipt_id`` is refused (``bad_evidence``).
- clean-room contracts: no chunks (no row ever left the supplier); ``receipt_id`` names a
  committed ``compute.receipt`` of the contract, whose ``result_hash`` the dispute records:
  that is the result the consumer complains about (``unknown_receipt`` otherwise).

Plus a ``statement`` and ``evidence_hash`` (SHA-256 of supporting material kept off-ledger).
A dispute may be opened once the contract was active, until its disposal deadline (block
time ``<= disposal_deadline_ms``, ``dispute_window_closed`` after); at most
:data:`MAX_OPEN_DISPUTES` unresolved and :data:`MAX_DISPUTES` in all per contract. Someone
must be able to decide it: the terms' ``arbiter``, else their ``reviewer`` (``no_resolver``
if neither); the resolver is fixed when the dispute opens.

States::

    OPEN      opened by the consumer
    ANSWERED  the supplier answered (once)
    RESOLVED  the resolver decided (final): upheld, rejected or settled

``dispute.answer`` is the supplier's, in OPEN only (``already_answered``,
``dispute_resolved``). ``dispute.resolve`` is the resolver's (who must still hold the reviewer
role), in OPEN or ANSWERED (``dispute_resolved`` after). ``rejected`` grants no refund
(``refund_not_allowed``); ``upheld`` and ``settled`` may grant ``refund_minor`` up to what
the contract charged by the block time minus refunds already granted (``refund_over_cap``),
which billing credits (:func:`.billing.add_refund`). Answer and resolve have no time limit.
"""

from __future__ import annotations

from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.merkle import PROOF_MAX_LEN, verify_proof
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, billing, layout, record
from mdtp.node.ledger.trading.accounts import has_role, registered_only, require_active
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.contracts import (
    event,
    load_version,
    require_contract,
    subjects,
)
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import HASH_LEN, INT_MAX, Fields, bad
from mdtp.node.ledger.tx import Tx

MAX_CHUNKS = 16
MAX_OPEN_DISPUTES = 4
MAX_DISPUTES = 32
STATEMENT_MAX_LEN = 2000
COMMENT_MAX_LEN = 1000
CHUNK_INDEX_MAX = 2**24
DECISIONS = ("upheld", "rejected", "settled")


# ---- reads ---------------------------------------------------------------------------------


def get_dispute(kv: ReadableKV, dispute_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = layout.read(kv, layout.dispute_key(dispute_id))
    return found


def contract_disputes(kv: ReadableKV, contract_id: str) -> list[dict[str, Any]]:
    """The disputes of a contract in the order they were opened (at most MAX_DISPUTES)."""
    out: list[dict[str, Any]] = []
    for _, raw in kv.scan(layout.CONTRACT_DISPUTE + contract_id.encode() + b"/"):
        found = get_dispute(kv, raw.decode())
        assert found is not None
        out.append(found)
    return out


def track_record(kv: ReadableKV, supplier_account: str) -> dict[str, Any]:
    """contracts, disputes_opened, disputes_upheld, disputes_settled, disputes_rejected."""
    return record.track_record(kv, supplier_account)


def _counts(kv: ReadableKV, contract_id: str) -> dict[str, int]:
    found: dict[str, int] | None = layout.read(kv, layout.dispute_count_key(contract_id))
    return found or {"all": 0, "open": 0}


# ---- evidence ------------------------------------------------------------------------------


def _read_chunks(f: Fields) -> list[dict[str, Any]]:
    raw = f.raw("chunks")
    if not isinstance(raw, list) or len(raw) > MAX_CHUNKS:
        bad("chunks", f"must be a list of 0..{MAX_CHUNKS} chunks")
    chunks: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        c = Fields(item, f"chunks[{i}]")
        index = c.integer("index", hi=CHUNK_INDEX_MAX)
        chunk_hash = c.blob("chunk_hash", size=HASH_LEN)
        proof = c.raw("proof")
        if not isinstance(proof, list) or len(proof) > PROOF_MAX_LEN:
            bad(c.name("proof"), f"must be a list of 0..{PROOF_MAX_LEN} hashes")
        if not all(isinstance(h, bytes) and len(h) == HASH_LEN for h in proof):
            bad(c.name("proof"), f"every item must be {HASH_LEN} bytes")
        c.finish()
        chunks.append({"index": index, "chunk_hash": chunk_hash, "proof": list(proof)})
    if len({c["index"] for c in chunks}) != len(chunks):
        bad("chunks", "must not repeat a chunk index")
    return chunks


def _chunk_count(state: Overlay, contract: dict[str, Any], version: dict[str, Any]) -> int:
    if "dataset_chunk_count" in version:
        count: int = version["dataset_chunk_count"]
        return count
    # versions written before the count was pinned: the dataset's, if its root is unchanged
    dataset = load_dataset(state, contract["dataset_id"])
    assert dataset is not None
    if dataset["merkle_root"] != version["dataset_merkle_root"]:
        refuse("bad_merkle_proof", "the dataset changed since this contract's version")
    count = dataset["chunk_count"]
    return count


def _delivered_ranges(state: Overlay, contract_id: str) -> list[tuple[int, int, bytes]]:
    ranges: list[tuple[int, int, bytes]] = []
    for _, receipt_id in state.scan(layout.CONTRACT_RECEIPT + contract_id.encode() + b"/"):
        receipt = layout.read(state, layout.receipt_key(receipt_id))
        assert receipt is not None
        ranges.append((receipt["first_chunk"], receipt["last_chunk"], receipt_id))
    return ranges


def _bind_chunks(
    state: Overlay,
    contract: dict[str, Any],
    version: dict[str, Any],
    chunks: list[dict[str, Any]],
) -> None:
    root = version["dataset_merkle_root"]
    count = _chunk_count(state, contract, version)
    for chunk in chunks:
        if not verify_proof(root, count, chunk["index"], chunk["chunk_hash"], chunk["proof"]):
            refuse("bad_merkle_proof", f"chunk {chunk['index']}: the proof does not verify")
    ranges = _delivered_ranges(state, contract["id"])
    for chunk in chunks:
        covering = [r for first, last, r in ranges if first <= chunk["index"] <= last]
        if not covering:
            refuse("chunk_not_delivered", f"no receipt covers chunk {chunk['index']}")
        chunk["receipt_id"] = covering[0]


# ---- handlers ------------------------------------------------------------------------------


def dispute_open(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dispute_id = f.ident("dispute_id")
    contract_id = f.ident("contract_id")
    chunks = _read_chunks(f)
    statement = f.text("statement", min_len=1, max_len=STATEMENT_MAX_LEN, multiline=True)
    evidence_hash = f.blob("evidence_hash", size=HASH_LEN)
    receipt_id = f.blob("receipt_id", size=HASH_LEN) if f.has("receipt_id") else None
    f.finish()
    if get_dispute(state, dispute_id) is not None:
        refuse("dispute_exists", f"dispute {dispute_id} already exists")
    contract = require_contract(state, contract_id)
    if tx.sender != contract["consumer"]:
        refuse("not_contract_consumer", f"only {contract['consumer']} opens a dispute")
    if contract["activated"] is None:
        refuse("not_active", f"contract {contract_id} never became active: nothing delivered")
    if ctx.timestamp_ms > contract["disposal_deadline_ms"]:
        refuse("dispute_window_closed", f"the window closed at {contract['disposal_deadline_ms']}")
    version = load_version(state, contract_id, contract["activated"]["version"])
    terms = version["terms"]
    resolver = terms.get("arbiter") or terms.get("reviewer")
    if resolver is None:
        refuse("no_resolver", "the terms name neither an arbiter nor a reviewer")
    counts = _counts(state, contract_id)
    if counts["open"] >= MAX_OPEN_DISPUTES or counts["all"] >= MAX_DISPUTES:
        refuse(
            "too_many_disputes",
            f"at most {MAX_OPEN_DISPUTES} open and {MAX_DISPUTES} disputes per contract",
        )
    result_hash = None
    if terms["delivery_method"] == "clean_room":
        if chunks or receipt_id is None:
            refuse("bad_evidence", "a clean-room dispute names a receipt_id and no chunks")
        receipt = layout.read(state, layout.compute_receipt_key(receipt_id))
        if receipt is None or receipt["contract_id"] != contract_id:
            refuse("unknown_receipt", f"no compute receipt {receipt_id.hex()} of {contract_id}")
        result_hash = receipt["result_hash"]
    else:
        if not chunks or receipt_id is not None:
            refuse("bad_evidence", "a download dispute names 1.. chunks and no receipt_id")
        _bind_chunks(state, contract, version, chunks)
    counts = {"all": counts["all"] + 1, "open": counts["open"] + 1}
    state.put_obj(layout.dispute_count_key(contract_id), counts)
    state.put(layout.contract_dispute_key(contract_id, counts["all"]), dispute_id.encode())
    state.put_obj(
        layout.dispute_key(dispute_id),
        {
            "id": dispute_id,
            "n": counts["all"],
            "contract_id": contract_id,
            "supplier": contract["supplier"],
            "consumer": contract["consumer"],
            "resolver": resolver,
            "status": "OPEN",
            "chunks": chunks,
            "receipt_id": receipt_id,
            "result_hash": result_hash,
            "statement": statement,
            "evidence_hash": evidence_hash,
            "opened": event(ctx, tx),
            "answer": None,
            "resolution": None,
        },
    )
    record.bump(state, contract["supplier"], "disputes_opened")
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"opened dispute {dispute_id} on contract {contract_id}"
        + (f" about chunks {','.join(str(c['index']) for c in chunks)}" if chunks else ""),
    )


def _require_dispute(state: Overlay, dispute_id: str) -> dict[str, Any]:
    found = get_dispute(state, dispute_id)
    if found is None:
        refuse("unknown_dispute", f"dispute_id: no dispute {dispute_id}")
    return found


def dispute_answer(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dispute_id = f.ident("dispute_id")
    statement = f.text("statement", min_len=1, max_len=STATEMENT_MAX_LEN, multiline=True)
    evidence_hash = f.blob("evidence_hash", size=HASH_LEN)
    f.finish()
    dispute = _require_dispute(state, dispute_id)
    if tx.sender != dispute["supplier"]:
        refuse("not_contract_supplier", f"only {dispute['supplier']} answers this dispute")
    if dispute["status"] == "RESOLVED":
        refuse("dispute_resolved", f"dispute {dispute_id} is resolved")
    if dispute["answer"] is not None:
        refuse("already_answered", f"dispute {dispute_id} is already answered")
    dispute["answer"] = {"statement": statement, "evidence_hash": evidence_hash, **event(ctx, tx)}
    dispute["status"] = "ANSWERED"
    state.put_obj(layout.dispute_key(dispute_id), dispute)
    contract = require_contract(state, dispute["contract_id"])
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"answered dispute {dispute_id} on contract {contract['id']}",
    )


def dispute_resolve(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dispute_id = f.ident("dispute_id")
    decision = f.choice("decision", DECISIONS)
    refund = f.integer("refund_minor", hi=INT_MAX)
    comment = f.text("comment", max_len=COMMENT_MAX_LEN, multiline=True)
    f.finish()
    dispute = _require_dispute(state, dispute_id)
    if tx.sender != dispute["resolver"]:
        refuse("not_resolver", f"only {dispute['resolver']} resolves dispute {dispute_id}")
    if not has_role(require_active(state, tx.sender, "resolver"), "reviewer"):
        refuse("not_resolver", f"{tx.sender} no longer has the reviewer role")
    if dispute["status"] == "RESOLVED":
        refuse("dispute_resolved", f"dispute {dispute_id} is already resolved")
    if decision == "rejected" and refund != 0:
        refuse("refund_not_allowed", "a rejected dispute grants no refund")
    contract = require_contract(state, dispute["contract_id"])
    cap = billing.charged_minor(state, contract, at_ms=ctx.timestamp_ms) - billing.refunded_minor(
        state, contract["id"]
    )
    if refund > cap:
        refuse("refund_over_cap", f"at most {cap} may be refunded on contract {contract['id']}")
    invoice_id = billing.add_refund(ctx, state, contract, refund, dispute_id) if refund else None
    dispute["status"] = "RESOLVED"
    dispute["resolution"] = {
        "decision": decision,
        "refund_minor": refund,
        "invoice_id": invoice_id,
        "comment": comment,
        "by": tx.sender,
        **event(ctx, tx),
    }
    state.put_obj(layout.dispute_key(dispute_id), dispute)
    counts = _counts(state, contract["id"])
    counts["open"] -= 1
    state.put_obj(layout.dispute_count_key(contract["id"]), counts)
    record.bump(state, contract["supplier"], f"disputes_{decision}")
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"resolved dispute {dispute_id} on contract {contract['id']}: {decision}"
        + (f", refund {refund}" if refund else ""),
    )


def register(ledger: Ledger) -> None:
    ledger.register("dispute.open", registered_only(dispute_open))
    ledger.register("dispute.answer", registered_only(dispute_answer))
    ledger.register("dispute.resolve", registered_only(dispute_resolve))
