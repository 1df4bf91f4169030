"""The explorer and audit page: static HTML, plain JavaScript and CSS served from the API port
at ``GET /explorer/`` (package data in ``static/``, no build step, nothing from elsewhere).

The page holds no data: everything it shows it reads in the browser from this node's own API
routes, with their own authorisation (the member certificate the browser presents over TLS;
signed reads, signed in the browser with an account key the user loads locally, for contracts
and audit trails). It verifies each audit entry in the browser against the block bytes, the
commit certificate and the genesis members' node keys (``static/verify.js``, the same checks as
:mod:`mdtp.node.sdk.audit_verify`).

A strict Content-Security-Policy keeps the page to its own scripts and styles and to this
node's API: no inline script, no other origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from mdtp.node.api.common import error

PREFIX = "/explorer/"
# Every file the page consists of, with its content type; anything else is 404.
ASSETS: dict[str, str] = {
    "index.html": "text/html",
    "explorer.css": "text/css",
    "app.js": "text/javascript",
    "views.js": "text/javascript",
    "api.js": "text/javascript",
    "verify.js": "text/javascript",
    "msgpack.js": "text/javascript",
    "blake2b.js": "text/javascript",
    "selftest.js": "text/javascript",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def add_routes(app: web.Application) -> None:
    async def index(_: web.Request) -> web.Response:
        return _serve("index.html")

    async def get_asset(request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name not in ASSETS:
            return error(404, "not_found", f"no explorer file {name[:100]!r}")
        return _serve(name)

    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "{asset}", get_asset)


def _serve(name: str) -> web.Response:
    content_type = ASSETS[name]
    return web.Response(
        body=asset(name), content_type=content_type, charset="utf-8", headers=HEADERS
    )
