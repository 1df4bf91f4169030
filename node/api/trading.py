"""API routes of the trading ledger: accounts, catalog search, contracts, fulfilment records,
audit trails with their proofs, and the reason codes.

Every route reads committed state only, through :mod:`mdtp.node.ledger.trading.queries`.
Determinism: a body depends on nothing but the committed chain up to ``as_of_height`` (which
every body carries); time-dependent answers (EXPIRED, overdue) use that block's timestamp,
never the node's clock; bodies are JSON with sorted keys and no spaces. So every node at the
same height returns byte-identical bodies, and a client can compare them. The one exception
is an audit entry's commit certificate: each node keeps the 2f+1 COMMIT signatures *it*
collected, so two nodes may hold different (equally valid) certificates for one block.

The dataspace exports (``/v1/catalog/dcat``, ``/v1/datasets/{id}/dcat``,
``/v1/contracts/{id}/odrl``) are the same records as JSON-LD (:mod:`mdtp.node.interop`),
served as ``application/ld+json`` with the height they were read at (``mdtp:asOfHeight``).

Commits land in another thread; a query reads the tip before and after it runs and retries
if a block committed in between, so one body never mixes two heights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mdtp.consensus.messages import WireLimits
from mdtp.node.api import auth
from mdtp.node.api.common import error, hex32
from mdtp.node.chain.execution import decode_certificate
from mdtp.node.encoding import dumps
from mdtp.node.interop import dcat, odrl
from mdtp.node.ledger.machine import account_nonce
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.trading import billing, disputes, queries
from mdtp.node.ledger.trading.audit import KINDS
from mdtp.node.ledger.trading.reasons import MACHINE_REASONS, TRADING_REASONS
from mdtp.node.ledger.trading.schema import INT_MAX
from mdtp.storage.blockstore import BlockStore

LIMIT_DEFAULT = 50
AUDIT_LIMIT_DEFAULT = 100
# An audit entry with proof carries its whole block; keep a page of them bounded.
AUDIT_PROOF_LIMIT_MAX = 100
CONSISTENT_READ_TRIES = 5
NDJSON = "application/x-ndjson"

# Search fields whose values are integers (the others are strings).
_INT_FIELDS = frozenset(
    {
        "size_bytes",
        "chunk_count",
        "quality.sampling_rate_millihz",
        "quality.collection_start_ms",
        "quality.collection_end_ms",
    }
)
_SEARCH_PARAMS = frozenset(
    {
        "text",
        "tag",
        "supplier",
        "limit",
        "after",
        "include_withdrawn",
        "site",
        "line",
        "captured_by",
        "captured_after",
        "captured_before",
        "min_completeness",
    }
)
JSON_LD = "application/ld+json"


class BadParam(Exception):
    """A query parameter the route cannot use; answered with 400 ``bad_request``."""


class BlockPruned(Exception):
    """What was asked needs a block this node does not hold: it was restored from a
    state-only snapshot above it. Answered with 409 ``block_pruned``."""


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(doc), status=status, content_type="application/json")


def _json_ld(doc: Any) -> web.Response:
    return web.Response(text=dumps(doc), content_type=JSON_LD)


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise BadParam(f"{name} must be in {lo}..{hi}")
    return value


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise BadParam(f"{name} must be 1 or 0")


def _search_args(request: web.Request) -> dict[str, Any]:
    """The keyword arguments of :func:`queries.search_datasets` a search request names."""
    _only(request, _SEARCH_PARAMS | frozenset(queries.SEARCH_FIELDS))
    q = request.query
    fields: dict[str, Any] = {}
    for name in queries.SEARCH_FIELDS:
        if name in q and name != "supplier":
            raw = q[name]
            if name in _INT_FIELDS:
                try:
                    fields[name] = int(raw)
                except ValueError:
                    raise BadParam(f"{name} must be an integer") from None
            else:
                fields[name] = raw

    def time_bound(name: str) -> int | None:
        return _int(request, name, -1, 0, INT_MAX) if name in q else None

    return {
        "text": q.get("text") or None,
        "tag": q.get("tag") or None,
        "supplier": q.get("supplier") or None,
        "fields": fields,
        "site": q.get("site") or None,
        "line": q.get("line") or None,
        "captured_by": q.get("captured_by") or None,
        "captured_after_ms": time_bound("captured_after"),
        "captured_before_ms": time_bound("captured_before"),
        "min_completeness_permille": (
            _int(request, "min_completeness", 0, 0, 1000) if "min_completeness" in q else None
        ),
        "include_withdrawn": _flag(request, "include_withdrawn", "status" in fields),
        "after": q.get("after") or None,
        "limit": _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX),
    }


def _only(request: web.Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise BadParam(f"unknown parameter {unknown[0]!r}; parameters: {known}")


def add_routes(
    app: web.Application,
    store: BlockStore,
    genesis_time_ms: int,
    wire_limits: WireLimits,
    *,
    chain_id: str,
) -> None:
    auth.bind(app, state=store.state)

    def as_of(s: BlockStore) -> tuple[int, int]:
        """(height, block time) of the last committed block; genesis time at height 0."""
        height = s.tip()[0]
        if height == 0:
            return 0, genesis_time_ms
        record = s.record(height)
        assert record is not None, f"tip {height} has no block record"
        return height, record.timestamp_ms

    def consistent(read: Callable[[BlockStore, int, int], Any]) -> tuple[int, int, Any]:
        s = store
        for _ in range(CONSISTENT_READ_TRIES):
            height, at_ms = as_of(s)
            result = read(s, height, at_ms)
            if s.tip()[0] == height:
                return height, at_ms, result
        raise web.HTTPServiceUnavailable(
            text=dumps({"error": "busy", "message": "blocks commit too fast to read; retry"}),
            content_type="application/json",
            headers={"Retry-After": "1"},
        )

    def route(
        handler: Callable[[web.Request], web.StreamResponse],
    ) -> Callable[[web.Request], Any]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return handler(request)
            except BadParam as e:
                return error(400, "bad_request", str(e))
            except BlockPruned as e:
                return error(409, "block_pruned", str(e))
            except ValueError as e:  # the queries name the bad argument
                return error(400, "bad_request", str(e))

        return wrapped

    def not_found(what: str) -> web.Response:
        return error(404, "not_found", what)

    # -- accounts ---------------------------------------------------------------------------

    def get_account(request: web.Request) -> web.Response:
        _only(request, frozenset())
        account_id = request.match_info["account_id"]
        height, _, account = consistent(lambda s, h, t: queries.get_account(s.state, account_id))
        if account is None:
            return not_found(f"no account {account_id}")
        return _json({"as_of_height": height, "account": account})

    def get_nonce(request: web.Request) -> web.Response:
        _only(request, frozenset())
        account_id = request.match_info["account_id"]
        height, _, nonce = consistent(lambda s, h, t: account_nonce(Overlay(s.state), account_id))
        return _json({"as_of_height": height, "account": account_id, "nonce": nonce})

    # -- catalog ----------------------------------------------------------------------------

    def search(request: web.Request) -> web.Response:
        args = _search_args(request)
        height, _, found = consistent(lambda s, h, t: queries.search_datasets(s.state, **args))
        next_after = found[-1]["id"] if len(found) == args["limit"] else None
        return _json({"as_of_height": height, "datasets": found, "next_after": next_after})

    def get_dataset(request: web.Request) -> web.Response:
        _only(request, frozenset())
        dataset_id = request.match_info["dataset_id"]

        def read(s: BlockStore, h: int, t: int) -> Any:
            dataset = queries.get_dataset(s.state, dataset_id)
            if dataset is None:
                return None
            supplier = dataset["supplier"]
            by_status = queries.supplier_contracts(s.state, supplier, at_ms=t)
            return dataset, {**disputes.track_record(s.state, supplier), **by_status}

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no dataset {dataset_id}")
        dataset, record = found
        # the catalog shows the supplier's track record with each dataset
        return _json({"as_of_height": height, "dataset": dataset, "supplier_record": record})

    # -- dataspace export (DCAT-AP, ODRL) ---------------------------------------------------

    def publisher_names(s: BlockStore, records: list[dict[str, Any]]) -> dict[str, str]:
        names: dict[str, str] = {}
        for supplier in sorted({r["supplier"] for r in records}):
            account = queries.get_account(s.state, supplier)
            names[supplier] = account["display_name"] if account is not None else supplier
        return names

    def catalog_dcat(request: web.Request) -> web.Response:
        args = _search_args(request)

        def read(s: BlockStore, h: int, t: int) -> Any:
            found = queries.search_datasets(s.state, **args)
            return found, publisher_names(s, found)

        height, _, (found, names) = consistent(read)
        doc = dcat.catalog(chain_id, found, names, title=f"mdtp catalog of {chain_id}")
        doc["mdtp:asOfHeight"] = height
        if len(found) == args["limit"]:
            doc["mdtp:nextAfter"] = found[-1]["id"]
        return _json_ld(doc)

    def dataset_dcat(request: web.Request) -> web.Response:
        _only(request, frozenset())
        dataset_id = request.match_info["dataset_id"]

        def read(s: BlockStore, h: int, t: int) -> Any:
            dataset = queries.get_dataset(s.state, dataset_id)
            return None if dataset is None else (dataset, publisher_names(s, [dataset]))

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no dataset {dataset_id}")
        dataset, names = found
        doc = dcat.document(chain_id, dataset, names[dataset["supplier"]])
        doc["mdtp:asOfHeight"] = height
        return _json_ld(doc)

    def contract_odrl(request: web.Request) -> web.Response:
        _only(request, frozenset({"version"}))
        contract_id = request.match_info["contract_id"]
        asked = _int(request, "version", 0, 1, 2**32) if "version" in request.query else None
        height, _, contract = consistent(
            lambda s, h, t: queries.get_contract(s.state, contract_id, at_ms=t)
        )
        if contract is None:
            return not_found(f"no contract {contract_id}")
        number = contract["version"] if asked is None else asked
        if not 1 <= number <= contract["version"]:
            return not_found(f"contract {contract_id} has no version {number}")
        version = contract["versions"][number - 1]
        activated = contract["activated"]
        agreed = activated is not None and activated["version"] == number
        doc = odrl.policy(chain_id, contract, version, agreed=agreed)
        doc["mdtp:asOfHeight"] = height
        return _json_ld(doc)

    # -- contracts --------------------------------------------------------------------------

    def get_contract(request: web.Request) -> web.Response:
        _only(request, frozenset())
        contract_id = request.match_info["contract_id"]
        height, at_ms, contract = consistent(
            lambda s, h, t: queries.get_contract(s.state, contract_id, at_ms=t)
        )
        if contract is None:
            return not_found(f"no contract {contract_id}")
        return _json({"as_of_height": height, "as_of_time_ms": at_ms, "contract": contract})

    def list_contracts(request: web.Request) -> web.Response:
        _only(request, frozenset({"account", "dataset", "status", "after", "limit"}))
        q = request.query
        limit = _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX)
        height, at_ms, found = consistent(
            lambda s, h, t: queries.list_contracts(
                s.state,
                at_ms=t,
                account=q.get("account"),
                dataset=q.get("dataset"),
                status=q.get("status"),
                after=q.get("after"),
                limit=limit,
            )
        )
        next_after = found[-1]["id"] if len(found) == limit else None
        return _json(
            {
                "as_of_height": height,
                "as_of_time_ms": at_ms,
                "contracts": found,
                "next_after": next_after,
            }
        )

    def contract_receipts(request: web.Request) -> web.Response:
        _only(request, frozenset({"after", "limit"}))
        contract_id = request.match_info["contract_id"]
        after = _int(request, "after", 0, 0, 2**32)
        limit = _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX)

        def read(s: BlockStore, h: int, t: int) -> Any:
            if queries.get_contract(s.state, contract_id, at_ms=t) is None:
                return None
            return queries.contract_receipts(s.state, contract_id, after=after, limit=limit)

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no contract {contract_id}")
        return _json({"as_of_height": height, "receipts": found})

    def contract_compute(request: web.Request) -> web.Response:
        _only(request, frozenset({"after", "limit"}))
        contract_id = request.match_info["contract_id"]
        after = _int(request, "after", 0, 0, 2**32)
        limit = _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX)

        def read(s: BlockStore, h: int, t: int) -> Any:
            if queries.get_contract(s.state, contract_id, at_ms=t) is None:
                return None
            return queries.contract_compute(s.state, contract_id, after=after, limit=limit)

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no contract {contract_id}")
        return _json({"as_of_height": height, **found})

    def get_receipt(request: web.Request) -> web.Response:
        _only(request, frozenset())
        receipt_id = hex32(request.match_info["receipt_id"], "receipt id")
        height, _, receipt = consistent(lambda s, h, t: queries.get_receipt(s.state, receipt_id))
        if receipt is None:
            return not_found(f"no receipt {receipt_id.hex()}")
        return _json({"as_of_height": height, "receipt": receipt})

    def overdue(request: web.Request) -> web.Response:
        _only(request, frozenset({"limit"}))
        limit = _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX)
        reader = request[auth.READER]

        def read(s: BlockStore, h: int, t: int) -> list[dict[str, Any]]:
            # only the rows of contracts the signer may read (as a party or its auditor)
            rows = queries.overdue_disposals(s.state, at_ms=t, limit=queries.LIMIT_MAX)
            mine = [
                r for r in rows if auth.may_read(s.state, reader, {r["supplier"], r["consumer"]})
            ]
            return mine[:limit]

        height, at_ms, found = consistent(read)
        return _json({"as_of_height": height, "as_of_time_ms": at_ms, "overdue": found})

    # -- billing and disputes -------------------------------------------------------------

    def contract_invoices(request: web.Request) -> web.Response:
        _only(request, frozenset())
        contract_id = request.match_info["contract_id"]

        def read(s: BlockStore, h: int, t: int) -> Any:
            if queries.get_contract(s.state, contract_id, at_ms=t) is None:
                return None
            return (
                billing.invoices(s.state, contract_id, at_ms=t),
                billing.summary(s.state, contract_id, at_ms=t),
            )

        height, at_ms, found = consistent(read)
        if found is None:
            return not_found(f"no contract {contract_id}")
        invoices, summary = found
        return _json(
            {
                "as_of_height": height,
                "as_of_time_ms": at_ms,
                "billing": summary,
                "invoices": invoices,
            }
        )

    def get_invoice(request: web.Request) -> web.Response:
        _only(request, frozenset())
        contract_id, period = request.match_info["contract_id"], request.match_info["period"]
        if not period.isdigit() or len(period) > 6:
            raise BadParam("period must be an invoice's period index")
        invoice_id = f"{contract_id}/{int(period)}"
        height, at_ms, found = consistent(
            lambda s, h, t: billing.invoice(s.state, invoice_id, at_ms=t)
        )
        if found is None:
            return not_found(f"no invoice {invoice_id}")
        return _json({"as_of_height": height, "as_of_time_ms": at_ms, "invoice": found})

    def overdue_invoices(request: web.Request) -> web.Response:
        _only(request, frozenset({"limit"}))
        limit = _int(request, "limit", LIMIT_DEFAULT, 1, queries.LIMIT_MAX)
        reader = request[auth.READER]

        def read(s: BlockStore, h: int, t: int) -> list[dict[str, Any]]:
            # only the invoices of contracts the signer may read (as a party or its auditor)
            rows = billing.overdue_invoices(s.state, at_ms=t, limit=queries.LIMIT_MAX)
            mine = [
                r
                for r in rows
                if auth.may_read(s.state, reader, auth.contract_readers(s.state, r["contract_id"]))
            ]
            return mine[:limit]

        height, at_ms, found = consistent(read)
        return _json({"as_of_height": height, "as_of_time_ms": at_ms, "overdue": found})

    def contract_disputes(request: web.Request) -> web.Response:
        _only(request, frozenset())
        contract_id = request.match_info["contract_id"]

        def read(s: BlockStore, h: int, t: int) -> Any:
            if queries.get_contract(s.state, contract_id, at_ms=t) is None:
                return None
            return queries.jsonable(disputes.contract_disputes(s.state, contract_id))

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no contract {contract_id}")
        return _json({"as_of_height": height, "disputes": found})

    def get_dispute(request: web.Request) -> web.Response:
        _only(request, frozenset())
        dispute_id = request.match_info["dispute_id"]
        height, _, found = consistent(lambda s, h, t: disputes.get_dispute(s.state, dispute_id))
        if found is None:
            return not_found(f"no dispute {dispute_id}")
        return _json({"as_of_height": height, "dispute": queries.jsonable(found)})

    def supplier_record(request: web.Request) -> web.Response:
        _only(request, frozenset())
        account_id = request.match_info["account_id"]

        def read(s: BlockStore, h: int, t: int) -> Any:
            if queries.get_account(s.state, account_id) is None:
                return None
            return disputes.track_record(s.state, account_id)

        height, _, found = consistent(read)
        if found is None:
            return not_found(f"no account {account_id}")
        return _json({"as_of_height": height, "record": found})

    # -- audit ------------------------------------------------------------------------------

    def _held(s: BlockStore, height: int) -> None:
        base = s.base()
        if height < base:
            raise BlockPruned(
                f"this node holds blocks from height {base} on (restored from a snapshot); "
                f"the entry at height {height} has no proof here: ask another member's node, "
                "or page past it with after="
            )

    def proof_of(s: BlockStore, entry: dict[str, Any]) -> dict[str, Any]:
        """What an auditor needs to check ``entry`` offline: the tx's place in its block, the
        block and its commit certificate."""
        tx_id = bytes.fromhex(entry["tx_id"])
        height = entry["height"]
        _held(s, height)
        location = s.tx_location(tx_id)
        record = s.record(height)
        raw_block, raw_cert = s.block_bytes(height), s.certificate_bytes(height)
        assert location is not None and location.height == height and location.ok, entry
        assert record is not None and raw_block is not None and raw_cert is not None, height
        cert = decode_certificate(raw_cert, wire_limits)
        return {
            "index": location.index,
            "block_hash": record.hash.hex(),
            "certificate": {
                "view": cert.view,
                "signatures": [[signer, sig.hex()] for signer, sig in cert.signatures],
            },
            "block_bytes": raw_block.hex(),
            "certificate_bytes": raw_cert.hex(),
        }

    def trail(request: web.Request, *, proofs: bool) -> tuple[int, str, str, list[Any]]:
        kind, subject = request.match_info["kind"], request.match_info["subject_id"]
        if kind not in KINDS:
            raise BadParam(f"unknown audit kind {kind!r}; kinds: {', '.join(KINDS)}")
        after = _int(request, "after", 0, 0, 2**32)
        limit_max = AUDIT_PROOF_LIMIT_MAX if proofs else queries.LIMIT_MAX
        limit = _int(request, "limit", min(AUDIT_LIMIT_DEFAULT, limit_max), 1, limit_max)

        def read(s: BlockStore, h: int, t: int) -> list[Any]:
            entries = queries.audit_trail(s.state, kind, subject, after=after, limit=limit)
            if proofs:
                entries = [{**e, **proof_of(s, e)} for e in entries]
            else:
                for e in entries:
                    _held(s, e["height"])
                    location = s.tx_location(bytes.fromhex(e["tx_id"]))
                    assert location is not None, e
                    e["index"] = location.index
            return entries

        height, _, entries = consistent(read)
        for e in entries:
            e["kind"], e["subject"] = kind, subject
        return height, kind, subject, entries

    def audit(request: web.Request) -> web.Response:
        _only(request, frozenset({"after", "limit", "proof"}))
        proofs = _flag(request, "proof", True)
        height, _, _, entries = trail(request, proofs=proofs)
        next_after = entries[-1]["seq"] if entries else None
        return _json({"as_of_height": height, "entries": entries, "next_after": next_after})

    def export(request: web.Request) -> web.Response:
        _only(request, frozenset({"after", "limit"}))
        height, _, _, entries = trail(request, proofs=True)
        lines = "".join(dumps({**e, "as_of_height": height}) + "\n" for e in entries)
        return web.Response(text=lines, content_type=NDJSON)

    # -- reasons ----------------------------------------------------------------------------

    def reasons(request: web.Request) -> web.Response:
        _only(request, frozenset())
        doc = [
            {"code": code, "scope": scope, "description": description}
            for scope, table in (("common", MACHINE_REASONS), ("trading", TRADING_REASONS))
            for code, description in table.items()
        ]
        return _json({"reasons": doc})

    r = app.router
    r.add_get("/v1/accounts/{account_id}", route(get_account))
    r.add_get("/v1/accounts/{account_id}/nonce", route(get_nonce))
    r.add_get("/v1/datasets", route(search))
    r.add_get("/v1/datasets/{dataset_id}", route(get_dataset))
    r.add_get("/v1/datasets/{dataset_id}/dcat", route(dataset_dcat))
    r.add_get("/v1/catalog/dcat", route(catalog_dcat))
    r.add_get("/v1/contracts/{contract_id}/odrl", route(contract_odrl))
    r.add_get("/v1/contracts", route(list_contracts))
    r.add_get("/v1/contracts/{contract_id}", route(get_contract))
    r.add_get("/v1/contracts/{contract_id}/receipts", route(contract_receipts))
    r.add_get("/v1/contracts/{contract_id}/compute", route(contract_compute))
    r.add_get("/v1/receipts/{receipt_id}", route(get_receipt))
    r.add_get("/v1/disposals/overdue", route(overdue))
    r.add_get("/v1/contracts/{contract_id}/invoices", route(contract_invoices))
    r.add_get("/v1/contracts/{contract_id}/invoices/{period}", route(get_invoice))
    r.add_get("/v1/invoices/overdue", route(overdue_invoices))
    r.add_get("/v1/contracts/{contract_id}/disputes", route(contract_disputes))
    r.add_get("/v1/disputes/{dispute_id}", route(get_dispute))
    r.add_get("/v1/suppliers/{account_id}/record", route(supplier_record))
    r.add_get("/v1/audit/{kind}/{subject_id}", route(audit))
    r.add_get("/v1/audit/{kind}/{subject_id}/export", route(export))
    r.add_get("/v1/reasons", route(reasons))
