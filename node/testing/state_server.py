"""A Byzantine state-transfer server for test nodes (``MDTP_TEST_STATE_SERVER``): how this
node answers the members that catch up from it.

- ``drip``: one valid block (of the blocks asked for), sent just before the requester's
  timeout, so a node that kept asking this peer would stay behind a chain under load;
- ``lie``: the blocks asked for with the first one tampered with (its state root changed, so
  its hash no longer matches its commit certificate), the response signed by this node so
  that it passes the requester's signature check and fails only the chain's;
- ``drip,lie``: the two in turn, one per request of each requester (so one member's
  requests do not change what another is answered).

The requester (:class:`mdtp.node.chain.statesync.StateSync`) must strike such a peer, ask
the others and catch up anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Iterator

from mdtp.consensus.messages import StateTransferResponse, sign_message
from mdtp.node.chain.statesync import ServeContext, StateServer

MODE_ENV = "MDTP_TEST_STATE_SERVER"
MODES = ("drip", "lie")
# how long before the requester's timeout a drip answer is sent (the link's latency and a
# loaded machine must not turn it into a timeout)
DRIP_MARGIN_S = 1.0
log = logging.getLogger("mdtp.testing")
Answer = Callable[[StateTransferResponse, ServeContext], None]


def drip(response: StateTransferResponse, ctx: ServeContext) -> None:
    if not response.entries:
        ctx.send(response)
        return
    one = sign_message(
        StateTransferResponse(response.entries[:1], response.sender), ctx.chain_id, ctx.sign
    )
    delay_s = max(0.0, ctx.timeout_s - DRIP_MARGIN_S)
    asyncio.get_running_loop().call_later(delay_s, ctx.send, one)


def lie(response: StateTransferResponse, ctx: ServeContext) -> None:
    if not response.entries:
        ctx.send(response)
        return
    (block, cert), *rest = response.entries
    root = bytes(b ^ 0xFF for b in block.header.state_root)
    wrong = dataclasses.replace(block, header=dataclasses.replace(block.header, state_root=root))
    tampered = StateTransferResponse(((wrong, cert), *rest), response.sender)
    ctx.send(sign_message(tampered, ctx.chain_id, ctx.sign))


def server_from_env() -> StateServer | None:
    """The server ``MDTP_TEST_STATE_SERVER`` names (modes separated by commas take turns)."""
    modes = [m for m in os.environ.get(MODE_ENV, "").split(",") if m]
    if not modes:
        return None
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"{MODE_ENV}: unknown modes {unknown}, expected some of {MODES}")
    log.warning("TEST HOOK: serving state transfer as %s", ",".join(modes))
    answers = [{"drip": drip, "lie": lie}[m] for m in modes]
    turns: dict[str, Iterator[Answer]] = {}

    def serve(response: StateTransferResponse, ctx: ServeContext) -> None:
        next(turns.setdefault(ctx.requester, itertools.cycle(answers)))(response, ctx)

    return serve
