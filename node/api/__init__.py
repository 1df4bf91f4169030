"""The HTTPS JSON API (TLS 1.3; member clients present a consortium certificate).

State changes only as signed transactions (``POST /v1/tx``); everything else reads committed
state. Errors are JSON ``{"error": <reason code>, "message": <text>}`` with a 4xx status, or
503 with ``Retry-After`` when the node is saturated. Each concern adds its routes from its
own module (``chain``: status, transactions, blocks; ...); :mod:`.auth` declares who may call
each route and checks it before the route's handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from mdtp.node.api.auth import Authoriser

# Adds one concern's routes to the app; the daemon binds each module's ``add_routes`` to the
# narrow interfaces that concern reads (so no route module knows the daemon).
RouteInstaller = Callable[[web.Application], None]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mdtp_api_requests_total",
            "API requests by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.refusals = Counter(
            "mdtp_api_refusals_total",
            "API requests refused by the authorisation rules, by reason",
            ["reason"],
            registry=registry,
        )


def api_app(
    routes: Sequence[RouteInstaller], max_body_bytes: int, metrics: ApiMetrics
) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource else "unmatched"
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as e:
            metrics.requests.labels(route, str(e.status)).inc()
            raise
        metrics.requests.labels(route, str(response.status)).inc()
        return response

    app = web.Application(client_max_size=max_body_bytes, middlewares=[count])
    Authoriser(metrics.refusals).install(app)
    for add_routes in routes:
        add_routes(app)
    return app
