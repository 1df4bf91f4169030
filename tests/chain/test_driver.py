"""The driver's parts, run as the daemon runs them (real driver, executor, state sync,
admission, ledger and LevelDB), on a simulated network under virtual time."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mdtp.consensus.block import Block, BlockHeader, payload_hash
from mdtp.consensus.messages import (
    PrePrepare,
    StateTransferRequest,
    encode_message,
    sign_message,
)
from mdtp.node.chain.driver import Driver, DriverLimits
from mdtp.node.chain.statesync import StateSync
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import Tx, TxError, sign_tx
from mdtp.node.testing.sim.world import SimWorld
from mdtp.storage.errors import InconsistentStore
from tests.chain.world import load, run, world


def test_a_cluster_commits_every_client_transaction(tmp_path: Path) -> None:
    with world(tmp_path) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await load(w, 3.0)
            await asyncio.sleep(3.0)

        run(w, body)
        heights = {n.height for n in w.nodes}
        assert len(heights) == 1 and heights.pop() > 0
        assert w.submitted and all(w.committed_everywhere(s.tx_id) for s in w.submitted)
        assert w.checker.violations == []


def test_an_executed_height_delivered_again_is_skipped_and_a_gap_is_refused(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:

        async def body() -> tuple[bool, int]:
            for node in w.nodes:
                node.start()
            await load(w, 2.0)
            await asyncio.sleep(2.0)
            executor = w.nodes[0].driver.executor
            height = executor.height
            block, cert = executor.block_and_certificate(height) or (None, None)
            assert block is not None and cert is not None
            again = await executor.deliver(block, cert)
            later = dataclasses.replace(
                block, header=dataclasses.replace(block.header, height=height + 5)
            )
            with pytest.raises(InconsistentStore):
                await executor.deliver(later, cert)
            return again, executor.height - height

        again, moved = run(w, body)
        assert again is False and moved == 0
        assert w.nodes[0].failed_tasks == []


def count_payload_checks(driver: Driver) -> list[int]:
    """From now on, the size of every batch of transaction signatures ``driver`` checks."""
    checked: list[int] = []
    check_many = driver.verifier.check_many

    async def counting(raws: Sequence[bytes]) -> list[Tx | TxError]:
        checked.append(len(raws))
        return await check_many(raws)

    driver.verifier.check_many = counting  # type: ignore[method-assign]
    return checked


def test_a_forged_far_future_proposal_changes_nothing(tmp_path: Path) -> None:
    """Sender and signature are checked before any work: a PRE-PREPARE for height 10^9 that
    a member did not sign is dropped unread, and even one a (Byzantine) member signed never
    makes the node 'catch up' — a height counts only when certified or beaconed by f+1."""
    with world(tmp_path) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await load(w, 1.0)
            await asyncio.sleep(1.0)
            victim = w.nodes[1].driver
            # a payload of transactions nobody has seen: checking them would be real work
            unseen = tuple(
                sign_tx(
                    SigningKey.generate(),
                    chain_id="sim",
                    type_="note.set",
                    sender="x",
                    nonce=1,
                    expires_at_ms=2**40,
                    body={"i": i},
                )
                for i in range(50)
            )
            header = BlockHeader("sim", 10**9, bytes(32), bytes(32), 1, "n0", payload_hash(unseen))
            far = Block(header, unseen)
            intruder = SigningKey.generate()
            forged = [
                PrePrepare(0, 10**9, far, "n0", b"\x00" * 64),  # bad signature
                sign_message(PrePrepare(0, 10**9, far, "n0"), "sim", intruder.sign),  # wrong key
                sign_message(PrePrepare(0, 10**9, far, "intruder"), "sim", intruder.sign),
            ]
            checked = count_payload_checks(victim)
            for msg in forged:
                victim.on_consensus_frame("n0", encode_message(msg))
            await asyncio.sleep(0.5)
            assert checked == [], "payload work was done for a message no member signed"
            # one a Byzantine member really signed: valid, but outside the window, so its
            # payload is not worth checking, and only one member's claim of a height
            member_signed = sign_message(PrePrepare(0, 10**9, far, "n0"), "sim", w.keys["n0"].sign)
            victim.on_consensus_frame("n0", encode_message(member_signed))
            await asyncio.sleep(0.5)
            assert checked == []
            assert victim.highest_seen < 10**9
            assert not victim.lagging

        run(w, body)
        driver = w.nodes[1].driver
        dropped = {
            reason: driver.metrics.frames_dropped.labels(reason)._value.get()
            for reason in ("bad_signature", "not_a_member")
        }
        assert dropped == {"bad_signature": 2, "not_a_member": 1}


def test_a_primary_proposing_bad_signatures_gets_its_payload_checked_once_per_view(
    tmp_path: Path,
) -> None:
    """Signed proposals full of transactions with bad signatures would make every backup
    verify a whole block per frame. Only a proposal the core could accept is checked: from
    the primary of its view, inside the window, one per (view, height); after one with a
    bad signature, none of that primary's proposals in that view."""
    with world(tmp_path) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await load(w, 1.0)
            await asyncio.sleep(1.0)
            victim = w.nodes[1].driver
            checked = count_payload_checks(victim)
            key = SigningKey.generate()
            junk = tuple(
                sign_tx(
                    key,
                    chain_id="sim",
                    type_="note.set",
                    sender=key.account_id,
                    nonce=1,
                    expires_at_ms=2**40,
                    body={"i": i},
                )[:-1]
                + b"\x00"
                for i in range(40)
            )
            view = victim.replica.view
            primary = victim.config.primary(view)
            other = next(m for m in w.members if m not in (primary, "n1"))
            h = victim.height + 1

            def proposal(height: int, sender: str, stamp: int) -> bytes:
                header = BlockHeader(
                    "sim", height, bytes(32), bytes(32), stamp, sender, payload_hash(junk)
                )
                pp = PrePrepare(view, height, Block(header, junk), sender)
                return encode_message(sign_message(pp, "sim", w.keys[sender].sign))

            victim.on_consensus_frame(other, proposal(h, other, 1))  # not its view
            await asyncio.sleep(0.2)
            assert checked == []
            for i in range(5):  # the primary, five heights: checked for the first only
                victim.on_consensus_frame(primary, proposal(h + i, primary, 2 + i))
                await asyncio.sleep(0.2)
            assert checked == [len(junk)]

        run(w, body)


