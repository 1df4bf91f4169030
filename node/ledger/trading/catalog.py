"""The catalog: ``dataset.publish``, ``dataset.update``, ``dataset.withdraw``.

Only metadata is on the ledger: the encrypted chunks stay on the supplier's node, and the
Merkle root over them plus the plaintext digest let a consumer check what it receives. A
dataset belongs to the supplier account that published it and is served by that supplier's
own member node (``supplier_node``), whose node account later posts the fulfilment records.

Withdrawing stops new offers and signatures; contracts already active run to their end.
``version`` counts metadata changes; a contract version pins the Merkle root it was offered
against, so a content change needs a new contract version before anyone can sign
(``dataset_changed``).

Quality claims beyond the required five fields and the provenance stamp are read and
checked in :mod:`.provenance`; a dataset's stamp is verified against the metadata as it will
be stored, so a publish or update that changes the content must carry a stamp the capturing
system signed for that content.
"""

from __future__ import annotations

from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, layout, provenance
from mdtp.node.ledger.trading.accounts import has_role, load_account, registered_only
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import HASH_LEN, TAG_RE, Fields, bad
from mdtp.node.ledger.tx import Tx

TITLE_MAX_LEN = 200
DESCRIPTION_MAX_LEN = 4000
TAGS_MAX = 16
SCHEMA_MAX_LEN = 8000
FORMAT_MAX_LEN = 32
CHUNK_COUNT_MAX = 2**24
MACHINE_TYPE_MAX_LEN = 100
VALIDATION_METHOD_MAX_LEN = 200
WITHDRAW_REASON_MAX_LEN = 500
MEMBER_ID_MAX_LEN = 32

# Fields a supplier may change with dataset.update (supplier and supplier_node are fixed).
MUTABLE_FIELDS = (
    "title",
    "description",
    "tags",
    "schema",
    "format",
    "size_bytes",
    "chunk_count",
    "merkle_root",
    "plaintext_digest",
    "quality",
)


def _quality(f: Fields) -> dict[str, Any]:
    q = f.nested("quality")
    quality: dict[str, Any] = {
        "collection_start_ms": q.integer("collection_start_ms"),
        "collection_end_ms": q.integer("collection_end_ms"),
        "machine_type": q.text("machine_type", min_len=1, max_len=MACHINE_TYPE_MAX_LEN),
        "sampling_rate_millihz": q.integer("sampling_rate_millihz"),
        "validation_method": q.text("validation_method", max_len=VALIDATION_METHOD_MAX_LEN),
    }
    provenance.read_quality_extras(q, quality)
    q.finish()
    provenance.check_quality(quality)
    return quality


def _read_field(f: Fields, name: str) -> Any:
    match name:
        case "title":
            return f.text(name, min_len=1, max_len=TITLE_MAX_LEN)
        case "description":
            return f.text(name, max_len=DESCRIPTION_MAX_LEN, multiline=True)
        case "tags":
            return sorted(f.string_list(name, max_items=TAGS_MAX, pattern=TAG_RE))
        case "schema":
            return f.text(name, max_len=SCHEMA_MAX_LEN, multiline=True)
        case "format":
            return f.text(name, min_len=1, max_len=FORMAT_MAX_LEN)
        case "size_bytes":
            return f.integer(name)
        case "chunk_count":
            return f.integer(name, lo=1, hi=CHUNK_COUNT_MAX)
        case "merkle_root" | "plaintext_digest":
            return f.blob(name, size=HASH_LEN)
        case "quality":
            return _quality(f)
    raise AssertionError(name)


