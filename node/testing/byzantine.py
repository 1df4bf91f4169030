"""Test-only Byzantine behaviour, switched on by ``MDTP_TEST_BYZANTINE`` in a node started
through ``python -m mdtp.node.testing`` (never in production).

- ``equivocate``: as primary, send one block to some peers and a conflicting block (same
  view and height, other timestamp and payload order) to the others, and both to one peer,
  which must record the conflict as evidence.
- ``mutate``: flip a byte in a third of the outgoing consensus frames.
- ``flood``: besides behaving, send bursts of garbage consensus frames and junk
  transactions to every peer.

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
from mdtp.consensus.messages import Message, PrePrepare, encode_message, sign_message

log = logging.getLogger("mdtp.byzantine")

MODES = ("equivocate", "mutate", "flood")
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
        log.warning("BYZANTINE TEST MODE: %s", mode)

    def start(self) -> None:
        if self.mode == "flood":
            self._task = asyncio.create_task(self._flood())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def unicast(self, peer: str, msg: Message) -> None:
        self.send(peer, "consensus", self._maybe_mutate(encode_message(msg)))

    def broadcast(self, msg: Message) -> None:
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
