"""The ledger of a chain as every node runs it: the rules installed for its genesis, the
genesis state, and a block store bound to that chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdtp.node.identity.genesis import Genesis
from mdtp.node.ledger import governance, notes, trading
from mdtp.node.ledger.state import genesis_state_root, next_state_root
from mdtp.storage.blockstore import BlockStore
from mdtp.storage.errors import StorageError


@dataclass(frozen=True)
class ChainLedger:
    ledger: governance.GovernedLedger
    genesis_writes: dict[bytes, bytes]
    genesis_root: bytes


def build_ledger(genesis: Genesis) -> ChainLedger:
    ledger = governance.GovernedLedger(genesis.chain_id)
    notes.register(ledger)
    trading.install(ledger, genesis)
    governance.install(ledger, genesis)
    writes = {**trading.genesis_writes(genesis), **governance.genesis_writes(genesis)}
    root = next_state_root(genesis_state_root(genesis.hash()), dict(writes))
    return ChainLedger(ledger, writes, root)


def open_store(
    path: Path, genesis: Genesis, chain: ChainLedger, *, sync: bool = True
) -> BlockStore:
    """The block store at ``path``, bound to this chain and checked for consistency."""
    store = BlockStore(path, sync=sync)
    try:
        store.bind_chain(genesis.chain_id, genesis.hash(), chain.genesis_root)
        store.apply_genesis_state(chain.genesis_writes)
        store.check()
    except StorageError:
        store.close()
        raise
    return store
