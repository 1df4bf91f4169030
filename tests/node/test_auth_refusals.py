"""Every refusal of the API's authoriser is JSON with its reason, counted, and a 429 says
when to come back (``Retry-After``), as the API's other "not now" answers do."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from mdtp.node.api.auth import REFUSALS, Authoriser, Refused


async def test_each_refusal_answers_its_status_and_reason_and_429_has_retry_after() -> None:
    counter = Counter("refusals", "test", ["reason"], registry=CollectorRegistry())
    authoriser = Authoriser(counter)
    refusing: list[str] = []

    async def check(_: web.Request) -> None:
        raise Refused(refusing[-1], "detail")

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({})

    authoriser.check = check  # type: ignore[method-assign,assignment]
    app = web.Application(middlewares=[authoriser.middleware])
    app.router.add_get("/x", ok)
    async with TestClient(TestServer(app)) as client:
        for reason, (status, _) in REFUSALS.items():
            refusing.append(reason)
            r = await client.get("/x")
            assert r.status == status and (await r.json())["error"] == reason
            assert ("Retry-After" in r.headers) == (status == 429), (reason, dict(r.headers))
            assert counter.labels(reason)._value.get() == 1
    assert any(status == 429 for status, _ in REFUSALS.values())
