"""A simulated consortium running the node's real chain code.

Each member is a :class:`SimNode`: the daemon's own :class:`~mdtp.node.chain.driver.Driver`
with its real mempool, admission, signature checks (inline instead of threads), ledger and a
LevelDB block store on disk, wired to a simulated network, clock and disk instead of TLS
links, the wall clock and a thread pool. Everything runs on one
:class:`~.loop.VirtualTimeLoop`, and every random choice comes from the seed, so a run replays
exactly. Byzantine members run the same code with their outgoing consensus messages rewritten
(``consensus.sim.byzantine``); twins are two honest instances that share one member's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nacl.signing
from prometheus_client import CollectorRegistry

from mdtp.consensus.block import Block
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.messages import Message, encode_message
from mdtp.consensus.sim.byzantine import BEHAVIORS, Behavior
from mdtp.consensus.sim.checker import Checker
from mdtp.consensus.sim.network import Network
from mdtp.consensus.sim.rng import Rng
from mdtp.consensus.state_transfer import Certifiers
from mdtp.node.chain.driver import Driver, DriverLimits, consensus_config
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.outbox import ConsensusOutbox, OutboxContext, WireOutbox
from mdtp.node.identity.genesis import Admin, ConsensusParams, Genesis, Member, MemberSignatures
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.governance.membership import epoch_at, history
from mdtp.node.ledger.machine import TxResult, account_nonce
from mdtp.node.ledger.setup import ChainLedger, build_ledger, open_store
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import Tx, sign_tx
from mdtp.node.supervisor import Supervisor
from mdtp.node.testing.hooks import slow_primary_limits
from mdtp.node.testing.sim.loop import InlineExecutor
from mdtp.node.txpool.mempool import Mempool, MempoolLimits, MempoolMetrics
from mdtp.node.txpool.sigverify import BatchVerifier
from mdtp.storage.blockstore import BlockStore

T = TypeVar("T")
CHAIN_ID = "sim"
GENESIS_TIME_MS = 1_800_000_000_000


def _key(seed: int, label: str) -> SigningKey:
    digest = hashlib.sha256(f"mdtp-sim/{seed}/{label}".encode()).digest()
    return SigningKey(nacl.signing.SigningKey(digest))


@dataclass(frozen=True)
class DiskFaults:
    """Store writes wait ``latency_ms_max`` at most; a ``slow`` share waits ``slow_ms`` more."""

    latency_ms_max: int = 1
    slow: float = 0.0
    slow_ms: int = 30


class SimClock:
    def __init__(self, loop: asyncio.AbstractEventLoop, skew_ms: int) -> None:
        self._loop = loop
        self._skew_ms = skew_ms

    def now_ms(self) -> int:
        return GENESIS_TIME_MS + int(self._loop.time() * 1000) + self._skew_ms

    def monotonic(self) -> float:
        return self._loop.time()


class SimDisk:
    def __init__(self, rng: Rng, faults: DiskFaults) -> None:
        self._rng = rng
        self.faults = faults

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        f = self.faults
        delay_ms = self._rng.randint(0, f.latency_ms_max)
        if self._rng.chance(f.slow):
            delay_ms += f.slow_ms
        await asyncio.sleep(delay_ms / 1000)
        return fn(*args)  # atomic with respect to a crash: it ran, or it did not

    def close(self) -> None:
        pass


class BehaviorOutbox:
    """A Byzantine member's outbox: its honest core's messages, rewritten on the way out,
    plus whatever the behaviour sends on its own every 100 ms (floods)."""

    def __init__(self, ctx: OutboxContext, behavior: Behavior, height: Callable[[], int]) -> None:
        self._ctx = ctx
        self._behavior = behavior
        behavior.height = height
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            self._emit(self._behavior.tick(int(loop.time() * 1000)))

    def unicast(self, peer: str, msg: Message) -> None:
        self._emit(self._behavior.outgoing(peer, msg))

    def broadcast(self, msg: Message) -> None:
        self._emit(self._behavior.outgoing(None, msg))

    def _emit(self, out: list[tuple[str | None, Message]]) -> None:
        for dst, msg in out:
            data = encode_message(msg)
            if dst is None:
                self._ctx.broadcast("consensus", data)
            else:
                self._ctx.send(dst, "consensus", data)


# Censoring primaries of real transactions (the core simulator's versions invent their own
# transaction format): they propose what the mempool offers, minus a victim's transactions,
# or only a friend's. Blocks keep committing either way; only request timers catch them.
CENSORS = ("censor-client", "censor-own")
# Aardvark's slow primary: proposes everything it has, one block at a time, each just
# under the progress timeout, so no timer of PBFT's fires while the chain crawls.
SLOW_PRIMARY = "slow-primary"


@dataclass
class Submitted:
    tx_id: bytes
    at_ms: int
    instance: str


class SimNode:
    """One member's node instance: the real chain parts on a store under ``home``."""

    def __init__(
        self,
        world: SimWorld,
        member: str,
        instance: str,
        key: SigningKey,
        behavior: str | None,
        skew_ms: int,
    ) -> None:
        self.world = world
        self.member = member
        self.instance = instance
        self.key = key
        self.behavior = behavior
        self.home = world.root / instance
        self.clock = SimClock(world.loop, skew_ms)
        self.disk = SimDisk(world.rng.fork(hash_label(instance)), DiskFaults())
        self.alive = False
        self.failed_tasks: list[str] = []
        self.restarts = 0
        self._parts: tuple[Driver, BlockStore, Supervisor] | None = None

    @property
    def driver(self) -> Driver:
        assert self._parts is not None, f"{self.instance} is down"
        return self._parts[0]

    @property
    def store(self) -> BlockStore:
        assert self._parts is not None, f"{self.instance} is down"
        return self._parts[1]

    def start(self) -> None:
        w = self.world
        store = open_store(self.home, w.genesis, w.chain, sync=False)
        registry = CollectorRegistry()

        def failed(name: str) -> None:
            self.failed_tasks.append(name)
            if self.member in w.honest:
                w.checker.violation(f"{self.instance}: task {name} died")

        supervisor = Supervisor(registry, on_failure=failed)
        mempool = Mempool(
            MempoolLimits(),
            lambda account: account_nonce(Overlay(store.state), account),
            MempoolMetrics(registry),
        )
        verifier = BatchVerifier(CHAIN_ID, 64 * 1024, threads=1, executor=InlineExecutor())
        outbox: Callable[[OutboxContext], ConsensusOutbox] | None = None
        proposal_filter: Callable[[list[Tx]], list[Tx]] | None = None
        limits = w.limits
        if self.behavior == SLOW_PRIMARY:
            limits = slow_primary_limits(None, limits, w.genesis.consensus.view_timeout_ms)
        elif self.behavior in CENSORS:
            victim, friend = w.clients[0].account_id, w.clients[1].account_id
            keep_friend = self.behavior == "censor-own"
            block_max = w.limits.block_txs_max

            def proposal_filter(_offered: list[Tx]) -> list[Tx]:
                # a censor looks past the victim's transactions to fill its blocks
                pool = mempool.take(len(mempool), 1 << 30)
                if keep_friend:
                    return [tx for tx in pool if tx.sender == friend][:block_max]
                return [tx for tx in pool if tx.sender != victim][:block_max]

        elif self.behavior is not None:
            kind = BEHAVIORS[self.behavior]
            config = consensus_config(w.genesis, self.member, w.chain.genesis_root, w.limits)

            def outbox(ctx: OutboxContext) -> ConsensusOutbox:
                return BehaviorOutbox(ctx, kind(config, ctx.sign), lambda: self.height)

        driver = Driver(
            genesis=w.genesis,
            genesis_root=w.chain.genesis_root,
            node_id=self.member,
            node_key=self.key,
            store=store,
            ledger=w.chain.ledger,
            mempool=mempool,
            verifier=verifier,
            send=lambda peer, kind, body: w.send(self, peer, kind, body),
            broadcast=lambda kind, body: w.broadcast(self, kind, body),
            metrics=DriverMetrics(registry),
            limits=limits,
            supervisor=supervisor,
            clock=self.clock,
            disk=self.disk,
            proposal_filter=proposal_filter,
            outbox=outbox if outbox is not None else WireOutbox,
            next_node_key=w.next_keys.get(self.member),
        )
        driver.commit_listeners.append(lambda h, results: w.on_commit(self, h, results))
        self._parts = (driver, store, supervisor)
        self._tip = (driver.height, driver.executor.tip_hash)
        self.alive = True
        verifier.start(supervisor)
        w.spawn(driver.start())

    def crash(self) -> None:
        """Stop at once: tasks cancelled mid-step, nothing flushed beyond what was synced."""
        if not self.alive or self._parts is None:
            return
        _, store, supervisor = self._parts
        self.alive = False
        self.world.spawn(self._teardown(supervisor, store))

    async def _teardown(self, supervisor: Supervisor, store: BlockStore) -> None:
        await supervisor.close()
        store.close()
        self._parts = None

    def restart(self) -> None:
        if self._parts is None and not self.alive:
            self.restarts += 1
            self.start()

    @property
    def height(self) -> int:
        return self.driver.height if self._parts is not None else -1


