"""API routes of the replicated ledger itself: status, transactions, blocks, evidence, and the
genesis document (chain id, members and their node keys: what a client, or the explorer page
in a browser, checks commit certificates against)."""

from __future__ import annotations

import asyncio
import binascii
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import msgpack
from aiohttp import web

from mdtp.consensus.codec import check_structure
from mdtp.consensus.errors import DecodeError
from mdtp.node.api import auth
from mdtp.node.api.common import error, hex32, int_param
from mdtp.node.api.throttle import RefusalBudget
from mdtp.node.errors import MdtpError, Unavailable
from mdtp.node.ledger.tx import Tx, TxError
from mdtp.node.txpool.mempool import MempoolFull
from mdtp.node.txpool.sigverify import VerifierBusy

CHAIN_PAGE_MAX = 1000
# Heights are stored as unsigned 64-bit keys: none lies outside 1..HEIGHT_MAX.
HEIGHT_MAX = 2**64 - 1
WAIT_S_MAX = 60.0
# Most transactions in one ``POST /v1/txs``; the body is bounded by ``api.max_body_bytes``.
BATCH_TXS_MAX = 1000
# Refusals of a batch that say "try again later" rather than "this transaction is wrong":
# they do not count against the connection's refusal budget (nor does a 503 of one tx).
TRANSIENT_REASONS = frozenset({"mempool_full", "verifier_busy"})
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

    async def submit_many(self, raws: Sequence[bytes]) -> list[Tx | MdtpError]: ...

    def wait_committed(self, tx_id: bytes) -> Awaitable[None]: ...


