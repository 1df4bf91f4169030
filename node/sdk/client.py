"""Python client SDK for a node's HTTPS API (used by the CLI, the demo, bench and tests)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp

from mdtp.node.identity import pki


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NodeClient:
    """``async with NodeClient("127.0.0.1:26601", ca=Path("ca.pem")) as c: await c.status()``"""

    def __init__(
        self,
        address: str,
        *,
        ca: Path,
        cert: Path | None = None,
        key: Path | None = None,
        timeout_s: float = 60.0,
        connections: int = 64,
    ) -> None:
        self.base = f"https://{address}"
        self._ssl: ssl.SSLContext = pki.api_client_context(ca, cert, key)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        assert self._session is not None, "use NodeClient as an async context manager"
        async with self._session.request(method, self.base + path, **kw) as resp:
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                doc = None
            if resp.status >= 400:
                reason = doc.get("error", "error") if isinstance(doc, dict) else "error"
                message = doc.get("message", "") if isinstance(doc, dict) else await resp.text()
                raise ApiError(resp.status, reason, message)
            return doc

    async def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request("GET", "/v1/status")
        return doc

    async def submit(
        self, raw_tx: bytes, *, wait: bool = False, timeout_s: float = 30
    ) -> dict[str, Any]:
        params = {"wait": "1", "timeout": str(timeout_s)} if wait else None
        doc: dict[str, Any] = await self._request(
            "POST",
            "/v1/tx",
            data=raw_tx,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        )
        return doc

    async def tx(self, tx_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request("GET", f"/v1/tx/{tx_id}")
        return doc

    async def block(self, height: int) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request("GET", f"/v1/blocks/{height}")
        return doc

    async def chain(self, start: int, end: int) -> list[list[Any]]:
        out: list[list[Any]] = []
        while start <= end:
            page: list[list[Any]] = await self._request(
                "GET", "/v1/chain", params={"from": str(start), "to": str(end)}
            )
            if not page:
                break
            out.extend(page)
            start = page[-1][0] + 1
        return out

    async def get(self, path: str, **params: str) -> Any:
        return await self._request("GET", path, params=params or None)
