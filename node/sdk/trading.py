"""Python SDK for the trading ledger: build, sign and submit every trading transaction, and
read the trading queries, on top of :class:`node.sdk.client.NodeClient`.

::

    async with NodeClient.of_home("127.0.0.1:26601", Path("home")) as node:
        t = TradingClient(node, reader=supplier_key)
        await t.publish_dataset(supplier_key, dataset_id="ds1", metadata={...})
        contract = await t.contract("c1")  # a confidential read, signed by the reader

Confidential reads (contracts, receipts, invoices, disputes, audit trails, overdue disposals
and invoices) are signed by an
account: the ``reader=`` of the call, else the client's, else the node client's. Methods that
act on a contract (counter, sign, review) read it as the configured reader, else as the
account that acts.

Every transaction is submitted with ``wait=1`` and returns a :class:`Committed` once it
executed; a transaction the ledger refused raises :class:`TxFailed` with the reason code
(:data:`REASONS` describes it, :data:`HINTS` says what to do). Bodies are built with the
typed builders of :mod:`node.ledger.trading.bodies` (:meth:`TradingClient.send` takes one)
and signed by :class:`node.ledger.signer.Signer`, whose committed nonces come from
``GET /v1/accounts/{id}/nonce``.

Provenance stamps (:meth:`TradingClient.stamp_capture`, made by the capturing system with its
own key) and the dataspace exports (DCAT-AP catalog, ODRL policies, :mod:`node.interop`) have
methods here too.

Bytes inside bodies (hashes, keys) are ``bytes`` here and lowercase hex in JSON (terms
files, query results); :func:`terms_from_json` reads terms in their JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mdtp.node.encoding import dumps
from mdtp.node.identity.keys import SigningKey
from mdtp.node.interop import ids, odrl
from mdtp.node.ledger.signer import NONCE_KEPT, Signer
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.ledger.trading.reasons import MACHINE_REASONS, TRADING_REASONS
from mdtp.node.sdk.client import ApiError, NodeClient

__all__ = [
    "HINTS",
    "REASONS",
    "ApiError",
    "Committed",
    "TradingClient",
    "TradingError",
    "TxDropped",
    "TxFailed",
    "TxNotCommitted",
    "terms_from_json",
]

REASONS: dict[str, str] = {**MACHINE_REASONS, **TRADING_REASONS}
SUBMIT_WAIT_S = 30.0

# What a person can do about a refusal; codes without an entry are self-explanatory.
HINTS: dict[str, str] = {
    "bad_body": "check the field named in the message against `mdtp ... --help`",
    "bad_period": "give an end after the start and in the future (e.g. --end +30d)",
    "not_registered": "ask your member's admin to run `mdtp account register` for your key",
    "not_admin": "sign with the admin key of the account's member (`mdtp init` writes it "
    "outside the node home; a local cluster's are in c/admins/)",
    "revoked": "this key's account is revoked; ask your member's admin for a new account",
    "wrong_key": "sign with the account's current key (it may have been rotated)",
    "bad_nonce": "another transaction of this account was in flight; retry",
    "expired": "the transaction waited too long; retry",
    "key_in_use": "generate a fresh key with `mdtp keys generate`",
    "account_exists": "the account is already registered; see `mdtp account show`",
    "unknown_account": "check the account id (`mdtp account show ID`)",
    "account_revoked": "the named account is revoked; choose an active one",
    "not_supplier": "the account needs the supplier role (`mdtp account register --roles`)",
    "not_consumer": "the consumer needs the consumer role",
    "unknown_dataset": "check the dataset id with `mdtp dataset search`",
    "dataset_withdrawn": "the dataset is withdrawn; pick a published one (`mdtp dataset search`)",
    "dataset_exists": "choose another dataset id",
    "not_owner": "only the dataset's supplier may change it",
    "dataset_changed": "counter with a new version (`mdtp contract counter`) and sign that",
    "contract_exists": "choose another contract id",
    "unknown_contract": "check the contract id (`mdtp contract list --account ID`)",
    "not_a_party": "sign with the supplier's or the consumer's key",
    "not_reviewer": "the review must come from the reviewer the terms name, with that role",
    "reviewer_is_party": "name a reviewer who is neither supplier nor consumer",
    "superseded_version": "run `mdtp contract show ID` and act on the current version",
    "unknown_version": "run `mdtp contract show ID` and act on the current version",
    "terms_hash_mismatch": "sign the terms exactly as `mdtp contract show ID` lists them",
    "already_signed": "nothing to do: wait for the other party (`mdtp contract show ID`)",
    "not_offerer": "only the author of the current version may delete it",
    "contract_signed": "a signed contract cannot be deleted; terminate it instead",
    "contract_active": "an active contract cannot be renegotiated; terminate it and offer anew",
    "not_pending_review": "the contract is not waiting for a review (`mdtp contract show ID`)",
    "already_terminated": "nothing to do: the contract has ended",
    "contract_deleted": "the contract was deleted; make a new offer",
    "contract_expired": "the use period has ended; make a new offer",
    "too_many_versions": "terminate this contract and make a new offer",
    "not_active": "the contract must be ACTIVE (`mdtp contract show ID`)",
    "same_party": "the consumer must be another account than the dataset's supplier",
    "wrong_supplier_node": "publish with --supplier-node set to your own member",
    "unknown_member": "name a member of the consortium (see genesis.json)",
    "bad_billing": "check terms.billing against the price model (README: Billing and disputes)",
    "unknown_invoice": "list the contract's invoices with `mdtp invoice list CONTRACT`",
    "invoice_open": "the period is still running; pay once it closed (`mdtp invoice list`)",
    "invoice_paid": "nothing is outstanding on this invoice",
    "amount_mismatch": "pay exactly the outstanding amount `mdtp invoice list` shows",
    "currency_mismatch": "pay in the invoice's currency",
    "not_confirmed": "the consumer has not confirmed a payment of this invoice yet",
    "payment_overdue": "pay the overdue invoice (`mdtp invoice overdue`) to lift the suspension",
    "no_resolver": "the terms name no arbiter or reviewer: settle it off-ledger",
    "chunk_not_delivered": "name chunks a committed receipt of the contract covers",
    "bad_merkle_proof": "build the evidence from the fetched copy (`mdtp dispute open --file`)",
    "dispute_window_closed": "disputes may be opened until the disposal deadline",
    "refund_over_cap": "refund at most what the contract charged minus earlier refunds",
}


class TradingError(Exception):
    """Base of the SDK's own errors; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TxFailed(TradingError):
    """The ledger refused the transaction with ``reason``: when it executed it (``height`` is
    that block's), or on admission, where a node refuses what the ledger's common checks
    would (wrong key, revoked sender, expired; ``height`` is None)."""

    def __init__(self, tx_type: str, reason: str, tx_id: str, height: int | None) -> None:
        description = REASONS.get(reason, "unknown reason")
        super().__init__(reason, f"{tx_type} failed: {reason} ({description})")
        self.tx_type = tx_type
        self.tx_id = tx_id
        self.height = height
        self.description = description
        self.hint = HINTS.get(reason)


