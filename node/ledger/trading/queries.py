"""Read-only queries over the committed state (any :class:`ReadableKV`), for the API and CLI.

Pure functions: no writes, no clock; a query that depends on time takes ``at_ms`` (the API
passes the latest block time, so that a contract reads EXPIRED exactly when the ledger
treats it so). Results are JSON-ready: maps, lists, strings, integers, booleans and None,
with bytes as lowercase hex. Every listing takes a ``limit`` (1..:data:`LIMIT_MAX`) and a
cursor, so no query walks an unbounded range in one call. A bad argument (unknown field, bad
limit, unknown audit kind) is a ``ValueError`` whose message names it.

Dataset search walks the tag or supplier index when one is given and the whole catalog
otherwise; that is linear in the catalog, which is fine for a consortium's catalog and
would get a proper text index if it grows past tens of thousands of datasets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.audit import KINDS
from mdtp.node.ledger.trading.contracts import Status, effective_status

LIMIT_MAX = 500
# A supplier's record counts at most this many of its contracts (one index scan).
SUPPLIER_RECORD_SCAN_MAX = 10_000

# Fields a search may match exactly, by dotted path.
SEARCH_FIELDS = (
    "format",
    "supplier_node",
    "supplier",
    "status",
    "size_bytes",
    "chunk_count",
    "quality.machine_type",
    "quality.sampling_rate_millihz",
    "quality.validation_method",
    "quality.collection_start_ms",
    "quality.collection_end_ms",
)
_TEXT_FIELDS = ("title", "description", "schema", "format")
_QUALITY_TEXT_FIELDS = ("machine_type", "validation_method")


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _record(kv: ReadableKV, key: bytes) -> dict[str, Any] | None:
    record = layout.read(kv, key)
    if record is None:
        return None
    assert isinstance(record, dict), key
    return {k: jsonable(v) for k, v in record.items()}


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit must be an integer in 1..{LIMIT_MAX}")


# ---- accounts and datasets --------------------------------------------------------------


def get_account(kv: ReadableKV, account_id: str) -> dict[str, Any] | None:
    """The account record: id, kind (admin/node/user), member, roles, display_name,
    public_key, encryption_public_key, key_version, status, registered, revoked."""
    return _record(kv, layout.account_key(account_id))


def get_dataset(kv: ReadableKV, dataset_id: str) -> dict[str, Any] | None:
    """The dataset record: its metadata plus status, version, published/updated/withdrawn."""
    return _record(kv, layout.dataset_key(dataset_id))


def _field(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _text_matches(record: Mapping[str, Any], words: list[str]) -> bool:
    haystack = " ".join(
        [str(record[f]) for f in _TEXT_FIELDS]
        + list(record["tags"])
        + [str(record["quality"][f]) for f in _QUALITY_TEXT_FIELDS]
    ).casefold()
    return all(word in haystack for word in words)


def _candidates(kv: ReadableKV, tag: str | None, supplier: str | None) -> Iterator[str]:
    if tag is not None:
        for key, _ in kv.scan(layout.DATASET_TAG + tag.encode() + b"/"):
            yield layout.last_segment(key)
    elif supplier is not None:
        for key, _ in kv.scan(layout.DATASET_SUPPLIER + supplier.encode() + b"/"):
            yield layout.last_segment(key)
    else:
        for key, _ in kv.scan(layout.DATASET):
            yield key[len(layout.DATASET) :].decode()


def _captured_in(record: Mapping[str, Any], after_ms: int | None, before_ms: int | None) -> bool:
    stamp = record.get("provenance")
    if stamp is None:
        return False
    if after_ms is not None and stamp["capture_end_ms"] < after_ms:
        return False
    return before_ms is None or stamp["capture_start_ms"] <= before_ms


def _complete_enough(record: Mapping[str, Any], min_permille: int) -> bool:
    completeness = record["quality"].get("completeness_permille")
    return completeness is not None and completeness >= min_permille


def search_datasets(
    kv: ReadableKV,
    *,
    text: str | None = None,
    tag: str | None = None,
    supplier: str | None = None,
    fields: Mapping[str, Any] | None = None,
    site: str | None = None,
    line: str | None = None,
    captured_by: str | None = None,
    captured_after_ms: int | None = None,
    captured_before_ms: int | None = None,
    min_completeness_permille: int | None = None,
    include_withdrawn: bool = False,
    after: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Datasets matching every criterion given, ordered by id, after the id ``after``.

    ``text``: every whitespace-separated word occurs (case-insensitively) in the title,
    description, schema, format, tags, machine type or validation method. ``tag``: has the
    tag. ``supplier``: published by that account. ``fields``: exact matches on
    :data:`SEARCH_FIELDS` (dotted paths). ``site``, ``line``, ``captured_by``: the provenance
    stamp names that site, line or capturing account (only stamped datasets match).
    ``captured_after_ms`` /
    ``captured_before_ms``: the stamped capture period overlaps the window (a bound left out
    is open; an unstamped dataset never matches). ``min_completeness_permille``: the quality
    claims state a completeness of at least that (one that states none never matches).
    Withdrawn datasets only with ``include_withdrawn``.
    """
    _check_limit(limit)
    if min_completeness_permille is not None and not 0 <= min_completeness_permille <= 1000:
        raise ValueError("min_completeness must be in 0..1000 (permille)")
    window = captured_after_ms is not None or captured_before_ms is not None
    stamped = {
        f"provenance.{name}": value
        for name, value in (("site", site), ("line", line), ("captured_by", captured_by))
        if value is not None
    }
    fields = dict(fields or {})
    unknown = sorted(set(fields) - set(SEARCH_FIELDS))
    if unknown:
        raise ValueError(f"cannot search by field {unknown[0]!r}; fields: {SEARCH_FIELDS}")
    words = text.casefold().split() if text else []
    found: list[dict[str, Any]] = []
    for dataset_id in _candidates(kv, tag, supplier):
        if after is not None and dataset_id <= after:
            continue
        record = layout.read(kv, layout.dataset_key(dataset_id))
        assert record is not None, f"index names a missing dataset {dataset_id}"
        if record["status"] != "published" and not include_withdrawn:
            continue
        if tag is not None and tag not in record["tags"]:
            continue
        if supplier is not None and record["supplier"] != supplier:
            continue
        if any(_field(record, path) != value for path, value in fields.items()):
            continue
        if any(_field(record, path) != value for path, value in stamped.items()):
            continue
        if words and not _text_matches(record, words):
            continue
        if window and not _captured_in(record, captured_after_ms, captured_before_ms):
            continue
        if min_completeness_permille is not None and not _complete_enough(
            record, min_completeness_permille
        ):
            continue
        found.append(jsonable(record))
        if len(found) == limit:
            break
    return found


