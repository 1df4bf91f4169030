"""The API's OpenAPI 3.1 description, kept next to the routes (``openapi.json``, package data)
and served at ``GET /v1/openapi.json``; ``tests/api_contract`` checks that it lists exactly the
routes the app serves and fuzzes a live node against it."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

SPEC_ROUTE = "/v1/openapi.json"


@cache
def spec_text() -> str:
    return resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8")


def spec() -> dict[str, Any]:
    """A fresh copy of the description (callers may change it)."""
    doc: dict[str, Any] = json.loads(spec_text())
    return doc


def add_routes(app: web.Application) -> None:
    async def get_spec(_: web.Request) -> web.Response:
        return web.Response(text=spec_text(), content_type="application/json")

    app.router.add_get(SPEC_ROUTE, get_spec)
