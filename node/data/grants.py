"""``access.grant``: the supplier's node seals the dataset key to the consumer once a contract
on one of its datasets is ACTIVE, and again whenever the consumer rotates its encryption key.

A contract can become active only by the ``contract.sign`` or ``contract.review`` that
completes it, and a consumer's encryption key changes only by ``account.rotate_key``, so the
commit listener reacts to those executed transactions (as the driver hands them over,
decoded, with their results) and checks the contract in the committed state: a contract
needs a grant when its latest grant is not sealed to the consumer's current key. After a
restart, :meth:`Grants.grant_missing` catches up on any active contract of this node's
datasets that needs one. A grant that fails or does not commit is retried, in a loop, after
a pause that doubles from ``GRANT_RETRY_S`` up to ``GRANT_RETRY_MAX_S``, until the contract no
longer needs one; one the ledger refuses by rule (e.g. the contract's grant limit) is counted
by reason and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import nacl.public

from mdtp.node.data.audit import audit_log
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger, TxSubmitter, ledger_now_ms
from mdtp.node.data.signer import NodeSigner
from mdtp.node.data.tasks import Tasks
from mdtp.node.ledger.machine import TxResult
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.contracts import Status, effective_status, load_contract
from mdtp.node.ledger.trading.queries import list_contracts
from mdtp.node.ledger.trading.reasons import TRADING_REASONS
from mdtp.storage.chunkstore import ChunkStore

log = logging.getLogger("mdtp.data")

ACTIVATING_TYPES = frozenset({"contract.sign", "contract.review"})
KEY_ROTATION = "account.rotate_key"
GRANT_COMMIT_WAIT_S = 120
GRANT_RETRY_S = 2
GRANT_RETRY_MAX_S = 60
_PAGE = 100


class Grants:
    def __init__(
        self,
        *,
        node_id: str,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        store: ChunkStore,
        keys: KeyStore,
        signer: NodeSigner,
        tasks: Tasks,
        metrics: DataMetrics,
    ) -> None:
        self.node_id = node_id
        self._ledger = ledger
        self._submitter = submitter
        self._store = store
        self._keys = keys
        self._signer = signer
        self._tasks = tasks
        self._metrics = metrics
        self._granting: set[str] = set()

    def on_commit(self, _height: int, results: Sequence[TxResult]) -> None:
        """Commit listener: grant the contracts that the block's transactions may activate."""
        for r in results:
            if not r.ok or r.tx is None:
                continue
            if r.tx.type in ACTIVATING_TYPES:
                contract_id = r.tx.body.get("contract_id")
                if isinstance(contract_id, str):
                    self._tasks.spawn(self.grant(contract_id))
            elif r.tx.type == KEY_ROTATION and "encryption_public_key" in r.tx.body:
                self._tasks.spawn(self._grant_all(account=r.tx.sender))

    async def grant_missing(self) -> None:
        """After a restart: grant every active contract on our datasets that needs one."""
        for dataset_id in self._store.datasets():
            await self._grant_all(dataset=dataset_id)

    async def _grant_all(self, *, account: str | None = None, dataset: str | None = None) -> None:
        """Grant the active contracts of ``account`` (either party) or of ``dataset``."""
        after: str | None = None
        while True:
            page = list_contracts(
                self._ledger.state,
                at_ms=ledger_now_ms(self._ledger),
                account=account,
                dataset=dataset,
                status="ACTIVE",
                after=after,
                limit=_PAGE,
            )
            for contract in page:
                await self.grant(contract["id"])
            if len(page) < _PAGE:
                break
            after = page[-1]["id"]

    def _needs_grant(self, contract: dict[str, Any]) -> bool:
        """No grant yet, or the latest is sealed to a key the consumer no longer holds."""
        consumer = load_account(self._ledger.state, contract["consumer"])
        if contract["grants"] == 0 or consumer is None:
            return True
        latest = layout.read(
            self._ledger.state, layout.grant_key(contract["id"], contract["grants"])
        )
        return latest is None or bytes(latest["sealed_to"]) != bytes(
            consumer["encryption_public_key"]
        )

    async def grant(self, contract_id: str) -> None:
        """Post ``access.grant`` for the contract if it is ours, ACTIVE and has none yet;
        retried with a capped, doubling pause until the contract no longer needs one.

        A loop, not a recursion: a grant that keeps failing keeps one frame, and cancelling
        the task (at shutdown) ends it in the pause or in the submit alike.
        """
        pause = GRANT_RETRY_S
        while await self._grant_once(contract_id):
            await asyncio.sleep(pause)
            pause = min(pause * 2, GRANT_RETRY_MAX_S)

    async def _grant_once(self, contract_id: str) -> bool:
        """One attempt at :meth:`grant`; whether it is to be retried."""
        state = self._ledger.state
        contract = load_contract(state, contract_id)
        if (
            contract is None
            or contract["supplier_node"] != self.node_id
            or not self._needs_grant(contract)
            or effective_status(contract, ledger_now_ms(self._ledger)) != Status.ACTIVE
            or contract_id in self._granting
        ):
            return False
        key = self._keys.get(contract["dataset_id"])
        consumer = load_account(state, contract["consumer"])
        if key is None or consumer is None or len(consumer["encryption_public_key"]) != 32:
            log.error("cannot grant contract %s: no dataset key or consumer key", contract_id)
            return False
        sealed = nacl.public.SealedBox(
            nacl.public.PublicKey(bytes(consumer["encryption_public_key"]))
        ).encrypt(key)
        self._granting.add(contract_id)
        try:
            tx_id = await self._signer.submit(
                "access.grant", {"contract_id": contract_id, "sealed_key": bytes(sealed)}
            )
            self._metrics.records_posted.labels("access.grant").inc()
            audit_log.info("granted access to contract %s (tx %s)", contract_id, tx_id.hex())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._submitter.wait_committed(tx_id), GRANT_COMMIT_WAIT_S)
        except Exception as e:  # a failed grant is retried by grant()
            log.error("cannot post access grant for %s: %s", contract_id, e)
        else:
            location = self._ledger.tx_location(tx_id)
            if location is not None and not location.ok and location.reason in TRADING_REASONS:
                self._metrics.grants_refused.labels(location.reason).inc()
                log.error("the ledger refused the grant of %s: %s", contract_id, location.reason)
                return False
        finally:
            self._granting.discard(contract_id)
        after = load_contract(self._ledger.state, contract_id)
        return after is not None and self._needs_grant(after)
