"""The OpenAPI description (``node/api/openapi.json``) cannot drift from the app: it lists
exactly the routes the API serves, with the authorisation tier ``POLICY`` gives each, and the
reason codes the code can answer; unknown routes and wrong methods answer JSON errors."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from schemathesis.core.result import Ok

from mdtp.node import api
from mdtp.node.api import ApiMetrics, api_app, auth, explorer, spec
from mdtp.node.api import chain as chain_routes
from mdtp.node.api import compute as compute_routes
from mdtp.node.api import data as data_routes
from mdtp.node.api import governance as governance_routes
from mdtp.node.api import trading as trading_routes
from mdtp.node.compute.reasons import REFUSALS as COMPUTE_REFUSALS
from mdtp.node.data import protocol
from mdtp.node.ledger.trading.reasons import MACHINE_REASONS

METHODS = ("get", "put", "post", "delete", "patch")


def app() -> web.Application:
    """The API app with every route module the daemon installs, bound to stand-ins (routes
    are only listed, never called, except the ones that need nothing bound)."""
    none: Any = None
    store: Any = SimpleNamespace(state=SimpleNamespace())
    installers = [
        lambda a: chain_routes.add_routes(
            a, none, none, lambda: {"chain_id": "c"}, 1024, genesis={"chain_id": "c"}
        ),
        explorer.add_routes,
        lambda a: data_routes.add_routes(a, uploads=none, relay=none),
        lambda a: compute_routes.add_routes(a, relay=none, server=none),
        lambda a: trading_routes.add_routes(a, store, 0, none, chain_id="c"),
        lambda a: governance_routes.add_routes(a, store, 0),
    ]
    return api_app(installers, 1024, ApiMetrics(CollectorRegistry()))


def served() -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app().router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def described() -> set[tuple[str, str]]:
    doc = spec.spec()
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}


def operation(method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = spec.spec()["paths"][path][method.lower()]
    return op


def codes(method: str, path: str, status: str) -> set[str]:
    schema = operation(method, path)["responses"][status]["content"]["application/json"]["schema"]
    return set(schema["allOf"][1]["properties"]["error"]["enum"])


def test_every_route_module_is_in_the_app_under_test() -> None:
    """A new route module must be added to ``app()`` above (and so to the description)."""
    with_routes = {
        name
        for _, name, _ in pkgutil.iter_modules(api.__path__)
        if hasattr(importlib.import_module(f"{api.__name__}.{name}"), "add_routes")
    }
    assert with_routes == {
        "chain",
        "compute",
        "data",
        "explorer",
        "governance",
        "trading",
        "spec",
    }


def test_the_description_lists_exactly_the_served_routes() -> None:
    assert served() == described()


def test_every_described_route_has_its_authorisation_rule_and_tier() -> None:
    assert set(auth.POLICY) == described()
    for (method, path), rule in auth.POLICY.items():
        assert operation(method, path)["x-mdtp-tier"] == rule.tier.value, (method, path)


def test_the_description_is_valid_openapi_3_1() -> None:
    schema = schemathesis.openapi.from_dict(spec.spec())
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    assert len(results) == len(described())
    assert spec.spec()["openapi"].startswith("3.1")


def test_refusal_codes_are_described_with_their_status() -> None:
    for (method, path), rule in auth.POLICY.items():
        if rule.tier is auth.Tier.PUBLIC:
            continue
        for reason, (status, _) in auth.REFUSALS.items():
            if reason == "no_policy":
                continue
            member_refusal = reason in ("certificate_required", "not_a_member")
            if rule.tier is auth.Tier.MEMBER and not member_refusal:
                continue
            assert reason in codes(method, path, str(status)), (method, path, reason)


def test_transaction_admission_codes_are_described() -> None:
    described_400 = codes("POST", "/v1/tx", "400")
    assert set(MACHINE_REASONS) <= described_400
    assert {"bad_request", "not_registered", "duplicate", "stale_nonce"} <= described_400


def test_chunk_service_refusals_are_described_with_their_status() -> None:
    for path, item in spec.spec()["paths"].items():
        if not path.startswith("/v1/data/"):
            continue
        [(method, _)] = item.items()
        for reason in protocol.REFUSALS:
            status = data_routes._REFUSAL_STATUS.get(reason, 403)
            assert reason in codes(method, path, str(status)), (path, reason)


def test_clean_room_refusals_are_described_with_their_status() -> None:
    for reason in COMPUTE_REFUSALS:
        status = compute_routes._STATUS.get(reason, 403)
        assert reason in codes("POST", "/v1/compute/query", str(status)), reason


@pytest.fixture
async def client() -> Any:
    async with TestClient(TestServer(app())) as c:
        yield c


async def test_unknown_routes_and_wrong_methods_answer_json(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status == 404 and (await r.json())["error"] == "not_found"
    r = await client.delete("/v1/tx")
    body = await r.json()
    assert r.status == 405 and body["error"] == "method_not_allowed" and body["message"]
    assert "POST" in r.headers["Allow"]


async def test_the_description_is_served_publicly(client: TestClient[Any, Any]) -> None:
    r = await client.get(spec.SPEC_ROUTE)
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == spec.spec()


async def test_errors_aiohttp_raises_and_unexpected_exceptions_answer_json() -> None:
    async def read(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(client_max_size=16, middlewares=[api.json_errors])
    app.router.add_post("/read", read)
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/read", data=b"x" * 100)
        assert r.status == 413 and (await r.json())["error"] == "oversized"
        r = await c.get("/broken")
        assert r.status == 500 and (await r.json())["error"] == "internal"
        r = await c.post("/read", data=b"small")
        assert r.status == 200 and await r.read() == b"small"
