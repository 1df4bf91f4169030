"""The hooks a test node runs with, read from its ``MDTP_TEST_*`` environment switches."""

from __future__ import annotations

import dataclasses
import functools

from mdtp.node.app.hooks import NodeHooks
from mdtp.node.chain.outbox import ConsensusOutbox, OutboxContext
from mdtp.node.testing import tamper
from mdtp.node.testing.byzantine import ByzantineSender, mode_from_env


def _byzantine_outbox(mode: str, ctx: OutboxContext) -> ConsensusOutbox:
    return ByzantineSender(mode, ctx.node_id, ctx.peers, ctx.chain_id, ctx.sign, ctx.send)


def hooks_from_env() -> NodeHooks:
    hooks = NodeHooks(chunk=tamper.hook_from_env())
    mode = mode_from_env()
    if not mode:
        return hooks
    return dataclasses.replace(hooks, consensus_outbox=functools.partial(_byzantine_outbox, mode))
