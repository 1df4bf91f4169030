"""The HTTPS JSON API (TLS 1.3; member clients may present a consortium certificate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web


def api_app(status: Callable[[], dict[str, Any]], max_body_bytes: int) -> web.Application:
    async def get_status(_: web.Request) -> web.Response:
        return web.json_response(status())

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_get("/v1/status", get_status)
    return app
