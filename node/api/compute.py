"""API routes of the clean room.

``POST /v1/compute/query`` takes a consumer's signed query request (:mod:`node.compute.protocol`,
the raw envelope as the body), relays it to the supplier's node and answers with
``{"columns", "rows", "receipt"}`` once the supplier's node has run it and its
``compute.receipt`` committed; a refusal is ``{"error": reason, "message"}`` (400 for a
request or SQL that does not parse, 404 unknown contract, 503 busy, 504 supplier
unreachable, 403 otherwise).

``GET /v1/compute/contracts/{contract_id}/refusals`` is what the supplier's node refused of
a contract's queries, by reason (a party-signed read; on any other node the counts are
empty).
"""

from __future__ import annotations

from aiohttp import web

from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.compute.relay import QueryRelay
from mdtp.node.compute.service import QueryServer
from mdtp.node.encoding import dumps

QUERY_BODY_MAX_BYTES = 8192
_STATUS = {
    "malformed": 400,
    "wrong_chain": 400,
    "bad_id": 400,
    "parse_error": 400,
    "query_too_long": 400,
    "multiple_statements": 400,
    "unknown_contract": 404,
    "busy": 503,
    "nonce_quota": 503,
    "supplier_unreachable": 504,
}


def _json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=dumps(doc), status=status, content_type="application/json", headers=headers
    )


def add_routes(app: web.Application, *, relay: QueryRelay, server: QueryServer) -> None:
    async def query(request: web.Request) -> web.Response:
        raw = await request.content.read(QUERY_BODY_MAX_BYTES + 1)
        if len(raw) > QUERY_BODY_MAX_BYTES:
            return _json({"error": "malformed", "message": "request too large"}, 400)
        try:
            result = await relay.query(raw)
        except QueryRefused as r:
            status = _STATUS.get(r.reason, 403)
            headers = {"Retry-After": "1"} if status == 503 else None
            return _json({"error": r.reason, "message": r.message}, status, headers)
        return _json(result)

    async def refusals(request: web.Request) -> web.Response:
        contract_id = request.match_info["contract_id"]
        counts = server.refusals(contract_id)
        return _json(
            {
                "contract_id": contract_id,
                "node": server.node_id,
                "refused": counts,
                "total": sum(counts.values()),
            }
        )

    app.router.add_post("/v1/compute/query", query)
    app.router.add_get("/v1/compute/contracts/{contract_id}/refusals", refusals)
