"""The HTTPS JSON API (TLS 1.3; member clients present a consortium certificate).

State changes only as signed transactions (``POST /v1/tx``); everything else reads committed
state. Errors are JSON ``{"error": <reason code>, "message": <text>}`` with a 4xx status, or
503 with ``Retry-After`` when the node is saturated: a malformed parameter or body is
``bad_request``, an unknown route ``not_found``, a wrong method ``method_not_allowed``, a body
above the limit ``oversized`` (:func:`json_errors`). Every route, its answers and reason codes
are described in ``openapi.json`` (served at ``GET /v1/openapi.json``, :mod:`.spec`). Each
concern adds its routes from its own module (``chain``: status, transactions, blocks; ...);
:mod:`.auth` declares who may call each route and checks it before the route's handler runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from mdtp.node.api import spec
from mdtp.node.api.auth import Authoriser
from mdtp.node.api.common import error

log = logging.getLogger(__name__)

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


# The reason codes of the errors aiohttp raises itself (no route, wrong method, a body above
# ``client_max_size``); anything else it raises for a malformed request is ``bad_request``.
_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "oversized"}


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error answers JSON ``{"error", "message"}``, also those aiohttp raises itself
    (which it would answer text/plain), and an unexpected exception is a JSON 500."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        reason = _HTTP_REASONS.get(e.status, "bad_request" if e.status < 500 else "internal")
        return error(e.status, reason, e.reason, headers)
    except Exception:
        log.exception("API %r %r failed", request.method, request.rel_url.raw_path[:200])
        return error(500, "internal", "the node failed to answer this request")
    return response


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

    app = web.Application(client_max_size=max_body_bytes, middlewares=[count, json_errors])
    Authoriser(metrics.refusals).install(app)
    spec.add_routes(app)
    for add_routes in routes:
        add_routes(app)
    return app
