"""API routes of the replicated ledger itself: status, transactions, blocks, evidence."""

from __future__ import annotations

import asyncio
import binascii
import json
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mdtp.node.api.common import error, hex32, int_param
from mdtp.node.errors import MdtpError
from mdtp.node.ledger.tx import TxError
from mdtp.node.txpool.mempool import MempoolFull
from mdtp.node.txpool.sigverify import VerifierBusy

if TYPE_CHECKING:
    from mdtp.node.app.daemon import Node

CHAIN_PAGE_MAX = 1000
WAIT_S_MAX = 60.0


def add_routes(app: web.Application, node: Node, max_body_bytes: int) -> None:
    async def get_status(_: web.Request) -> web.Response:
        return web.json_response(node.status())

    async def post_tx(request: web.Request) -> web.Response:
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
        driver = node.driver
        if driver is None:
            return error(503, "not_ready", "node is starting", {"Retry-After": "1"})
        try:
            tx = await driver.submit(raw)
        except (MempoolFull, VerifierBusy) as e:
            return error(503, e.reason, str(e), {"Retry-After": "1"})
        except (TxError, MdtpError) as e:
            return error(400, e.reason, str(e))
        doc: dict[str, Any] = {"id": tx.id.hex(), "status": "pending"}
        if wait:
            try:
                await asyncio.wait_for(driver.wait_committed(tx.id), timeout)
            except TimeoutError:
                return web.json_response(doc, status=202)
            return web.json_response(node.tx_status(tx.id), status=200)
        return web.json_response(doc, status=202)

    async def get_tx(request: web.Request) -> web.Response:
        tx_id = hex32(request.match_info["tx_id"], "transaction id")
        status = node.tx_status(tx_id)
        return web.json_response(status, status=200 if status["status"] != "unknown" else 404)

    async def get_block(request: web.Request) -> web.Response:
        try:
            height = int(request.match_info["height"])
        except ValueError:
            return error(400, "bad_request", "height must be an integer")
        doc = node.block(height)
        if doc is None:
            return error(404, "not_found", f"no block at height {height}")
        return web.json_response(doc)

    async def get_chain(request: web.Request) -> web.Response:
        start = max(1, int_param(request, "from", 1))
        end = min(int_param(request, "to", start + CHAIN_PAGE_MAX - 1), start + CHAIN_PAGE_MAX - 1)
        return web.json_response(node.chain(start, end))

    async def get_evidence(_: web.Request) -> web.Response:
        return web.json_response(list(node.driver.evidence) if node.driver else [])

    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/tx", post_tx)
    app.router.add_get("/v1/tx/{tx_id}", get_tx)
    app.router.add_get("/v1/blocks/{height}", get_block)
    app.router.add_get("/v1/chain", get_chain)
    app.router.add_get("/v1/evidence", get_evidence)
