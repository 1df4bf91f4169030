"""A client batch through the real driver (``Driver.submit_many``) on the simulator: one
signature batch, each transaction admitted in order with its own answer, all committed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mdtp.node.errors import MdtpError
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import Tx, TxError, sign_tx
from mdtp.node.testing.sim.world import CHAIN_ID, GENESIS_TIME_MS
from mdtp.node.txpool.mempool import MempoolFull
from mdtp.node.txpool.sigverify import BatchVerifier, VerifierBusy
from tests.chain.world import run, world


def note(key: SigningKey, nonce: int, chain: str = CHAIN_ID, value: bytes = b"v") -> bytes:
    """A signed ``note.set`` of ``key``'s account with ``nonce``."""
    return sign_tx(
        key,
        chain_id=chain,
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=GENESIS_TIME_MS + 10**9,
        body={"key": f"k{nonce}", "value": value},
    )


def test_a_batch_is_admitted_in_order_and_commits_everywhere(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        key = w.clients[0]

        def signed(nonce: int, chain: str = CHAIN_ID) -> bytes:
            return note(key, nonce, chain)

        good = [signed(n) for n in range(1, 41)]
        forged = good[0][:-1] + bytes([good[0][-1] ^ 1])
        batch = [*good[:20], forged, signed(21, chain="other"), *good[20:], good[0]]

        async def body() -> list[Tx | MdtpError]:
            for node in w.nodes:
                node.start()
            await asyncio.sleep(1.0)
            results = await w.nodes[1].driver.submit_many(batch)
            await asyncio.sleep(5.0)
            return results

        results = run(w, body)
        assert len(results) == len(batch)
        assert [r.nonce for r in results if isinstance(r, Tx)] == [*range(1, 41), 1]
        errors = {i: r.reason for i, r in enumerate(results) if not isinstance(r, Tx)}
        assert errors == {20: "bad_signature", 21: "wrong_chain"}
        assert all(w.committed_everywhere(r.id) for r in results if isinstance(r, Tx))
        assert w.checker.violations == []


class _Inline(Executor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_a_batch_beyond_the_verifiers_room_is_refused_whole() -> None:
    verifier = BatchVerifier(CHAIN_ID, 1024, queue_max=3, executor=_Inline())

    async def body() -> None:
        with pytest.raises(VerifierBusy):
            await verifier.check_batch([b"x"] * 4)
        results = await verifier.check_batch([b"x"] * 3)  # room again: checked, each refused
        assert [isinstance(r, TxError) for r in results] == [True] * 3

    asyncio.run(body())


def test_a_waiter_that_gives_up_is_forgotten(tmp_path: Path) -> None:
    with world(tmp_path) as w:

        async def body() -> None:
            w.nodes[0].start()
            admission = w.nodes[0].driver.admission
            kept = admission.wait_committed(b"\x01" * 32)
            given_up = admission.wait_committed(b"\x01" * 32)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(given_up, 0.1)
            assert admission._waiters == {b"\x01" * 32: [kept]}
            kept.cancel()
            await asyncio.sleep(0)
            assert admission._waiters == {}

        run(w, body)


@pytest.mark.parametrize("refusal", ["mempool_full", "nonce_gap"])
def test_gossip_refused_for_a_passing_reason_is_admitted_when_gossiped_again(
    tmp_path: Path, refusal: str
) -> None:
    """A peer's transaction refused for a reason that passes (no room during a burst, an
    earlier nonce not here yet) is not remembered as done: the peers' regular re-gossip
    brings it in later. Remembering it made a primary that missed one transaction of a
    sender unable to propose any later one of that sender, for good."""
    with world(tmp_path) as w:
        key = w.clients[0]

        def signed(nonce: int, chain: str = CHAIN_ID) -> bytes:
            return note(key, nonce, chain)

        async def body() -> None:
            w.nodes[0].start()
            admission = w.nodes[0].driver.admission
            mempool = w.nodes[0].driver.mempool
            first, second = signed(1), signed(2)
            if refusal == "mempool_full":
                real_add = mempool.add

                def full(tx: Tx) -> bool:
                    raise MempoolFull("no room")

                mempool.add = full  # type: ignore[method-assign]
                assert await admission.admit_gossip([first]) == (0, 0)
                mempool.add = real_add  # type: ignore[method-assign]
                assert await admission.admit_gossip([first]) == (0, 1)
                assert hashlib.sha256(first).digest() in mempool
            else:
                await admission.admit_gossip([signed(3)])  # far ahead: refused or kept
                assert await admission.admit_gossip([first, second]) == (0, 2)
                assert hashlib.sha256(second).digest() in mempool
            # once held, the same gossip is dropped unread
            assert await admission.admit_gossip([first]) == (0, 1)

        run(w, body)


def test_gossip_of_a_transaction_a_proposal_brought_first_is_not_checked_again(
    tmp_path: Path,
) -> None:
    """A backup checks a proposal's unseen transactions when the proposal comes; its gossip
    arriving afterwards is admitted on that check (decoded, not verified a second time), in
    gossip order, while an unseen transaction beside it is verified as ever."""
    with world(tmp_path) as w:
        key = w.clients[0]

        async def body() -> None:
            w.nodes[0].start()
            admission = w.nodes[0].driver.admission
            mempool = w.nodes[0].driver.mempool
            first, second = note(key, 1), note(key, 2)
            block = SimpleNamespace(payload=[first], tx_ids=[hashlib.sha256(first).digest()])
            assert await admission.preverify([block]) == 0  # type: ignore[list-item]
            checked: list[bytes] = []
            real = admission.verifier.check_many

            async def counting(raws: Sequence[bytes]) -> list[Tx | TxError]:
                checked.extend(raws)
                return await real(raws)

            admission.verifier.check_many = counting  # type: ignore[method-assign]
            assert await admission.admit_gossip([first, second]) == (0, 2)
            assert checked == [second]
            assert hashlib.sha256(first).digest() in mempool
            assert hashlib.sha256(second).digest() in mempool
            forged = second[:-1] + bytes([second[-1] ^ 1])
            assert await admission.admit_gossip([forged]) == (1, 0)  # unseen: verified

        run(w, body)


def test_check_certified_decodes_each_transaction_once_and_names_a_forged_signature() -> None:
    """What state transfer hands the ledger: every transaction decoded and its signature
    checked, in order; one larger than the mempool's bound is still decoded (a block's
    bounds apply), a forged one is a ``bad_signature`` error, garbage a ``malformed`` one."""
    key = SigningKey.generate()

    good, large = note(key, 1), note(key, 2, value=b"x" * 600)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    verifier = BatchVerifier(CHAIN_ID, max_tx_bytes=512)

    async def check() -> list[Tx | TxError]:
        try:
            return await verifier.check_certified([good, large, forged, b"\xc1"])
        finally:
            await verifier.close()

    out = asyncio.run(check())
    assert isinstance(out[0], Tx) and out[0].signed_bytes == good and out[0].nonce == 1
    assert isinstance(out[1], Tx) and out[1].nonce == 2
    assert isinstance(out[2], TxError) and out[2].reason == "bad_signature"
    assert isinstance(out[3], TxError) and out[3].reason == "malformed"
