"""Seeded reconfiguration scenarios: the consortium changes while clients keep submitting.

A 4-member chain plus one node that genesis does not know (``n4``, following without a vote).
Under the seed's faults (message loss, delay, duplication, reordering, a partition, a crash and
restart of an honest member, a Byzantine member ``n3``), the members' admins

1. add ``n4`` (proposed by ``n0``'s admin, approved by ``n1``'s and ``n2``'s): from its epoch
   on it votes, and the commit certificates carry its signature;
2. then remove ``n3``: from its epoch on its signature is in no certificate and it follows;
3. then rotate ``n0``'s node key (its node holds both keys): from that epoch on it signs with
   the new key, and the certificates that carry its signature verify with it.

The checker judges every block against the membership of its own epoch (agreement, linkage,
certificates by that epoch's quorum), and at the end: every honest node (the joiner and the
removed member included) reached the target height in the final epoch, every transaction a
client got accepted is committed on every honest node, no honest task died.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from mdtp.consensus.sim.network import LinkFaults
from mdtp.consensus.sim.rng import Rng
from mdtp.node.identity.genesis import ConsensusParams
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.governance.bodies import (
    AddMember,
    AdminKeys,
    MemberPropose,
    MemberVote,
    NewMember,
    RemoveMember,
    RotateNodeKey,
)
from mdtp.node.ledger.governance.membership import history
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.testing.sim.loop import VirtualTimeLoop
from mdtp.node.testing.sim.scenario import (
    PROGRESS_BLOCKS,
    SimResult,
    _final_checks,
    _scratch_dir,
    _stop,
)
from mdtp.node.testing.sim.world import CHAIN_ID, GENESIS_TIME_MS, SimNode, SimWorld, _key

RECONFIG_FAULTS = ("loss", "dup", "delay", "reorder", "crash", "partition", "byzantine")
PHASE_BOUND_MS = 60_000
SUBMIT_EVERY_MS = 400
JOINER = "n4"
REMOVED = "n3"
ROTATED = "n0"


def run_reconfig_seed(seed: int, faults: frozenset[str]) -> SimResult:
    setup = Rng(seed * 7_919 + 5)
    byzantine: dict[str, str] = {}
    if "byzantine" in faults and setup.chance(0.5):
        byzantine[REMOVED] = setup.choice(["equivocate", "silent", "alter", "withhold", "flood"])
    loop = VirtualTimeLoop()
    # a short window: changes take effect sooner, and a state-transfer answer (up to 64
    # blocks) spans several epochs; odd seeds pipeline (depth 2), even ones do not (the
    # default)
    params = ConsensusParams(checkpoint_interval=4, window=8, pipeline_depth=1 + seed % 2)
    world = SimWorld(seed, 4, _scratch_dir(), loop, byzantine, set(), joiners=1, params=params)
    world.next_keys[ROTATED] = _key(seed, f"{ROTATED}-next")
    mix = ",".join(f"{m}={k}" for m, k in sorted(byzantine.items()))
    result = SimResult(seed, 4, faults, f"reconfig {mix} depth={params.pipeline_depth}")
    try:
        loop.run_until_complete(_run(world, setup, faults, result))
    finally:
        _stop(world, loop)
        world.close()
        loop.close()
    result.violations = list(world.checker.violations)
    result.messages = world.messages
    return result


def run_reconfig_job(job: tuple[int, int, frozenset[str]]) -> SimResult:
    """``run_reconfig_seed`` for a process pool (the size is always 4 + 1 joiner)."""
    return run_reconfig_seed(job[0], job[2])


class _Admins:
    """The members' admins as the scenario uses them: the world's clients are the admins of
    ``n0``..``n2`` (genesis), ``n4``'s admin arrives with the proposal that adds it."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.joiner_admin = _key(world.seed, f"admin-{JOINER}")
        self.joiner_nonce = 0

    def sign(self, who: int | None, type_: str, body: dict[str, Any]) -> bytes:
        w = self.world
        if who is None:
            key = self.joiner_admin
            self.joiner_nonce += 1
            nonce = self.joiner_nonce
        else:
            key = w.clients[who]
            w.client_nonce[who] += 1
            nonce = w.client_nonce[who]
        return sign_tx(
            key,
            chain_id=CHAIN_ID,
            type_=type_,
            sender=key.account_id,
            nonce=nonce,
            expires_at_ms=GENESIS_TIME_MS + 10**9,
            body=body,
        )

    async def submit(self, raws: list[bytes]) -> None:
        """Submit (resent like any client transaction until committed); the first one alone
        and committed before the others: a vote must not reach a block before its proposal."""
        for i, raw in enumerate(raws):
            tx_id = hashlib.sha256(raw).digest()
            self.world.pending[tx_id] = raw
            self.world._send_tx(raw)
            deadline = self.world.now_ms + PHASE_BOUND_MS
            while i == 0 and not self.world.committed_anywhere(tx_id):
                if self.world.now_ms > deadline:
                    self.world.checker.violation("liveness: a proposal never committed")
                    return
                await asyncio.sleep(0.1)


