"""API routes of the chunk service: uploads to the member's own node and fetch streams.

Uploads carry an ``X-Mdtp-Auth`` header: a signed upload authorisation
(:mod:`node.data.protocol`) by a supplier account of this node's member, bound to the
action, dataset, chunk index and the SHA-256 of the body.

``POST /v1/data/fetch`` takes a signed fetch request and answers, once the supplier's node
has accepted it, with a stream of records ``u32 length || msgpack map``: ``{"t": "chunk",
"i", "data", "proof"}`` ... then ``{"t": "end", "receipt"}`` or ``{"t": "error", "reason",
"message", "chunk"}``. A request refused before any data is a JSON error (403/404/503).

What the data client reads besides (the contract with its grants, receipts, audit trail,
nonces, overdue disposals) comes from the trading routes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import msgpack
from aiohttp import web

from mdtp.node.api.common import error
from mdtp.node.data.protocol import Refused
from mdtp.node.data.relay import FetchSession, Relay
from mdtp.node.data.uploads import Uploads
from mdtp.storage.errors import StorageError

AUTH_HEADER = "X-Mdtp-Auth"
STREAM_CONTENT_TYPE = "application/x-mdtp-chunks"
_U32 = struct.Struct(">I")
_REFUSAL_STATUS = {
    "unknown_contract": 404,
    "busy": 503,
    "nonce_quota": 503,
    "bad_id": 400,
    "supplier_unreachable": 504,
    "malformed": 400,
    "wrong_chain": 400,
}


def record(obj: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return _U32.pack(len(body)) + body


def _bin_header(length: int) -> bytes:
    """msgpack's ``bin 8/16/32`` header (the format spec's; the packer has no call for it)."""
    if length < 2**8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 2**16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def chunk_record_head(index: int, proof: list[bytes], data_len: int) -> bytes:
    """The bytes of the record ``{"t": "chunk", "i", "proof", "data"}`` up to the chunk's own
    bytes, which follow it as they are (msgpack ``bin`` last): the chunk is never copied into
    a packed record."""
    packer = msgpack.Packer(use_bin_type=True)
    head: bytes = (
        packer.pack_map_header(4)
        + packer.pack("t")
        + packer.pack("chunk")
        + packer.pack("i")
        + packer.pack(index)
        + packer.pack("proof")
        + packer.pack(proof)
        + packer.pack("data")
        + _bin_header(data_len)
    )
    return _U32.pack(len(head) + data_len) + head


def _refusal(r: Refused) -> web.Response:
    status = _REFUSAL_STATUS.get(r.reason, 403)
    headers = {"Retry-After": "1"} if status == 503 else None
    doc = {"error": r.reason, "message": r.message, "chunk": r.chunk}
    return web.json_response(doc, status=status, headers=headers)


def add_routes(app: web.Application, *, uploads: Uploads, relay: Relay) -> None:
    async def authorised(request: web.Request, action: str, index: int) -> tuple[str, bytes]:
        body = await request.read()
        try:
            auth = bytes.fromhex(request.headers.get(AUTH_HEADER, ""))
        except ValueError:
            auth = b""
        uploads.authorise(
            auth, action, request.match_info["dataset_id"], index, hashlib.sha256(body).digest()
        )
        return request.match_info["dataset_id"], body

    async def put_chunk(request: web.Request) -> web.Response:
        try:
            index = int(request.match_info["index"])
            dataset_id, body = await authorised(request, "chunk", index)
            digest = await uploads.put_chunk(dataset_id, index, body)
        except ValueError:
            return error(400, "bad_request", "chunk index must be an integer")
        except Refused as r:
            return _refusal(r)
        except StorageError as e:
            return error(409, e.reason, str(e))
        return web.json_response({"hash": digest.hex()})

    async def put_key(request: web.Request) -> web.Response:
        try:
            dataset_id, body = await authorised(request, "key", 0)
            uploads.put_key(dataset_id, body)
        except Refused as r:
            return _refusal(r)
        except (StorageError, ValueError) as e:
            return error(409, getattr(e, "reason", "bad_key"), str(e))
        return web.json_response({"stored": True})

    async def seal(request: web.Request) -> web.Response:
        try:
            dataset_id, body = await authorised(request, "seal", 0)
            doc = json.loads(body)
            manifest = uploads.seal(
                dataset_id, int(doc["chunk_count"]), bytes.fromhex(doc["merkle_root"])
            )
        except Refused as r:
            return _refusal(r)
        except (ValueError, KeyError, TypeError):
            return error(400, "bad_request", 'expected {"chunk_count": N, "merkle_root": hex}')
        except StorageError as e:
            return error(409, e.reason, str(e))
        return web.json_response(
            {"chunk_count": manifest.chunk_count, "byte_count": manifest.byte_count}
        )

    async def fetch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            session = relay.open_fetch(raw)
        except Refused as r:
            return _refusal(r)
        # the whole life of the session in one try: whatever ends it (the stream's end, a
        # refusal, an exception, the client going away, the handler cancelled), it is released
        try:
            return await stream(request, session)
        finally:
            if not session.done:
                session.cancel()  # the supplier stops and posts its receipt

    async def stream(request: web.Request, session: FetchSession) -> web.StreamResponse:
        try:
            event = await session.next()
        except Refused as r:
            return _refusal(r)
        response = web.StreamResponse(headers={"Content-Type": STREAM_CONTENT_TYPE})
        await response.prepare(request)
        try:
            while True:
                if event["kind"] == "end":
                    receipt = event["receipt"]
                    await response.write(
                        record({"t": "end", "receipt": receipt.hex() if receipt else None})
                    )
                    break
                data = event["data"]
                await response.write(chunk_record_head(event["i"], event["proof"], len(data)))
                await response.write(data)
                session.ack(event["i"])
                try:
                    event = await session.next()
                except Refused as r:
                    await response.write(
                        record(
                            {
                                "t": "error",
                                "reason": r.reason,
                                "message": r.message,
                                "chunk": r.chunk,
                            }
                        )
                    )
                    break
            await response.write_eof()
        except (ConnectionError, OSError):
            session.cancel()  # the client went away
        return response

    app.router.add_put("/v1/data/datasets/{dataset_id}/chunks/{index}", put_chunk)
    app.router.add_put("/v1/data/datasets/{dataset_id}/key", put_key)
    app.router.add_post("/v1/data/datasets/{dataset_id}/seal", seal)
    app.router.add_post("/v1/data/fetch", fetch)
