"""p2p channels: per-channel send queues, their bounds, and the writer's schedule."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.identity import pki
from mdtp.node.identity.config import load_config, render_config
from mdtp.node.identity.genesis import Genesis
from mdtp.node.identity.home import build_genesis, init_home
from mdtp.node.identity.keys import load_key
from mdtp.node.p2p.channels import CHANNELS, Channel, kinds_of
from mdtp.node.p2p.frames import decode_payload, encode_frame
from mdtp.node.p2p.metrics import P2PMetrics
from mdtp.node.p2p.sendqueue import SendQueues
from mdtp.node.p2p.transport import (
    NEWEST_WHILE_DOWN,
    FrameHandler,
    Transport,
    TransportLimits,
    genesis_roster,
)

MiB = 1024 * 1024
WRITE_BATCH = TransportLimits().write_batch_max_bytes
NODE_DIR = Path(__file__).resolve().parents[2] / "node"


def queues(channels: tuple[Channel, ...] = CHANNELS, quantum_bytes: int = 64 * 1024) -> SendQueues:
    return SendQueues(channels, P2PMetrics(CollectorRegistry()), quantum_bytes)


def frame(kind: str, size: int, tag: int = 0) -> bytes:
    return encode_frame(kind, tag.to_bytes(4, "big") + bytes(size), 32 * MiB)


def kind_of(f: bytes) -> str:
    return decode_payload(f[4:])[0]


def drain(q: SendQueues) -> list[bytes]:
    out: list[bytes] = []
    while len(q):
        out += q.take_batch(WRITE_BATCH)
    return out


def with_bounds(name: str, frames: int, size: int) -> tuple[Channel, ...]:
    return tuple(
        dataclasses.replace(c, queue_max_frames=frames, queue_max_bytes=size)
        if c.name == name
        else c
        for c in CHANNELS
    )


# -- scheduling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk_bytes", "batch_bytes"),
    # 1 MiB chunks spend the channel's share of a round at once; with small ones the chunk
    # channel still has credit left in this round when the vote comes, and yields anyway.
    [(MiB, WRITE_BATCH), (16 * 1024, 32 * 1024)],
)
async def test_a_consensus_frame_is_written_before_the_remaining_chunk_backlog(
    chunk_bytes: int, batch_bytes: int
) -> None:
    q = queues()
    chunks = [frame("data.chunk", chunk_bytes, i) for i in range(16 * MiB // chunk_bytes)]
    for chunk in chunks:
        assert q.put("data.chunk", chunk)
    in_flight = await q.next_batch(batch_bytes)  # the writer is busy with this batch
    assert 0 < len(in_flight) < len(chunks)
    vote = frame("consensus", 200)
    assert q.put("consensus", vote)
    written = in_flight + drain(q)
    assert written == [*in_flight, vote, *chunks[len(in_flight) :]]


def test_within_a_channel_frames_keep_their_order() -> None:
    q = queues()
    votes = [frame("consensus", 100, i) for i in range(50)]
    chunks = [frame("data.chunk", 300 * 1024, i) for i in range(10)]
    for i in range(50):
        assert q.put("consensus", votes[i])
        if i < 10:
            assert q.put("data.chunk", chunks[i])
    written = drain(q)
    assert [f for f in written if f in votes] == votes
    assert [f for f in written if f in chunks] == chunks


def test_the_scheduler_does_not_starve_the_lowest_priority_channel() -> None:
    # Every channel saturated: each one still moves, with a byte share in proportion to its
    # priority, measured over about half of every backlog.
    unbounded = tuple(
        dataclasses.replace(c, queue_max_frames=10**6, queue_max_bytes=10**9) for c in CHANNELS
    )
    q = queues(unbounded, quantum_bytes=1024)
    for n, c in enumerate(CHANNELS):
        kind, size = sorted(c.kinds)[0], 512 * (n + 1)  # frame sizes differ by channel
        for i in range(800 * c.priority * 1024 // size):
            assert q.put(kind, frame(kind, size, i))
    channel_of = kinds_of(CHANNELS)
    sent = dict.fromkeys(channel_of.values(), 0)
    priorities = sum(c.priority for c in CHANNELS)
    while sum(sent.values()) < 400 * priorities * 1024:
        for f in q.take_batch(8 * 1024):
            sent[channel_of[kind_of(f)]] += len(f)
    total = sum(sent.values())
    for c in CHANNELS:
        assert sent[c] / total == pytest.approx(c.priority / priorities, rel=0.15), c.name


def test_a_channel_after_a_big_frame_is_not_held_back_for_it() -> None:
    # A 4 MiB proposal spends far more than the consensus channel's share of a round; once
    # that channel runs empty its debt is dropped, so the next vote goes before queued chunks.
    q = queues()
    for i in range(8):
        assert q.put("data.chunk", frame("data.chunk", MiB, i))
    proposal = frame("consensus", 4 * MiB)
    assert q.put("consensus", proposal)
    assert q.take_batch(WRITE_BATCH) == [proposal]
    vote = frame("consensus", 200)
    assert q.put("consensus", vote)
    assert q.take_batch(1)[0] == vote


# -- bounds ---------------------------------------------------------------------------------


def test_a_byte_bound_refuses_only_its_channel_and_counts_it_by_channel() -> None:
    registry = CollectorRegistry()
    chunks = [frame("data.chunk", MiB, i) for i in range(5)]
    bound = sum(map(len, chunks[:3]))
    q = SendQueues(with_bounds("data_chunks", 1000, bound), P2PMetrics(registry))
    for chunk in chunks[:3]:
        assert q.put("data.chunk", chunk)
    assert not q.put("data.chunk", chunks[3])
    assert not q.put("data.end", frame("data.end", 10))  # the same channel, so also full
    assert q.put("consensus", frame("consensus", 100))
    assert q.put("data.ack", frame("data.ack", 100))
    full = "mdtp_p2p_send_queue_full_total"
    assert registry.get_sample_value(full, {"channel": "data_chunks"}) == 2
    assert registry.get_sample_value(full, {"channel": "consensus"}) is None
    queued = registry.get_sample_value("mdtp_p2p_send_queue_bytes", {"channel": "data_chunks"})
    assert queued == bound
    drain(q)
    assert registry.get_sample_value("mdtp_p2p_send_queue_bytes", {"channel": "data_chunks"}) == 0
    assert q.put("data.chunk", chunks[4])  # room again


def test_one_frame_fits_an_empty_queue_whatever_its_byte_bound() -> None:
    q = queues(with_bounds("blocks", 64, 1024))
    assert q.put("blocks", frame("blocks", 2 * MiB))
    assert not q.put("blocks", frame("blocks", 10))
    drain(q)
    assert q.put("blocks", frame("blocks", 2 * MiB))


def test_an_unknown_frame_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="on no p2p channel"):
        queues().put("consensus.v2", b"x")


# -- the table ------------------------------------------------------------------------------


def _literals(nodes: list[ast.expr]) -> set[str]:
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _is_frame_handler(node: ast.AST) -> bool:
    """A function with the frame handler's signature: (peer..., kind, body)."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    names = [a.arg for a in node.args.args]
    return "kind" in names and any(n.startswith("peer") for n in names)