def hash_label(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big")


@dataclass
class SimWorld:
    seed: int
    n: int
    root: Path
    loop: asyncio.AbstractEventLoop
    byzantine: dict[str, str] = field(default_factory=dict)
    twins: set[str] = field(default_factory=set)
    skew_ms_max: int = 200
    # False: no request timer, rotation or throughput check -- the control build that must
    # then be caught letting a censoring primary stay
    primary_checks: bool = True
    limits: DriverLimits = field(default_factory=lambda: DriverLimits(block_txs_max=64))
    # nodes not in genesis (they follow until governance adds them: ``reconfig.py``)
    joiners: int = 0
    params: ConsensusParams = field(default_factory=ConsensusParams)

    def __post_init__(self) -> None:
        self.rng = Rng(self.seed)
        self.members = tuple(f"n{i}" for i in range(self.n))
        self.joiner_ids = tuple(f"n{i}" for i in range(self.n, self.n + self.joiners))
        self.keys = {m: _key(self.seed, m) for m in self.members + self.joiner_ids}
        # node keys a rotation will install (``reconfig.py``): the node holds both
        self.next_keys: dict[str, SigningKey] = {}
        # the clients are members' admins: the ledger takes transactions only from accounts
        # on it, and genesis admins are the ones a simulation needs no transaction to create
        self.clients = [_key(self.seed, f"client{i}") for i in range(3)]
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time_ms=GENESIS_TIME_MS,
            members=tuple(
                Member(m, m, self.keys[m].public_key.hex(), "00" * 32, f"sim:{i}", f"sim:{i}")
                for i, m in enumerate(self.members)
            ),
            admins=tuple(
                Admin(self.members[i % self.n], c.account_id, c.public_key.hex(), "")
                for i, c in enumerate(self.clients)
            ),
            consensus=self.params,
        )
        self.chain: ChainLedger = build_ledger(self.genesis)
        if not self.primary_checks:
            self.limits = dataclasses.replace(
                self.limits, request_timer=False, rotation_ms=0, throughput_floor_pct=0
            )
        self.honest = frozenset(
            m
            for m in self.members + self.joiner_ids
            if m not in self.byzantine and m not in self.twins
        )
        self._verifiers: dict[tuple[str, int], MemberSignatures] = {}
        self.checker = Checker(self._certifiers, self.honest)
        self.network = Network(self.rng.fork(1))
        self.nodes: list[SimNode] = []
        self.by_member: dict[str, list[SimNode]] = {}
        for m in self.members + self.joiner_ids:
            copies = 2 if m in self.twins else 1
            for copy in range(copies):
                instance = m if copies == 1 else f"{m}#{copy}"
                skew = self.rng.randint(-self.skew_ms_max, self.skew_ms_max)
                node = SimNode(self, m, instance, self.keys[m], self.byzantine.get(m), skew)
                self.nodes.append(node)
                self.by_member.setdefault(m, []).append(node)
        self.client_nonce = [0] * len(self.clients)
        self.submitted: list[Submitted] = []
        self.pending: dict[bytes, bytes] = {}  # tx id -> signed bytes, until it commits
        self.committed_at: dict[bytes, int] = {}  # tx id -> first commit on an honest node
        self.messages = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def _certifiers(self, instance: str, height: int) -> Certifiers:
        """Who certifies ``height`` by the membership history ``instance`` executed (read
        from its store, not from the driver under test)."""
        node = next(n for n in self.nodes if n.instance == instance)
        epoch = epoch_at(history(Overlay(node.store.state)), height)
        key = (instance, epoch.number)
        verifier = self._verifiers.get(key)
        if verifier is None:
            verifier = self._verifiers[key] = MemberSignatures(epoch.members)
        domain = ConsensusConfig.domain_of(CHAIN_ID, epoch.number)
        return Certifiers(CHAIN_ID, epoch.member_ids, domain, verifier)

    # -- the world's clock and tasks ---------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return int(self.loop.time() * 1000)

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def at(self, at_ms: int, call: Callable[[], None]) -> None:
        self.loop.call_at(at_ms / 1000, call)

    # -- network -----------------------------------------------------------------------------

    def send(self, src: SimNode, peer: str, kind: str, body: Any) -> bool:
        if src.alive:
            for node in self.by_member.get(peer, []):
                if node is not src:
                    self._transmit(src, node, kind, body)
        return True

    def broadcast(self, src: SimNode, kind: str, body: Any) -> None:
        if not src.alive:
            return
        for node in self.nodes:
            if node.member != src.member:
                self._transmit(src, node, kind, body)

    def _transmit(self, src: SimNode, dst: SimNode, kind: str, body: Any) -> None:
        if isinstance(body, bytes):
            plan = self.network.plan(src.instance, dst.instance, body, self.now_ms)
        else:  # gossip and beacons: delivered whole or lost, never mutated
            plan = [
                (at, body)
                for at, _ in self.network.plan(src.instance, dst.instance, b"", self.now_ms)
            ]
        for at_ms, frame in plan:
            self.messages += 1
            self.loop.call_at(at_ms / 1000, self._deliver, dst, src.member, kind, frame)

    def _deliver(self, dst: SimNode, src: str, kind: str, body: Any) -> None:
        if not dst.alive:
            return
        driver = dst.driver
        if kind in ("consensus", "blocks"):
            driver.on_consensus_frame(src, body)
        elif kind == "txs":
            driver.on_gossip_frame(src, body)
        elif kind == "status":
            driver.on_status_frame(src, body)

    # -- clients -----------------------------------------------------------------------------

    def submit_one(self) -> None:
        """A client signs its next transaction and submits it to a live honest node."""
        client = self.rng.randint(0, len(self.clients) - 1)
        key = self.clients[client]
        self.client_nonce[client] += 1
        raw = sign_tx(
            key,
            chain_id=CHAIN_ID,
            type_="note.set",
            sender=key.account_id,
            nonce=self.client_nonce[client],
            expires_at_ms=GENESIS_TIME_MS + 10**9,
            body={"key": f"k{self.client_nonce[client] % 7}", "value": b"v"},
        )
        tx_id = hashlib.sha256(raw).digest()
        self.submitted.append(Submitted(tx_id, self.now_ms, ""))
        self.pending[tx_id] = raw
        self._send_tx(raw)

    def _send_tx(self, raw: bytes) -> None:
        targets = [n for n in self.nodes if n.alive and n.member in self.honest]
        if targets:
            self.spawn(self._submit(self.rng.choice(targets), raw))

    async def _submit(self, node: SimNode, raw: bytes) -> None:
        with contextlib.suppress(Exception):  # refused or crashed meanwhile: resent later
            await node.driver.submit(raw)

    def resend_uncommitted(self) -> None:
        """What a client does when its transaction has not committed after a while: send it
        again, to any honest node (a node that crashed lost its mempool; gossip is lossy)."""
        for tx_id, raw in list(self.pending.items()):
            if self.committed_anywhere(tx_id):
                del self.pending[tx_id]
            else:
                self._send_tx(raw)

    # -- checks ------------------------------------------------------------------------------

    def on_commit(self, node: SimNode, height: int, results: Sequence[TxResult]) -> None:
        if node.member in self.honest:
            for r in results:
                self.committed_at.setdefault(r.tx_id, self.now_ms)
        entry = node.driver.executor.block_and_certificate(height)
        if entry is None:
            self.checker.violation(f"{node.instance}: committed {height} is not in its store")
            return
        block, cert = entry
        self.checker.on_append(node.member, node.instance, node._tip, block, cert)
        node._tip = (height, block.hash())

    def honest_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes if n.member in self.honest]

    def committed_anywhere(self, tx_id: bytes) -> bool:
        return any(n.alive and n.store.tx_location(tx_id) is not None for n in self.honest_nodes())

    def committed_everywhere(self, tx_id: bytes) -> bool:
        return all(n.alive and n.store.tx_location(tx_id) is not None for n in self.honest_nodes())

    def last_block(self, node: SimNode) -> Block | None:
        entry = node.driver.executor.block_and_certificate(node.height)
        return None if entry is None else entry[0]

    def close(self) -> None:
        for node in self.nodes:
            if node._parts is not None:
                node._parts[1].close()
                node._parts = None
        shutil.rmtree(self.root, ignore_errors=True)