def supplier_contracts(kv: ReadableKV, supplier: str, *, at_ms: int) -> dict[str, Any]:
    """The supplier's contracts by effective status at ``at_ms``, which the catalog shows
    beside its track record (``disputes.track_record``: contracts and disputes counted as they
    happen): ``contracts_by_status`` (every status listed), counted up to
    :data:`SUPPLIER_RECORD_SCAN_MAX` contracts; ``contracts_by_status_complete`` says whether
    that was all of them.
    """
    by_status: dict[str, int] = {status.value: 0 for status in sorted(Status)}
    complete = True
    for scanned, (key, _) in enumerate(kv.scan(layout.CONTRACT_BY_ACCOUNT + _slash(supplier))):
        if scanned == SUPPLIER_RECORD_SCAN_MAX:
            complete = False
            break
        contract = layout.read(kv, layout.contract_key(layout.last_segment(key)))
        assert contract is not None
        if contract["supplier"] == supplier:
            by_status[effective_status(contract, at_ms).value] += 1
    return {"contracts_by_status": by_status, "contracts_by_status_complete": complete}


# ---- contracts --------------------------------------------------------------------------


def _contract_view(contract: dict[str, Any], at_ms: int) -> dict[str, Any]:
    view: dict[str, Any] = jsonable(contract)
    view["effective_status"] = effective_status(contract, at_ms).value
    return view


