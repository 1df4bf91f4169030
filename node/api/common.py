"""Helpers shared by the API route modules: error bodies and parameter parsing."""

from __future__ import annotations

import json

from aiohttp import web


def error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


def hex32(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "message": f"{what} must be hex"}),
            content_type="application/json",
        ) from None
    if len(value) != 32:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "message": f"{what} must be 32 bytes"}),
            content_type="application/json",
        )
    return value


def int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "message": f"{name} must be an integer"}),
            content_type="application/json",
        ) from None
