"""The trading rules: accounts, catalog, contracts and their fulfilment, billing (invoices
derived from terms, receipts and block time; payments) and disputes, as ledger handlers.

``install(ledger, genesis)`` registers every transaction type and makes the ledger resolve
sender keys from the account records (so rotated and revoked keys are honoured);
``genesis_writes(genesis)`` is the state a chain starts from. ``queries`` reads the state
for the API and CLI. Every reason a transaction can fail with is in ``reasons``.
"""

from __future__ import annotations

from mdtp.node.identity.genesis import Genesis
from mdtp.node.ledger.machine import Ledger
from mdtp.node.ledger.trading import (
    accounts,
    billing,
    catalog,
    compute,
    contracts,
    disputes,
    fulfilment,
)
from mdtp.node.ledger.trading.reasons import REASON_CODES

__all__ = ["REASON_CODES", "genesis_writes", "install"]


def install(ledger: Ledger, genesis: Genesis) -> None:
    """Register the trading transaction types on ``ledger`` and its key resolver."""
    assert ledger.chain_id == genesis.chain_id, (ledger.chain_id, genesis.chain_id)
    accounts.register(ledger)
    catalog.register(ledger)
    contracts.register(ledger)
    fulfilment.register(ledger)
    compute.register(ledger)
    billing.register(ledger)
    disputes.register(ledger)
    ledger.key_resolver = accounts.resolve_key


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """Initial state: member records, their node accounts and the genesis admin accounts."""
    return accounts.genesis_writes(genesis)
