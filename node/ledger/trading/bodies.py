"""Typed builders of every trading transaction body, one frozen dataclass per type.

A builder is named after its transaction type (``contract.sign`` is :class:`ContractSign`),
its fields are the body's fields, and :meth:`Body.to_body` is the map the transaction
carries: bytes stay bytes, tuples become lists, and an optional field left at None is left
out. The SDK, the CLI and the node's chunk service build their bodies here, so each field
name is written once on the client side.

Builders do not validate: the handlers (through :mod:`.schema`) and the rules are the
authority on what a body may hold, and a builder given a bad value yields a transaction the
ledger refuses with ``bad_body``, exactly as a hand-made map would. :meth:`BodyPart.from_json`
reads the JSON forms people write (terms and metadata files, query results: hashes as hex);
it refuses only what no body can carry, an unknown or a missing field.

:data:`BODIES` maps every transaction type :func:`..install` registers to its builder.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self, get_args, get_origin, get_type_hints

from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading.accounts import rotation_proof
from mdtp.node.ledger.trading.analysis import rule_hash
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.ledger.trading.provenance import capture_statement


@dataclass(frozen=True)
class BodyPart:
    """A map inside a body (or a whole body): its fields, in the ledger's names."""

    def to_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, BodyPart):
                value = value.to_body()
            elif isinstance(value, tuple):
                value = [v.to_body() if isinstance(v, BodyPart) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "") -> Self:
        """From its JSON form (bytes as hex); ValueError naming an unknown, missing or
        non-hex field. Other values pass as they are, for the ledger to judge."""
        hints = get_type_hints(cls)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise ValueError(f"{where}{unknown[0]}: unknown field")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in doc:
                if f.default is MISSING:
                    raise ValueError(f"{where}{name}: missing")
                continue
            values[name] = _from_json_value(hints[name], doc[name], f"{where}{name}")
        return cls(**values)


def _from_json_value(hint: Any, value: Any, where: str) -> Any:
    options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if isinstance(value, str) and bytes in options:
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{where}: must be hex") from None
    part = next((o for o in options if isinstance(o, type) and issubclass(o, BodyPart)), None)
    if part is not None and isinstance(value, Mapping):
        return part.from_json(value, f"{where}.")
    if isinstance(value, list):
        items = next((get_args(o) for o in options if get_origin(o) is tuple), ())
        if items and items[0] is not str:
            return tuple(
                _from_json_value(items[0], v, f"{where}[{i}]") for i, v in enumerate(value)
            )
        return tuple(value)
    return value


def _tuple_item_part(options: tuple[Any, ...]) -> type[BodyPart] | None:
    """``X`` when one of the options is ``tuple[X, ...]`` of a :class:`BodyPart` X."""
    for option in options:
        args = get_args(option)
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            if isinstance(item, type) and issubclass(item, BodyPart):
                return item
    return None


@dataclass(frozen=True)
class Body(BodyPart):
    """A whole transaction body; ``TYPE`` is its transaction type."""

    TYPE: ClassVar[str]


# ---- accounts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRegister(Body):
    TYPE = "account.register"
    account_id: str
    public_key: bytes
    encryption_public_key: bytes
    roles: tuple[str, ...]
    display_name: str

    @classmethod
    def for_key(
        cls,
        public_key: bytes,
        encryption_public_key: bytes,
        roles: Sequence[str],
        display_name: str,
    ) -> AccountRegister:
        """The account whose id is the did:key of ``public_key``."""
        account_id = account_id_from_public_key(public_key)
        return cls(
            account_id, public_key, encryption_public_key, tuple(sorted(roles)), display_name
        )


@dataclass(frozen=True)
class AccountRotateKey(Body):
    TYPE = "account.rotate_key"
    public_key: bytes
    proof: bytes
    encryption_public_key: bytes | None = None

    @classmethod
    def to_key(cls, new: SigningKey, chain_id: str, account_id: str) -> AccountRotateKey:
        """Rotate ``account_id`` to ``new``, with the proof that the sender holds it."""
        proof = rotation_proof(new, chain_id, account_id)
        return cls(new.public_key, proof, new.encryption_public_key)


@dataclass(frozen=True)
class AccountRevoke(Body):
    TYPE = "account.revoke"
    account_id: str
    reason: str = ""


