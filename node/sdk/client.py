"""Python client SDK for a node's HTTPS API (used by the CLI, the demo, bench and tests).

A member's client presents the member's certificate (``cert``/``key``, or
:meth:`NodeClient.of_home` with a node home's ``node.pem``/``node.key.pem``); confidential
reads are signed by an account (``reader``, or per call), see
:mod:`mdtp.node.identity.signed_read`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import aiohttp
import msgpack
from yarl import URL

from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import SigningKey


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NodeClient:
    """``async with NodeClient("127.0.0.1:26601", ca=Path("ca.pem"), cert=..., key=...) as c:``

    ``cert``/``key``: the member's client certificate (without one a node answers only
    ``/v1/status``, and that minimally). ``reader``: the account that signs confidential reads
    when a call names none.
    """

    def __init__(
        self,
        address: str,
        *,
        ca: Path,
        cert: Path | None = None,
        key: Path | None = None,
        timeout_s: float = 60.0,
        connections: int = 64,
        reader: SigningKey | None = None,
    ) -> None:
        self.base = f"https://{address}"
        self._ssl: ssl.SSLContext = pki.api_client_context(ca, cert, key)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.reader = reader
        self._chain_id: str | None = None

    @classmethod
    def of_home(cls, address: str, home: Path, **kw: Any) -> Self:
        """A client presenting the certificate of the member whose node home is ``home``."""
        return cls(
            address, ca=home / "ca.pem", cert=home / "node.pem", key=home / "node.key.pem", **kw
        )

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

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        signed_by: SigningKey | None = None,
        **kw: Any,
    ) -> Any:
        assert self._session is not None, "use NodeClient as an async context manager"
        url = URL(self.base + path)
        if params:
            url = url.with_query(params)
        if signed_by is not None:
            body = kw.get("data") or b""
            assert isinstance(body, bytes), "a signed request's body is bytes"
            headers = signed_read.sign_headers(
                signed_by,
                await self.chain_id(),
                method,
                url.raw_path,
                url.raw_query_string,
                body,
            )
            kw["headers"] = {**kw.get("headers", {}), **headers}
        async with self._session.request(method, url, **kw) as resp:
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

    async def chain_id(self) -> str:
        """The chain this node serves (public; it domain-separates signed reads)."""
        if self._chain_id is None:
            self._chain_id = str((await self.status())["chain_id"])
        return self._chain_id

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

    async def submit_many(
        self, raw_txs: Sequence[bytes], *, wait: bool = False, timeout_s: float = 30
    ) -> list[dict[str, Any]]:
        """Submit up to 1,000 signed transactions in one request (``POST /v1/txs``, a msgpack
        array): the node checks their signatures in one batch and admits them in order.

        Returns one result per transaction, in order: ``{"id": hex, "status": "pending"}``
        (with ``wait``: the status once committed or failed, ``pending`` if ``timeout_s``
        passed first) or ``{"index": i, "error": reason, "message": ...}`` for one the node
        refused (``mempool_full`` may be retried after a second). Raises :class:`ApiError`
        for the whole batch: 413 ``too_many_txs``/``oversized``, 503 ``verifier_busy``
        (nothing admitted; retry), 429 ``too_many_refused``. Example::

            raws = [sign_tx(key, chain_id=chain, type_="note.set", sender=key.account_id,
                            nonce=n, expires_at_ms=expires, body={"key": "k", "value": b"v"})
                    for n in range(first, first + 200)]
            results = await node.submit_many(raws, wait=True)
            failed = [r for r in results if r.get("status") != "committed"]
        """
        params = {"wait": "1", "timeout": str(timeout_s)} if wait else None
        doc: dict[str, Any] = await self._request(
            "POST",
            "/v1/txs",
            data=msgpack.packb(list(raw_txs), use_bin_type=True),
            params=params,
            headers={"Content-Type": "application/msgpack"},
        )
        results: list[dict[str, Any]] = doc["results"]
        return results

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

    async def get_signed(self, path: str, reader: SigningKey | None = None, **params: str) -> Any:
        """A confidential read, signed by ``reader`` (else this client's reader; unsigned if
        neither, which a node refuses with ``signature_required``)."""
        return await self._request(
            "GET", path, params=params or None, signed_by=reader or self.reader
        )