def get_contract(kv: ReadableKV, contract_id: str, *, at_ms: int) -> dict[str, Any] | None:
    """A contract with its whole history.

    The stored record (id, dataset_id, supplier, consumer, supplier_node, offerer, status,
    version, use_end_ms, created, activated, terminated, deleted, disposal_deadline_ms,
    max_downloads, downloads, grants, disposal) plus ``effective_status`` at ``at_ms``
    (ACTIVE reads EXPIRED from the end of the use period), ``versions`` (every version in
    order: version, author, terms, terms_hash, dataset_version, dataset_merkle_root, created,
    superseded, signatures [{account, height, time_ms, tx_id}], review) and
    ``access_grants`` (n, sealed_key, sealed_to, by, height, time_ms, tx_id). Receipts are
    listed by :func:`contract_receipts`. Every event carries height, time_ms and tx_id.
    """
    contract = layout.read(kv, layout.contract_key(contract_id))
    if contract is None:
        return None
    view = _contract_view(contract, at_ms)
    view["versions"] = [
        jsonable(v) for _, v in _decoded(kv.scan(layout.CONTRACT_VERSION + _slash(contract_id)))
    ]
    assert len(view["versions"]) == contract["version"]
    view["access_grants"] = [
        jsonable(g) for _, g in _decoded(kv.scan(layout.CONTRACT_GRANT + _slash(contract_id)))
    ]
    return view


