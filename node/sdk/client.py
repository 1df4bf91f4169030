"""Python client SDK for a node's HTTPS API (used by the CLI, the demo, bench and tests).

A member's client presents the member's certificate (``cert``/``key``, or
:meth:`NodeClient.of_home` with a node home's ``node.pem``/``node.key.pem``); confidential
reads are signed by an account (``reader``, or per call), see
:mod:`mdtp.node.identity.signed_read`.

Answers that say "not now" (429, 503) are retried under the client's
:class:`~mdtp.node.sdk.retry.RetryPolicy` (``retry=``; on by default, ``NO_RETRY`` turns it
off), honouring ``Retry-After``, for the requests that are safe to repeat: reads, and
submissions of signed transactions (a transaction's id is the hash of its bytes, so a copy
cannot execute twice). A submission the node already committed (``400 duplicate``) is
answered with the transaction's status, as if it had been accepted now.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import aiohttp
import msgpack
from multidict import CIMultiDictProxy
from yarl import URL

from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import SigningKey
from mdtp.node.sdk.retry import (
    DEFAULT_RETRY,
    TRANSIENT_REASONS,
    RetryEvent,
    RetryPolicy,
    parse_retry_after,
)

# A node's answer to a transaction it has committed already (its status is then definitive).
KNOWN_REASON = "duplicate"


class ApiError(Exception):
    """A node's JSON error answer: HTTP ``status``, ``reason`` code, ``message``; and the
    ``Retry-After`` it asked for, in seconds, if any."""

    def __init__(
        self, status: int, reason: str, message: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s


def tx_id_of(raw_tx: bytes) -> str:
    """A signed transaction's id: SHA-256 of its signed bytes, hex."""
    return hashlib.sha256(raw_tx).hexdigest()


