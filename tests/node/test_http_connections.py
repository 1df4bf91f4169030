"""The HTTP connection gate in-process: real sockets on 127.0.0.1, real TLS, short limits."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from mdtp.node.app.http_connections import (
    HttpConnectionMetrics,
    HttpLimits,
    HttpPort,
    serve_http,
)
from mdtp.node.identity import pki

LIMITS = HttpLimits(
    max_connections=6,
    max_connections_per_address=4,
    tls_handshake_timeout_s=0.5,
    header_timeout_s=0.5,
    body_timeout_s=0.5,
    idle_timeout_s=1.0,
    max_header_bytes=2048,
)


class Served:
    def __init__(self, port: HttpPort, registry: CollectorRegistry, name: str) -> None:
        self.port = port
        self.registry = registry
        self.name = name
        self.number = port.server.sockets[0].getsockname()[1]

    def refused(self, reason: str) -> float:
        labels = {"port": self.name, "reason": reason}
        return self.registry.get_sample_value("mdtp_http_connections_refused_total", labels) or 0

    def open(self) -> float:
        labels = {"port": self.name}
        return self.registry.get_sample_value("mdtp_http_connections_open", labels) or 0


def _app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    return app


@pytest.fixture
async def plain() -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    port = await serve_http(
        _app(), "metrics", ("127.0.0.1", 0), None, LIMITS, HttpConnectionMetrics(registry)
    )
    yield Served(port, registry, "metrics")
    await port.close()


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[Served, ssl.SSLContext]]:
    ca = pki.create_ca("test")
    cert = pki.issue_node_certificate(ca, "node0", ["127.0.0.1", "localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "node.pem").write_bytes(cert.cert_pem)
    pki.write_private(tmp_path / "node.key.pem", cert.key_pem)
    ctx = pki.api_server_context(
        tmp_path / "ca.pem", tmp_path / "node.pem", tmp_path / "node.key.pem"
    )
    registry = CollectorRegistry()
    port = await serve_http(
        _app(), "api", ("127.0.0.1", 0), ctx, LIMITS, HttpConnectionMetrics(registry)
    )
    yield Served(port, registry, "api"), pki.api_client_context(tmp_path / "ca.pem")
    await port.close()


async def _closed(reader: asyncio.StreamReader, within_s: float) -> bool:
    """True once the server closed the connection (EOF or reset) within ``within_s``."""
    try:
        while await asyncio.wait_for(reader.read(4096), within_s):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        pass
    return True


async def _request(served: Served, raw: bytes, ctx: ssl.SSLContext | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.number, ssl=ctx)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def test_a_request_still_works(plain: Served) -> None:
    answer = await _request(plain, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hi")


async def test_excess_connections_are_refused_at_once(plain: Served) -> None:
    conns = [await asyncio.open_connection("127.0.0.1", plain.number) for _ in range(6)]
    # the fifth and sixth come from the same address: refused before any work
    assert await _closed(conns[4][0], 2) and await _closed(conns[5][0], 2)
    assert plain.refused("too_many_from_address") == 2
    assert plain.open() == 4
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.2)
    assert plain.open() == 0


async def test_slowloris_head_is_cut_at_the_header_deadline(plain: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain.number)
    writer.write(b"GET /echo HTTP/1.1\r\n")
    for _ in range(2):
        await asyncio.sleep(0.2)
        writer.write(b"X-a: b\r\n")  # never ends its head
    assert await _closed(reader, 3)
    assert plain.refused("header_timeout") == 1
    writer.close()


async def test_an_endless_head_is_cut_at_its_size(plain: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain.number)
    writer.write(b"GET /echo HTTP/1.1\r\n" + b"X-a: " + b"b" * 4000 + b"\r\n")
    assert await _closed(reader, 3)
    assert plain.refused("headers_too_large") == 1
    writer.close()


async def test_a_slow_body_is_cut_at_the_body_deadline(plain: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain.number)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    assert await _closed(reader, 3)
    assert plain.refused("body_timeout") == 1
    writer.close()


async def test_idle_keepalive_connection_is_closed(plain: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain.number)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
    assert await _closed(reader, 4)
    assert plain.refused("idle_timeout") == 1
    writer.close()


async def test_tls_requests_work_and_a_stalled_handshake_is_cut(
    tls: tuple[Served, ssl.SSLContext],
) -> None:
    served, ctx = tls
    answer = await _request(
        served, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", ctx
    )
    assert answer.startswith(b"HTTP/1.1 200")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.number)  # no ClientHello
    assert await _closed(reader, 3)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
    writer.write(b"\x16\x03\x01\x00\x05hello")  # garbage where a ClientHello should be
    assert await _closed(reader, 3)
    writer.close()
    await asyncio.sleep(0.1)
    assert served.refused("tls_handshake_timeout") == 1
    assert served.refused("tls_error") == 1
    assert served.open() == 0


async def test_a_request_sent_right_behind_a_client_certificate_is_served(
    tmp_path: Path,
) -> None:
    """With a client certificate (TLS 1.3), the client's request follows its Finished at once,
    so TLS may deliver it in the turn that completes the server's handshake: only its head
    counts against max_header_bytes, a body larger than that is served."""
    ca = pki.create_ca("test")
    server = pki.issue_node_certificate(ca, "node0", ["127.0.0.1", "localhost"])
    client = pki.issue_node_certificate(ca, "node1", ["127.0.0.1", "localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    for name, cert in (("node", server), ("client", client)):
        (tmp_path / f"{name}.pem").write_bytes(cert.cert_pem)
        pki.write_private(tmp_path / f"{name}.key.pem", cert.key_pem)
    ctx = pki.api_server_context(
        tmp_path / "ca.pem", tmp_path / "node.pem", tmp_path / "node.key.pem"
    )
    registry = CollectorRegistry()
    port = await serve_http(
        _app(), "api", ("127.0.0.1", 0), ctx, LIMITS, HttpConnectionMetrics(registry)
    )
    served = Served(port, registry, "api")
    member = pki.api_client_context(
        tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key.pem"
    )
    try:
        body = b"x" * (4 * LIMITS.max_header_bytes)
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.number, ssl=member)
            writer.write(head + body)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            writer.close()
        assert served.refused("headers_too_large") == 0
        # a head too large is still refused, however it arrives
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number, ssl=member)
        writer.write(b"GET /echo HTTP/1.1\r\nX: " + b"a" * (2 * LIMITS.max_header_bytes))
        assert await _closed(reader, 3)
        writer.close()
        assert served.refused("headers_too_large") == 1
    finally:
        await port.close()