class TxDropped(TradingError):
    """The node that accepted the transaction dropped it unexecuted: ``expired`` (it waited
    past its ``expires_at_ms``) or ``nonce_used`` (another transaction of the sender took its
    nonce). It never reached a block and its nonce is free: sign the body again."""

    def __init__(self, tx_type: str, reason: str, tx_id: str) -> None:
        super().__init__(reason, f"{tx_type} {tx_id} was dropped unexecuted: {reason}")
        self.tx_type = tx_type
        self.tx_id = tx_id


class TxNotCommitted(TradingError):
    def __init__(self, tx_type: str, tx_id: str, wait_s: float) -> None:
        super().__init__(
            "not_committed",
            f"{tx_type} {tx_id} did not commit within {wait_s:.0f} s; "
            f"check it later with GET /v1/tx/{tx_id}",
        )
        self.tx_id = tx_id


@dataclass(frozen=True)
class Committed:
    id: str
    type: str
    sender: str
    height: int
    index: int


P = TypeVar("P", bound=b.BodyPart)


def _from_json(part: type[P], doc: Mapping[str, Any], where: str = "") -> P:
    try:
        return part.from_json(doc, where)
    except ValueError as e:
        raise TradingError("bad_input", str(e)) from None


def terms_from_json(doc: Mapping[str, Any]) -> b.Terms:
    """Terms as a transaction carries them, from JSON (hashes as hex)."""
    return _from_json(b.Terms, doc, "terms.")


