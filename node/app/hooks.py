"""Behaviour that an entry point outside the daemon may install into a node.

Production code never sets these: the defaults are the honest parts. The fault suite starts
nodes through ``python -m mdtp.node.testing`` (see :mod:`mdtp.node.testing.hooks`), which reads
its ``MDTP_TEST_*`` switches and passes the resulting hooks in, so no production module
imports a test switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mdtp.node.chain.driver import DriverLimits, ProposalFilter
from mdtp.node.chain.outbox import OutboxFactory, WireOutbox
from mdtp.node.chain.ports import Disk
from mdtp.node.chain.statesync import StateServer
from mdtp.node.data.ports import ChunkHook


@dataclass(frozen=True)
class NodeHooks:
    consensus_outbox: OutboxFactory = WireOutbox
    chunk: ChunkHook | None = None  # None: the chunk service sends what it read
    proposal_filter: ProposalFilter | None = None  # None: a primary proposes what it has
    # None: the limits of the node's config; else (limits, view timeout ms) -> the limits
    # the driver runs with (a test primary that proposes late, see mdtp.node.testing)
    driver_limits: Callable[[DriverLimits, int], DriverLimits] | None = None
    disk: Callable[[], Disk] | None = None  # None: the real disk (one writer thread)
    state_server: StateServer | None = None  # None: state transfer answers honestly
