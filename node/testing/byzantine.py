"""Test-only Byzantine behaviour, switched on by ``MDTP_TEST_BYZANTINE`` in a node started
through ``python -m mdtp.node.testing`` (never in production).

- ``equivocate``: as primary, send one block to some peers and a conflicting block (same
  view and height, other timestamp and payload order) to the others, and both to one peer,
  which must record the conflict as evidence.
- ``mutate``: flip a byte in a third of the outgoing consensus frames.
- ``flood``: besides behaving, send bursts of garbage consensus frames and junk
  transactions to every peer.
- ``flood-signed``: besides behaving, keep sending every peer *valid-looking* consensus
  messages: signed with this node's own key for the right chain, so they pass the signature
  check, but useless (PREPAREs and COMMITs for random digests around the current height,
  CHECKPOINTs of random blocks, SUSPECTs of views already left). The view and height come
  from this node's own outgoing messages; while blocks commit fast, many reach a peer when its
  window has moved on, but every one costs it a signature check first.
  ``MDTP_TEST_FLOOD_RATE`` (default 2000) is the messages per second to each peer; each batch
  is signed off the event loop, so the rate is bounded by what this node's CPU can sign.
- ``slow-primary``: as primary, propose only just under the view-change timeout (see
  :mod:`.hooks`); the node is otherwise honest and this sender is not installed.

Honest nodes must keep committing in every mode; the fault suite checks that they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import Callable
from typing import Any

from mdtp.consensus.block import Block, payload_hash
from mdtp.consensus.messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    Suspect,
    ViewChange,
    encode_message,
    sign_message,
)

log = logging.getLogger("mdtp.byzantine")

MODES = ("equivocate", "mutate", "flood", "flood-signed", "slow-primary")
FLOOD_RATE_ENV = "MDTP_TEST_FLOOD_RATE"
FLOOD_RATE_DEFAULT = 2000  # signed messages per second to each peer
FLOOD_BATCH = 64
SendFn = Callable[[str, str, Any], bool]


def mode_from_env() -> str:
    mode = os.environ.get("MDTP_TEST_BYZANTINE", "")
    if mode and mode not in MODES:
        raise ValueError(f"MDTP_TEST_BYZANTINE must be one of {', '.join(MODES)}")
    return mode


class ByzantineSender:
    def __init__(
        self,
        mode: str,
        node_id: str,
        peers: list[str],
        chain_id: str,
        sign: Callable[[bytes], bytes],
        send: SendFn,
    ) -> None:
        assert mode in MODES
        self.mode = mode
        self.node_id = node_id
        self.peers = peers
        self.chain_id = chain_id
        self.sign = sign
        self.send = send
        self.rng = random.Random(node_id)
        self._task: asyncio.Task[None] | None = None
        # where this node is, as its own outgoing messages tell (for flood-signed)
        self.view = 0
        self.height = 0
        self.checkpointed = 0  # our last checkpoint's height, and the interval between them
        self.checkpoint_gap = 8
        self.flood_rate = int(os.environ.get(FLOOD_RATE_ENV, FLOOD_RATE_DEFAULT))
        self.flood_sent = 0
        self.flood_refused = 0
        log.warning("BYZANTINE TEST MODE: %s", mode)

    def start(self) -> None:
        if self.mode == "flood":
            self._task = asyncio.create_task(self._flood())
        elif self.mode == "flood-signed":
            self._task = asyncio.create_task(self._flood_signed())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def unicast(self, peer: str, msg: Message) -> None:
        self._observe(msg)
        self.send(peer, "consensus", self._maybe_mutate(encode_message(msg)))

    def broadcast(self, msg: Message) -> None:
        self._observe(msg)
        if self.mode == "equivocate" and isinstance(msg, PrePrepare) and msg.sender == self.node_id:
            other = self._conflicting(msg)
            half = len(self.peers) // 2
            for i, peer in enumerate(self.peers):
                self.send(peer, "consensus", encode_message(msg if i < half else other))
            # one peer sees both: it must keep them as evidence
            self.send(self.peers[-1], "consensus", encode_message(msg))
            return
        for peer in self.peers:
            self.send(peer, "consensus", self._maybe_mutate(encode_message(msg)))

    def _conflicting(self, msg: PrePrepare) -> PrePrepare:
        block = msg.block
        payload = tuple(reversed(block.payload))
        header = dataclasses.replace(
            block.header,
            timestamp_ms=block.header.timestamp_ms + 1,
            payload_hash=payload_hash(payload),
        )
        other = dataclasses.replace(msg, block=Block(header, payload), signature=b"")
        return sign_message(other, self.chain_id, self.sign)

    def _maybe_mutate(self, frame: bytes) -> bytes:
        if self.mode != "mutate" or self.rng.random() > 0.33 or not frame:
            return frame
        data = bytearray(frame)
        i = self.rng.randrange(len(data))
        data[i] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    async def _flood(self) -> None:
        while True:
            for peer in self.peers:
                for _ in range(20):
                    self.send(peer, "consensus", os.urandom(self.rng.randrange(1, 300)))
                self.send(peer, "txs", [os.urandom(100) for _ in range(20)])
            await asyncio.sleep(0.05)

    def _observe(self, msg: Message) -> None:
        if isinstance(msg, PrePrepare | Prepare | Commit):
            self.view = max(self.view, msg.view)
            self.height = max(self.height, msg.height)
        elif isinstance(msg, Checkpoint):
            self.height = max(self.height, msg.height)
            if msg.height > self.checkpointed:
                if self.checkpointed:
                    self.checkpoint_gap = msg.height - self.checkpointed
                self.checkpointed = msg.height
        elif isinstance(msg, ViewChange):
            self.view = max(self.view, msg.new_view)
        elif isinstance(msg, NewView):
            self.view = max(self.view, msg.view)

    def useless_messages(self, count: int) -> list[Message]:
        """``count`` unsigned messages that will verify once signed but carry nothing:
        votes for blocks no one proposed (at heights inside the window), the next checkpoint
        of a block that does not exist, suspicions of views already left (never of the
        current one, which would count towards a view change)."""
        out: list[Message] = []
        rng = self.rng
        for _ in range(count):
            kind = rng.randrange(4)
            # around our height, mostly above: the honest quorum runs ahead of a replica busy
            # flooding, and a vote is worth the most inside a peer's window
            gap = self.checkpoint_gap
            height = rng.randint(max(1, self.height - gap + 1), self.height + 6 * gap)
            if kind == 3 and self.view > 0:
                out.append(Suspect(view=rng.randrange(self.view), sender=self.node_id))
            elif kind == 2:
                out.append(
                    Checkpoint(
                        height=self.checkpointed + rng.randint(1, 6) * self.checkpoint_gap,
                        block_hash=rng.randbytes(32),
                        state_root=rng.randbytes(32),
                        sender=self.node_id,
                    )
                )
            else:
                vote = Commit if kind == 1 else Prepare
                out.append(
                    vote(
                        view=self.view, height=height, digest=rng.randbytes(32), sender=self.node_id
                    )
                )
        return out

    def _sign_frames(self, msgs: list[Message]) -> list[bytes]:
        # what sign_message does, for a list of mixed kinds
        return [
            encode_message(
                dataclasses.replace(m, signature=self.sign(m.signing_bytes(self.chain_id)))
            )
            for m in msgs
        ]

    async def _flood_signed(self) -> None:
        loop = asyncio.get_running_loop()
        period = FLOOD_BATCH / max(1, self.flood_rate)
        next_at = loop.time()
        logged_at = next_at
        while True:
            if loop.time() - logged_at >= 10:
                logged_at = loop.time()
                log.warning(
                    "flood-signed: %d frames sent, %d refused by our own send queues",
                    self.flood_sent,
                    self.flood_refused,
                )
            # signing releases the GIL: the node's own loop keeps serving while a batch signs
            frames = await asyncio.to_thread(self._sign_frames, self.useless_messages(FLOOD_BATCH))
            for peer in self.peers:
                for frame in frames:
                    if self.send(peer, "consensus", frame):
                        self.flood_sent += 1
                    else:
                        self.flood_refused += 1
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # behind: as fast as we can sign, no burst to catch up
                await asyncio.sleep(0)