def test_a_peer_gossiping_bad_signatures_is_shut_out_and_others_are_heard(
    tmp_path: Path,
) -> None:
    """Gossip is verified one batch at a time, fairly per peer; an honest member gossips
    only transactions it verified, so one with a bad signature shuts the sender's gossip
    out for a while (counted), and the other members' gossip is still admitted."""
    with world(tmp_path) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await asyncio.sleep(1.0)
            victim = w.nodes[1].driver
            key = w.clients[0]

            def tx(nonce: int, bad: bool = False) -> bytes:
                raw = sign_tx(
                    key,
                    chain_id="sim",
                    type_="note.set",
                    sender=key.account_id,
                    nonce=nonce,
                    expires_at_ms=2**42,
                    body={"key": "k", "value": b"v"},
                )
                return raw[:-1] + bytes([raw[-1] ^ 1]) if bad else raw

            victim.on_gossip_frame("n0", [tx(n, bad=True) for n in range(1, 50)])
            await asyncio.sleep(0.5)
            victim.on_gossip_frame("n0", [tx(1)])
            await asyncio.sleep(0.5)
            assert len(victim.mempool) == 0  # n0 is not listened to any more
            victim.on_gossip_frame("n2", [tx(1)])
            await asyncio.sleep(0.5)
            assert len(victim.mempool) == 1

        run(w, body)
        driver = w.nodes[1].driver
        dropped = {
            reason: driver.metrics.frames_dropped.labels(reason)._value.get()
            for reason in ("bad_gossip_transaction", "peer_shut_out")
        }
        assert dropped == {"bad_gossip_transaction": 1, "peer_shut_out": 1}


def _drip(sync: StateSync, w: SimWorld) -> None:
    """A Byzantine state-transfer server: one valid block per request, just before the
    requester's timeout."""
    serve = sync.serve

    def slow_serve(request: StateTransferRequest) -> bool:
        one = dataclasses.replace(request, to_height=request.from_height)
        w.loop.call_later(sync.limits.request_timeout_s * 0.9, serve, one)
        return True

    sync.serve = slow_serve  # type: ignore[method-assign]


