"""The membership history, proven offline from genesis and certified blocks.

``GET /v1/members/history?proofs=1`` (``mdtp member history --proofs``) exports every epoch
with, for each epoch after the first, the certified blocks that hold the proposal that made
it and the approvals that passed it: each a :class:`TxProof` (the block's bytes, its commit
certificate's bytes and the transaction's index). :func:`verify_history` rebuilds the whole
history from genesis alone, epoch by epoch, trusting no node:

1. every block is certified by a quorum of the epoch in effect at its height (the epochs
   proven so far: a change takes effect a window after it passes, so the epoch of every
   proof block is known before it is needed), and holds the named transaction;
2. the proposal is a ``member.propose`` by an admin of a member in effect at its height; each
   approval a ``member.vote`` for it, ``approve`` true, by an admin of a member in effect;
3. the approving members current at the last approval's height exceed the policy's threshold
   there (the ledger's rule);
4. the new epoch is the previous one with the proposal's change applied, in effect from
   :func:`.membership.activation_height` of that height — it must equal the exported record.

With the proven history, :func:`certifiers` says who certifies any height, which is what an
audit entry of any epoch is checked against (``mdtp verify-receipt --history``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mdtp.consensus.block import Block
from mdtp.consensus.certificates import verify_commit_certificate
from mdtp.consensus.codec import unpack_canonical
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.messages import DEFAULT_LIMITS, CommitCertificate
from mdtp.consensus.state_transfer import Certifiers
from mdtp.node.identity.genesis import Genesis, MemberSignatures
from mdtp.node.ledger.governance.membership import (
    Epoch,
    activation_height,
    epoch_at,
    genesis_epoch,
    membership_of,
)
from mdtp.node.ledger.governance.rules import apply_change, parse_change
from mdtp.node.ledger.trading.schema import Fields
from mdtp.node.ledger.tx import Tx, TxError, decode_tx

# An exported history is a handful of epochs, each proven by a few blocks.
EPOCHS_MAX = 1_000
APPROVALS_MAX = 64


class HistoryError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class TxProof:
    """One transaction and the certified block that holds it."""

    height: int
    index: int
    tx_id: bytes
    block_bytes: bytes
    certificate_bytes: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "index": self.index,
            "tx_id": self.tx_id.hex(),
            "block_bytes": self.block_bytes.hex(),
            "certificate_bytes": self.certificate_bytes.hex(),
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> TxProof:
        if not isinstance(doc, Mapping):
            raise HistoryError("bad_proof", f"{where}: an object expected")
        try:
            height, index = doc["height"], doc["index"]
            if type(height) is not int or type(index) is not int or height < 1 or index < 0:
                raise ValueError("height and index must be integers")
            return cls(
                height,
                index,
                bytes.fromhex(doc["tx_id"]),
                bytes.fromhex(doc["block_bytes"]),
                bytes.fromhex(doc["certificate_bytes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError("bad_proof", f"{where}: {e}") from None


def certifiers(genesis: Genesis, epochs: Sequence[Epoch], height: int) -> Certifiers:
    """Who certifies ``height`` by a proven history: the quorum of its epoch, in its domain."""
    epoch = epoch_at(list(epochs), height)
    domain = ConsensusConfig.domain_of(genesis.chain_id, epoch.number)
    return Certifiers(genesis.chain_id, epoch.member_ids, domain, MemberSignatures(epoch.members))


def certified_block(
    genesis: Genesis, epochs: Sequence[Epoch], height: int, raw_block: bytes, raw_cert: bytes
) -> tuple[Block, CommitCertificate]:
    """Decode a block and its certificate and check that the quorum of the block's epoch
    certified it; raises :class:`HistoryError` (``bad_block``, ``bad_certificate``)."""
    limits = DEFAULT_LIMITS
    try:
        block = Block.from_wire(
            unpack_canonical(raw_block, limits.message_bytes_max),
            limits.block_txs_max,
            limits.tx_bytes_max,
        )
        cert = CommitCertificate.from_wire(
            unpack_canonical(raw_cert, limits.message_bytes_max), limits
        )
    except ConsensusError as e:
        raise HistoryError("bad_block", f"block or certificate bytes do not decode: {e}") from None
    if block.height != height:
        raise HistoryError("bad_block", f"block is at height {block.height}, not {height}")
    who = certifiers(genesis, epochs, height)
    try:
        verify_commit_certificate(who.members, who.chain_id, block, cert, who.verify, who.domain)
    except ConsensusError as e:
        raise HistoryError(
            "bad_certificate",
            f"block {height} is not certified by the members of epoch {who.domain}: {e}",
        ) from None
    return block, cert


def _proven_tx(genesis: Genesis, epochs: Sequence[Epoch], proof: TxProof) -> Tx:
    block, _ = certified_block(
        genesis, epochs, proof.height, proof.block_bytes, proof.certificate_bytes
    )
    if proof.index >= len(block.payload):
        raise HistoryError("bad_proof", f"block {proof.height} has no transaction {proof.index}")
    raw = block.payload[proof.index]
    try:
        tx = decode_tx(raw, chain_id=genesis.chain_id, max_bytes=len(raw))
    except TxError as e:
        raise HistoryError("bad_proof", f"transaction does not decode: {e}") from None
    if tx.id != proof.tx_id:
        raise HistoryError("bad_proof", f"transaction {proof.index} of {proof.height} differs")
    return tx


def _admin_member(epochs: Sequence[Epoch], height: int, tx: Tx) -> str:
    member = epoch_at(list(epochs), height).admin_member(tx.sender)
    if member is None:
        raise HistoryError("not_member_admin", f"{tx.sender} is no member's admin at {height}")
    return member


def verify_history(doc: Any, genesis: Genesis) -> list[Epoch]:
    """Every epoch of an exported history with proofs, rebuilt from genesis; raises
    :class:`HistoryError` with a stable reason on the first thing that does not hold."""
    records = doc.get("epochs") if isinstance(doc, Mapping) else None
    if not isinstance(records, list) or not 1 <= len(records) <= EPOCHS_MAX:
        raise HistoryError("bad_history", "an object with a list of epochs expected")
    epochs = [genesis_epoch(genesis)]
    if _record(records[0]) != _record(epochs[0].to_record()):
        raise HistoryError("history_mismatch", "epoch 0 is not the genesis membership")
    params = genesis.consensus
    for number, record in enumerate(records[1:], start=1):
        proof = record.get("proof") if isinstance(record, Mapping) else None
        if not isinstance(proof, Mapping) or not isinstance(proof.get("approvals"), list):
            raise HistoryError("bad_proof", f"epoch {number} carries no proof")
        if len(proof["approvals"]) > APPROVALS_MAX:
            raise HistoryError("bad_proof", f"epoch {number}: too many approvals")
        proposal = TxProof.from_json(proof.get("proposal"), f"epoch {number} proposal")
        tx = _proven_tx(genesis, epochs, proposal)
        if tx.type != "member.propose":
            raise HistoryError("bad_proof", f"epoch {number}: the proposal is a {tx.type}")
        try:
            f = Fields(tx.body)
            proposal_id = f.ident("proposal_id")
            change = parse_change(f.nested("change"))
        except Exception as e:  # the ledger accepted it, so a refusal here is a forgery
            raise HistoryError("bad_proof", f"epoch {number}: proposal body: {e}") from None
        approvals = {_admin_member(epochs, proposal.height, tx): proposal.height}
        for i, raw in enumerate(proof["approvals"]):
            vote = TxProof.from_json(raw, f"epoch {number} approval {i}")
            vtx = _proven_tx(genesis, epochs, vote)
            body = vtx.body if isinstance(vtx.body, Mapping) else {}
            if (
                vtx.type != "member.vote"
                or body.get("proposal_id") != proposal_id
                or body.get("approve") is not True
            ):
                raise HistoryError("bad_proof", f"epoch {number}: approval {i} is no approval")
            approvals[_admin_member(epochs, vote.height, vtx)] = vote.height
        passed_at = max(approvals.values())
        judged = membership_of(epoch_at(epochs, passed_at))
        counted = sum(1 for m in approvals if m in judged.epoch.member_ids)
        if not judged.epoch.policy.passes(counted, judged.n):
            raise HistoryError(
                "not_approved", f"epoch {number}: {counted} of {judged.n} members approved"
            )
        members, admins, policy, observers = apply_change(change, epochs[-1])
        epoch = Epoch(
            number,
            activation_height(
                passed_at, params.checkpoint_interval, params.window, epochs[-1].activation_height
            ),
            tuple(sorted(members, key=lambda m: m.id)),
            tuple(sorted(admins, key=lambda a: (a.member, a.account_id))),
            policy,
            proposal_id,
            tuple(sorted(observers, key=lambda o: o.id)),
        )
        if _record(record) != _record(epoch.to_record()):
            raise HistoryError(
                "history_mismatch", f"epoch {number} differs from what its proofs establish"
            )
        epochs.append(epoch)
    return epochs


def _record(doc: Any) -> Any:
    """The fields of an epoch record that the proofs establish (not the derived n, f, ...)."""
    if not isinstance(doc, Mapping):
        return None
    keys = (
        "epoch",
        "activation_height",
        "members",
        "admins",
        "policy",
        "proposal_id",
        "observers",
    )
    return {k: doc.get(k) for k in keys}
