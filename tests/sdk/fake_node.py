"""A scripted HTTPS node for the SDK's unit tests: a real aiohttp server with TLS (the
consortium's kind of certificates, made in a temporary directory) that answers each route
from a queue of scripted answers and records every request it got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from mdtp.node.identity import pki

Answer = tuple[int, Any, dict[str, str]]  # status, JSON body, headers


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


@dataclass
class FakeNode:
    """Answers ``(method, path)`` with the next scripted answer, then with ``default``."""

    script: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    default: dict[tuple[str, str], Callable[[Seen], Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        self.script.setdefault((method, path), []).extend(answers)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    async def handle(self, request: web.Request) -> web.Response:
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            await request.read(),
            time.monotonic(),
        )
        self.seen.append(seen)
        key = (request.method, request.path)
        queue = self.script.get(key)
        if queue:
            status, doc, headers = queue.pop(0)
        elif key in self.default:
            status, doc, headers = self.default[key](seen)
        elif request.path == "/v1/status":
            status, doc, headers = 200, {"id": "node0", "chain_id": "fake-chain"}, {}
        else:
            status, doc, headers = 404, {"error": "not_found", "message": "unscripted"}, {}
        return web.Response(
            status=status,
            text=json.dumps(doc),
            content_type="application/json",
            headers=headers,
        )


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A CA, the node's server certificate and a member's client certificate."""
    ca = pki.create_ca("test")
    server = pki.issue_node_certificate(ca, "node0", ["127.0.0.1"])
    client = pki.issue_node_certificate(ca, "node1", ["127.0.0.1"])
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_pem,
        "server.key.pem": server.key_pem,
        "node.pem": client.cert_pem,
        "node.key.pem": client.key_pem,
    }
    for name, data in files.items():
        pki.write_private(directory / name, data)
    return Tls(directory / "ca.pem", directory / "node.pem", directory / "node.key.pem")


async def serve(node: FakeNode, directory: Path) -> AsyncGenerator[str, None]:
    """Run ``node`` over TLS on a free loopback port; yields its ``host:port``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", node.handle)
    server = TestServer(app, host="127.0.0.1")
    context = pki.api_server_context(
        directory / "ca.pem", directory / "server.pem", directory / "server.key.pem"
    )
    await server.start_server(ssl=context)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.contextmanager
def serving_in_thread(node: FakeNode, directory: Path) -> Iterator[str]:
    """``node`` served from an event loop of its own thread (for blocking clients)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served = serve(node, directory)
    try:
        address: str = asyncio.run_coroutine_threadsafe(_first(served), loop).result(30)
        yield address
    finally:
        asyncio.run_coroutine_threadsafe(served.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def _first(served: AsyncGenerator[str, None]) -> str:
    return await anext(served)
