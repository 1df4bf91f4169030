"""The SDK's nonce strategy end to end: TradingClient signs through the one Signer against a
node whose API is played by a real ledger (each submit executes one block)."""

from __future__ import annotations

from typing import Any

import pytest

from mdtp.node.ledger import notes
from mdtp.node.ledger.machine import account_nonce
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import decode_tx
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.trading import TradingClient, TxFailed, TxNotCommitted
from tests.ledger.helpers import CHAIN_ID, Chain


class LedgerNode(NodeClient):
    """The API routes the client's submit path uses, answered from a one-process chain."""

    def __init__(self) -> None:  # no HTTPS session: nothing goes over the network
        self.ledger = Chain()
        notes.register(self.ledger.ledger)
        self.block_at_ms: int | None = None  # the next block's time, if not the usual
        self.refuse_next: str | None = None  # the mempool turns the next submit away
        self.hold_next = False  # the next transaction stays pending
        self.held: list[bytes] = []
        self.nonces: list[int] = []

    async def status(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID}

    async def get(self, path: str, **params: str) -> Any:
        account = path.removeprefix("/v1/accounts/").removesuffix("/nonce")
        return {"nonce": account_nonce(Overlay(self.ledger.kv), account)}

    async def submit(
        self, raw_tx: bytes, *, wait: bool = False, timeout_s: float = 30
    ) -> dict[str, Any]:
        self.nonces.append(decode_tx(raw_tx, chain_id=CHAIN_ID).nonce)
        if self.refuse_next is not None:
            reason, self.refuse_next = self.refuse_next, None
            raise ApiError(503, reason, "the mempool is full")
        if self.hold_next:
            self.hold_next = False
            self.held.append(raw_tx)
            return {"status": "pending"}
        usual_ms = self.ledger.time_ms
        [result] = self.ledger.run(raw_tx, at_ms=self.block_at_ms)
        if self.block_at_ms is not None:  # one block out of time; the chain's clock goes on
            self.ledger.time_ms, self.block_at_ms = usual_ms, None
        doc = {"status": "committed" if result.ok else "failed", "height": self.ledger.height}
        return {**doc, "index": result.index, "reason": result.reason or None}


def note(value: str) -> dict[str, Any]:
    return {"key": "k", "value": value.encode()}


async def test_a_rule_refusal_consumes_the_nonce_and_the_next_one_follows_it() -> None:
    node = LedgerNode()
    key = node.ledger.user("consumer")  # the ledger takes notes from registered accounts
    t = TradingClient(node)
    registered_at = node.ledger.height
    with pytest.raises(TxFailed) as e:
        await t.submit(key, "note.set", {"key": ""})
    assert e.value.reason == "bad_body"
    done = await t.submit(key, "note.set", note("a"))
    assert node.nonces == [1, 2] and done.height == registered_at + 2


async def test_a_refusal_that_keeps_the_nonce_is_retried_with_the_same_nonce() -> None:
    node = LedgerNode()
    key = node.ledger.user("consumer")  # the ledger takes notes from registered accounts
    t = TradingClient(node)
    node.block_at_ms = 2**62  # past the transaction's lifetime
    with pytest.raises(TxFailed) as e:
        await t.submit(key, "note.set", note("a"))
    assert e.value.reason == "expired" and e.value.hint
    await t.submit(key, "note.set", note("a"))
    assert node.nonces == [1, 1]


async def test_a_transaction_the_mempool_turns_away_frees_its_nonce() -> None:
    node = LedgerNode()
    key = node.ledger.user("consumer")  # the ledger takes notes from registered accounts
    t = TradingClient(node)
    node.refuse_next = "mempool_full"
    with pytest.raises(ApiError):
        await t.submit(key, "note.set", note("a"))
    await t.submit(key, "note.set", note("a"))
    assert node.nonces == [1, 1]


async def test_a_transaction_still_pending_keeps_its_nonce_counted() -> None:
    node = LedgerNode()
    key = node.ledger.user("consumer")  # the ledger takes notes from registered accounts
    t = TradingClient(node)
    node.hold_next = True
    with pytest.raises(TxNotCommitted):
        await t.submit(key, "note.set", note("a"))
    node.hold_next = True
    with pytest.raises(TxNotCommitted):
        await t.submit(key, "note.set", note("b"))
    assert node.nonces == [1, 2]
    assert [r.ok for r in node.ledger.run(*node.held)] == [True, True]
    await t.submit(key, "note.set", note("c"))
    assert node.nonces == [1, 2, 3]
