"""The one signer: each sender's next nonce from the committed state and the nonces in flight,
released when a transaction leaves without consuming its nonce; run against a real ledger."""

from __future__ import annotations

import asyncio

from mdtp.node.ledger import notes
from mdtp.node.ledger.machine import account_nonce
from mdtp.node.ledger.signer import NONCE_KEPT, TX_LIFETIME_MS, Signer
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import decode_tx
from tests.ledger.helpers import CHAIN_ID, T0, Chain
from tests.ledger.helpers import NONCE_KEPT as LEDGER_NONCE_KEPT


class LocalNonces:
    """A NonceSource backed by the chain's committed state, as the node's own signer uses."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.lookups = 0

    async def committed_nonce(self, account_id: str) -> int:
        self.lookups += 1
        await asyncio.sleep(0)  # a real source awaits I/O: let concurrent callers interleave
        return account_nonce(Overlay(self.chain.kv), account_id)


def notes_chain() -> Chain:
    """The trading chain plus ``note.set``, as the daemon's ledger has it (whose senders are
    registered accounts: ``chain.user(...)``)."""
    chain = Chain()
    notes.register(chain.ledger)
    return chain


def note(value: str) -> dict[str, object]:
    return {"key": "k", "value": value.encode()}


def test_nonce_kept_names_the_ledgers_common_check_refusals() -> None:
    assert NONCE_KEPT == LEDGER_NONCE_KEPT


async def test_nonces_count_ahead_while_in_flight_and_every_one_executes() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    signer = Signer(CHAIN_ID, LocalNonces(chain), clock_ms=lambda: T0)
    first = await signer.sign(key, "note.set", note("a"))
    second = await signer.sign(key, "note.set", note("b"))
    assert (first.nonce, second.nonce) == (1, 2)
    results = chain.run(first.raw, second.raw)
    assert [r.ok for r in results] == [True, True]
    assert [r.tx_id for r in results] == [first.id, second.id]
    third = await signer.sign(key, "note.set", note("c"))
    assert third.nonce == 3 and chain.run(third.raw)[0].ok


async def test_signed_bytes_carry_type_sender_chain_and_the_lifetime() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    signer = Signer(CHAIN_ID, LocalNonces(chain), clock_ms=lambda: T0)
    signed = await signer.sign(key, "note.set", note("a"))
    tx = decode_tx(signed.raw, chain_id=CHAIN_ID)
    assert (tx.type, tx.sender, tx.nonce, tx.id) == ("note.set", key.account_id, 1, signed.id)
    assert tx.expires_at_ms == signed.expires_at_ms == T0 + TX_LIFETIME_MS
    assert tx.public_key == key.public_key and tx.body == note("a")


async def test_a_sender_other_than_the_key_signs_with_that_senders_nonce() -> None:
    chain = notes_chain()
    admin = chain.admins["m1"]
    user = chain.user("supplier")
    signer = Signer(CHAIN_ID, LocalNonces(chain))
    on_behalf = await signer.sign(admin, "note.set", note("x"), sender=user.account_id)
    assert on_behalf.sender == user.account_id
    assert on_behalf.nonce == account_nonce(Overlay(chain.kv), user.account_id) + 1


async def test_a_committed_nonce_ahead_of_the_count_wins() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    ours = Signer(CHAIN_ID, LocalNonces(chain))
    other_client = Signer(CHAIN_ID, LocalNonces(chain))
    assert chain.run((await ours.sign(key, "note.set", note("a"))).raw)[0].ok
    for value in ("b", "c"):
        assert chain.run((await other_client.sign(key, "note.set", note(value))).raw)[0].ok
    assert (await ours.sign(key, "note.set", note("d"))).nonce == 4


async def test_a_refusal_that_keeps_the_nonce_makes_the_next_nonce_reuse_it() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    clock = [T0]
    signer = Signer(CHAIN_ID, LocalNonces(chain), lifetime_ms=1000, clock_ms=lambda: clock[0])
    stale = await signer.sign(key, "note.set", note("a"))
    behind = await signer.sign(key, "note.set", note("b"))
    results = chain.run(stale.raw, behind.raw, at_ms=T0 + 5000)
    assert [r.reason for r in results] == ["expired", "expired"]
    signer.refused(stale, results[0].reason)
    clock[0] = chain.time_ms
    retry = await signer.sign(key, "note.set", note("a"))
    assert retry.nonce == stale.nonce == 1
    assert chain.run(retry.raw)[0].ok


async def test_a_refusal_by_a_rule_consumes_the_nonce_and_the_count_goes_on() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    signer = Signer(CHAIN_ID, LocalNonces(chain))
    bad = await signer.sign(key, "note.set", {"key": ""})
    pending = await signer.sign(key, "note.set", note("b"))
    [result] = chain.run(bad.raw)
    assert result.reason == "bad_body"
    signer.refused(bad, result.reason)
    after = await signer.sign(key, "note.set", note("c"))
    assert after.nonce == 3
    assert [r.ok for r in chain.run(pending.raw, after.raw)] == [True, True]


async def test_release_after_a_mempool_rejection_frees_the_nonce() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    signer = Signer(CHAIN_ID, LocalNonces(chain))
    turned_away = await signer.sign(key, "note.set", note("a"))
    signer.release(turned_away)
    assert (await signer.sign(key, "note.set", note("a"))).nonce == turned_away.nonce


async def test_concurrent_signing_for_one_sender_never_repeats_a_nonce() -> None:
    chain = notes_chain()
    key = chain.user("consumer")
    signer = Signer(CHAIN_ID, LocalNonces(chain))
    signed = await asyncio.gather(*(signer.sign(key, "note.set", note(str(i))) for i in range(8)))
    assert sorted(s.nonce for s in signed) == list(range(1, 9))
    assert all(r.ok for r in chain.run(*(s.raw for s in sorted(signed, key=lambda s: s.nonce))))
