"""Limits on the connections of an HTTP port (the API and the metrics port).

aiohttp bounds the size of a request line and of each header, but not how many connections
it holds nor how long one may take to say what it wants: 1,500 slow TLS connections were
all kept for minutes. Each port therefore listens through a :class:`ConnectionGate`:

- a TCP connection is admitted or refused (``too_many_connections``,
  ``too_many_from_address``) the moment it is accepted, before TLS: a refused one costs an
  accept and an abort;
- TLS runs after admission, within ``tls_handshake_timeout`` (``tls_handshake_timeout``,
  ``tls_error``);
- a connection with no request in progress is closed after ``idle_timeout`` (``idle_timeout``;
  that includes one that never sends a byte and one that does not read its response);
- from its first byte, a request's head must arrive within ``header_timeout`` and
  ``max_header_bytes`` (``header_timeout``, ``headers_too_large``) — counted on the wire,
  so a slow or endless head never reaches the parser's buffers;
- once the head is in, the whole body must arrive within ``body_timeout`` (``body_timeout``).
  A handler may then take as long as it needs (a data stream is one long response).

Every refusal and every deadline is counted in ``mdtp_http_connections_refused_total{port,
reason}`` and the open connections in ``mdtp_http_connections_open{port}``; a closed
connection releases everything at once (the transport is aborted, not drained).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest
from prometheus_client import CollectorRegistry, Counter, Gauge

from mdtp.node.identity.config import NodeConfig
from mdtp.node.p2p.connlimit import ConnectionCounter
from mdtp.node.p2p.remote import REMOTE, peer_host
from mdtp.node.supervisor import cancel_and_wait

log = logging.getLogger("mdtp.http")

_HEAD_END = b"\r\n\r\n"
# TLS may deliver application data in the loop turn that completes its handshake: with a
# client certificate the client sends its request (head and body) right behind its Finished.
# Only the head in it counts against max_header_bytes; the rest (one read of the TLS layer)
# is bounded by this.
_EARLY_BODY_MAX_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 512
    max_connections_per_address: int = 64
    tls_handshake_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    max_header_bytes: int = 16 * 1024

    @classmethod
    def from_config(cls, cfg: NodeConfig, port: str) -> HttpLimits:
        """The limits of ``port`` ("api" or "metrics"); both share the [api] deadlines."""
        prefix = "" if port == "api" else f"{port}_"
        return cls(
            max_connections=cfg.get("api", f"{prefix}max_connections"),
            max_connections_per_address=cfg.get("api", f"{prefix}max_connections_per_address"),
            tls_handshake_timeout_s=cfg.get("api", "tls_handshake_timeout_ms") / 1000,
            header_timeout_s=cfg.get("api", "header_timeout_ms") / 1000,
            body_timeout_s=cfg.get("api", "body_timeout_ms") / 1000,
            idle_timeout_s=cfg.get("api", "idle_timeout_ms") / 1000,
            max_header_bytes=cfg.get("api", "max_header_bytes"),
        )


class HttpConnectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "mdtp_http_connections_open",
            "Connections held open by an HTTP port (api, metrics)",
            ["port"],
            registry=registry,
        )
        self.refused = Counter(
            "mdtp_http_connections_refused_total",
            "HTTP connections refused or closed by a limit or deadline, by port and reason",
            ["port", "reason"],
            registry=registry,
        )


class _State(Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # no request in progress
    HEAD = "head"  # a request's first byte came, its head is not complete
    BODY = "body"  # head complete, handler not started or body still arriving
    BUSY = "busy"  # a handler is running
    CLOSED = "closed"  # refused before it was attached


class _Connection(asyncio.Protocol):
    """One connection: admission, TLS, the deadlines; forwards everything else to the
    aiohttp protocol it wraps."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate
        self.address = "?"
        self.source = ""
        self.state = _State.HANDSHAKE
        self.admitted = False
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.request: web.BaseRequest | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._tail = b""
        # What TLS delivered between the end of its handshake and _attach (one loop turn).
        self._early: list[bytes] = []

    # -- transport callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        gate = self.gate
        self.address = peer_host(transport.get_extra_info("peername"))
        self.source = f"{gate.port}:{self.address}"
        reason = gate.counter.admit(self.address)
        if reason is not None:
            gate.refuse(reason, self.source)
            transport.abort()
            return
        self.admitted = True
        gate.metrics.open.labels(gate.port).inc()
        if gate.ssl_context is None:
            self._attach(transport)
            return
        transport.pause_reading()  # until start_tls has put the TLS protocol in place
        gate.spawn(self._handshake(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.admitted:
            self.admitted = False
            self.gate.counter.release(self.address)
            self.gate.metrics.open.labels(self.gate.port).dec()
        if self.transport is not None:
            self.gate.connections.pop(self.transport, None)
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)
        self.request = None

    def data_received(self, data: bytes) -> None:
        if self.state is _State.HANDSHAKE:
            self._early.append(data)
            early = b"".join(self._early)
            end = early.find(_HEAD_END)
            head = len(early) if end < 0 else end + len(_HEAD_END)
            limit = self.gate.limits.max_header_bytes
            if head > limit or len(early) > limit + _EARLY_BODY_MAX_BYTES:
                self.gate.refuse("headers_too_large", self.source)
                self.state, self._early = _State.CLOSED, []
            return
        if self.state is _State.CLOSED:
            return
        if self.state is _State.IDLE:
            self.state, self._head_bytes, self._tail = _State.HEAD, 0, b""
            self._set_timer(self.gate.limits.header_timeout_s, "header_timeout")
        if self.state is _State.HEAD and not self._scan_head(data):
            return
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the request cycle, as the gate's middleware reports it --------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        self.request = request
        if request.content.is_eof():
            self._cancel_timer()
            self.state = _State.BUSY
        elif self.state is not _State.BODY:  # a pipelined request the scan did not see
            self._head_complete()

    def request_finished(self) -> None:
        self.request = None
        if self.transport is not None and not self.transport.is_closing():
            self.state = _State.IDLE
            self._set_timer(self.gate.limits.idle_timeout_s, "idle_timeout")

    # -- internals ------------------------------------------------------------------------

    async def _handshake(self, raw: asyncio.Transport) -> None:
        gate = self.gate
        loop = asyncio.get_running_loop()
        timeout = gate.limits.tls_handshake_timeout_s
        assert gate.ssl_context is not None
        tls: asyncio.Transport | None = None
        try:
            tls = await asyncio.wait_for(
                loop.start_tls(
                    raw, self, gate.ssl_context, server_side=True, ssl_handshake_timeout=timeout + 1
                ),
                timeout,
            )
        except TimeoutError:
            gate.refuse("tls_handshake_timeout", self.source)
        except (OSError, ssl.SSLError):
            gate.refuse("tls_error", self.source)
        finally:
            if tls is None or tls.is_closing():
                # The TLS protocol does not report a connection lost mid-handshake to us.
                raw.abort()
                self.connection_lost(None)
        if tls is not None and not tls.is_closing():
            if self.state is _State.CLOSED:
                tls.abort()
                self.connection_lost(None)
            else:
                self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        gate = self.gate
        self.transport = transport
        gate.connections[transport] = self
        self.inner = gate.protocol_factory()
        self.state = _State.IDLE
        self._set_timer(gate.limits.idle_timeout_s, "idle_timeout")
        # aiohttp starts the connection's request loop here: its task, and every task a
        # handler starts, inherit the source for the log limits.
        token = REMOTE.set(self.source)
        try:
            self.inner.connection_made(transport)
        finally:
            REMOTE.reset(token)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def _scan_head(self, data: bytes) -> bool:
        """Count the head's bytes; False (and closed) once it is too large."""
        window = self._tail + data
        end = window.find(_HEAD_END)
        used = len(data) if end < 0 else end + len(_HEAD_END) - len(self._tail)
        self._head_bytes += used
        if self._head_bytes > self.gate.limits.max_header_bytes:
            self._close("headers_too_large")
            return False
        if end < 0:
            self._tail = window[-(len(_HEAD_END) - 1) :]
        else:
            self._head_complete()
        return True

    def _head_complete(self) -> None:
        self.state = _State.BODY
        self._set_timer(self.gate.limits.body_timeout_s, "body_timeout")

    def _set_timer(self, delay_s: float, reason: str) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._expire, reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        body_in = self.request is not None and self.request.content.is_eof()
        if reason == "body_timeout" and body_in:
            self.state = _State.BUSY  # the body is in; the handler takes its time
            return
        self._close(reason)

    def _close(self, reason: str) -> None:
        self.gate.refuse(reason, self.source)
        if self.transport is not None:
            self.transport.abort()
        self._early.clear()


class ConnectionGate:
    """Admits and times the connections of one HTTP port (see the module docstring)."""

    def __init__(
        self,
        port: str,
        limits: HttpLimits,
        metrics: HttpConnectionMetrics,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.port = port
        # aiohttp's protocol factory, known once the app's runner is set up
        self.protocol_factory: Callable[[], asyncio.Protocol] = lambda: asyncio.Protocol()
        self.limits = limits
        self.metrics = metrics
        self.ssl_context = ssl_context
        self.counter = ConnectionCounter(limits.max_connections, limits.max_connections_per_address)
        self.connections: dict[asyncio.Transport, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        metrics.open.labels(port).set(0)

    def protocol(self) -> asyncio.Protocol:
        return _Connection(self)

    def refuse(self, reason: str, source: str) -> None:
        self.metrics.refused.labels(self.port, reason).inc()
        log.info("closed %s connection: %s", self.port, reason, extra={"source": source})

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self.connections.get(request.transport) if request.transport else None
        if conn is not None:
            conn.request_started(request)
        try:
            return await handler(request)
        finally:
            if conn is not None:
                conn.request_finished()

    async def close(self) -> None:
        await cancel_and_wait(list(self._tasks))
        for transport in list(self.connections):
            transport.abort()


class HttpPort:
    """One HTTP port: an aiohttp app served through a :class:`ConnectionGate`."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server, gate: ConnectionGate):
        self.runner = runner
        self.server = server
        self.gate = gate

    async def close(self) -> None:
        self.server.close()
        await self.gate.close()
        await self.runner.cleanup()


class JsonErrorsHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, but a request it cannot parse (a request line or header above
    8190 bytes, a malformed head) is answered JSON ``{"error", "message"}`` like every other
    error of the API, instead of aiohttp's text/plain page."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses if already sent
        reason = "bad_request" if status < 500 else "internal"
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        response = web.json_response({"error": reason, "message": phrase}, status=status)
        response.force_close()
        return response


async def serve_http(
    app: web.Application,
    port: str,
    address: tuple[str, int],
    ssl_context: ssl.SSLContext | None,
    limits: HttpLimits,
    metrics: HttpConnectionMetrics,
) -> HttpPort:
    """Serve ``app`` on ``address`` behind a gate; raises OSError when it cannot listen."""
    handler_args: dict[str, Any] = {
        "access_log": None,
        # aiohttp's own idle close is a backstop behind the gate's deadlines
        "keepalive_timeout": limits.idle_timeout_s + limits.header_timeout_s,
        "max_line_size": min(8190, limits.max_header_bytes),
        "max_field_size": min(8190, limits.max_header_bytes),
    }
    runner = web.AppRunner(app, handle_signals=False, **handler_args)
    gate = ConnectionGate(port, limits, metrics, ssl_context)
    app.middlewares.insert(0, gate.middleware)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    gate.protocol_factory = lambda: JsonErrorsHandler(server, loop=loop, **handler_args)
    host, number = address
    try:
        listening = await loop.create_server(
            gate.protocol, host, number, backlog=max(128, limits.max_connections)
        )
    except OSError:
        await runner.cleanup()
        raise
    return HttpPort(runner, listening, gate)
