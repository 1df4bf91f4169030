"""Test-owned TCP proxies, one per directed peer link, all on 127.0.0.1.

Node A dials peer B at the proxy of link A→B (``MDTP_P2P_DIAL``), which forwards to B's real
p2p port. The proxy only shuttles bytes, so mutual TLS and the identity handshake pass
through untouched. Each link is in one mode at a time:

- ``pass``: forward at once;
- ``delay``: forward every chunk ``delay_ms`` later, in order;
- ``drop``: keep the connections open but discard every byte (a black hole: the sender
  sees no error, only silence, until its idle timeout);
- ``cut``: close the link's connections and refuse new ones (accepted, then closed).

All proxies run on one asyncio loop in a daemon thread of the test process, so tests with
their own event loops (pytest-asyncio) and plain threads can drive them alike. Every mode
change is applied on that loop; nothing here blocks longer than ``_CALL_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

MODES = ("pass", "delay", "drop", "cut")
_CHUNK_BYTES = 64 * 1024
_PENDING_CHUNKS_MAX = 4096  # a delayed direction buffers at most this many chunks
_CALL_TIMEOUT_S = 30.0
HOST = "127.0.0.1"


@dataclass
class Link:
    src: str
    dst: str
    target: tuple[str, int]
    port: int = 0
    mode: str = "pass"
    delay_ms: int = 0
    server: asyncio.AbstractServer | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    bytes_forwarded: int = 0


class ProxyNet:
    """The proxies of one cluster; ``start`` before use, ``close`` at the end."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], Link] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-proxies", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT_S)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_TIMEOUT_S)

    # -- configuration ------------------------------------------------------------------------

    def add_link(self, src: str, dst: str, target: str) -> int:
        """Listen for ``src``'s dials to ``dst``; returns the proxy's port."""
        host, _, port = target.rpartition(":")
        link = Link(src, dst, (host, int(port)))
        self.links[(src, dst)] = link
        self._call(self._listen(link))
        return link.port

    def dial_env(self, src: str) -> str:
        """``MDTP_P2P_DIAL`` for node ``src``: every peer at the proxy of its link."""
        return ",".join(
            f"{dst}={HOST}:{link.port}" for (s, dst), link in sorted(self.links.items()) if s == src
        )

    def set_mode(self, pairs: list[tuple[str, str]] | None, mode: str, delay_ms: int = 0) -> None:
        """Put the given directed links (``None``: all) into ``mode``."""
        assert mode in MODES, mode
        targets = [self.links[p] for p in pairs] if pairs is not None else list(self.links.values())
        self._call(self._set(targets, mode, delay_ms))

    def heal(self) -> None:
        self.set_mode(None, "pass")

    def modes(self) -> dict[tuple[str, str], str]:
        return {k: v.mode for k, v in self.links.items()}

    # -- the loop side ------------------------------------------------------------------------

    async def _listen(self, link: Link) -> None:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(link, reader, writer)

        link.server = await asyncio.start_server(on_client, HOST, 0)
        link.port = link.server.sockets[0].getsockname()[1]

    async def _set(self, targets: list[Link], mode: str, delay_ms: int) -> None:
        for link in targets:
            link.mode, link.delay_ms = mode, delay_ms
            if mode == "cut":
                for w in list(link.writers):
                    w.close()
                link.writers.clear()

    async def _close_all(self) -> None:
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            for w in list(link.writers):
                w.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.mode == "cut":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*link.target), 10)
        except (OSError, TimeoutError):
            writer.close()
            return
        link.writers |= {writer, up_writer}
        pipes = [
            asyncio.ensure_future(self._pipe(link, reader, up_writer)),
            asyncio.ensure_future(self._pipe(link, up_reader, writer)),
        ]
        for p in pipes:
            self._tasks.add(p)
            p.add_done_callback(self._tasks.discard)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for p in pipes:
            p.cancel()
        for w in (writer, up_writer):
            link.writers.discard(w)
            w.close()

    async def _pipe(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One direction of one connection; ends at EOF, on error or when the link is cut."""
        pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_PENDING_CHUNKS_MAX)
        sender = asyncio.ensure_future(self._delayed_writer(link, pending, writer))
        try:
            while True:
                data = await reader.read(_CHUNK_BYTES)
                if not data or link.mode == "cut":
                    return
                if link.mode == "drop":
                    continue
                release = time.monotonic() + (link.delay_ms / 1000 if link.mode == "delay" else 0)
                await pending.put((release, data))
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender

    async def _delayed_writer(
        self, link: Link, pending: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        while True:
            release, data = await pending.get()
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if link.mode == "drop":
                continue
            writer.write(data)
            link.bytes_forwarded += len(data)
            await writer.drain()
