"""Epochs in the core: the window stops at an epoch's last height, the replica finishes when
that height is its stable checkpoint (handing over the checkpoints that made it), signatures of
another epoch's domain never count, an epoch starts from its base, and a replica outside the
membership follows without ever signing."""

from __future__ import annotations

import pytest

from mdtp.consensus.actions import Action, Broadcast, Deliver
from mdtp.consensus.block import genesis_hash
from mdtp.consensus.certificates import verify_checkpoint_certificate
from mdtp.consensus.config import ConsensusConfig, EpochBase
from mdtp.consensus.errors import ConfigError, InvalidCertificate
from mdtp.consensus.events import BlockExecuted, EpochEnds
from mdtp.consensus.messages import Checkpoint, CheckpointCertificate
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import SimKeys, validate_payload
from tests.consensus.helpers import (
    KEYS,
    MEMBERS,
    NOW,
    broadcasts,
    commit,
    config,
    feed,
    pre_prepare,
    prepare,
    replica,
    signed,
)

ROOT = b"\x00" * 32


def _commit_height_1(r: Replica) -> list[Action]:
    pp = pre_prepare(1)
    actions = feed(r, pp, prepare(pp, "n2"), prepare(pp, "n3"))
    actions += feed(r, commit(pp, "n0"), commit(pp, "n2"), commit(pp, "n3"))
    return actions


def test_the_window_stops_at_the_epochs_last_height() -> None:
    r = replica("n1")
    r.handle(EpochEnds(NOW, 2))
    feed(r, pre_prepare(3))
    assert r.rejections.get("outside_watermarks") == 1
    assert r.epoch_last == 2


def test_checkpoints_beyond_the_epoch_are_refused() -> None:
    r = replica("n1")
    r.handle(EpochEnds(NOW, 2))
    feed(r, signed(Checkpoint(4, b"\x01" * 32, ROOT, "n2")))
    assert r.rejections.get("beyond_epoch") == 1


def test_the_replica_finishes_when_the_last_height_is_stable_and_hands_over() -> None:
    r = replica("n1")
    r.handle(EpochEnds(NOW, 2))
    assert any(isinstance(a, Deliver) for a in _commit_height_1(r))
    r.handle(BlockExecuted(NOW, 1, ROOT))
    pp2 = pre_prepare(2, blk=None, prev_hash=pre_prepare(1).block.hash(), timestamp_ms=NOW + 1)
    feed(r, pp2, prepare(pp2, "n2"), prepare(pp2, "n3"))
    feed(r, commit(pp2, "n0"), commit(pp2, "n2"), commit(pp2, "n3"))
    out = r.handle(BlockExecuted(NOW, 2, ROOT))
    mine = broadcasts(out, Checkpoint)
    assert [c.height for c in mine] == [2]
    block_hash = pp2.block.hash()
    feed(r, *(signed(Checkpoint(2, block_hash, ROOT, s)) for s in ("n0", "n2")))
    assert r.finished and r.stable_checkpoint.height == 2
    assert {c.sender for c in r.handoff} >= {"n0", "n1", "n2"}
    assert feed(r, pre_prepare(3)) == []  # a finished replica handles nothing more


def test_an_epoch_learned_late_is_over_at_once() -> None:
    r = replica("n1")
    r.handle(EpochEnds(NOW, 0))
    assert r.finished


def test_a_later_epoch_signs_in_its_own_domain_and_starts_from_its_base() -> None:
    base = EpochBase(8, b"\x05" * 32, NOW - 100, ROOT)
    cfg = config("n1", epoch=1, base=base)
    assert cfg.domain == "test#1" and config("n1").domain == "test"
    r = Replica(cfg, KEYS.signer("n1"), KEYS.verify, validate_payload)
    r.start(0)
    assert r.stable_checkpoint.height == 8 and r.delivered_height == 8
    # a message signed in epoch 0's domain is no signature in epoch 1
    stale = signed(Checkpoint(10, b"\x01" * 32, ROOT, "n2"))
    feed(r, stale)
    assert r.rejections.get("bad_signature") == 1
    fresh = signed(Checkpoint(10, b"\x01" * 32, ROOT, "n2"), chain_id="test#1")
    feed(r, fresh)
    assert r.rejections.get("bad_signature") == 1


def test_a_view_change_of_a_later_epoch_starts_from_its_base_or_later() -> None:
    base = EpochBase(8, b"\x05" * 32, NOW - 100, ROOT)
    cfg = config("n1", epoch=1, base=base)
    verify_checkpoint_certificate(
        cfg, CheckpointCertificate(8, base.block_hash, ROOT, ()), KEYS.verify
    )
    with pytest.raises(InvalidCertificate) as err:
        genesis = genesis_hash("test", ROOT)
        verify_checkpoint_certificate(cfg, CheckpointCertificate(0, genesis, ROOT, ()), KEYS.verify)
    assert err.value.reason == "stale_epoch"
    with pytest.raises(InvalidCertificate) as err:
        verify_checkpoint_certificate(
            cfg, CheckpointCertificate(8, b"\x06" * 32, ROOT, ()), KEYS.verify
        )
    assert err.value.reason == "bad_base_checkpoint"


def test_epochs_are_configured_consistently() -> None:
    base = EpochBase(8, b"\x05" * 32, NOW, ROOT)
    with pytest.raises(ConfigError):
        config("n1", epoch=1)  # a later epoch needs its base
    with pytest.raises(ConfigError):
        config("n1", epoch=0, base=base)
    with pytest.raises(ConfigError):
        config("n1", epoch=1, base=EpochBase(7, b"\x05" * 32, NOW, ROOT))  # not a checkpoint
    assert not config("observer").voting and config("n1").voting
    assert isinstance(config("observer"), ConsensusConfig)


def test_a_follower_delivers_what_a_quorum_committed_and_signs_nothing() -> None:
    keys = SimKeys((*MEMBERS, "observer"), seed=7)  # the members' keys as in KEYS
    r = Replica(config("observer"), keys.signer("observer"), KEYS.verify, validate_payload)
    r.start(0)
    actions = _commit_height_1(r)
    assert any(isinstance(a, Deliver) for a in actions)
    assert not [a for a in actions if isinstance(a, Broadcast)]
    assert r.delivered_height == 1
    assert "observer" not in MEMBERS
