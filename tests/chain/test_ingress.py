"""Fair ingress: one queue per peer link, round robin, a frame budget per peer. A member
that floods fills only its own queue and is served only at its budget; every other
member's frames are taken at once."""

from __future__ import annotations

import asyncio

from mdtp.node.chain.ingress import FairIngress, IngressLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flooding_peer_fills_only_its_own_queue() -> None:
    clock = FakeClock()
    ingress = FairIngress[bytes](["a", "b", "c"], IngressLimits(items_per_peer_max=100), clock)
    dropped = [ingress.put("a", b"x", 1) for _ in range(1_000)]
    assert dropped.count(None) == 100 and dropped.count("peer_queue_full") == 900
    assert ingress.put("b", b"vote", 4) is None and ingress.put("c", b"vote", 4) is None
    assert ingress.put("intruder", b"x", 1) == "not_a_member"

    async def first_three() -> list[str]:
        return [(await ingress.get())[0] for _ in range(3)]

    # the honest frames are taken within one round, not after the flood
    assert sorted(asyncio.run(first_three())) == ["a", "b", "c"]


def test_bytes_are_bounded_per_peer() -> None:
    ingress = FairIngress[bytes](["a"], IngressLimits(bytes_per_peer_max=1_000), FakeClock())
    assert ingress.put("a", bytes(600), 600) is None
    assert ingress.put("a", bytes(600), 600) == "peer_queue_full"
    assert ingress.queued_bytes() == 600


def test_a_peer_over_its_budget_waits_while_others_are_served() -> None:
    clock = FakeClock()
    ingress = FairIngress[bytes](["a", "b"], IngressLimits(work_per_s=10), clock)
    for _ in range(50):
        ingress.put("a", b"flood", 5)

    async def drain() -> list[str]:
        got = [(await ingress.get())[0] for _ in range(10)]  # a's burst
        ingress.put("b", b"vote", 4)
        got.append((await ingress.get())[0])  # b at once, a has no budget left
        return got

    assert asyncio.run(drain()) == ["a"] * 10 + ["b"]
    assert len(ingress) == 40

    async def after_refill() -> str:
        clock.now += 0.5  # five frames' worth of budget
        return (await ingress.get())[0]

    assert asyncio.run(after_refill()) == "a"


def test_work_is_charged_per_item_and_a_shut_out_peer_is_dropped() -> None:
    clock = FakeClock()
    ingress = FairIngress[list[bytes]](["a", "b"], IngressLimits(work_per_s=100), clock)
    batch = [b"tx"] * 250  # two and a half seconds of a's budget in one item
    ingress.put("a", batch, 500, work=len(batch))
    ingress.put("a", batch, 500, work=len(batch))

    async def one() -> str:
        return (await ingress.get())[0]

    assert asyncio.run(one()) == "a"
    ingress.put("b", [b"tx"], 2, work=1)
    assert asyncio.run(one()) == "b"  # a owes 150 checks; b goes first
    ingress.penalize("a", 60.0)
    assert len(ingress) == 0
    assert ingress.put("a", batch, 500, work=len(batch)) == "peer_shut_out"
    clock.now += 61.0
    assert ingress.put("a", batch, 500, work=len(batch)) is None


def test_useful_work_is_refunded_so_only_useless_work_is_budgeted() -> None:
    clock = FakeClock()
    ingress = FairIngress[bytes](["a"], IngressLimits(work_per_s=10), clock)
    for _ in range(30):
        ingress.put("a", b"vote", 4)

    async def take(count: int, useful: bool) -> int:
        for _ in range(count):
            peer, _ = await ingress.get()
            if useful:
                ingress.refund(peer)
        return len(ingress)

    # thirty useful votes go through on a budget of ten, with no time passing
    assert asyncio.run(take(30, useful=True)) == 0


def test_a_full_queue_drops_its_oldest_so_the_newest_message_gets_through() -> None:
    """A flooder's own NEW-VIEW or proposal, retransmitted behind its junk, is never
    refused for ever: the junk ahead of it goes first."""
    ingress = FairIngress[bytes](["a"], IngressLimits(items_per_peer_max=10), FakeClock())
    for _ in range(1_000):
        ingress.put("a", b"junk", 4)
    assert ingress.put("a", b"new-view", 8) == "peer_queue_full"

    async def drain() -> list[bytes]:
        return [(await ingress.get())[1] for _ in range(10)]

    taken = asyncio.run(drain())
    assert taken[-1] == b"new-view" and taken.count(b"junk") == 9
