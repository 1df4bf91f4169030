"""Replay protection: each nonce once until its request expires, across a restart, bounded
per account so that one account cannot crowd out another."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtp.node.data.protocol import Refused
from mdtp.node.data.replay import ReplayGuard
from mdtp.storage.chunkstore import ChunkStore


def guard(store: ChunkStore, per_account: int = 10, now_ms: int = 1_000) -> ReplayGuard:
    return ReplayGuard(store.db.prefixed_db(b"n/"), per_account, now_ms)


def reason(g: ReplayGuard, account: str, nonce: bytes, expires: int, now: int) -> str:
    with pytest.raises(Refused) as e:
        g.claim(account, nonce, expires, now)
    return e.value.reason


def test_nonce_is_accepted_once_until_it_expires(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    g = guard(store)
    g.claim("alice", b"n1", 2_000, 1_000)
    assert reason(g, "alice", b"n1", 2_000, 1_500) == "replayed_nonce"
    g.claim("bob", b"n1", 2_000, 1_500)  # nonces are per account
    g.claim("alice", b"n1", 3_000, 2_001)  # the first expired: its request is no longer valid
    store.close()


def test_a_claimed_nonce_survives_a_restart_until_it_expires(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    guard(store).claim("alice", b"live", 9_000, 1_000)
    guard(store).claim("alice", b"old", 2_000, 1_000)
    store.close()
    store = ChunkStore(tmp_path)
    g = guard(store, now_ms=3_000)
    assert reason(g, "alice", b"live", 9_000, 3_000) == "replayed_nonce"
    assert len(g) == 1 and list(store.db.prefixed_db(b"n/")) == [(b"alice\x00live", _u64(9_000))]
    store.close()


def test_one_account_filling_its_share_never_refuses_another(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    g = guard(store, per_account=2)
    g.claim("mallory", b"a", 5_000, 1_000)
    g.claim("mallory", b"b", 5_000, 1_000)
    assert reason(g, "mallory", b"c", 5_000, 1_000) == "nonce_quota"
    g.claim("alice", b"a", 5_000, 1_000)
    assert g.held("mallory") == 2 and g.held("alice") == 1
    g.claim("mallory", b"c", 9_000, 5_001)  # expired entries make room
    assert g.held("mallory") == 1
    store.close()


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "big")
