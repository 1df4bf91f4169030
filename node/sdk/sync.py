"""The SDK without ``async``: :class:`SyncNodeClient` and :class:`SyncTradingClient`.

They run the asynchronous clients on a private event loop in a background thread and wait
for each call, so a script, a notebook or a threaded server calls them like any blocking
library::

    with SyncNodeClient.of_home("127.0.0.1:26601", Path("home")) as node:
        trading = SyncTradingClient(node)
        print(node.status()["height"])
        trading.send(key, NoteSet("greeting", b"hello"))

Every method has the signature of its asynchronous twin (:class:`NodeClient`,
:class:`TradingClient`), returns what it returns and raises what it raises. One client's
calls may come from several threads; they run one at a time on its loop in the order they
came. ``close()`` (or leaving the ``with``) closes the connections and stops the thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar

from mdtp.node.identity.keys import SigningKey
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.retry import DEFAULT_RETRY, RetryEvent, RetryPolicy
from mdtp.node.sdk.trading import TradingClient

__all__ = ["SyncNodeClient", "SyncTradingClient"]

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")


class _LoopThread:
    """An event loop running in a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="mdtp-sdk-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync client was called from its own event loop")
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
        future: Future[R] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_SyncBase[A], P], R]:
    """A sync twin's method: call ``method`` on the twin's async client and wait for it."""

    def call(self: _SyncBase[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.run(method(self._async, *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


class _SyncBase(Generic[A]):
    _loop: _LoopThread
    _async: A


class SyncNodeClient(_SyncBase[NodeClient]):
    """:class:`NodeClient`, blocking. Takes the same arguments; use it as a context manager
    (or call :meth:`close`)."""

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
        def make() -> NodeClient:
            return NodeClient(
                address,
                ca=ca,
                cert=cert,
                key=key,
                timeout_s=timeout_s,
                connections=connections,
                reader=reader,
                retry=retry,
                on_retry=on_retry,
            )

        self._loop = _LoopThread()
        try:
            self._async = self._loop.run(_opened(make))
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def of_home(cls, address: str, home: Path, **kw: Any) -> Self:
        """A client presenting the certificate of the member whose node home is ``home``."""
        return cls(
            address, ca=home / "ca.pem", cert=home / "node.pem", key=home / "node.key.pem", **kw
        )

    @property
    def async_client(self) -> NodeClient:
        """The asynchronous client this one drives (for use on its loop only)."""
        return self._async

    @property
    def reader(self) -> SigningKey | None:
        return self._async.reader

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._async.close())
        self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    status = _blocking(NodeClient.status)
    chain_id = _blocking(NodeClient.chain_id)
    submit = _blocking(NodeClient.submit)
    submit_many = _blocking(NodeClient.submit_many)
    tx = _blocking(NodeClient.tx)
    committed_nonce = _blocking(NodeClient.committed_nonce)
    block = _blocking(NodeClient.block)
    chain = _blocking(NodeClient.chain)
    get = _blocking(NodeClient.get)
    get_signed = _blocking(NodeClient.get_signed)


async def _opened(make: Callable[[], NodeClient]) -> NodeClient:
    """A node client made and opened on the loop that will run it (its session binds it)."""
    node = make()
    await node.__aenter__()
    return node


class SyncTradingClient(_SyncBase[TradingClient]):
    """:class:`TradingClient`, blocking, on a :class:`SyncNodeClient` (whose loop it uses;
    closing the node client ends both)."""

    def __init__(
        self,
        node: SyncNodeClient,
        *,
        chain_id: str | None = None,
        wait_s: float | None = None,
        reader: SigningKey | None = None,
    ) -> None:
        self.node = node
        self._loop = node._loop
        extra: dict[str, Any] = {} if wait_s is None else {"wait_s": wait_s}
        self._async = TradingClient(node.async_client, chain_id=chain_id, reader=reader, **extra)

    @property
    def async_client(self) -> TradingClient:
        return self._async

    chain_id = _blocking(TradingClient.chain_id)
    send = _blocking(TradingClient.send)
    submit = _blocking(TradingClient.submit)
    register_account = _blocking(TradingClient.register_account)
    rotate_key = _blocking(TradingClient.rotate_key)
    revoke_account = _blocking(TradingClient.revoke_account)
    publish_dataset = _blocking(TradingClient.publish_dataset)
    update_dataset = _blocking(TradingClient.update_dataset)
    withdraw_dataset = _blocking(TradingClient.withdraw_dataset)
    offer = _blocking(TradingClient.offer)
    counter = _blocking(TradingClient.counter)
    sign_contract = _blocking(TradingClient.sign_contract)
    review = _blocking(TradingClient.review)
    delete_contract = _blocking(TradingClient.delete_contract)
    terminate_contract = _blocking(TradingClient.terminate_contract)
    access_grant = _blocking(TradingClient.access_grant)
    delivery_receipt = _blocking(TradingClient.delivery_receipt)
    delivery_confirm = _blocking(TradingClient.delivery_confirm)
    disposal_attest = _blocking(TradingClient.disposal_attest)
    confirm_payment = _blocking(TradingClient.confirm_payment)
    pay_invoice = _blocking(TradingClient.pay_invoice)
    acknowledge_payment = _blocking(TradingClient.acknowledge_payment)
    open_dispute = _blocking(TradingClient.open_dispute)
    answer_dispute = _blocking(TradingClient.answer_dispute)
    resolve_dispute = _blocking(TradingClient.resolve_dispute)
    invoices = _blocking(TradingClient.invoices)
    invoice = _blocking(TradingClient.invoice)
    overdue_invoices = _blocking(TradingClient.overdue_invoices)
    disputes = _blocking(TradingClient.disputes)
    dispute = _blocking(TradingClient.dispute)
    supplier_record = _blocking(TradingClient.supplier_record)
    nonce = _blocking(TradingClient.nonce)
    committed_nonce = _blocking(TradingClient.committed_nonce)
    account = _blocking(TradingClient.account)
    search_datasets = _blocking(TradingClient.search_datasets)
    dataset = _blocking(TradingClient.dataset)
    catalog_entry = _blocking(TradingClient.catalog_entry)
    stamp_capture = _blocking(TradingClient.stamp_capture)
    add_provenance = _blocking(TradingClient.add_provenance)
    catalog_dcat = _blocking(TradingClient.catalog_dcat)
    dataset_dcat = _blocking(TradingClient.dataset_dcat)
    contract_odrl = _blocking(TradingClient.contract_odrl)
    check_odrl = _blocking(TradingClient.check_odrl)
    contract = _blocking(TradingClient.contract)
    contracts = _blocking(TradingClient.contracts)
    contract_receipts = _blocking(TradingClient.contract_receipts)
    contract_compute = _blocking(TradingClient.contract_compute)
    receipt = _blocking(TradingClient.receipt)
    overdue_disposals = _blocking(TradingClient.overdue_disposals)
    audit = _blocking(TradingClient.audit)
    audit_trail = _blocking(TradingClient.audit_trail)
    audit_export = _blocking(TradingClient.audit_export)
    reasons = _blocking(TradingClient.reasons)
