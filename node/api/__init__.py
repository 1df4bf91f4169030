"""The HTTPS JSON API (TLS 1.3; member clients present a consortium certificate).

State changes only as signed transactions (``POST /v1/tx``); everything else reads committed
state. Errors are JSON ``{"error": <reason code>, "message": <text>}`` with a 4xx status, or
503 with ``Retry-After`` when the node is saturated. Each concern adds its routes from its
own module (``chain``: status, transactions, blocks; ...); :mod:`.auth` declares who may call
each route and checks it before the route's handler runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

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
        # By canonical route (``/v1/blocks/{height}``), never by raw path: bounded labels.
        self.duration = Histogram(
            "mdtp_api_request_duration_seconds",
            "Time from a request's routing to its response (a streamed one: to its end), by route",
            ["route"],
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
        started = time.monotonic()
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as e:
            metrics.requests.labels(route, str(e.status)).inc()
            raise
        finally:
            metrics.duration.labels(route).observe(time.monotonic() - started)
        metrics.requests.labels(route, str(response.status)).inc()
        return response

    app = web.Application(client_max_size=max_body_bytes, middlewares=[count])
    Authoriser(metrics.refusals).install(app)
    for add_routes in routes:
        add_routes(app)
    return app