def _add_change(world: SimWorld, admin: SigningKey) -> AddMember:
    node_key = world.keys[JOINER]
    enc = hashlib.sha256(f"enc {world.seed}".encode()).digest()
    return AddMember(
        NewMember(
            id=JOINER,
            name=f"Member {JOINER}",
            node_public_key=node_key.public_key,
            tls_fingerprint=hashlib.sha256(f"tls {JOINER}".encode()).digest(),
            p2p="sim:4",
            api="sim:4",
            admins=(AdminKeys(admin.public_key, enc),),
        )
    )


def _epoch_of(node: SimNode) -> int:
    return node.driver.config.epoch if node.alive and node._parts is not None else -1


async def _run(world: SimWorld, setup: Rng, faults: frozenset[str], result: SimResult) -> None:
    world.network.faults = LinkFaults(
        loss=setup.random() * 0.1 if "loss" in faults else 0.0,
        duplicate=setup.random() * 0.2 if "dup" in faults else 0.0,
        delay_ms_max=setup.randint(20, 100) if "delay" in faults else 20,
        slow=setup.random() * 0.1 if "reorder" in faults else 0.0,
    )
    parts = [result.mix]
    crashed: SimNode | None = None
    if "crash" in faults and setup.chance(0.7):
        crashed = setup.choice([n for n in world.nodes if n.member in ("n0", "n1", "n2", JOINER)])
        down = setup.randint(500, 6_000)
        up = down + setup.randint(100, 3_000)
        world.at(down, crashed.crash)
        world.at(up, crashed.restart)
        parts.append(f"crash:{crashed.instance}@{down}-{up}")
    if "partition" in faults and setup.chance(0.5):
        # two random sides for a while, across whichever boundary falls then
        start = setup.randint(500, 8_000)
        end = start + setup.randint(200, 3_000)
        groups = {node.instance: setup.randint(0, 1) for node in world.nodes}
        world.at(start, lambda: world.network.partition(groups))
        world.at(end, lambda: world.network.partition({}))
        parts.append(f"partition@{start}-{end}")
    result.mix = "; ".join(p for p in parts if p)
    for node in world.nodes:
        node.start()

    submitting = [True]

    async def clients() -> None:
        ticks = 0
        while True:
            if submitting[0]:
                world.submit_one()
            ticks += 1
            if ticks % 20 == 0:
                world.resend_uncommitted()
            await asyncio.sleep(SUBMIT_EVERY_MS / 1000)

    world.spawn(clients())
    admins = _Admins(world)
    expires = GENESIS_TIME_MS + 3_600_000

    await asyncio.sleep(setup.randint(200, 1_500) / 1000)
    add = MemberPropose("p-add", _add_change(world, admins.joiner_admin), expires)
    await admins.submit(
        [
            admins.sign(0, add.TYPE, add.to_body()),
            admins.sign(1, MemberVote.TYPE, MemberVote("p-add").to_body()),
            admins.sign(2, MemberVote.TYPE, MemberVote("p-add").to_body()),
        ]
    )
    if not await _wait_epoch(world, 1, crashed):
        return
    remove = MemberPropose("p-rm", RemoveMember(REMOVED), expires + 60_000)
    await admins.submit(
        [
            admins.sign(0, remove.TYPE, remove.to_body()),
            admins.sign(1, MemberVote.TYPE, MemberVote("p-rm").to_body()),
            admins.sign(2, MemberVote.TYPE, MemberVote("p-rm").to_body()),
            admins.sign(None, MemberVote.TYPE, MemberVote("p-rm").to_body()),
        ]
    )
    if not await _wait_epoch(world, 2, crashed):
        return
    new_key = world.next_keys[ROTATED].public_key
    rotate = MemberPropose("p-rot", RotateNodeKey(ROTATED, new_key), expires + 120_000)
    await admins.submit(
        [
            admins.sign(0, rotate.TYPE, rotate.to_body()),
            admins.sign(1, MemberVote.TYPE, MemberVote("p-rot").to_body()),
            admins.sign(2, MemberVote.TYPE, MemberVote("p-rot").to_body()),
        ]
    )
    if not await _wait_epoch(world, 3, crashed):
        return
    world.network.heal()
    if crashed is not None:
        crashed.restart()
    await asyncio.sleep(1.0)
    submitting[0] = False
    honest = world.honest_nodes()
    target = max(n.height for n in honest) + PROGRESS_BLOCKS
    deadline = world.now_ms + PHASE_BOUND_MS
    while world.now_ms < deadline and not world.checker.violations:
        if all(n.height >= target for n in honest) and all(
            world.committed_everywhere(s.tx_id) for s in world.submitted
        ):
            break
        world.submit_one()  # a little load keeps blocks coming, as clients would
        await asyncio.sleep(0.2)
    await asyncio.sleep(3.0)
    _final_checks(world, target, world.now_ms, result)
    _check_signers(world)
    result.virtual_ms = world.now_ms