def _terms(terms: b.Terms | Mapping[str, Any]) -> b.Terms:
    return terms if isinstance(terms, b.Terms) else terms_from_json(terms)


def _provenance(doc: Mapping[str, Any]) -> b.Provenance:
    """A provenance stamp from its JSON form (the signature as hex)."""
    return _from_json(b.Provenance, doc, "provenance.")


def _search_params(
    *,
    fields: Mapping[str, Any] | None = None,
    include_withdrawn: bool = False,
    captured_after_ms: int | None = None,
    captured_before_ms: int | None = None,
    min_completeness_permille: int | None = None,
    **named: Any,
) -> dict[str, Any]:
    """The query parameters of a catalog search (``None`` values are left out later)."""
    return {
        **named,
        "captured_after": captured_after_ms,
        "captured_before": captured_before_ms,
        "min_completeness": min_completeness_permille,
        "include_withdrawn": "1" if include_withdrawn else None,
        **(fields or {}),
    }


def _policy_version(policy: Mapping[str, Any] | list[Any], chain_id: str, contract_id: str) -> int:
    """The version a policy's uid names, if it is one of this contract's; else 0."""
    uid = policy.get("uid", policy.get("@id")) if isinstance(policy, Mapping) else None
    if not isinstance(uid, str):
        return 0
    prefix = ids.policy_iri(chain_id, contract_id, 0)[: -len("0")]
    tail = uid[len(prefix) :] if uid.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else 0


