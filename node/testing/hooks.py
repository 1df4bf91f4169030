"""The hooks a test node runs with, read from its ``MDTP_TEST_*`` environment switches.

- ``MDTP_TEST_BYZANTINE=equivocate|mutate|flood|flood-signed``: see :mod:`.byzantine`;
- ``MDTP_TEST_BYZANTINE=slow-primary``: as primary, propose only just under the view-change
  timeout: each proposal waits ``view_timeout_ms - margin`` after work is pending (margin
  ``MDTP_TEST_SLOW_PRIMARY_MARGIN_MS``, default a tenth of the timeout), with one proposal in
  flight that takes everything pending, so neither the progress timer nor a per-request timer
  of an honest backup fires (Aardvark's slow primary); otherwise honest;
- ``MDTP_TEST_BYZANTINE_DATASETS=ID,...``: serve tampered chunks of these datasets;
- ``MDTP_TEST_CENSOR=ACCOUNT_ID,...``: as primary, never propose these accounts'
  transactions (while proposing everyone else's, so blocks keep committing);
- ``MDTP_TEST_DISK_DELAY_MS=N``: every store write waits N ms (a slow disk, see
  :mod:`.slow_disk`);
- ``MDTP_TEST_STATE_SERVER=drip|lie|drip,lie``: answer state-transfer requests with one
  block just before the requester's timeout, or with a tampered block (see
  :mod:`.state_server`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os

from mdtp.node.app.hooks import NodeHooks
from mdtp.node.chain.driver import DriverLimits
from mdtp.node.chain.outbox import ConsensusOutbox, OutboxContext
from mdtp.node.ledger.tx import Tx
from mdtp.node.testing import tamper
from mdtp.node.testing.byzantine import ByzantineSender, mode_from_env
from mdtp.node.testing.slow_disk import disk_from_env
from mdtp.node.testing.state_server import server_from_env

CENSOR_ENV = "MDTP_TEST_CENSOR"
SLOW_PRIMARY_MARGIN_ENV = "MDTP_TEST_SLOW_PRIMARY_MARGIN_MS"
log = logging.getLogger("mdtp.testing")


def _byzantine_outbox(mode: str, ctx: OutboxContext) -> ConsensusOutbox:
    return ByzantineSender(mode, ctx.node_id, ctx.peers, ctx.chain_id, ctx.sign, ctx.send)


def _censor(victims: frozenset[str], txs: list[Tx]) -> list[Tx]:
    return [tx for tx in txs if tx.sender not in victims]


def slow_primary_limits(
    margin_ms: int | None, limits: DriverLimits, timeout_ms: int
) -> DriverLimits:
    """A primary that holds every proposal until just under the view-change timeout."""
    margin = timeout_ms // 10 if margin_ms is None else margin_ms
    return dataclasses.replace(
        limits,
        proposal_wait_ms=max(0, timeout_ms - margin),
        # one block at a time, taking all that is pending (up to the block limit every
        # backup enforces), so nothing waits for a second turn
        proposals_in_flight_max=1,
    )


def hooks_from_env() -> NodeHooks:
    hooks = NodeHooks(chunk=tamper.hook_from_env())
    hooks = dataclasses.replace(hooks, disk=disk_from_env(), state_server=server_from_env())
    victims = frozenset(a for a in os.environ.get(CENSOR_ENV, "").split(",") if a)
    if victims:
        log.warning("TEST HOOK: censoring the transactions of %s", sorted(victims))
        hooks = dataclasses.replace(hooks, proposal_filter=functools.partial(_censor, victims))
    mode = mode_from_env()
    if not mode:
        return hooks
    if mode == "slow-primary":
        raw = os.environ.get(SLOW_PRIMARY_MARGIN_ENV)
        margin = int(raw) if raw else None
        return dataclasses.replace(
            hooks, driver_limits=functools.partial(slow_primary_limits, margin)
        )
    return dataclasses.replace(hooks, consensus_outbox=functools.partial(_byzantine_outbox, mode))
