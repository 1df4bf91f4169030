"""The attackers of ``mdtp bench --attack`` (test switches of ``mdtp.node.testing``): a
flooding replica's messages really pass the signature check a peer runs, and the slow
primary's limits hold each proposal just under the view-change timeout."""

from __future__ import annotations

import asyncio

import pytest

from mdtp.consensus.messages import (
    Checkpoint,
    Commit,
    Prepare,
    Suspect,
    decode_message,
    verify_message,
)
from mdtp.node.chain.driver import DriverLimits
from mdtp.node.chain.outbox import WireOutbox
from mdtp.node.identity.genesis import Member, MemberSignatures
from mdtp.node.identity.keys import SigningKey
from mdtp.node.testing.byzantine import ByzantineSender
from mdtp.node.testing.hooks import hooks_from_env, slow_primary_limits

CHAIN = "mdtp-test-attack"


def _member(node_id: str, key: SigningKey) -> Member:
    return Member(node_id, node_id, key.public_key.hex(), "00" * 32, "127.0.0.1:1", "127.0.0.1:2")


def _flooder(sent: list[tuple[str, str, object]]) -> tuple[ByzantineSender, MemberSignatures]:
    key, other = SigningKey.generate(), SigningKey.generate()
    verify = MemberSignatures((_member("node1", key), _member("node0", other)))

    def send(peer: str, channel: str, frame: object) -> bool:
        sent.append((peer, channel, frame))
        return True

    return ByzantineSender("flood-signed", "node1", ["node0", "node2"], CHAIN, key.sign, send), (
        verify
    )


def test_flood_signed_messages_verify_with_the_members_key_and_look_current() -> None:
    sent: list[tuple[str, str, object]] = []
    sender, verify = _flooder(sent)
    # what the node itself sent tells the flooder where the chain is
    for h in (32, 40):
        sender.broadcast(Checkpoint(h, b"\x02" * 32, b"\x03" * 32, sender="node1"))
    sender.broadcast(Prepare(view=3, height=42, digest=b"\x01" * 32, sender="node1"))
    sent.clear()
    frames = sender._sign_frames(sender.useless_messages(400))
    kinds = set()
    for frame in frames:
        msg = decode_message(frame)
        assert msg.sender == "node1"
        assert verify_message(msg, CHAIN, verify)
        assert not verify_message(msg, "another-chain", verify)
        kinds.add(type(msg))
        if isinstance(msg, Prepare | Commit):
            # around our height: within a checkpoint interval below, six above
            assert 42 - 8 < msg.height <= 42 + 6 * 8 and msg.view == 3
        if isinstance(msg, Checkpoint):
            # next checkpoints, of blocks that do not exist
            assert msg.height > 40 and msg.height % 8 == 0
        if isinstance(msg, Suspect):
            assert msg.view < 3  # never the current view: that would count to a view change
    assert kinds == {Prepare, Commit, Checkpoint, Suspect}


def test_flood_signed_task_sends_signed_consensus_frames_to_every_peer() -> None:
    sent: list[tuple[str, str, object]] = []
    sender, verify = _flooder(sent)

    async def run() -> None:
        sender.start()
        await asyncio.sleep(0.3)
        await sender.close()

    asyncio.run(run())
    assert {peer for peer, _, _ in sent} == {"node0", "node2"}
    assert {channel for _, channel, _ in sent} == {"consensus"}
    assert sender.flood_sent == len(sent) > 0
    frame = sent[-1][2]
    assert isinstance(frame, bytes)
    assert verify_message(decode_message(frame), CHAIN, verify)


def test_slow_primary_waits_just_under_the_view_timeout_with_one_proposal_in_flight() -> None:
    limits = slow_primary_limits(None, DriverLimits(), 3000)
    assert limits.proposal_wait_ms == 2700 and limits.proposals_in_flight_max == 1
    assert limits.block_txs_max == DriverLimits().block_txs_max  # backups enforce theirs
    assert slow_primary_limits(500, DriverLimits(), 2000).proposal_wait_ms == 1500


def test_slow_primary_switch_installs_only_the_driver_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDTP_TEST_BYZANTINE", "slow-primary")
    monkeypatch.setenv("MDTP_TEST_SLOW_PRIMARY_MARGIN_MS", "250")
    hooks = hooks_from_env()
    assert hooks.driver_limits is not None
    assert hooks.driver_limits(DriverLimits(), 3000).proposal_wait_ms == 2750
    assert hooks.consensus_outbox is WireOutbox