def test_a_restarted_node_catches_up_despite_a_slow_drip_peer_and_then_that_peer_goes_silent(
    tmp_path: Path,
) -> None:
    with world(tmp_path, seed=3) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            lagger, dripper = w.nodes[3], w.nodes[0]
            await load(w, 1.0)
            lagger.crash()
            await load(w, 8.0, every_s=0.05)
            _drip(dripper.driver.sync, w)
            lagger.restart()
            for _ in range(300):
                await asyncio.sleep(0.5)
                if lagger.height >= w.nodes[1].height and w.nodes[1].height > 0:
                    break
            assert lagger.height >= w.nodes[1].height
            # the drip peer now goes silent: the three others keep committing
            dripper.crash()
            before = w.nodes[1].height
            await load(w, 6.0)
            await asyncio.sleep(6.0)
            assert min(n.height for n in w.nodes[1:]) > before

        run(w, body)
        assert w.checker.violations == []
        assert w.nodes[3].failed_tasks == []


def test_a_slow_disk_never_kills_the_consensus_task(tmp_path: Path) -> None:
    """State transfer and the core's deliveries share one path, so a commit batch that takes
    30 ms while a beacon starts a catch-up cannot deliver a height twice."""
    from mdtp.node.testing.sim.world import DiskFaults

    with world(tmp_path, seed=5) as w:

        async def body() -> None:
            for node in w.nodes:
                node.disk.faults = DiskFaults(latency_ms_max=5, slow=0.5, slow_ms=30)
                node.start()
            slow = w.nodes[2]
            for _ in range(3):
                await load(w, 2.0, every_s=0.02)
                slow.crash()
                await load(w, 2.0, every_s=0.02)
                slow.restart()
            await asyncio.sleep(10.0)

        run(w, body)
        assert all(n.failed_tasks == [] for n in w.nodes)
        assert len({n.height for n in w.nodes}) == 1
        assert w.checker.violations == []


def test_a_censored_transaction_trips_the_request_timer_and_the_metrics_show_it(
    tmp_path: Path,
) -> None:
    # rotation would replace the censor before its request timers ran out
    limits = DriverLimits(block_txs_max=64, rotation_ms=0)
    with world(tmp_path, byzantine={"n0": "censor-client"}, limits=limits) as w:

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await load(w, 45.0, every_s=0.2)
            await asyncio.sleep(5.0)

        run(w, body)
        registry = w.nodes[1].driver.metrics.registry
        suspicions = registry.get_sample_value(
            "mdtp_consensus_suspicions_total", {"cause": "request"}
        )
        assert suspicions is not None and suspicions >= 1
        assert registry.get_sample_value("mdtp_consensus_requests_tracked") is not None
        assert w.nodes[1].driver.replica.view >= 1
        assert all(w.committed_everywhere(s.tx_id) for s in w.submitted)


@pytest.mark.parametrize(("slow", "cause"), [("n0", "rotation"), ("n1", "throughput")])
def test_a_slow_first_primary_loses_its_turn_and_a_later_one_is_judged_by_throughput(
    tmp_path: Path, slow: str, cause: str
) -> None:
    """Aardvark's slow primary proposes just under the progress timeout, so PBFT's timers
    never fire. As the first primary (n0) there is nothing to compare it with: rotation
    ends its turn, and once f+1 primaries are measured the views stay. As a later primary
    (n1) it is suspected for throughput, against the honest view before it, in about the
    grace period rather than a rotation."""
    with world(tmp_path, byzantine={slow: "slow-primary"}) as w:
        views: list[int] = []

        async def body() -> None:
            for node in w.nodes:
                node.start()
            for _ in range(30):
                await load(w, 1.0, every_s=0.01)
                views.append(w.nodes[2].driver.replica.view)

        run(w, body)
        causes = w.nodes[2].driver.replica.suspicions
        assert causes.get(cause, 0) >= 1, (slow, causes, views)
        slow_turns = sum(1 for v in views if w.members[v % w.n] == slow)
        assert slow_turns <= 6, (slow, views)  # seconds the slow one led, of 30
        assert views[-10:] == [views[-1]] * 10, views  # settled on an honest primary
        assert w.checker.violations == []