def load_dataset(state: ReadableKV, dataset_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = layout.read(state, layout.dataset_key(dataset_id))
    return record


def require_published(state: ReadableKV, dataset_id: str) -> dict[str, Any]:
    record = load_dataset(state, dataset_id)
    if record is None:
        refuse("unknown_dataset", f"dataset_id: no dataset {dataset_id}")
    if record["status"] != "published":
        refuse("dataset_withdrawn", f"dataset {dataset_id} is withdrawn")
    return record


def _owned(state: Overlay, tx: Tx, dataset_id: str) -> dict[str, Any]:
    record = require_published(state, dataset_id)
    if record["supplier"] != tx.sender:
        refuse("not_owner", f"dataset {dataset_id} belongs to {record['supplier']}")
    return record


def _event(ctx: BlockContext, tx: Tx) -> dict[str, Any]:
    return {"height": ctx.height, "time_ms": ctx.timestamp_ms, "tx_id": tx.id}


def _stamp(
    ctx: BlockContext, state: Overlay, record: dict[str, Any], stamp: dict[str, Any] | None
) -> None:
    """Verify ``stamp`` (if given) against ``record`` as it will be stored, and store it."""
    if stamp is not None:
        record["provenance"] = provenance.check_provenance(
            state, chain_id=ctx.chain_id, now_ms=ctx.timestamp_ms, dataset=record, provenance=stamp
        )


def _check_kept_stamp(
    stamp: dict[str, Any], record: dict[str, Any], changes: dict[str, Any]
) -> None:
    """An update without a fresh stamp keeps the stored one: only if the content it signed
    stays, and the new collection period still contains the stamped capture period."""
    if any(
        name in changes and changes[name] != record[name]
        for name in ("merkle_root", "plaintext_digest")
    ):
        refuse("provenance_stale", "a stamped dataset's new content needs a fresh provenance")
    quality = changes.get("quality", record["quality"])
    if (
        stamp["capture_start_ms"] < quality["collection_start_ms"]
        or stamp["capture_end_ms"] > quality["collection_end_ms"]
    ):
        refuse(
            "capture_outside_collection",
            "the new collection period does not contain the stamped capture period",
        )


def dataset_publish(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dataset_id = f.ident("dataset_id")
    metadata = {name: _read_field(f, name) for name in MUTABLE_FIELDS}
    supplier_node = f.text("supplier_node", min_len=1, max_len=MEMBER_ID_MAX_LEN)
    stamp = provenance.read_provenance(f) if f.has("provenance") else None
    f.finish()
    sender = load_account(state, tx.sender)
    assert sender is not None
    if not has_role(sender, "supplier"):
        refuse("not_supplier", "publishing needs the supplier role")
    if state.get(layout.member_key(supplier_node)) is None:
        refuse("unknown_member", f"supplier_node: no member {supplier_node}")
    if supplier_node != sender["member"]:
        refuse("wrong_supplier_node", f"supplier_node must be {sender['member']}")
    if state.get(layout.dataset_key(dataset_id)) is not None:
        refuse("dataset_exists", f"dataset {dataset_id} already exists")
    record = {
        "id": dataset_id,
        "supplier": tx.sender,
        "supplier_node": supplier_node,
        **metadata,
        "status": "published",
        "version": 1,
        "published": _event(ctx, tx),
        "updated": None,
        "withdrawn": None,
    }
    _stamp(ctx, state, record, stamp)
    state.put_obj(layout.dataset_key(dataset_id), record)
    for tag in metadata["tags"]:
        state.put(layout.dataset_tag_key(tag, dataset_id), layout.EMPTY)
    state.put(layout.dataset_supplier_key(tx.sender, dataset_id), layout.EMPTY)
    audit.record(
        ctx,
        state,
        tx,
        [("dataset", dataset_id), ("account", tx.sender)],
        f"published dataset {dataset_id}: {metadata['title']}",
    )


def dataset_update(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dataset_id = f.ident("dataset_id")
    changes = {name: _read_field(f, name) for name in MUTABLE_FIELDS if f.has(name)}
    stamp = provenance.read_provenance(f) if f.has("provenance") else None
    f.finish()
    if not changes and stamp is None:
        bad("body", f"name at least one of {', '.join(MUTABLE_FIELDS)}, provenance")
    record = _owned(state, tx, dataset_id)
    if stamp is None and record.get("provenance") is not None:
        _check_kept_stamp(record["provenance"], record, changes)
    for tag in sorted(set(record["tags"]) - set(changes.get("tags", record["tags"]))):
        state.delete(layout.dataset_tag_key(tag, dataset_id))
    for tag in changes.get("tags", ()):
        state.put(layout.dataset_tag_key(tag, dataset_id), layout.EMPTY)
    record.update(changes)
    _stamp(ctx, state, record, stamp)
    record["version"] += 1
    record["updated"] = _event(ctx, tx)
    state.put_obj(layout.dataset_key(dataset_id), record)
    audit.record(
        ctx,
        state,
        tx,
        [("dataset", dataset_id), ("account", tx.sender)],
        f"updated dataset {dataset_id} to version {record['version']}: "
        + ", ".join([*changes, *(["provenance"] if stamp is not None else [])]),
    )


def dataset_withdraw(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    dataset_id = f.ident("dataset_id")
    reason = f.text("reason", max_len=WITHDRAW_REASON_MAX_LEN)
    f.finish()
    record = _owned(state, tx, dataset_id)
    record["status"] = "withdrawn"
    record["withdrawn"] = {**_event(ctx, tx), "reason": reason}
    state.put_obj(layout.dataset_key(dataset_id), record)
    audit.record(
        ctx,
        state,
        tx,
        [("dataset", dataset_id), ("account", tx.sender)],
        f"withdrew dataset {dataset_id}" + (f": {reason}" if reason else ""),
    )


def register(ledger: Ledger) -> None:
    ledger.register("dataset.publish", registered_only(dataset_publish))
    ledger.register("dataset.update", registered_only(dataset_update))
    ledger.register("dataset.withdraw", registered_only(dataset_withdraw))