def add_routes(
    app: web.Application,
    reader: ChainReader,
    submitter: Submitter,
    status: Callable[[], dict[str, Any]],
    max_body_bytes: int,
    genesis: Mapping[str, Any],
) -> None:
    auth.bind(app, chain_id=lambda: str(status()["chain_id"]))

    async def get_status(request: web.Request) -> web.Response:
        doc = status()
        if auth.MEMBER not in request:
            doc = {k: doc[k] for k in PUBLIC_STATUS_FIELDS if k in doc}
        return web.json_response(doc)

    refusals = RefusalBudget()

    async def throttled(conn: object | None) -> web.Response | None:
        """Past its refusal budget a connection waits, then gets 429 before any work."""
        if conn is None or not refusals.exhausted(conn):
            return None
        await asyncio.sleep(refusals.penalty_s)
        return error(
            429,
            "too_many_refused",
            "this connection sent too many transactions the node refused; slow down",
            {"Retry-After": str(math.ceil(refusals.penalty_s))},
        )

    async def post_tx(request: web.Request) -> web.Response:
        conn = request.transport
        slowed = await throttled(conn)
        if slowed is not None:
            return slowed
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
            shape = 'expected {"tx": "<hex of the signed transaction>"}'
            # one flat object: nesting is refused before the parser builds it
            if b"[" in body or body.count(b"{") > 1:
                return error(400, "bad_request", shape)
            try:
                raw = bytes.fromhex(json.loads(body)["tx"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                return error(400, "bad_request", shape)
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
        except (MempoolFull, VerifierBusy, Unavailable) as e:
            return error(503, e.reason, str(e), {"Retry-After": "1"})
        except (TxError, MdtpError) as e:
            return error(400, e.reason, str(e))
        doc: dict[str, Any] = {"id": tx.id.hex(), "status": "pending"}
        if wait:
            try:
                async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                    await submitter.wait_committed(tx.id)
            except TimeoutError:
                return web.json_response(doc, status=202)
            return web.json_response(reader.tx_status(tx.id), status=200)
        return web.json_response(doc, status=202)

    async def post_txs(request: web.Request) -> web.Response:
        conn = request.transport
        slowed = await throttled(conn)
        if slowed is not None:
            return slowed
        response, refused = await _post_txs(request)
        if conn is not None:
            # one refusal per refused transaction (a whole-batch 4xx counts as one), so a
            # batch of junk costs the connection what as many single submissions would
            if 400 <= response.status < 500:
                refused = max(refused, 1)
            for _ in range(refused):
                refusals.refused(conn)
        return response

    async def _post_txs(request: web.Request) -> tuple[web.Response, int]:
        """The response and how many transactions it refused (for the refusal budget)."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, "oversized", f"request body above {max_body_bytes} bytes"), 0
        raws = _batch_of(body, json_body=request.content_type == "application/json")
        if isinstance(raws, web.Response):
            return raws, 0
        wait = request.query.get("wait") in ("1", "true", "commit")
        try:
            timeout = float(request.query.get("timeout", "30") or 30)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout < math.inf:  # checked before any transaction is admitted
            return error(400, "bad_request", "timeout must be a finite number of seconds >= 0"), 0
        timeout = min(timeout, WAIT_S_MAX)
        try:
            results = await submitter.submit_many(raws)
        except (VerifierBusy, Unavailable) as e:  # nothing was checked or admitted
            return error(503, e.reason, str(e), {"Retry-After": "1"}), 0
        admitted = [r for r in results if isinstance(r, Tx)]
        if wait and admitted:
            waits = [asyncio.ensure_future(submitter.wait_committed(t.id)) for t in admitted]
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for fut in pending:
                fut.cancel()
        docs: list[dict[str, Any]] = []
        refused = 0
        transient = False
        for i, r in enumerate(results):
            if isinstance(r, Tx):
                docs.append(
                    reader.tx_status(r.id) if wait else {"id": r.id.hex(), "status": "pending"}
                )
            else:
                docs.append({"index": i, "error": r.reason, "message": str(r)})
                transient |= r.reason in TRANSIENT_REASONS
                refused += r.reason not in TRANSIENT_REASONS
        headers = {"Retry-After": "1"} if transient else None
        return web.json_response({"results": docs}, headers=headers), refused

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

    genesis_text = json.dumps(genesis, sort_keys=True)

    async def get_genesis(_: web.Request) -> web.Response:
        return web.Response(text=genesis_text, content_type="application/json")

    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/tx", post_tx)
    app.router.add_post("/v1/txs", post_txs)
    app.router.add_get("/v1/tx/{tx_id}", get_tx)
    app.router.add_get("/v1/blocks/{height}", get_block)
    app.router.add_get("/v1/chain", get_chain)
    app.router.add_get("/v1/evidence", get_evidence)
    app.router.add_get("/v1/genesis", get_genesis)


def _array_len(body: bytes) -> int | None:
    """The length a msgpack array header announces, or None if ``body`` is not an array."""
    if not body:
        return None
    head = body[0]
    if 0x90 <= head <= 0x9F:
        return head & 0x0F
    if head == 0xDC and len(body) >= 3:
        return int.from_bytes(body[1:3], "big")
    if head == 0xDD and len(body) >= 5:
        return int.from_bytes(body[1:5], "big")
    return None


def _batch_of(body: bytes, *, json_body: bool) -> list[bytes] | web.Response:
    """The signed transactions of a ``POST /v1/txs`` body (its bytes already bounded), or the
    refusal. A msgpack body's count is read from its array header before anything is
    decoded; a JSON body's count before any transaction is."""

    def too_many() -> web.Response:
        return error(413, "too_many_txs", f"a batch holds at most {BATCH_TXS_MAX} transactions")

    if json_body:
        shape = 'expected {"txs": ["<hex of a signed transaction>", ...]}'
        # one object holding one array of hex strings: anything nested is refused before the
        # parser builds it (nested arrays cost ~20 bytes of memory per byte of body)
        if body.count(b"[") > 1 or body.count(b"{") > 1:
            return error(400, "bad_request", shape)
        try:
            items = json.loads(body)["txs"]
        except (ValueError, KeyError, TypeError):
            return error(400, "bad_request", shape)
        if not isinstance(items, list):
            return error(400, "bad_request", shape)
        if len(items) > BATCH_TXS_MAX:
            return too_many()
        try:
            return [bytes.fromhex(t) for t in items]
        except (ValueError, TypeError, binascii.Error):
            return error(400, "bad_request", shape)
    shape = "expected a msgpack array of signed transactions (bin)"
    count = _array_len(body)
    if count is None:
        return error(400, "bad_request", shape)
    if count > BATCH_TXS_MAX:
        return too_many()
    try:
        # an array of byte strings: nothing nested is built (see consensus.codec)
        check_structure(body, depth_max=1, elements_max=BATCH_TXS_MAX + 1)
    except DecodeError:
        return error(400, "bad_request", shape)
    try:
        raws = msgpack.unpackb(body, raw=False, max_array_len=BATCH_TXS_MAX, max_map_len=0)
    except Exception:  # any malformed msgpack (the library raises several types)
        return error(400, "bad_request", shape)
    if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
        return error(400, "bad_request", shape)
    return raws