def test_a_transaction_a_lagging_node_accepted_ends_dropped_with_its_reason(
    tmp_path: Path,
) -> None:
    """A node restarted behind takes a transaction whose nonce the chain has already used
    (its own state is old): once it catches up, the transaction is dropped, its waiters
    hear it, and the node says why (``nonce_used``) instead of forgetting it."""
    with world(tmp_path) as w:
        key = w.clients[0]

        def tx(nonce: int, value: bytes) -> bytes:
            return sign_tx(
                key,
                chain_id="sim",
                type_="note.set",
                sender=key.account_id,
                nonce=nonce,
                expires_at_ms=2**42,
                body={"key": "k", "value": value},
            )

        async def body() -> None:
            for node in w.nodes:
                node.start()
            await asyncio.sleep(1.0)
            lagging = w.nodes[3]
            lagging.crash()
            await asyncio.sleep(0.5)
            first = await w.nodes[0].driver.submit(tx(1, b"first"))
            await asyncio.wait_for(w.nodes[0].driver.wait_committed(first.id), 30)
            lagging.restart()
            stale = await lagging.driver.submit(tx(1, b"stale"))  # its state: nonce 0
            settled = lagging.driver.wait_committed(stale.id)
            w.client_nonce[0] = 1  # the clients' load goes on from the chain's nonces
            await load(w, 5.0)
            await asyncio.wait_for(settled, 60)
            assert lagging.driver.mempool.dropped_reason(stale.id) == "nonce_used"
            assert lagging.driver.height >= 1
            # a waiter that comes after the drop hears at once
            await asyncio.wait_for(lagging.driver.wait_committed(stale.id), 1)

        run(w, body)


def test_a_certified_block_with_a_forged_signature_is_never_executed_by_state_transfer(
    tmp_path: Path,
) -> None:
    """State transfer checks every transaction's signature, not only the certificates: a
    block whose transaction does not verify (here the lagger's checker says so for one
    transaction, as it would if more than f members had certified a forgery) is not
    executed, whichever peer sends it, and each is struck; once the checker agrees again
    the lagger catches up."""
    with world(tmp_path, seed=5) as w:
        forged: set[bytes] = set()

        async def body() -> None:
            for node in w.nodes:
                node.start()
            lagger = w.nodes[3]
            await load(w, 1.0)
            crashed_at = lagger.height
            lagger.crash()
            await load(w, 8.0, every_s=0.05)
            healthy = w.nodes[1]
            poisoned = next(
                h
                for h in range(crashed_at + 2, healthy.height + 1)
                if (entry := healthy.driver.executor.block_and_certificate(h)) and entry[0].payload
            )
            entry = healthy.driver.executor.block_and_certificate(poisoned)
            assert entry is not None
            forged.add(entry[0].payload[-1])
            lagger.restart()
            sync = lagger.driver.sync
            honest = sync._check_txs

            async def check(raws: Sequence[bytes]) -> list[Tx | TxError]:
                out = await honest(raws)
                return [
                    TxError("signature does not verify", reason="bad_signature")
                    if raw in forged
                    else r
                    for raw, r in zip(raws, out, strict=True)
                ]

            sync._check_txs = check
            await asyncio.sleep(20.0)
            assert lagger.height == poisoned - 1
            struck = {
                peer: sync.metrics.state_transfer_peer_strikes.labels(
                    peer, "bad_response"
                )._value.get()
                for peer in sync.peers
            }
            assert all(v >= 1 for v in struck.values()), struck
            forged.clear()
            for _ in range(200):
                await asyncio.sleep(0.5)
                if lagger.height >= healthy.height:
                    break
            assert lagger.height >= healthy.height > poisoned

        run(w, body)
        assert w.checker.violations == []
        assert w.nodes[3].failed_tasks == []


def test_blocks_run_the_transactions_admission_decoded_and_never_others(
    tmp_path: Path,
) -> None:
    """The executor takes a block's transaction from the mempool instead of decoding it
    again only when the bytes are the same: node1 is handed a wrong transaction for every id
    and must decode the block's own bytes, and all nodes still agree on every state root."""
    with world(tmp_path) as w:
        used: list[bytes] = []
        wrong = Tx("sim", "note.set", "x", 1, 2**40, {}, bytes(32), bytes(64), b"other")

        def counting(known: Callable[[bytes], Tx | None]) -> Callable[[bytes], Tx | None]:
            def lookup(tx_id: bytes) -> Tx | None:
                tx = known(tx_id)
                if tx is not None:
                    used.append(tx_id)
                return tx

            return lookup

        async def body() -> None:
            for node in w.nodes:
                node.start()
            node0 = w.nodes[0].driver.executor
            assert node0.known_txs is not None
            node0.known_txs = counting(node0.known_txs)
            w.nodes[1].driver.executor.known_txs = lambda _tx_id: wrong
            await load(w, 3.0)
            await asyncio.sleep(3.0)

        run(w, body)
        assert used, "node0 decoded every transaction again"
        heights = {n.height for n in w.nodes}
        assert len(heights) == 1 and heights.pop() > 0
        assert w.submitted and all(w.committed_everywhere(s.tx_id) for s in w.submitted)
        assert w.checker.violations == []
        roots = {n.driver.executor.state_root for n in w.nodes}
        assert len(roots) == 1
