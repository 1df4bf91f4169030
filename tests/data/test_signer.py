"""The node account's signer: it counts nonces ahead of the committed state while its own
transactions are pending, and starts again from the committed nonce when one is lost."""

from __future__ import annotations

import asyncio

from mdtp.node.data.signer import NodeSigner
from mdtp.node.identity.keys import SigningKey
from tests.data.fakes import CHAIN, FakeChain


def signer_on(chain: FakeChain) -> NodeSigner:
    return NodeSigner(SigningKey.generate(), CHAIN, chain, chain, chain)


def nonces(chain: FakeChain) -> list[int]:
    return [tx.nonce for tx in chain.submitted]


def test_signer_counts_ahead_while_its_transactions_are_pending() -> None:
    chain = FakeChain()
    signer = signer_on(chain)

    async def run() -> None:
        for _ in range(3):
            await signer.submit("note.set", {"key": "k", "value": "v"})

    asyncio.run(run())
    assert nonces(chain) == [1, 2, 3]
    assert all(tx.sender == signer.account for tx in chain.submitted)


def test_signer_continues_after_the_committed_nonce() -> None:
    chain = FakeChain()
    signer = signer_on(chain)

    async def run() -> None:
        await signer.submit("note.set", {"key": "k", "value": "v"})
        await signer.submit("note.set", {"key": "k", "value": "v"})
        chain.commit(chain.submitted[0])
        await signer.submit("note.set", {"key": "k", "value": "v"})

    asyncio.run(run())
    assert nonces(chain) == [1, 2, 3]


def test_signer_restarts_from_the_committed_nonce_when_a_pending_tx_is_lost() -> None:
    chain = FakeChain()
    signer = signer_on(chain)

    async def run() -> None:
        await signer.submit("note.set", {"key": "k", "value": "v"})
        await signer.submit("note.set", {"key": "k", "value": "v"})
        chain.commit(chain.submitted[0])
        chain.pool.discard(chain.submitted[1].id)  # evicted, never committed
        await signer.submit("note.set", {"key": "k", "value": "v"})

    asyncio.run(run())
    assert nonces(chain) == [1, 2, 2]