# ---- catalog -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownGap(BodyPart):
    """A period [start_ms, end_ms) inside the collection period with no data, and why."""

    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True)
class Quality(BodyPart):
    collection_start_ms: int
    collection_end_ms: int
    machine_type: str
    sampling_rate_millihz: int
    validation_method: str
    completeness_permille: int | None = None
    calibration: str | None = None
    known_gaps: tuple[KnownGap, ...] | None = None


@dataclass(frozen=True)
class Provenance(BodyPart):
    """A provenance stamp (:mod:`.provenance`): made by the capturing system with
    :meth:`stamp`, carried by the supplier's ``dataset.publish`` or ``dataset.update``."""

    site: str
    line: str
    capture_start_ms: int
    capture_end_ms: int
    captured_by: str
    capture_signature: bytes

    @classmethod
    def stamp(
        cls,
        capturer: SigningKey,
        *,
        chain_id: str,
        dataset_id: str,
        plaintext_digest: bytes,
        merkle_root: bytes,
        site: str,
        line: str,
        capture_start_ms: int,
        capture_end_ms: int,
        captured_by: str | None = None,
    ) -> Provenance:
        """The stamp ``capturer`` signs for this content; ``captured_by`` is its account
        (by default the did:key of its key, which holds until the account rotates)."""
        statement = capture_statement(
            chain_id,
            dataset_id,
            plaintext_digest,
            merkle_root,
            site,
            line,
            capture_start_ms,
            capture_end_ms,
        )
        return cls(
            site,
            line,
            capture_start_ms,
            capture_end_ms,
            captured_by or capturer.account_id,
            capturer.sign(statement),
        )


@dataclass(frozen=True)
class DatasetPublish(Body):
    TYPE = "dataset.publish"
    dataset_id: str
    title: str
    description: str
    tags: tuple[str, ...]
    schema: str
    format: str
    size_bytes: int
    chunk_count: int
    merkle_root: bytes
    plaintext_digest: bytes
    quality: Quality
    supplier_node: str
    provenance: Provenance | None = None


@dataclass(frozen=True)
class DatasetUpdate(Body):
    """Only the fields given change (at least one)."""

    TYPE = "dataset.update"
    dataset_id: str
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    schema: str | None = None
    format: str | None = None
    size_bytes: int | None = None
    chunk_count: int | None = None
    merkle_root: bytes | None = None
    plaintext_digest: bytes | None = None
    quality: Quality | None = None
    provenance: Provenance | None = None


@dataclass(frozen=True)
class DatasetWithdraw(Body):
    TYPE = "dataset.withdraw"
    dataset_id: str
    reason: str = ""


# ---- contracts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisRule(BodyPart):
    """What a clean-room consumer may ask (:mod:`.analysis`): part of the signed terms."""

    aggregations: dict[str, list[str]]
    dimensions: tuple[str, ...]
    never_output: tuple[str, ...]
    scalar_functions: tuple[str, ...]
    identity_column: str
    min_distinct: int
    query_budget: int
    max_result_rows: int
    noise_scale_milli: int | None = None

    def hash(self) -> bytes:
        """What each ``compute.receipt`` names (:func:`.analysis.rule_hash`)."""
        return rule_hash(self.to_body())


@dataclass(frozen=True)
class Billing(BodyPart):
    """How the ledger bills the contract (:mod:`.billing`): part of the signed terms."""

    payment_due_ms: int
    suspend_when_overdue: bool
    unit: str | None = None  # "download" | "chunk" | "query": pay_per_use only
    period_ms: int | None = None  # subscription and pay_per_use only


@dataclass(frozen=True)
class Terms(BodyPart):
    delivery_method: str
    purpose: str
    use_start_ms: int
    use_end_ms: int
    max_downloads: int
    redistribution_banned: bool
    disposal_method: str
    disposal_deadline_ms: int
    price_minor: int
    currency: str
    price_model: str
    terms_document_hash: bytes
    reviewer: str | None = None
    analysis_rule: AnalysisRule | None = None
    billing: Billing | None = None
    arbiter: str | None = None  # resolves disputes instead of the reviewer

    def hash(self) -> bytes:
        """What ``contract.sign`` names (:func:`.contracts.terms_hash`)."""
        return terms_hash(self.to_body())