def list_contracts(
    kv: ReadableKV,
    *,
    at_ms: int,
    account: str | None = None,
    dataset: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Contracts of an account (as either party) or of a dataset, ordered by id; each is the
    stored record plus ``effective_status``; ``status`` filters on the effective status."""
    _check_limit(limit)
    if (account is None) == (dataset is None):
        raise ValueError("name exactly one of account or dataset")
    if status is not None and status not in set(Status):
        raise ValueError(f"unknown status {status!r}")
    prefix = (
        layout.CONTRACT_BY_ACCOUNT + _slash(account)
        if account is not None
        else layout.CONTRACT_BY_DATASET + _slash(dataset or "")
    )
    found: list[dict[str, Any]] = []
    for key, _ in kv.scan(prefix):
        contract_id = layout.last_segment(key)
        if after is not None and contract_id <= after:
            continue
        contract = layout.read(kv, layout.contract_key(contract_id))
        assert contract is not None
        view = _contract_view(contract, at_ms)
        if status is not None and view["effective_status"] != status:
            continue
        found.append(view)
        if len(found) == limit:
            break
    return found


def get_receipt(kv: ReadableKV, receipt_id: bytes) -> dict[str, Any] | None:
    """A delivery receipt: id, n, contract_id, dataset_id, first_chunk, last_chunk,
    byte_count, content_hash, by, height, time_ms, tx_id, confirmed (event or None)."""
    return _record(kv, layout.receipt_key(receipt_id))


def contract_receipts(
    kv: ReadableKV, contract_id: str, *, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """The delivery receipts of a contract in delivery order, those numbered above ``after``."""
    _check_limit(limit)
    found: list[dict[str, Any]] = []
    for key, receipt_id in kv.scan(layout.CONTRACT_RECEIPT + _slash(contract_id)):
        if int(layout.last_segment(key), 16) <= after:
            continue
        receipt = get_receipt(kv, receipt_id)
        assert receipt is not None
        found.append(receipt)
        if len(found) == limit:
            break
    return found


def get_compute_receipt(kv: ReadableKV, receipt_id: bytes) -> dict[str, Any] | None:
    """A compute receipt (:mod:`.compute`): id, n, contract_id, dataset_id, request_id,
    authorised_height, authorised_at_ms, query_hash, rule_hash, result_hash, rows_scanned,
    rows_returned, rows_suppressed, budget_used, budget_total_used, by, height, time_ms,
    tx_id."""
    return _record(kv, layout.compute_receipt_key(receipt_id))


def contract_compute(
    kv: ReadableKV, contract_id: str, *, after: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A contract's clean-room use: ``queries_used`` (budget spent) and its compute receipts
    in order, those numbered above ``after``."""
    _check_limit(limit)
    found: list[dict[str, Any]] = []
    for key, receipt_id in kv.scan(layout.CONTRACT_COMPUTE + _slash(contract_id)):
        if int(layout.last_segment(key), 16) <= after:
            continue
        receipt = get_compute_receipt(kv, receipt_id)
        assert receipt is not None
        found.append(receipt)
        if len(found) == limit:
            break
    raw = kv.get(layout.compute_used_key(contract_id))
    used = int.from_bytes(raw, "big") if raw else 0
    return {"queries_used": used, "receipts": found}


def overdue_disposals(kv: ReadableKV, *, at_ms: int, limit: int = 100) -> list[dict[str, Any]]:
    """Contracts whose disposal deadline passed before ``at_ms`` without a disposal attested
    on time, earliest deadline first.

    Each: contract_id, dataset_id, supplier, consumer, deadline_ms, overdue_by_ms (until the
    attestation if there is one, else until ``at_ms``), and ``attestation`` (the disposal
    record, or None while still outstanding).
    """
    _check_limit(limit)
    found: list[dict[str, Any]] = []
    for key, _ in kv.scan(layout.DISPOSAL_DUE):
        deadline_hex, contract_id = key[len(layout.DISPOSAL_DUE) :].decode().split("/", 1)
        deadline = int(deadline_hex, 16)
        if deadline >= at_ms:
            break  # keys are in deadline order
        contract = layout.read(kv, layout.contract_key(contract_id))
        assert contract is not None and contract["disposal_deadline_ms"] == deadline
        disposal = contract["disposal"]
        if disposal is not None:
            assert disposal["overdue"], "an attestation on time clears its due entry"
            late_until = max(disposal["disposed_at_ms"], disposal["time_ms"])
        else:
            late_until = at_ms
        found.append(
            {
                "contract_id": contract_id,
                "dataset_id": contract["dataset_id"],
                "supplier": contract["supplier"],
                "consumer": contract["consumer"],
                "deadline_ms": deadline,
                "overdue_by_ms": late_until - deadline,
                "attestation": jsonable(disposal),
            }
        )
        if len(found) == limit:
            break
    return found


# ---- audit ------------------------------------------------------------------------------


def audit_trail(
    kv: ReadableKV, kind: str, subject_id: str, *, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """The audit trail of a dataset, contract or account, in execution order.

    ``kind`` is ``dataset``, ``contract`` or ``account``. Each entry: seq (1, 2, ... per
    subject; page with ``after``), height, tx_id, time_ms, type, actor, summary. The tx's
    index in its block and the commit certificate of the height are joined in by the
    storage layer.
    """
    _check_limit(limit)
    if kind not in KINDS:
        raise ValueError(f"unknown audit kind {kind!r}; kinds: {', '.join(KINDS)}")
    found: list[dict[str, Any]] = []
    for key, raw in kv.scan(layout.audit_prefix(kind, subject_id)):
        if int(layout.last_segment(key), 16) <= after:
            continue
        found.append(jsonable(layout.decode(raw)))
        if len(found) == limit:
            break
    return found


def _slash(subject: str | None) -> bytes:
    assert subject is not None
    return subject.encode() + b"/"


def _decoded(items: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, Any]]:
    for key, raw in items:
        yield key, layout.decode(raw)