class TradingClient:
    def __init__(
        self,
        node: NodeClient,
        *,
        chain_id: str | None = None,
        wait_s: float = SUBMIT_WAIT_S,
        reader: SigningKey | None = None,
    ) -> None:
        self.node = node
        self.wait_s = wait_s
        self.reader = reader
        self._chain_id = chain_id
        self._signer: Signer | None = None

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str((await self.node.status())["chain_id"])
        return self._chain_id

    async def signer(self) -> Signer:
        """The signer of this client's transactions (made once the chain id is known)."""
        if self._signer is None:
            self._signer = Signer(await self.chain_id(), self)
        return self._signer

    async def committed_nonce(self, account_id: str) -> int:
        """:class:`node.ledger.signer.NonceSource`: the node's committed nonce."""
        return await self.nonce(account_id)

    # -- submitting -------------------------------------------------------------------------

    async def send(self, key: SigningKey, body: b.Body, *, sender: str | None = None) -> Committed:
        """Sign ``body`` from ``sender`` (the key's own account by default), submit it and wait
        until it executed; :class:`TxFailed` if it was refused."""
        return await self.submit(key, body.TYPE, body.to_body(), sender=sender)

    async def submit(
        self,
        key: SigningKey,
        tx_type: str,
        body: Mapping[str, Any],
        *,
        sender: str | None = None,
    ) -> Committed:
        """:meth:`send` for a body given as a map (what :meth:`b.Body.to_body` returns).
        Raises :class:`TxFailed` (executed and refused, or refused on admission by the
        ledger's common checks), :class:`TxDropped` (accepted, then dropped unexecuted),
        :class:`TxNotCommitted` (still pending after ``wait_s``) or :class:`ApiError`."""
        signer = await self.signer()
        tx = await signer.sign(key, tx_type, body, sender=sender)
        tx_id = tx.id.hex()
        try:
            doc = await self.node.submit(tx.raw, wait=True, timeout_s=self.wait_s)
        except ApiError as e:
            signer.release(tx)  # turned away before the mempool: its nonce is free again
            if e.status == 400 and e.reason in NONCE_KEPT:
                raise TxFailed(tx_type, e.reason, tx_id, None) from None
            raise
        if doc["status"] == "failed":
            signer.refused(tx, str(doc["reason"]))
            raise TxFailed(tx_type, str(doc["reason"]), tx_id, doc.get("height"))
        if doc["status"] == "dropped":
            signer.release(tx)
            raise TxDropped(tx_type, str(doc["reason"]), tx_id)
        if doc["status"] != "committed":
            raise TxNotCommitted(tx_type, tx_id, self.wait_s)
        return Committed(tx_id, tx_type, tx.sender, int(doc["height"]), int(doc["index"]))

    # accounts

    async def register_account(
        self,
        admin: SigningKey,
        *,
        public_key: bytes,
        encryption_public_key: bytes,
        roles: list[str],
        display_name: str,
    ) -> Committed:
        body = b.AccountRegister.for_key(public_key, encryption_public_key, roles, display_name)
        return await self.send(admin, body)

    async def rotate_key(
        self, current: SigningKey, new: SigningKey, *, account_id: str | None = None
    ) -> Committed:
        """Rotate ``account_id`` (the current key's own account by default) to ``new``."""
        account_id = account_id or current.account_id
        body = b.AccountRotateKey.to_key(new, await self.chain_id(), account_id)
        return await self.send(current, body, sender=account_id)

    async def revoke_account(
        self, signer: SigningKey, account_id: str, *, reason: str = "", sender: str | None = None
    ) -> Committed:
        return await self.send(signer, b.AccountRevoke(account_id, reason), sender=sender)

    # catalog

    async def publish_dataset(
        self,
        supplier: SigningKey,
        dataset_id: str,
        metadata: Mapping[str, Any],
        *,
        sender: str | None = None,
    ) -> Committed:
        """``metadata``: every field of ``dataset.publish`` but the id, in JSON form."""
        body = _from_json(b.DatasetPublish, {"dataset_id": dataset_id, **metadata})
        return await self.send(supplier, body, sender=sender)

    async def update_dataset(
        self,
        supplier: SigningKey,
        dataset_id: str,
        changes: Mapping[str, Any],
        *,
        sender: str | None = None,
    ) -> Committed:
        body = _from_json(b.DatasetUpdate, {"dataset_id": dataset_id, **changes})
        return await self.send(supplier, body, sender=sender)

    async def withdraw_dataset(
        self, supplier: SigningKey, dataset_id: str, *, reason: str = "", sender: str | None = None
    ) -> Committed:
        return await self.send(supplier, b.DatasetWithdraw(dataset_id, reason), sender=sender)

    # contracts

    async def offer(
        self,
        signer: SigningKey,
        *,
        contract_id: str,
        dataset_id: str,
        consumer: str,
        terms: b.Terms | Mapping[str, Any],
        sender: str | None = None,
    ) -> Committed:
        body = b.ContractOffer(contract_id, dataset_id, consumer, _terms(terms))
        return await self.send(signer, body, sender=sender)

    async def counter(
        self,
        signer: SigningKey,
        contract_id: str,
        *,
        terms: b.Terms | Mapping[str, Any],
        version: int | None = None,
        sender: str | None = None,
    ) -> Committed:
        """A new version answering ``version`` (the current one by default)."""
        if version is None:
            version = int((await self._as_actor(contract_id, signer))["version"])
        body = b.ContractCounter(contract_id, version, _terms(terms))
        return await self.send(signer, body, sender=sender)

    async def sign_contract(
        self,
        signer: SigningKey,
        contract_id: str,
        *,
        version: int | None = None,
        sender: str | None = None,
    ) -> Committed:
        """Sign ``version`` (the current one by default). The terms hash is computed here from
        the terms the node returns, so a node cannot make the signer sign other terms than
        the ones it showed."""
        contract = await self._as_actor(contract_id, signer)
        number = version if version is not None else int(contract["version"])
        versions = contract["versions"]
        if not 1 <= number <= len(versions):
            # let the ledger name the refusal (unknown_version) with a well-formed body
            signed_hash = bytes(32)
        else:
            signed_hash = terms_from_json(versions[number - 1]["terms"]).hash()
        body = b.ContractSign(contract_id, number, signed_hash)
        return await self.send(signer, body, sender=sender)

    async def review(
        self,
        reviewer: SigningKey,
        contract_id: str,
        *,
        approve: bool,
        comment: str = "",
        version: int | None = None,
        sender: str | None = None,
    ) -> Committed:
        if version is None:
            version = int((await self._as_actor(contract_id, reviewer))["version"])
        decision = "approve" if approve else "reject"
        body = b.ContractReview(contract_id, version, decision, comment)
        return await self.send(reviewer, body, sender=sender)

    async def delete_contract(
        self, signer: SigningKey, contract_id: str, *, sender: str | None = None
    ) -> Committed:
        return await self.send(signer, b.ContractDelete(contract_id), sender=sender)

    async def terminate_contract(
        self, signer: SigningKey, contract_id: str, *, reason: str, sender: str | None = None
    ) -> Committed:
        return await self.send(signer, b.ContractTerminate(contract_id, reason), sender=sender)

    # fulfilment (posted by the supplier's node and the consumer; see fulfilment.py)

    async def access_grant(
        self, node_key: SigningKey, contract_id: str, sealed_key: bytes
    ) -> Committed:
        return await self.send(node_key, b.AccessGrant(contract_id, sealed_key))

    async def delivery_receipt(
        self,
        node_key: SigningKey,
        *,
        contract_id: str,
        dataset_id: str,
        first_chunk: int,
        last_chunk: int,
        byte_count: int,
        content_hash: bytes,
    ) -> Committed:
        body = b.DeliveryReceipt(
            contract_id, dataset_id, first_chunk, last_chunk, byte_count, content_hash
        )
        return await self.send(node_key, body)

    async def delivery_confirm(self, consumer: SigningKey, receipt_id: bytes) -> Committed:
        return await self.send(consumer, b.DeliveryConfirm(receipt_id))

    async def disposal_attest(
        self, consumer: SigningKey, contract_id: str, *, method: str, disposed_at_ms: int
    ) -> Committed:
        return await self.send(consumer, b.DisposalAttest(contract_id, method, disposed_at_ms))

    # billing and disputes (node/ledger/trading/billing.py, disputes.py; README "Billing and
    # disputes"): charges are never posted, only payments confirmed and acknowledged

    async def confirm_payment(
        self,
        consumer: SigningKey,
        invoice_id: str,
        *,
        amount_minor: int,
        currency: str,
        reference: str,
    ) -> Committed:
        """The consumer paid ``invoice_id`` (``<contract id>/<period>``): exactly its
        outstanding amount, in its currency; ``reference`` names the bank transfer."""
        body = b.PaymentConfirm(invoice_id, amount_minor, currency, reference)
        return await self.send(consumer, body)

    async def pay_invoice(
        self, consumer: SigningKey, invoice_id: str, *, reference: str
    ) -> Committed:
        """Confirm a payment of the invoice's outstanding amount as the ledger computes it
        now (read as the consumer)."""
        invoice = await self.invoice(invoice_id, reader=self.reader or consumer)
        return await self.confirm_payment(
            consumer,
            invoice_id,
            amount_minor=int(invoice["outstanding_minor"]),
            currency=str(invoice["currency"]),
            reference=reference,
        )

    async def acknowledge_payment(self, supplier: SigningKey, invoice_id: str) -> Committed:
        """The supplier received the invoice's confirmed payments."""
        return await self.send(supplier, b.PaymentAcknowledge(invoice_id))

    async def open_dispute(
        self,
        consumer: SigningKey,
        dispute_id: str,
        contract_id: str,
        *,
        statement: str,
        evidence_hash: bytes,
        chunks: Sequence[b.DisputedChunk] = (),
        receipt_id: bytes | None = None,
    ) -> Committed:
        """Open a dispute: ``chunks`` (with their Merkle proofs, see
        :func:`node.sdk.data.dispute_chunks`) for a download contract, ``receipt_id`` (a
        compute receipt) for a clean-room one; ``evidence_hash`` is the SHA-256 of the
        supporting material kept off the ledger."""
        body = b.DisputeOpen(
            dispute_id, contract_id, tuple(chunks), statement, evidence_hash, receipt_id
        )
        return await self.send(consumer, body)

    async def answer_dispute(
        self, supplier: SigningKey, dispute_id: str, *, statement: str, evidence_hash: bytes
    ) -> Committed:
        return await self.send(supplier, b.DisputeAnswer(dispute_id, statement, evidence_hash))

    async def resolve_dispute(
        self,
        resolver: SigningKey,
        dispute_id: str,
        *,
        decision: str,
        refund_minor: int = 0,
        comment: str = "",
    ) -> Committed:
        """By the terms' arbiter (else reviewer): ``upheld``, ``rejected`` or ``settled``; a
        refund (not on ``rejected``) is credited on the contract's invoices."""
        body = b.DisputeResolve(dispute_id, decision, refund_minor, comment)
        return await self.send(resolver, body)

    # -- queries ----------------------------------------------------------------------------

    async def _get(self, path: str, **params: Any) -> Any:
        clean = {k: str(v) for k, v in params.items() if v is not None}
        return await self.node.get(path, **clean)

    async def _as_actor(self, contract_id: str, actor: SigningKey) -> dict[str, Any]:
        """The contract as read on the way to acting on it, signed by the configured reader,
        else by the actor. An actor who may not read it gets an empty version 1 instead, so
        the ledger names the refusal (``not_a_party``, ``not_reviewer``) in a block."""
        try:
            return await self.contract(contract_id, reader=self.reader or self.node.reader or actor)
        except ApiError as e:
            if e.reason != "not_a_party":
                raise
            return {"version": 1, "versions": []}

    async def _get_signed(self, path: str, reader: SigningKey | None, **params: Any) -> Any:
        clean = {k: str(v) for k, v in params.items() if v is not None}
        return await self.node.get_signed(path, reader or self.reader, **clean)

    async def nonce(self, account_id: str) -> int:
        return int((await self._get(f"/v1/accounts/{account_id}/nonce"))["nonce"])

    async def account(self, account_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get(f"/v1/accounts/{account_id}"))["account"]
        return doc

    async def search_datasets(
        self,
        *,
        text: str | None = None,
        tag: str | None = None,
        supplier: str | None = None,
        fields: dict[str, Any] | None = None,
        site: str | None = None,
        line: str | None = None,
        captured_by: str | None = None,
        captured_after_ms: int | None = None,
        captured_before_ms: int | None = None,
        min_completeness_permille: int | None = None,
        include_withdrawn: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """``{"as_of_height", "datasets": [...], "next_after"}``. ``site``, ``line`` and
        ``captured_by`` match the provenance stamp; the capture window keeps datasets whose
        stamped capture period overlaps it; ``min_completeness_permille`` the quality claim."""
        doc: dict[str, Any] = await self._get(
            "/v1/datasets",
            **_search_params(
                text=text,
                tag=tag,
                supplier=supplier,
                fields=fields,
                site=site,
                line=line,
                captured_by=captured_by,
                captured_after_ms=captured_after_ms,
                captured_before_ms=captured_before_ms,
                min_completeness_permille=min_completeness_permille,
                include_withdrawn=include_withdrawn,
                after=after,
                limit=limit,
            ),
        )
        return doc

    async def dataset(self, dataset_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get(f"/v1/datasets/{dataset_id}"))["dataset"]
        return doc

    async def catalog_entry(self, dataset_id: str) -> dict[str, Any]:
        """``{"as_of_height", "dataset", "supplier_record"}``: the dataset with its supplier's
        track record (contracts by effective status)."""
        doc: dict[str, Any] = await self._get(f"/v1/datasets/{dataset_id}")
        return doc

    # -- provenance stamps ------------------------------------------------------------------

    async def stamp_capture(
        self,
        capturer: SigningKey,
        dataset_id: str,
        *,
        site: str,
        line: str,
        capture_start_ms: int,
        capture_end_ms: int,
        captured_by: str | None = None,
    ) -> b.Provenance:
        """The capturing system's stamp for the dataset's content *as published now* (its
        plaintext digest and Merkle root are read from the ledger): what a capturing system
        runs once the supplier has published; the supplier then adds it with
        :meth:`add_provenance`. ``captured_by``: the capturing account, if its key rotated."""
        dataset = await self.dataset(dataset_id)
        return b.Provenance.stamp(
            capturer,
            chain_id=await self.chain_id(),
            dataset_id=dataset_id,
            plaintext_digest=bytes.fromhex(dataset["plaintext_digest"]),
            merkle_root=bytes.fromhex(dataset["merkle_root"]),
            site=site,
            line=line,
            capture_start_ms=capture_start_ms,
            capture_end_ms=capture_end_ms,
            captured_by=captured_by,
        )

    async def add_provenance(
        self,
        supplier: SigningKey,
        dataset_id: str,
        provenance: b.Provenance | Mapping[str, Any],
        *,
        sender: str | None = None,
    ) -> Committed:
        """``dataset.update`` carrying a stamp (a :class:`Provenance` or its JSON form)."""
        stamp = provenance if isinstance(provenance, b.Provenance) else _provenance(provenance)
        return await self.send(
            supplier, b.DatasetUpdate(dataset_id, provenance=stamp), sender=sender
        )

    # -- dataspace export (DCAT-AP, ODRL) ---------------------------------------------------

    async def catalog_dcat(
        self,
        *,
        text: str | None = None,
        tag: str | None = None,
        supplier: str | None = None,
        site: str | None = None,
        line: str | None = None,
        captured_by: str | None = None,
        captured_after_ms: int | None = None,
        captured_before_ms: int | None = None,
        min_completeness_permille: int | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of the catalog as a DCAT-AP 3 JSON-LD ``dcat:Catalog`` (the filters of
        :meth:`search_datasets`); ``mdtp:nextAfter`` names the next page."""
        doc: dict[str, Any] = await self._get(
            "/v1/catalog/dcat",
            **_search_params(
                text=text,
                tag=tag,
                supplier=supplier,
                site=site,
                line=line,
                captured_by=captured_by,
                captured_after_ms=captured_after_ms,
                captured_before_ms=captured_before_ms,
                min_completeness_permille=min_completeness_permille,
                after=after,
                limit=limit,
            ),
        )
        return doc

    async def dataset_dcat(self, dataset_id: str) -> dict[str, Any]:
        """One dataset as a DCAT-AP 3 JSON-LD ``dcat:Dataset``."""
        doc: dict[str, Any] = await self._get(f"/v1/datasets/{dataset_id}/dcat")
        return doc

    async def contract_odrl(
        self,
        contract_id: str,
        *,
        version: int | None = None,
        reader: SigningKey | None = None,
    ) -> dict[str, Any]:
        """A contract version's terms as an ODRL 2.2 JSON-LD policy (``odrl:Agreement`` for
        the version that made it active, ``odrl:Offer`` otherwise); default the current."""
        doc: dict[str, Any] = await self._get_signed(
            f"/v1/contracts/{contract_id}/odrl", reader, version=version
        )
        return doc

    async def check_odrl(
        self,
        policy: Mapping[str, Any] | list[Any],
        contract_id: str,
        *,
        version: int | None = None,
        reader: SigningKey | None = None,
    ) -> dict[str, Any]:
        """Whether an ODRL policy (any JSON-LD form) carries exactly the terms of a contract
        version on the ledger and binds its parties and dataset: ``{"contract_id",
        "version", "terms_hash", "ledger_terms_hash", "terms_match", "parties_match",
        "matches"}``. The version defaults to the one the policy's uid names, else the
        current one. ValueError names what of the policy does not map back to terms."""
        terms = odrl.terms_from_odrl(policy)
        bound = odrl.parties_from_odrl(policy)
        contract = await self.contract(contract_id, reader=reader)
        chain_id = await self.chain_id()
        number = version or _policy_version(policy, chain_id, contract_id)
        number = number or int(contract["version"])
        if not 1 <= number <= int(contract["version"]):
            raise TradingError("unknown_version", f"contract {contract_id} has no version {number}")
        ledger_hash = str(contract["versions"][number - 1]["terms_hash"])
        mine = terms_hash(terms).hex()
        parties_match = bound == {
            "assigner": contract["supplier"],
            "assignee": contract["consumer"],
            "target": ids.dataset_iri(chain_id, contract["dataset_id"]),
        }
        return {
            "contract_id": contract_id,
            "version": number,
            "terms_hash": mine,
            "ledger_terms_hash": ledger_hash,
            "terms_match": mine == ledger_hash,
            "parties_match": parties_match,
            "matches": mine == ledger_hash and parties_match,
        }

    async def contract(
        self, contract_id: str, *, reader: SigningKey | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get_signed(f"/v1/contracts/{contract_id}", reader))[
            "contract"
        ]
        return doc

    async def contracts(
        self,
        *,
        account: str | None = None,
        dataset: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        reader: SigningKey | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = await self._get_signed(
            "/v1/contracts",
            reader,
            account=account,
            dataset=dataset,
            status=status,
            after=after,
            limit=limit,
        )
        return doc

    async def contract_receipts(
        self,
        contract_id: str,
        *,
        after: int | None = None,
        limit: int | None = None,
        reader: SigningKey | None = None,
    ) -> list[dict[str, Any]]:
        doc = await self._get_signed(
            f"/v1/contracts/{contract_id}/receipts", reader, after=after, limit=limit
        )
        found: list[dict[str, Any]] = doc["receipts"]
        return found

    async def contract_compute(
        self,
        contract_id: str,
        *,
        after: int | None = None,
        limit: int | None = None,
        reader: SigningKey | None = None,
    ) -> dict[str, Any]:
        """``{"queries_used", "receipts"}``: a clean-room contract's budget and a page of its
        compute receipts (numbered above ``after``)."""
        doc: dict[str, Any] = await self._get_signed(
            f"/v1/contracts/{contract_id}/compute", reader, after=after, limit=limit
        )
        return doc

    async def receipt(self, receipt_id: str, *, reader: SigningKey | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get_signed(f"/v1/receipts/{receipt_id}", reader))[
            "receipt"
        ]
        return doc

    async def overdue_disposals(
        self, *, limit: int | None = None, reader: SigningKey | None = None
    ) -> dict[str, Any]:
        """Overdue disposals of the contracts the reader may read."""
        doc: dict[str, Any] = await self._get_signed("/v1/disposals/overdue", reader, limit=limit)
        return doc

    async def invoices(
        self, contract_id: str, *, reader: SigningKey | None = None
    ) -> dict[str, Any]:
        """``{"as_of_height", "as_of_time_ms", "billing", "invoices"}``: the contract's
        billing summary and the invoices of every period started (see README "Billing and
        disputes" for the fields and statuses)."""
        doc: dict[str, Any] = await self._get_signed(
            f"/v1/contracts/{contract_id}/invoices", reader
        )
        return doc

    async def invoice(self, invoice_id: str, *, reader: SigningKey | None = None) -> dict[str, Any]:
        """One invoice by its id ``<contract id>/<period>``."""
        contract_id, _, period = invoice_id.rpartition("/")
        if not contract_id or not period.isdigit():
            raise ValueError(f"invoice id {invoice_id!r} is not <contract id>/<period>")
        path = f"/v1/contracts/{contract_id}/invoices/{period}"
        doc: dict[str, Any] = (await self._get_signed(path, reader))["invoice"]
        return doc

    async def overdue_invoices(
        self, *, limit: int | None = None, reader: SigningKey | None = None
    ) -> dict[str, Any]:
        """Overdue invoices of the contracts the reader may read, earliest due first."""
        doc: dict[str, Any] = await self._get_signed("/v1/invoices/overdue", reader, limit=limit)
        return doc

    async def disputes(
        self, contract_id: str, *, reader: SigningKey | None = None
    ) -> list[dict[str, Any]]:
        doc = await self._get_signed(f"/v1/contracts/{contract_id}/disputes", reader)
        found: list[dict[str, Any]] = doc["disputes"]
        return found

    async def dispute(self, dispute_id: str, *, reader: SigningKey | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = (await self._get_signed(f"/v1/disputes/{dispute_id}", reader))[
            "dispute"
        ]
        return doc

    async def supplier_record(self, account_id: str) -> dict[str, Any]:
        """A supplier's track record: contracts, disputes opened, upheld, settled, rejected."""
        doc: dict[str, Any] = (await self._get(f"/v1/suppliers/{account_id}/record"))["record"]
        return doc

    async def audit(
        self,
        kind: str,
        subject_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        proof: bool = True,
        reader: SigningKey | None = None,
    ) -> dict[str, Any]:
        """One page: ``{"as_of_height", "entries": [...], "next_after"}``."""
        doc: dict[str, Any] = await self._get_signed(
            f"/v1/audit/{kind}/{subject_id}",
            reader,
            after=after,
            limit=limit,
            proof="1" if proof else "0",
        )
        return doc

    async def audit_trail(
        self,
        kind: str,
        subject_id: str,
        *,
        proof: bool = False,
        reader: SigningKey | None = None,
    ) -> list[dict[str, Any]]:
        """Every entry of a trail, following the pages."""
        entries: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.audit(kind, subject_id, after=after, proof=proof, reader=reader)
            entries.extend(page["entries"])
            if not page["entries"]:
                return entries
            after = int(page["next_after"])

    async def audit_export(
        self, kind: str, subject_id: str, *, reader: SigningKey | None = None
    ) -> list[str]:
        """The whole trail as JSON lines, each a self-contained entry that
        ``mdtp verify-receipt`` checks offline (the lines ``.../export`` serves)."""
        lines: list[str] = []
        after = 0
        while True:
            page = await self.audit(kind, subject_id, after=after, proof=True, reader=reader)
            if not page["entries"]:
                return lines
            lines.extend(
                dumps({**e, "as_of_height": page["as_of_height"]}) for e in page["entries"]
            )
            after = int(page["next_after"])

    async def reasons(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._get("/v1/reasons"))["reasons"]
        return found
