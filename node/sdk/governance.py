"""Python SDK for governance: propose and vote membership changes, read the membership, its
history and the proposals, on top of :class:`node.sdk.trading.TradingClient` (same signer,
nonces, ``wait=1`` submission and :class:`TxFailed` errors).

::

    async with NodeClient.of_home("127.0.0.1:26601", Path("home")) as node:
        g = GovernanceClient(TradingClient(node))
        member = NewMember.from_json(json.loads(Path("member.json").read_text()))
        await g.propose(admin_key, "add-acme", AddMember(member))
        await g.vote(other_admin_key, "add-acme")           # approve
        print((await g.proposal("add-acme"))["status"])      # open | passed | ...
        print(await g.history())                             # every epoch

A proposal's expiry is judged by block time; :meth:`GovernanceClient.propose` defaults it to
``lifetime_ms`` from this machine's clock.
"""

from __future__ import annotations

import time
from typing import Any

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.governance.bodies import (
    AddMember,
    AdminKeys,
    Change,
    MemberPropose,
    MemberVote,
    NewMember,
    PolicyChange,
    RemoveMember,
    RotateCertificate,
    RotateNodeKey,
)
from mdtp.node.sdk.trading import Committed, TradingClient

__all__ = [
    "AddMember",
    "AdminKeys",
    "GovernanceClient",
    "NewMember",
    "PolicyChange",
    "RemoveMember",
    "RotateCertificate",
    "RotateNodeKey",
]

DEFAULT_LIFETIME_MS = 7 * 86_400_000


class GovernanceClient:
    def __init__(self, trading: TradingClient) -> None:
        self.trading = trading

    # -- transactions ---------------------------------------------------------------------

    async def propose(
        self,
        admin: SigningKey,
        proposal_id: str,
        change: Change,
        *,
        expires_at_ms: int | None = None,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
    ) -> Committed:
        """Propose ``change`` signed by a member admin (whose member then approves it)."""
        if expires_at_ms is None:
            expires_at_ms = int(time.time() * 1000) + lifetime_ms
        return await self.trading.send(admin, MemberPropose(proposal_id, change, expires_at_ms))

    async def vote(self, admin: SigningKey, proposal_id: str, approve: bool = True) -> Committed:
        """Vote for the admin's member; a later vote of the same member replaces this one."""
        return await self.trading.send(admin, MemberVote(proposal_id, approve))

    # -- reads ----------------------------------------------------------------------------

    async def _get(self, path: str, **params: Any) -> Any:
        clean = {k: str(v) for k, v in params.items() if v is not None}
        return await self.trading.node.get(path, **clean)

    async def members(self) -> dict[str, Any]:
        """``{"as_of_height", "current": epoch, "scheduled": [epoch, ...]}``."""
        doc: dict[str, Any] = await self._get("/v1/members")
        return doc

    async def history(self) -> list[dict[str, Any]]:
        """Every epoch, epoch 0 (genesis) first."""
        epochs: list[dict[str, Any]] = (await self._get("/v1/members/history"))["epochs"]
        return epochs

    async def history_with_proofs(self) -> dict[str, Any]:
        """``{"as_of_height", "epochs"}`` with each later epoch's proof: the certified blocks
        of its proposal and approvals. An auditor checks it offline with genesis alone
        (``mdtp.node.ledger.governance.proofs.verify_history``; ``mdtp verify-receipt
        --history``), so it may come from any node."""
        doc: dict[str, Any] = await self._get("/v1/members/history", proofs=1)
        return doc

    async def proposals(
        self, *, status: str | None = None, after: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page: ``{"as_of_height", "proposals", "next_after"}``."""
        doc: dict[str, Any] = await self._get(
            "/v1/proposals", status=status, after=after, limit=limit
        )
        return doc

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get(f"/v1/proposals/{proposal_id}"))["proposal"]
        return doc