@dataclass(frozen=True)
class ContractOffer(Body):
    TYPE = "contract.offer"
    contract_id: str
    dataset_id: str
    consumer: str
    terms: Terms


@dataclass(frozen=True)
class ContractCounter(Body):
    TYPE = "contract.counter"
    contract_id: str
    version: int
    terms: Terms


@dataclass(frozen=True)
class ContractSign(Body):
    TYPE = "contract.sign"
    contract_id: str
    version: int
    terms_hash: bytes


@dataclass(frozen=True)
class ContractReview(Body):
    TYPE = "contract.review"
    contract_id: str
    version: int
    decision: str  # "approve" or "reject"
    comment: str = ""


@dataclass(frozen=True)
class ContractDelete(Body):
    TYPE = "contract.delete"
    contract_id: str


@dataclass(frozen=True)
class ContractTerminate(Body):
    TYPE = "contract.terminate"
    contract_id: str
    reason: str


# ---- fulfilment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessGrant(Body):
    TYPE = "access.grant"
    contract_id: str
    sealed_key: bytes


@dataclass(frozen=True)
class DeliveryReceipt(Body):
    TYPE = "delivery.receipt"
    contract_id: str
    dataset_id: str
    first_chunk: int
    last_chunk: int
    byte_count: int
    content_hash: bytes
    request_id: bytes | None = None
    authorised_height: int | None = None
    authorised_at_ms: int | None = None


@dataclass(frozen=True)
class DeliveryConfirm(Body):
    TYPE = "delivery.confirm"
    receipt_id: bytes


@dataclass(frozen=True)
class DisposalAttest(Body):
    TYPE = "disposal.attest"
    contract_id: str
    method: str
    disposed_at_ms: int


@dataclass(frozen=True)
class ComputeReceipt(Body):
    TYPE = "compute.receipt"
    contract_id: str
    request_id: bytes
    authorised_height: int
    authorised_at_ms: int
    query_hash: bytes
    rule_hash: bytes
    result_hash: bytes
    rows_scanned: int
    rows_returned: int
    rows_suppressed: int
    budget_used: int


# ---- billing and disputes ------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentConfirm(Body):
    """By the consumer: ``amount_minor`` is exactly the invoice's outstanding amount."""

    TYPE = "payment.confirm"
    invoice_id: str  # "<contract id>/<period index>"
    amount_minor: int
    currency: str
    reference: str


@dataclass(frozen=True)
class PaymentAcknowledge(Body):
    TYPE = "payment.acknowledge"
    invoice_id: str


@dataclass(frozen=True)
class DisputedChunk(BodyPart):
    """A delivered chunk: its index, ciphertext hash and Merkle proof to the pinned root."""

    index: int
    chunk_hash: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class DisputeOpen(Body):
    """By the consumer: chunks for a download contract, ``receipt_id`` (a compute receipt)
    for a clean-room contract."""

    TYPE = "dispute.open"
    dispute_id: str
    contract_id: str
    chunks: tuple[DisputedChunk, ...]
    statement: str
    evidence_hash: bytes
    receipt_id: bytes | None = None


@dataclass(frozen=True)
class DisputeAnswer(Body):
    TYPE = "dispute.answer"
    dispute_id: str
    statement: str
    evidence_hash: bytes


@dataclass(frozen=True)
class DisputeResolve(Body):
    TYPE = "dispute.resolve"
    dispute_id: str
    decision: str  # "upheld" | "rejected" | "settled"
    refund_minor: int = 0
    comment: str = ""


BODIES: dict[str, type[Body]] = {
    body.TYPE: body
    for body in (
        AccountRegister,
        AccountRotateKey,
        AccountRevoke,
        DatasetPublish,
        DatasetUpdate,
        DatasetWithdraw,
        ContractOffer,
        ContractCounter,
        ContractSign,
        ContractReview,
        ContractDelete,
        ContractTerminate,
        AccessGrant,
        DeliveryReceipt,
        DeliveryConfirm,
        DisposalAttest,
        ComputeReceipt,
        PaymentConfirm,
        PaymentAcknowledge,
        DisputeOpen,
        DisputeAnswer,
        DisputeResolve,
    )
}
