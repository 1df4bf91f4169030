"""Governance of the consortium on the ledger: membership changes proposed and voted by
member admins (``member.propose``, ``member.vote``), and the membership history (epochs)
the consensus driver reads (:mod:`.membership`).

``install(ledger, genesis)`` registers the transaction types; ``genesis_writes(genesis)``
is epoch 0. The ledger must be a :class:`GovernedLedger` for passed changes to reach the
accounts at their activation height.
"""

from __future__ import annotations

from mdtp.node.identity.genesis import Genesis
from mdtp.node.ledger.governance import rules
from mdtp.node.ledger.governance.rules import GovernedLedger
from mdtp.node.ledger.machine import Ledger

__all__ = ["GovernedLedger", "genesis_writes", "install"]


def install(ledger: Ledger, genesis: Genesis) -> None:
    assert ledger.chain_id == genesis.chain_id, (ledger.chain_id, genesis.chain_id)
    rules.register(ledger, genesis)


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    return rules.genesis_writes(genesis)
