"""API routes of governance: the membership in effect, its history, and the proposals.

``GET /v1/members`` (the epoch in effect at the committed height and any scheduled after
it), ``GET /v1/members/history`` (every epoch), ``GET /v1/proposals`` and
``GET /v1/proposals/{proposal_id}``. Like the trading reads, every body depends only on the
committed chain up to ``as_of_height``: an open proposal past its expiry reads as expired
from the block time of that height, never by the node's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mdtp.node.api import auth
from mdtp.node.api.common import error
from mdtp.node.encoding import dumps
from mdtp.node.ledger.governance import queries
from mdtp.node.ledger.governance.proofs import TxProof
from mdtp.node.ledger.governance.rules import STATUSES, load_proposal
from mdtp.node.ledger.trading.schema import ID_RE
from mdtp.storage.blockstore import BlockStore

LIMIT_DEFAULT = 50
CONSISTENT_READ_TRIES = 5


class BadParam(Exception):
    """A query parameter the route cannot use; answered with 400 ``bad_request``."""


def _json(doc: Any) -> web.Response:
    return web.Response(text=dumps(doc), content_type="application/json")


def _only(request: web.Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise BadParam(f"unknown parameter {unknown[0]!r}; parameters: {known}")


def add_routes(app: web.Application, store: BlockStore, genesis_time_ms: int) -> None:
    auth.bind(app, state=store.state)

    def consistent(read: Callable[[int, int], Any]) -> tuple[int, Any]:
        for _ in range(CONSISTENT_READ_TRIES):
            height = store.tip()[0]
            if height == 0:
                at_ms = genesis_time_ms
            else:
                record = store.record(height)
                assert record is not None, f"tip {height} has no block record"
                at_ms = record.timestamp_ms
            result = read(height, at_ms)
            if store.tip()[0] == height:
                return height, result
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
            except (BadParam, ValueError) as e:
                return error(400, "bad_request", str(e))

        return wrapped

    def members(request: web.Request) -> web.Response:
        _only(request, frozenset())
        height, doc = consistent(lambda h, _t: queries.members(store.state, h))
        return _json({"as_of_height": height, **doc})

    def history(request: web.Request) -> web.Response:
        _only(request, frozenset({"proofs"}))
        proofs = request.query.get("proofs", "0")
        if proofs not in ("0", "1"):
            raise BadParam("proofs must be 0 or 1")
        height, epochs = consistent(lambda _h, _t: queries.epochs(store.state))
        if proofs == "1":
            for record in epochs[1:]:
                record["proof"] = _proof(record["proposal_id"])
        return _json({"as_of_height": height, "epochs": epochs})

    def _proof(proposal_id: str) -> dict[str, Any]:
        """The certified blocks of the proposal that made an epoch and of its approvals
        (``mdtp.node.ledger.governance.proofs``: an auditor rebuilds the history with them)."""
        record = load_proposal(store.state, proposal_id)
        assert record is not None and record["status"] == "passed", proposal_id
        created = record["created"]["tx_id"]
        votes = [v["tx_id"] for v in record["votes"].values() if v["approve"]]
        return {
            "proposal": _tx_proof(created),
            "approvals": [_tx_proof(t) for t in sorted(votes, key=_tx_height) if t != created],
        }

    def _tx_height(tx_id: bytes) -> int:
        location = store.tx_location(tx_id)
        assert location is not None
        return location.height

    def _tx_proof(tx_id: bytes) -> dict[str, Any]:
        location = store.tx_location(tx_id)
        assert location is not None, "a recorded vote is in the chain"
        block, cert = store.block_bytes(location.height), store.certificate_bytes(location.height)
        if block is None or cert is None:
            raise web.HTTPConflict(
                text=dumps(
                    {
                        "error": "block_pruned",
                        "message": f"block {location.height} is below this store's base "
                        "(restored from a snapshot): ask a node that holds the whole chain",
                    }
                ),
                content_type="application/json",
            )
        return TxProof(location.height, location.index, tx_id, block, cert).to_json()

    def proposals(request: web.Request) -> web.Response:
        _only(request, frozenset({"status", "after", "limit"}))
        status = request.query.get("status")
        if status is not None and status not in STATUSES:
            raise BadParam(f"status must be one of {', '.join(STATUSES)}")
        after = request.query.get("after", "")
        if after and not ID_RE.match(after):
            raise BadParam("after must be a proposal id")
        raw_limit = request.query.get("limit", str(LIMIT_DEFAULT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= queries.LIMIT_MAX:
            raise BadParam(f"limit must be an integer in 1..{queries.LIMIT_MAX}")
        limit = int(raw_limit)
        height, found = consistent(
            lambda h, t: queries.proposals(
                store.state, h, t, status=status, after=after, limit=limit
            )
        )
        next_after = found[-1]["id"] if len(found) == limit else None
        return _json({"as_of_height": height, "proposals": found, "next_after": next_after})

    def proposal(request: web.Request) -> web.Response:
        _only(request, frozenset())
        proposal_id = request.match_info["proposal_id"]
        if not ID_RE.match(proposal_id):
            return error(400, "bad_request", "proposal_id must be a proposal id")
        height, found = consistent(lambda h, t: queries.proposal(store.state, proposal_id, h, t))
        if found is None:
            return error(404, "not_found", f"no proposal {proposal_id}")
        return _json({"as_of_height": height, "proposal": found})

    r = app.router
    r.add_get("/v1/members", route(members))
    r.add_get("/v1/members/history", route(history))
    r.add_get("/v1/proposals", route(proposals))
    r.add_get("/v1/proposals/{proposal_id}", route(proposal))