async def _wait_epoch(world: SimWorld, epoch: int, crashed: SimNode | None) -> bool:
    """Until every live honest node's core works in ``epoch`` (a violation past the bound)."""
    deadline = world.now_ms + PHASE_BOUND_MS
    while world.now_ms < deadline and not world.checker.violations:
        live = [n for n in world.honest_nodes() if n.alive and n._parts is not None]
        if live and all(_epoch_of(n) >= epoch for n in live):
            return True
        await asyncio.sleep(0.2)
    if not world.checker.violations:
        epochs = {n.instance: _epoch_of(n) for n in world.honest_nodes()}
        heights = {n.instance: n.height for n in world.honest_nodes()}
        world.checker.violation(
            f"liveness: epoch {epoch} not reached by every honest node within "
            f"{PHASE_BOUND_MS} ms: epochs {epochs}, heights {heights}"
        )
    return False


def _check_signers(world: SimWorld) -> None:
    """The joiner signs certificates of its epoch; the removed member none of the next."""
    node = next(n for n in world.honest_nodes() if n.member == "n0")
    epochs = history(Overlay(node.store.state))
    if len(epochs) < 4:
        world.checker.violation(f"governance: {len(epochs) - 1} of 3 changes recorded")
        return
    joined_at, removed_at = epochs[1].activation_height, epochs[2].activation_height
    rotated_at = epochs[3].activation_height
    rotated_signed = False
    joiner_signed = False
    for height in range(joined_at, node.height + 1):
        entry = node.driver.executor.block_and_certificate(height)
        assert entry is not None
        signers = {s for s, _ in entry[1].signatures}
        joiner_signed |= JOINER in signers
        if height >= removed_at and REMOVED in signers:
            world.checker.violation(f"removed member {REMOVED} signed the certificate of {height}")
        rotated_signed |= height >= rotated_at and ROTATED in signers
        if height < joined_at and JOINER in signers:
            world.checker.violation(f"{JOINER} signed the certificate of {height} before joining")
    if not joiner_signed:
        world.checker.violation(f"{JOINER} signed no commit certificate after it joined")
    if not rotated_signed:
        world.checker.violation(f"{ROTATED} signed no certificate with its rotated key")
