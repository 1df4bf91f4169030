"""A one-process chain of n members with governance installed as the node installs it
(:func:`mdtp.node.ledger.setup.build_ledger`), one block per ``run``."""

from __future__ import annotations

import hashlib
from typing import Any

from mdtp.node.identity.genesis import Admin, Genesis, Member
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.governance.membership import membership_at
from mdtp.node.ledger.governance.rules import load_proposal
from mdtp.node.ledger.machine import BlockContext, TxResult, account_nonce
from mdtp.node.ledger.setup import build_ledger
from mdtp.node.ledger.state import MemoryKV, Overlay
from mdtp.node.ledger.tx import sign_tx

CHAIN_ID = "mdtp-gov-test"
T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def member_ids(n: int) -> list[str]:
    return [f"m{i}" for i in range(1, n + 1)]


class Gov:
    def __init__(self, n: int = 4, admins_per_member: int = 1) -> None:
        ids = member_ids(n)
        self.node_keys = {m: SigningKey.generate() for m in ids}
        self.admin_keys = {
            m: [SigningKey.generate(with_encryption=True) for _ in range(admins_per_member)]
            for m in ids
        }
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time_ms=T0,
            members=tuple(
                Member(
                    id=m,
                    name=f"Member {m}",
                    node_public_key=self.node_keys[m].public_key.hex(),
                    tls_fingerprint=digest(f"tls {m}").hex(),
                    p2p=f"127.0.0.1:{7000 + i}",
                    api=f"127.0.0.1:{7100 + i}",
                )
                for i, m in enumerate(ids)
            ),
            admins=tuple(
                Admin(
                    member=m,
                    account_id=k.account_id,
                    public_key=k.public_key.hex(),
                    encryption_public_key=(k.encryption_public_key or b"").hex(),
                )
                for m, keys in self.admin_keys.items()
                for k in keys
            ),
        )
        chain = build_ledger(self.genesis)
        self.ledger = chain.ledger
        self.kv = MemoryKV(dict(chain.genesis_writes))
        self.height = 0
        self.time_ms = T0
        self.pending: dict[str, int] = {}

    def admin(self, member: str, i: int = 0) -> SigningKey:
        return self.admin_keys[member][i]

    def tx(self, signer: SigningKey, type_: str, body: dict[str, Any]) -> bytes:
        sender = signer.account_id
        nonce = account_nonce(Overlay(self.kv), sender) + self.pending.get(sender, 0) + 1
        self.pending[sender] = self.pending.get(sender, 0) + 1
        return sign_tx(
            signer,
            chain_id=CHAIN_ID,
            type_=type_,
            sender=sender,
            nonce=nonce,
            expires_at_ms=2**62,
            body=body,
        )

    def run(self, *txs: bytes, at_ms: int | None = None) -> list[TxResult]:
        self.height += 1
        self.time_ms = at_ms if at_ms is not None else self.time_ms + 1000
        ctx = BlockContext(CHAIN_ID, self.height, self.time_ms, "m1")
        state = Overlay(self.kv)
        results = self.ledger.execute_block(ctx, state, txs)
        self.kv.apply(state.writes)
        self.pending.clear()
        return results

    def advance_to(self, height: int) -> None:
        while self.height < height:
            self.run()

    def submit(
        self, signer: SigningKey, type_: str, body: dict[str, Any], at_ms: int | None = None
    ) -> TxResult:
        return self.run(self.tx(signer, type_, body), at_ms=at_ms)[0]

    def ok(self, signer: SigningKey, type_: str, body: dict[str, Any], **kw: Any) -> TxResult:
        result = self.submit(signer, type_, body, **kw)
        assert result.ok, (type_, result.reason, result.detail)
        return result

    def refused(
        self, reason: str, signer: SigningKey, type_: str, body: dict[str, Any], **kw: Any
    ) -> TxResult:
        before = dict(self.kv.data)
        result = self.submit(signer, type_, body, **kw)
        assert not result.ok, f"{type_} was accepted; expected {reason}"
        assert result.reason == reason, (result.reason, result.detail)
        changed = {
            k for k in set(before) | set(self.kv.data) if before.get(k) != self.kv.data.get(k)
        }
        assert all(k.startswith(b"nonce/") for k in changed), changed
        return result

    # ---- governance ------------------------------------------------------------------

    def propose_body(
        self, proposal_id: str, change: dict[str, Any], expires_in_ms: int = 24 * HOUR_MS
    ) -> dict[str, Any]:
        # the next block's time is self.time_ms + 1000
        return {
            "proposal_id": proposal_id,
            "change": change,
            "expires_at_ms": self.time_ms + expires_in_ms,
        }

    def propose(self, member: str, proposal_id: str, change: dict[str, Any], **kw: Any) -> TxResult:
        return self.ok(
            self.admin(member), "member.propose", self.propose_body(proposal_id, change, **kw)
        )

    def vote(self, member: str, proposal_id: str, approve: bool = True, i: int = 0) -> TxResult:
        return self.ok(
            self.admin(member, i), "member.vote", {"proposal_id": proposal_id, "approve": approve}
        )

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        record = load_proposal(self.kv, proposal_id)
        assert record is not None
        return record

    def members_now(self) -> list[str]:
        return [m.id for m in membership_at(self.kv, self.height).members]


class NewMember:
    """The public facts of a member to add, with its keys."""

    def __init__(self, member_id: str, admins: int = 1) -> None:
        self.id = member_id
        self.node_key = SigningKey.generate()
        self.admin_keys = [SigningKey.generate(with_encryption=True) for _ in range(admins)]
        self.fingerprint = digest(f"tls {member_id}")

    def change(self, **overrides: Any) -> dict[str, Any]:
        member: dict[str, Any] = {
            "id": self.id,
            "name": f"Member {self.id}",
            "node_public_key": self.node_key.public_key,
            "tls_fingerprint": self.fingerprint,
            "p2p": "10.0.0.5:26656",
            "api": "10.0.0.5:26601",
            "admins": [
                {
                    "public_key": k.public_key,
                    "encryption_public_key": k.encryption_public_key or bytes(32),
                }
                for k in self.admin_keys
            ],
            **overrides,
        }
        return {"kind": "add", "member": member}
