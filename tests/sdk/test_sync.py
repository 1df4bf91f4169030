"""The blocking clients: the same methods as the asynchronous ones, run on a private event
loop in a thread of their own, against a real HTTPS server served from another thread."""

from __future__ import annotations

import hashlib
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.bodies import NoteSet
from mdtp.node.ledger.tx import decode_tx
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.retry import RetryEvent, RetryPolicy
from mdtp.node.sdk.sync import SyncNodeClient, SyncTradingClient
from mdtp.node.sdk.trading import Committed, TradingClient, TxDropped, TxFailed
from tests.sdk.fake_node import FakeNode, Seen, Tls, serving_in_thread

CHAIN = "fake-chain"


def public_coroutines(cls: type) -> set[str]:
    return {
        name
        for name, f in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def test_every_async_method_has_a_blocking_twin_with_its_signature() -> None:
    for async_cls, sync_cls in ((NodeClient, SyncNodeClient), (TradingClient, SyncTradingClient)):
        missing = public_coroutines(async_cls) - set(dir(sync_cls))
        missing -= {"signer"}  # the signer belongs to the async client's loop
        assert missing == set(), (sync_cls.__name__, missing)
        for name in public_coroutines(async_cls) & set(dir(sync_cls)):
            twin = getattr(sync_cls, name)
            assert inspect.signature(twin) == inspect.signature(getattr(async_cls, name)), name
    # the blocking node client is made with exactly the asynchronous one's arguments
    assert inspect.signature(SyncNodeClient.__init__).parameters.keys() == (
        inspect.signature(NodeClient.__init__).parameters.keys()
    )


def committing() -> tuple[FakeNode, list[bytes]]:
    """A fake node that commits every transaction it is sent, at heights 1, 2, ..."""
    fake, raws = FakeNode(), []

    def commit(seen: Seen) -> tuple[int, object, dict[str, str]]:
        raws.append(seen.body)
        doc = {
            "id": hashlib.sha256(seen.body).hexdigest(),
            "status": "committed",
            "height": len(raws),
            "index": 0,
            "reason": None,
        }
        return 200, doc, {}

    fake.default[("POST", "/v1/tx")] = commit
    return fake, raws


def nonce_route(fake: FakeNode, key: SigningKey, nonce: int) -> None:
    fake.default[("GET", f"/v1/accounts/{key.account_id}/nonce")] = lambda s: (
        200,
        {"as_of_height": 0, "account": key.account_id, "nonce": nonce},
        {},
    )


def test_a_blocking_client_submits_and_waits_and_closes_its_thread(tls: Tls) -> None:
    fake, raws = committing()
    key = SigningKey.generate()
    nonce_route(fake, key, 4)
    before = threading.active_count()
    with serving_in_thread(fake, tls.ca.parent) as address:
        with SyncNodeClient(address, ca=tls.ca, cert=tls.cert, key=tls.key) as node:
            assert node.chain_id() == CHAIN
            trading = SyncTradingClient(node)
            done = trading.send(key, NoteSet("greeting", b"hello"))
            assert isinstance(done, Committed) and done.height == 1
            tx = decode_tx(raws[0], chain_id=CHAIN)
            assert (tx.type, tx.nonce, tx.body) == (
                "note.set",
                5,
                {"key": "greeting", "value": b"hello"},
            )
            assert node.submit(raws[0], wait=True)["status"] == "committed"
            during = threading.active_count()
        assert threading.active_count() < during
        with pytest.raises(RuntimeError, match="closed"):
            node.status()
    assert threading.active_count() <= before + 1  # the server's thread is gone as well


def test_calls_from_many_threads_each_get_their_answer(tls: Tls) -> None:
    fake, _ = committing()
    with (
        serving_in_thread(fake, tls.ca.parent) as address,
        SyncNodeClient.of_home(address, _home(tls)) as node,
        ThreadPoolExecutor(8) as pool,
    ):
        raws = [msgpack.packb(i) for i in range(32)]
        results = list(pool.map(lambda raw: node.submit(raw)["id"], raws))
    assert results == [hashlib.sha256(r).hexdigest() for r in raws]


def _home(tls: Tls) -> Path:
    """``of_home`` reads ca.pem, node.pem and node.key.pem: the TLS directory is one."""
    return tls.ca.parent


def test_refusals_raise_what_the_async_clients_raise(tls: Tls) -> None:
    fake = FakeNode()
    key = SigningKey.generate()
    nonce_route(fake, key, 0)
    failed = {"status": "failed", "reason": "bad_body", "height": 3, "index": 0, "id": "x"}
    dropped = {"status": "dropped", "reason": "expired", "id": "y"}
    fake.answer("POST", "/v1/tx", (200, failed, {}), (200, dropped, {}))
    fake.answer("POST", "/v1/tx", (503, {"error": "no_quorum", "message": "m"}, {}))
    events: list[RetryEvent] = []
    with (
        serving_in_thread(fake, tls.ca.parent) as address,
        SyncNodeClient.of_home(
            address, _home(tls), retry=RetryPolicy(max_attempts=1), on_retry=events.append
        ) as node,
    ):
        trading = SyncTradingClient(node, chain_id=CHAIN)
        with pytest.raises(TxFailed) as e:
            trading.send(key, NoteSet("", b""))
        assert (e.value.reason, e.value.height) == ("bad_body", 3)
        with pytest.raises(TxDropped) as d:
            trading.send(key, NoteSet("k", b""))
        assert d.value.reason == "expired"
        with pytest.raises(ApiError) as a:
            trading.send(key, NoteSet("k", b""))
        assert (a.value.status, a.value.reason) == (503, "no_quorum")
    nonces = [decode_tx(s.body, chain_id=CHAIN).nonce for s in fake.requests("POST", "/v1/tx")]
    # a rule's refusal consumes the nonce; a dropped or turned-away transaction frees it
    assert nonces == [1, 2, 1]
    assert events == []