def _kinds_in_code() -> set[str]:
    """Frame kinds the node sends (literal kind arguments of its send/broadcast calls) or
    dispatches on in a frame handler (``kind == "..."``, ``kind in (...)``)."""
    found: set[str] = set()
    for path in NODE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if "send" in name or "broadcast" in name:
                    found |= _literals(node.args)
        for handler in filter(_is_frame_handler, ast.walk(tree)):
            for node in ast.walk(handler):
                if (
                    isinstance(node, ast.Compare)
                    and isinstance(node.left, ast.Name)
                    and node.left.id == "kind"
                ):
                    for right in node.comparators:
                        found |= _literals(right.elts if isinstance(right, ast.Tuple) else [right])
    return found


def test_every_frame_kind_in_the_code_is_on_exactly_one_declared_channel() -> None:
    used = _kinds_in_code()
    assert {"consensus", "blocks", "txs", "status", "data.req", "data.chunk"} <= used
    declared = kinds_of(CHANNELS)  # asserts that no kind is on two channels
    assert used - set(declared) == set(), "kinds sent or dispatched but on no channel"
    # ...and the table names no kind that nothing sends (keepalives are the transport's own)
    assert set(declared) - used == {"ping"}


def test_config_keys_default_to_the_channel_table_and_override_it(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(render_config({"node.id": "node0"}))
    assert TransportLimits.from_config(load_config(tmp_path, env={})).channels == CHANNELS
    env = {"MDTP_P2P_DATA_CHUNKS_QUEUE_MAX_BYTES": str(8 * MiB)}
    limits = TransportLimits.from_config(load_config(tmp_path, env=env))
    assert limits.channels == with_bounds("data_chunks", 1024, 8 * MiB)


# -- through the transport ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Genesis]:
    root = tmp_path_factory.mktemp("p2p")
    ca = pki.create_ca("test")
    paths, members = [], []
    for i in range(2):
        port = _free_port()
        paths.append(root / f"n{i}")
        members.append(
            init_home(
                paths[-1],
                node_id=f"n{i}",
                name=f"M{i}",
                ca=ca,
                p2p=f"127.0.0.1:{port}",
                api="127.0.0.1:1",
                metrics="127.0.0.1:2",
            )
        )
    return paths, build_genesis("chain-p2p", members)


def make_transport(
    home: Path, genesis: Genesis, limits: TransportLimits, handler: FrameHandler | None = None
) -> tuple[Transport, CollectorRegistry]:
    cfg = load_config(home, env={})
    ca, cert, key = cfg.path("tls", "ca"), cfg.path("tls", "cert"), cfg.path("tls", "key")
    registry = CollectorRegistry()
    transport = Transport(
        genesis=genesis,
        roster=genesis_roster(genesis),
        node_id=cfg.node_id,
        node_key=load_key(cfg.path("node", "node_key")),
        server_ctx=pki.p2p_server_context(ca, cert, key),
        client_ctx=pki.p2p_client_context(ca, cert, key),
        own_cert_der=ssl.PEM_cert_to_DER_cert(cert.read_text()),
        listen=cfg.address("p2p"),
        metrics=P2PMetrics(registry),
        limits=limits,
        handler=handler or (lambda *_: None),
    )
    return transport, registry


def test_send_refuses_a_frame_of_a_full_channel_and_counts_it(
    homes: tuple[list[Path], Genesis],
) -> None:
    paths, genesis = homes
    limits = TransportLimits(channels=with_bounds("data_chunks", 4, 64 * MiB))
    transport, registry = make_transport(paths[0], genesis, limits)
    for i in range(4):
        assert transport.send("n1", "data.chunk", {"i": i, "data": bytes(1000)})
    assert not transport.send("n1", "data.chunk", {"i": 4, "data": bytes(1000)})
    assert transport.send("n1", "consensus", b"vote")
    transport.broadcast("status", {"h": 1, "v": 0})
    full = registry.get_sample_value("mdtp_p2p_send_queue_full_total", {"channel": "data_chunks"})
    assert full == 1
    assert registry.get_sample_value("mdtp_p2p_frames_dropped_total", {"reason": "queue_full"}) == 1
    with pytest.raises(ValueError, match="on no p2p channel"):
        transport.send("n1", "chunk", b"x")
    with pytest.raises(ValueError, match="on no p2p channel"):
        transport.broadcast("statuz", {})


async def test_a_backlog_queued_while_the_link_is_down_lets_the_vote_out_first(
    homes: tuple[list[Path], Genesis],
) -> None:
    paths, genesis = homes
    received: list[tuple[str, Any]] = []
    done = asyncio.Event()

    def on_frame(_peer: str, kind: str, body: Any) -> None:
        received.append((kind, body))
        if len(received) == 9:
            done.set()

    sender, _ = make_transport(paths[0], genesis, TransportLimits())
    receiver, _ = make_transport(paths[1], genesis, TransportLimits(), on_frame)
    for i in range(8):
        assert sender.send("n1", "data.chunk", {"i": i, "data": bytes(MiB)})
    assert sender.send("n1", "consensus", b"vote")
    await receiver.start()
    await sender.start()
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await sender.close()
        await receiver.close()
    assert [k for k, _ in received] == ["consensus"] + ["data.chunk"] * 8
    assert [b["i"] for _, b in received[1:]] == list(range(8))


def test_only_the_newest_votes_wait_for_a_peer_whose_link_is_down(
    homes: tuple[list[Path], Genesis],
) -> None:
    """A member that was down gets the newest consensus frames on its return, not everything
    sent while it was away (stale votes it would decode and check ahead of the state
    transfer it needs); the oldest are dropped and counted. A connected peer's queue keeps
    its own bounds."""
    paths, genesis = homes
    transport, registry = make_transport(paths[0], genesis, TransportLimits())
    keep = NEWEST_WHILE_DOWN["consensus"]
    for i in range(keep + 10):
        assert transport.send("n1", "consensus", i.to_bytes(4, "big"))
    queues = transport._outbound["n1"].queues
    assert len(queues) == keep
    first = queues.take_batch(1)[0]
    assert first.endswith((10).to_bytes(4, "big"))  # frames 0..9 made room
    stale = {"channel": "consensus"}
    assert registry.get_sample_value("mdtp_p2p_send_queue_stale_total", stale) == 10


def test_gossip_for_a_peer_whose_link_is_down_is_not_queued_but_votes_are(
    homes: tuple[list[Path], Genesis],
) -> None:
    """A peer that is down gets no backlog of stale gossip when it is back (what still waits
    is gossiped again, ``Admission.regossip``); consensus frames wait for it as before."""
    paths, genesis = homes
    transport, registry = make_transport(paths[0], genesis, TransportLimits())
    assert not transport.send("n1", "txs", [b"tx"])
    transport.broadcast("txs", [b"tx"])
    assert transport.send("n1", "consensus", b"vote")
    assert registry.get_sample_value("mdtp_p2p_frames_dropped_total", {"reason": "peer_down"}) == 2
    assert len(transport._outbound["n1"].queues) == 1


async def test_a_link_coming_up_greets_the_peer_with_a_status_first(
    homes: tuple[list[Path], Genesis],
) -> None:
    """When our link to a peer comes up the node is told (``on_link_up``) and sends it its
    height at once: a node that restarted behind learns the chain's height without waiting
    for the next beacon."""
    paths, genesis = homes
    received: list[tuple[str, Any]] = []
    greeted = asyncio.Event()

    def on_frame(_peer: str, kind: str, body: Any) -> None:
        received.append((kind, body))
        greeted.set()

    sender, _ = make_transport(paths[0], genesis, TransportLimits())

    def greet(peer: str) -> None:
        sender.send(peer, "status", {"h": 7, "v": 0})

    sender.on_link_up = greet
    receiver, _ = make_transport(paths[1], genesis, TransportLimits(), on_frame)
    await receiver.start()
    await sender.start()
    try:
        await asyncio.wait_for(greeted.wait(), 30)
    finally:
        await sender.close()
        await receiver.close()
    assert received[0] == ("status", {"h": 7, "v": 0})


async def test_a_peer_that_dials_us_while_our_link_is_down_is_dialled_at_once(
    homes: tuple[list[Path], Genesis],
) -> None:
    """Our dial loop backs off while a peer is down (here at least 10 s a wait). When the
    peer is back it dials us; that tells our loop to dial it now rather than when its wait
    ends, so the frames queued for it (its catch-up, its peers' heights) go out at once."""
    paths, genesis = homes
    slow = TransportLimits(backoff_s_min=20.0, backoff_s_max=20.0)
    got = asyncio.Event()

    def on_frame(_peer: str, kind: str, body: Any) -> None:
        if kind == "consensus":
            got.set()

    sender, _ = make_transport(paths[0], genesis, slow)
    receiver, _ = make_transport(paths[1], genesis, slow, on_frame)
    assert sender.send("n1", "consensus", b"vote")
    await sender.start()
    try:
        await asyncio.sleep(1.0)  # its first dial failed: it waits 10-20 s to dial again
        await receiver.start()  # dials the sender at once
        await asyncio.wait_for(got.wait(), 8.0)
    finally:
        await sender.close()
        await receiver.close()


def _connections(registry: CollectorRegistry, direction: str) -> float:
    value = registry.get_sample_value("mdtp_p2p_peers_connected", {"direction": direction})
    return value or 0.0


async def test_a_silent_link_is_closed_after_the_idle_timeout_and_a_talking_one_is_not(
    homes: tuple[list[Path], Genesis],
) -> None:
    """The receiving side closes a link its peer has said nothing on for ``idle_timeout_s``
    (the peer's keepalives here come only every 20 s), and keeps one whose peer sends a frame
    every half second for several idle timeouts."""
    paths, genesis = homes
    frames: list[str] = []
    quiet = TransportLimits(idle_timeout_s=60.0)  # keepalives every 20 s: silent meanwhile
    sender, _ = make_transport(paths[0], genesis, quiet)
    receiver, registry = make_transport(
        paths[1], genesis, TransportLimits(idle_timeout_s=1.5), lambda _p, k, _b: frames.append(k)
    )
    await receiver.start()
    await sender.start()
    try:
        for _ in range(100):
            if _connections(registry, "inbound") == 1:
                break
            await asyncio.sleep(0.1)
        seen = []
        for _ in range(8):  # talking: a frame every 0.5 s for 4 s, past two idle timeouts
            sender.send("n1", "status", {"h": 1, "v": 0})
            await asyncio.sleep(0.5)
            seen.append(_connections(registry, "inbound"))
        assert len(frames) >= 7
        assert seen == [1.0] * 8, f"a talking link was closed: {seen}"
        # silent: closed after 1.5 s (the sender's dial loop then comes back)
        closed = False
        for _ in range(100):
            await asyncio.sleep(0.1)
            if _connections(registry, "inbound") == 0:
                closed = True
                break
        assert closed, "a silent link stayed open"
    finally:
        await sender.close()
        await receiver.close()


async def test_close_ends_a_task_that_lost_its_first_cancel(
    homes: tuple[list[Path], Genesis],
) -> None:
    """Python 3.11's ``wait_for`` returns its inner result and drops a cancel that lands as
    that result does (a handshake just finished): the link task then goes on. ``close()``
    cancels what is still running again, so it never waits on such a task forever."""
    paths, genesis = homes
    transport, _ = make_transport(paths[0], genesis, TransportLimits())
    cancels = 0

    async def loses_one_cancel() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels >= 2:
                    raise

    task = asyncio.create_task(loses_one_cancel())
    transport._tasks.add(task)
    await asyncio.sleep(0)
    await asyncio.wait_for(transport.close(), 10)
    assert task.cancelled() and cancels == 2
