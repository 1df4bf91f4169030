"""API routes of the replicated ledger itself: status, transactions, blocks, evidence."""

from __future__ import annotations

import asyncio
import binascii
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from mdtp.node.api import auth
from mdtp.node.api.common import error, hex32, int_param
from mdtp.node.api.throttle import RefusalBudget
from mdtp.node.errors import MdtpError
from mdtp.node.ledger.tx import Tx, TxError
from mdtp.node.txpool.mempool import MempoolFull
from mdtp.node.txpool.sigverify import VerifierBusy

CHAIN_PAGE_MAX = 1000
# Heights are stored as unsigned 64-bit keys: none lies outside 1..HEIGHT_MAX.
HEIGHT_MAX = 2**64 - 1
WAIT_S_MAX = 60.0
# What the status route tells a client without a member certificate: enough to know which
# chain it reached and whether the node serves, nothing about the chain's activity or peers.
PUBLIC_STATUS_FIELDS = ("id", "chain_id", "ready")


class ChainReader(Protocol):
    """Committed-chain reads (``mdtp.node.chain.reads.ChainReads``)."""

    def tx_status(self, tx_id: bytes) -> dict[str, Any]: ...

    def block(self, height: int) -> dict[str, Any] | None: ...

    def chain(self, start: int, end: int) -> list[list[Any]]: ...

    def evidence(self) -> list[dict[str, Any]]: ...


class Submitter(Protocol):
    """Admission of signed transactions (``mdtp.node.chain.driver.Driver``)."""

    async def submit(self, raw: bytes) -> Tx: ...

    def wait_committed(self, tx_id: bytes) -> Awaitable[None]: ...


def add_routes(
    app: web.Application,
    reader: ChainReader,
    submitter: Submitter,
    status: Callable[[], dict[str, Any]],
    max_body_bytes: int,
) -> None:
    auth.bind(app, chain_id=lambda: str(status()["chain_id"]))

    async def get_status(request: web.Request) -> web.Response:
        doc = status()
        if auth.MEMBER not in request:
            doc = {k: doc[k] for k in PUBLIC_STATUS_FIELDS if k in doc}
        return web.json_response(doc)

    refusals = RefusalBudget()

    async def post_tx(request: web.Request) -> web.Response:
        conn = request.transport
        if conn is not None and refusals.exhausted(conn):
            await asyncio.sleep(refusals.penalty_s)
            return error(
                429,
                "too_many_refused",
                "this connection sent too many transactions the node refused; slow down",
                {"Retry-After": str(math.ceil(refusals.penalty_s))},
            )
        response = await _post_tx(request)
        if 400 <= response.status < 500 and conn is not None:
            refusals.refused(conn)
        return response

    async def _post_tx(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, "oversized", f"request body above {max_body_bytes} bytes")
        if request.content_type == "application/json":
            try:
                raw = bytes.fromhex(json.loads(body)["tx"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                return error(
                    400, "bad_request", 'expected {"tx": "<hex of the signed transaction>"}'
                )
        else:
            raw = body
        wait = request.query.get("wait") in ("1", "true", "commit")
        try:
            timeout = float(request.query.get("timeout", "30") or 30)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout < math.inf:  # checked before the transaction is admitted
            return error(400, "bad_request", "timeout must be a finite number of seconds >= 0")
        timeout = min(timeout, WAIT_S_MAX)
        try:
            tx = await submitter.submit(raw)
        except (MempoolFull, VerifierBusy) as e:
            return error(503, e.reason, str(e), {"Retry-After": "1"})
        except (TxError, MdtpError) as e:
            return error(400, e.reason, str(e))
        doc: dict[str, Any] = {"id": tx.id.hex(), "status": "pending"}
        if wait:
            try:
                await asyncio.wait_for(submitter.wait_committed(tx.id), timeout)
            except TimeoutError:
                return web.json_response(doc, status=202)
            return web.json_response(reader.tx_status(tx.id), status=200)
        return web.json_response(doc, status=202)

    async def get_tx(request: web.Request) -> web.Response:
        tx_id = hex32(request.match_info["tx_id"], "transaction id")
        status = reader.tx_status(tx_id)
        return web.json_response(status, status=200 if status["status"] != "unknown" else 404)

    async def get_block(request: web.Request) -> web.Response:
        try:
            height = int(request.match_info["height"])
        except ValueError:
            return error(400, "bad_request", "height must be an integer")
        doc = reader.block(height) if 1 <= height <= HEIGHT_MAX else None
        if doc is None:
            return error(404, "not_found", f"no block at height {height}")
        return web.json_response(doc)

    async def get_chain(request: web.Request) -> web.Response:
        start = max(1, int_param(request, "from", 1))
        end = min(int_param(request, "to", start + CHAIN_PAGE_MAX - 1), start + CHAIN_PAGE_MAX - 1)
        return web.json_response(reader.chain(start, min(end, HEIGHT_MAX)))

    async def get_evidence(_: web.Request) -> web.Response:
        return web.json_response(reader.evidence())

    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/tx", post_tx)
    app.router.add_get("/v1/tx/{tx_id}", get_tx)
    app.router.add_get("/v1/blocks/{height}", get_block)
    app.router.add_get("/v1/chain", get_chain)
    app.router.add_get("/v1/evidence", get_evidence)
