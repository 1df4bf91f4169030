"""Every reason code a trading transaction can fail with, in one place.

The API returns these codes, the CLI prints them and the metrics label by them, so they are
stable: a code is never renamed or reused for a different meaning. :func:`refuse` is the only
way the trading rules raise a :class:`Refusal`, and it asserts the code is listed here, so a
typo in a handler is a crash in the tests instead of an undocumented code in production.

``MACHINE_REASONS`` are the codes of the common checks in ``node.ledger.machine`` (and of
``node.tx`` decoding) that apply to every transaction before any trading rule runs.
"""

from __future__ import annotations

from typing import NoReturn

from mdtp.node.ledger.machine import Refusal

MACHINE_REASONS: dict[str, str] = {
    "malformed": "the transaction does not decode",
    "non_canonical": "the transaction is not canonically encoded",
    "wrong_chain": "the transaction is for another chain",
    "expired": "the block time is past the transaction's expires_at_ms",
    "unknown_sender": "the sender is not a registered account",
    "wrong_key": "signed by a key that is not the sender's current key",
    "revoked": "the sender's account is revoked",
    "bad_nonce": "the nonce is not the sender's last nonce + 1",
    "unknown_type": "no such transaction type",
}

TRADING_REASONS: dict[str, str] = {
    # body validation
    "bad_body": "a body field is missing, unknown, of the wrong type or out of range",
    "bad_period": "a period ends before it starts, or has already ended",
    # accounts
    "not_registered": "the sender is not a registered account; trading needs one",
    "not_admin": "the sender is not an admin of the account's member",
    "account_id_mismatch": "the account id is not derived from the public key",
    "account_exists": "an account with this id is already registered",
    "key_in_use": "the public key is (or was) bound to an account",
    "bad_proof": "the rotation proof is not a signature by the new key",
    "unknown_account": "no such account",
    "account_revoked": "the account named in the body is revoked",
    "node_account": "node accounts change only with the membership",
    "unknown_member": "no such consortium member",
    # catalog
    "not_supplier": "the sender does not have the supplier role",
    "wrong_supplier_node": "supplier_node is not the supplier's own member",
    "dataset_exists": "a dataset with this id is already published",
    "unknown_dataset": "no such dataset",
    "dataset_withdrawn": "the dataset is withdrawn",
    "not_owner": "the sender is not the dataset's supplier",
    "dataset_changed": "the dataset's content changed since this contract version",
    # quality claims and provenance stamps (node.ledger.trading.provenance)
    "bad_gap": "a known gap of the quality claims does not end after it starts",
    "gap_outside_period": "a known gap lies (partly) outside the collection period",
    "gaps_not_sorted": "the known gaps are not listed in order of their start",
    "gaps_overlap": "a known gap starts before the previous one ends",
    "capture_outside_collection": "the capture period is not inside the collection period",
    "not_capture_system": "the account named as capturing system lacks the capture role",
    "capturer_other_member": "the capturing system is not an account of the supplier's member",
    "bad_capture_signature": "the capture signature is not the capturing system's signature "
    "of this dataset's content and stamp",
    "provenance_stale": "the content changes but the update carries no fresh provenance stamp",
    # contracts
    "contract_exists": "a contract with this id already exists",
    "unknown_contract": "no such contract",
    "not_a_party": "the sender is not a party of the contract",
    "not_consumer": "the consumer does not have the consumer role",
    "same_party": "the supplier and the consumer are the same account",
    "not_reviewer": "the account is not the contract's reviewer or lacks the reviewer role",
    "reviewer_is_party": "a party cannot review its own contract",
    "superseded_version": "the version is not the contract's current version any more",
    "unknown_version": "the contract has no such version yet",
    "terms_hash_mismatch": "the terms hash is not the hash of that version's terms",
    "already_signed": "the sender (or every party) already signed this version",
    "not_offerer": "only the author of the current version may delete it",
    "contract_signed": "the contract carries signatures on its current version",
    "contract_active": "an active contract cannot be renegotiated",
    "not_pending_review": "the contract is not waiting for a review",
    "already_terminated": "the contract is already terminated",
    "contract_deleted": "the contract was deleted",
    "contract_expired": "the contract's use period has ended",
    "too_many_versions": "the contract reached its maximum number of versions",
    # fulfilment
    "not_active": "the contract is not active",
    "not_supplier_node": "the sender is not the node account of the dataset's supplier node",
    "not_contract_consumer": "the sender is not the contract's consumer",
    "dataset_mismatch": "the dataset is not the contract's dataset",
    "bad_chunk_range": "the chunk range is outside the dataset",
    "outside_use_period": "the block time is before the contract's use period",
    "quota_exhausted": "every download the terms allow has been delivered",
    "duplicate_receipt": "a receipt for this fetch request is already recorded",
    "not_authorised_while_active": "the fetch was not authorised while the contract was active",
    "limit_reached": "the contract reached its maximum number of access grants",
    "unknown_receipt": "no such delivery receipt",
    "already_confirmed": "the receipt is already confirmed",
    "already_disposed": "a disposal is already attested for this contract",
    "future_timestamp": "the attested time is later than the block time",
    # clean room (node.ledger.trading.analysis, compute)
    "bad_rule": "the analysis rule is missing, misplaced or inconsistent",
    "not_clean_room": "the contract's delivery method is not clean_room",
    "rule_mismatch": "the rule hash is not the hash of the contract's active analysis rule",
    "budget_exhausted": "the receipt would exceed the contract's query budget",
    # billing (node.ledger.trading.billing)
    "bad_billing": "the terms' billing map does not fit the price model or could overflow",
    "arbiter_is_party": "a party cannot arbitrate its own contract",
    "not_arbiter": "the arbiter the terms name lacks the reviewer role",
    "unknown_invoice": "no such invoice (contract not billed, or no such period)",
    "invoice_open": "the invoice's period is still running: its total is not final",
    "invoice_paid": "the invoice has nothing outstanding",
    "currency_mismatch": "the payment is not in the invoice's currency",
    "amount_mismatch": "the payment is not exactly the invoice's outstanding amount",
    "too_many_payments": "the invoice reached its maximum number of payments",
    "not_contract_supplier": "the sender is not the contract's supplier",
    "not_confirmed": "the invoice has no confirmed payment left to acknowledge",
    "payment_overdue": "access is suspended: an invoice is overdue and the terms say so",
    # disputes (node.ledger.trading.disputes)
    "dispute_exists": "a dispute with this id already exists",
    "unknown_dispute": "no such dispute",
    "no_resolver": "the terms name neither an arbiter nor a reviewer to resolve a dispute",
    "dispute_window_closed": "disputes may be opened only until the disposal deadline",
    "too_many_disputes": "the contract reached its maximum number of (open) disputes",
    "bad_evidence": "the evidence does not fit the contract's delivery method",
    "bad_merkle_proof": "a chunk's Merkle proof does not verify against the pinned root",
    "chunk_not_delivered": "no committed delivery receipt of the contract covers the chunk",
    "dispute_resolved": "the dispute is already resolved",
    "already_answered": "the supplier already answered the dispute",
    "not_resolver": "the sender is not the dispute's arbiter (or reviewer), or lacks the role",
    "refund_not_allowed": "a rejected dispute grants no refund",
    "refund_over_cap": "the refund exceeds what the contract charged minus refunds granted",
    # governance (member.propose, member.vote; node.ledger.governance)
    "not_member_admin": "the sender is not an admin of a member in effect at this height",
    "proposal_exists": "a proposal with this id already exists",
    "unknown_proposal": "no such proposal",
    "member_exists": "a member with this id exists, is scheduled or once existed",
    "node_key_in_use": "the node public key is (or was) bound to an account or member",
    "fingerprint_in_use": "the TLS certificate fingerprint is (or was) claimed by a member",
    "too_many_members": "the consortium would exceed its maximum number of members",
    "too_many_observers": "the consortium would exceed its maximum number of observers",
    "unknown_observer": "no such observer",
    "too_few_members": "the removal would leave fewer members than the policy's minimum",
    "change_pending": "the member (or the policy) already has an open or scheduled change",
    "too_many_open_proposals": "the maximum number of open proposals is reached",
    "bad_expiry": "expires_at_ms is not after the block time or too far ahead",
    "bad_policy": "the threshold or minimum is out of range",
    "proposal_decided": "the proposal already passed or was rejected",
    "proposal_expired": "the proposal expired before it was decided",
}

REASON_CODES: tuple[str, ...] = tuple(MACHINE_REASONS) + tuple(TRADING_REASONS)


def refuse(reason: str, detail: str = "") -> NoReturn:
    assert reason in TRADING_REASONS, f"undocumented reason code {reason!r}"
    raise Refusal(reason, detail)
