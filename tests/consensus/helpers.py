"""Builders for replica unit tests: real configs, real messages, fast fake keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdtp.consensus.actions import Action, Broadcast, Persist
from mdtp.consensus.block import Block, genesis_hash
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.events import MessageReceived
from mdtp.consensus.messages import Commit, M, Message, Prepare, PrePrepare, sign_message
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import SimKeys, make_tx, validate_payload

MEMBERS = ("n0", "n1", "n2", "n3")
KEYS = SimKeys(MEMBERS, seed=7)
NOW = 10_000


def config(me: str = "n1", **overrides: Any) -> ConsensusConfig:
    params: dict[str, Any] = {
        "chain_id": "test",
        "members": MEMBERS,
        "my_id": me,
        "checkpoint_interval": 2,
        "window_size": 4,
        "pipeline_depth": 1,
        "timeout_ms_base": 1_000,
        "timeout_ms_cap": 8_000,
        # the primary monitor has tests of its own (test_primary_monitor.py); here it
        # would add rotations to scenarios about other things
        "rotation_ms": 0,
        "throughput_floor_pct": 0,
    }
    params.update(overrides)
    return ConsensusConfig(**params)


def replica(me: str = "n1", **overrides: Any) -> Replica:
    r = Replica(config(me, **overrides), KEYS.signer(me), KEYS.verify, validate_payload)
    r.start(0)
    return r


def signed(msg: M, chain_id: str = "test") -> M:
    return sign_message(msg, chain_id, KEYS.signer(msg.sender))


def block(
    height: int = 1,
    prev_hash: bytes | None = None,
    proposer: str = "n0",
    timestamp_ms: int = NOW,
    txs: Sequence[bytes] | None = None,
    state_root: bytes = b"\x00" * 32,
) -> Block:
    cfg = config(proposer)
    prev = genesis_hash("test", cfg.genesis_state_root) if prev_hash is None else prev_hash
    payload = tuple(txs) if txs is not None else (make_tx(0, height),)
    return Block.build(cfg, height, prev, state_root, timestamp_ms, payload)


def pre_prepare(height: int = 1, view: int = 0, sender: str = "n0", **kw: Any) -> PrePrepare:
    b = kw.pop("blk", None) or block(height=height, proposer=sender, **kw)
    return signed(PrePrepare(view, height, b, sender))


def prepare(pp: PrePrepare, sender: str) -> Prepare:
    return signed(Prepare(pp.view, pp.height, pp.digest, sender))


def commit(pp: PrePrepare, sender: str) -> Commit:
    return signed(Commit(pp.view, pp.height, pp.digest, sender))


def feed(r: Replica, *msgs: Message, now: int = NOW) -> list[Action]:
    out: list[Action] = []
    for m in msgs:
        out.extend(r.handle(MessageReceived(now, m)))
    return out


def broadcasts(actions: list[Action], kind: type) -> list[Any]:
    return [a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, kind)]


def persisted(actions: list[Action]) -> list[Persist]:
    return [a for a in actions if isinstance(a, Persist)]