class NodeClient:
    """``async with NodeClient("127.0.0.1:26601", ca=Path("ca.pem"), cert=..., key=...) as c:``

    ``cert``/``key``: the member's client certificate (without one a node answers only
    ``/v1/status``, and that minimally). ``reader``: the account that signs confidential reads
    when a call names none. ``retry``: when to ask again after 429/503 or a lost connection
    (:data:`~mdtp.node.sdk.retry.DEFAULT_RETRY`; ``NO_RETRY`` to get every answer as it is);
    ``on_retry`` hears each decision to retry (for logs and tests).
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
        retry: RetryPolicy = DEFAULT_RETRY,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self.address = address
        self.base = f"https://{address}"
        self.retry = retry
        self.on_retry = on_retry
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
        idempotent: bool | None = None,
        **kw: Any,
    ) -> Any:
        """The answer's JSON; :class:`ApiError` for an error answer. ``idempotent`` (by
        default: GET and HEAD) requests are retried under :attr:`retry`."""
        doc, _ = await self._request_with_headers(
            method, path, params=params, signed_by=signed_by, idempotent=idempotent, **kw
        )
        return doc

    async def _request_with_headers(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        signed_by: SigningKey | None = None,
        idempotent: bool | None = None,
        **kw: Any,
    ) -> tuple[Any, CIMultiDictProxy[str]]:
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        policy = self.retry if idempotent else None
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, params, signed_by, dict(kw))
            except ApiError as e:
                if policy is None or not policy.retries_status(e.status):
                    raise
                wait = policy.next_wait(attempt, waited, e.retry_after_s)
                if wait is None:
                    raise
                event = RetryEvent(method, path, attempt, wait, e.status, e.reason, e.retry_after_s)
            except aiohttp.ClientConnectionError as e:
                # a TLS failure will fail again; a timeout already spent the caller's time
                if (
                    policy is None
                    or not policy.retry_connection_errors
                    or isinstance(e, aiohttp.ClientSSLError | TimeoutError)
                ):
                    raise
                wait = policy.next_wait(attempt, waited, None)
                if wait is None:
                    raise
                event = RetryEvent(method, path, attempt, wait, None, type(e).__name__, None)
            self._retrying(event)
            await asyncio.sleep(wait)
            waited += wait

    def _retrying(self, event: RetryEvent) -> None:
        if self.on_retry is not None:
            self.on_retry(event)

    async def _attempt(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        signed_by: SigningKey | None,
        kw: dict[str, Any],
    ) -> tuple[Any, CIMultiDictProxy[str]]:
        """One request; a signed read is signed afresh (a new nonce) for every attempt."""
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
                raise ApiError(
                    resp.status,
                    reason,
                    message,
                    retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
                )
            return doc, resp.headers

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
        """Submit one signed transaction (``POST /v1/tx``); its status: ``{"id", "status":
        "pending"}``, or with ``wait`` the status once it executed (``committed`` with
        ``height`` and ``index``, ``failed`` with ``reason``, ``dropped`` with ``reason``) or
        ``pending`` if ``timeout_s`` passed first. Retried under :attr:`retry`; one the node
        committed already is answered with its status. :class:`ApiError` if refused."""
        params = {"wait": "1", "timeout": str(timeout_s)} if wait else None
        try:
            doc: dict[str, Any] = await self._request(
                "POST",
                "/v1/tx",
                data=raw_tx,
                params=params,
                headers={"Content-Type": "application/octet-stream"},
                idempotent=True,
            )
        except ApiError as e:
            if e.status != 400 or e.reason != KNOWN_REASON or not self.retry.known_is_success:
                raise
            return await self.tx(tx_id_of(raw_tx))
        return doc

    async def submit_many(
        self, raw_txs: Sequence[bytes], *, wait: bool = False, timeout_s: float = 30
    ) -> list[dict[str, Any]]:
        """Submit up to 1,000 signed transactions in one request (``POST /v1/txs``, a msgpack
        array): the node checks their signatures in one batch and admits them in order.

        Returns one result per transaction, in order: ``{"id": hex, "status": "pending"}``
        (with ``wait``: the status once committed or failed, ``pending`` if ``timeout_s``
        passed first) or ``{"index": i, "error": reason, "message": ...}`` for one the node
        refused. Under :attr:`retry`, the transactions refused for a moment
        (``mempool_full``, ``verifier_busy``, ``no_quorum``) are sent again, in order, after
        the answer's ``Retry-After``, and one the node committed already (``duplicate``) gets
        its status. Raises :class:`ApiError` for the whole batch: 413
        ``too_many_txs``/``oversized``, 400 ``bad_request``, or a 503/429 still refused once
        the retries are spent. Example::

            raws = [sign_tx(key, chain_id=chain, type_="note.set", sender=key.account_id,
                            nonce=n, expires_at_ms=expires, body={"key": "k", "value": b"v"})
                    for n in range(first, first + 200)]
            results = await node.submit_many(raws, wait=True)
            failed = [r for r in results if r.get("status") != "committed"]
        """
        params = {"wait": "1", "timeout": str(timeout_s)} if wait else None
        results: list[dict[str, Any]] = [{} for _ in raw_txs]
        todo = list(range(len(raw_txs)))
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            doc, headers = await self._request_with_headers(
                "POST",
                "/v1/txs",
                data=msgpack.packb([raw_txs[i] for i in todo], use_bin_type=True),
                params=params,
                headers={"Content-Type": "application/msgpack"},
                idempotent=True,
            )
            again: list[int] = []
            for i, r in zip(todo, doc["results"], strict=True):
                if "error" not in r:
                    results[i] = r
                elif r["error"] == KNOWN_REASON and self.retry.known_is_success:
                    results[i] = await self.tx(tx_id_of(raw_txs[i]))
                else:
                    results[i] = {**r, "index": i}
                    if r["error"] in TRANSIENT_REASONS:
                        again.append(i)
            if not again:
                return results
            retry_after = parse_retry_after(headers.get("Retry-After"))
            wait_s = self.retry.next_wait(attempt, waited, retry_after)
            if wait_s is None:
                return results
            reason = str(results[again[0]]["error"])
            self._retrying(RetryEvent("POST", "/v1/txs", attempt, wait_s, 200, reason, retry_after))
            await asyncio.sleep(wait_s)
            waited += wait_s
            todo = again

    async def tx(self, tx_id: str) -> dict[str, Any]:
        """``GET /v1/tx/{id}``: ``pending``, ``committed`` (height, index), ``failed``
        (reason) or ``dropped`` (reason); :class:`ApiError` 404 if the node does not know
        it."""
        doc: dict[str, Any] = await self._request("GET", f"/v1/tx/{tx_id}")
        return doc

    async def committed_nonce(self, account_id: str) -> int:
        """The last nonce the committed state consumed for ``account_id`` (0 if none): a
        :class:`mdtp.node.ledger.signer.NonceSource`, so ``Signer(chain_id, node)`` signs
        with each sender's next nonce."""
        doc = await self._request("GET", f"/v1/accounts/{account_id}/nonce")
        return int(doc["nonce"])

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

    async def get(self, /, path: str, **params: str) -> Any:
        return await self._request("GET", path, params=params or None)

    async def get_signed(
        self, /, path: str, reader: SigningKey | None = None, **params: str
    ) -> Any:
        """A confidential read, signed by ``reader`` (else this client's reader; unsigned if
        neither, which a node refuses with ``signature_required``)."""
        return await self._request(
            "GET", path, params=params or None, signed_by=reader or self.reader
        )
