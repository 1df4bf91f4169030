"""Consensus messages, certificates and their canonical wire form.

Wire form of every message: a msgpack array ``[kind, sender, signature, *body]``.
Signed bytes: ``TAG + msgpack([chain_id, sender, *signed_fields])``: the domain tag keeps a
signature for one purpose from being replayed for another, the chain id keeps it from
being replayed on another chain.  The chain id is not on the wire: a message for another
chain simply fails verification.

``decode_message`` is the only way untrusted bytes become messages; it raises
``DecodeError`` (and nothing else) for anything that is not exactly one of these shapes.
Certificates carry compact ``(signer, signature)`` pairs sorted by signer, so a signer
cannot appear twice and the encoding is canonical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from mdtp.consensus.block import Block
from mdtp.consensus.codec import (
    HASH_LEN,
    SIGNATURE_LEN,
    pack,
    read_bytes,
    read_int,
    read_list,
    read_str,
    unpack_canonical,
)
from mdtp.consensus.config import NODE_ID_LEN_MAX, ConsensusConfig
from mdtp.consensus.errors import DecodeError

Signer = Callable[[bytes], bytes]
Verifier = Callable[[str, bytes, bytes], bool]
Signatures = tuple[tuple[str, bytes], ...]

TAG_PRE_PREPARE = b"mdtp/v1/pre-prepare"
TAG_PREPARE = b"mdtp/v1/prepare"
TAG_COMMIT = b"mdtp/v1/commit"
TAG_CHECKPOINT = b"mdtp/v1/checkpoint"
TAG_VIEW_CHANGE = b"mdtp/v1/view-change"
TAG_NEW_VIEW = b"mdtp/v1/new-view"
TAG_ST_REQUEST = b"mdtp/v1/state-request"
TAG_ST_RESPONSE = b"mdtp/v1/state-response"
TAG_SUSPECT = b"mdtp/v1/suspect"


def signing_bytes(tag: bytes, chain_id: str, sender: str, fields: list[Any]) -> bytes:
    return tag + pack([chain_id, sender, *fields])


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds applied while decoding, before anything is trusted."""

    message_bytes_max: int = 64 * 1024 * 1024
    block_txs_max: int = 10_000
    tx_bytes_max: int = 4 * 1024 * 1024
    items_max: int = 1_024  # certificates per view change, view changes per new view, ...

    @classmethod
    def from_config(cls, config: ConsensusConfig) -> WireLimits:
        return cls(
            message_bytes_max=config.message_bytes_max,
            block_txs_max=config.block_txs_max,
            tx_bytes_max=config.block_bytes_max,
            items_max=max(config.window_size, config.n, config.state_transfer_blocks_max),
        )


DEFAULT_LIMITS = WireLimits()


def _signatures_to_wire(sigs: Signatures) -> list[Any]:
    return [[signer, sig] for signer, sig in sigs]


def _signatures_from_wire(value: object, name: str, limits: WireLimits) -> Signatures:
    out: list[tuple[str, bytes]] = []
    for item in read_list(value, name, length_max=limits.items_max):
        pair = read_list(item, name, length=2)
        signer = read_str(pair[0], f"{name}.signer", NODE_ID_LEN_MAX)
        if out and signer <= out[-1][0]:
            raise DecodeError("bad_field", f"{name}: signers must be strictly sorted")
        out.append((signer, read_bytes(pair[1], f"{name}.signature", SIGNATURE_LEN)))
    return tuple(out)


def sorted_signatures(sigs: dict[str, bytes]) -> Signatures:
    return tuple(sorted(sigs.items()))


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class PrePrepare:
    KIND: ClassVar[int] = 1
    view: int
    height: int
    block: Block
    sender: str
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return self.block.hash()

    def signed_fields(self) -> list[Any]:
        return [self.view, self.height, self.block.hash()]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_PRE_PREPARE, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return [self.view, self.height, self.block.to_wire()]

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> PrePrepare:
        items = read_list(body, "pre-prepare", length=3)
        return cls(
            view=read_int(items[0], "view"),
            height=read_int(items[1], "height", low=1),
            block=Block.from_wire(items[2], lim.block_txs_max, lim.tx_bytes_max),
            sender=sender,
            signature=sig,
        )


@dataclass(frozen=True, slots=True)
class _Vote:
    """PREPARE and COMMIT share one shape: a vote for (view, height, block digest); only
    their kind and domain tag differ, so a prepare can never be replayed as a commit."""

    KIND: ClassVar[int] = 0
    TAG: ClassVar[bytes] = b""
    NAME: ClassVar[str] = "vote"
    view: int
    height: int
    digest: bytes
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [self.view, self.height, self.digest]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(self.TAG, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> Self:
        items = read_list(body, cls.NAME, length=3)
        return cls(
            view=read_int(items[0], "view"),
            height=read_int(items[1], "height", low=1),
            digest=read_bytes(items[2], "digest", HASH_LEN),
            sender=sender,
            signature=sig,
        )


@dataclass(frozen=True, slots=True)
class Prepare(_Vote):
    KIND: ClassVar[int] = 2
    TAG: ClassVar[bytes] = TAG_PREPARE
    NAME: ClassVar[str] = "prepare"


@dataclass(frozen=True, slots=True)
class Commit(_Vote):
    KIND: ClassVar[int] = 3
    TAG: ClassVar[bytes] = TAG_COMMIT
    NAME: ClassVar[str] = "commit"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    KIND: ClassVar[int] = 4
    height: int
    block_hash: bytes
    state_root: bytes
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [self.height, self.block_hash, self.state_root]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_CHECKPOINT, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> Checkpoint:
        items = read_list(body, "checkpoint", length=3)
        return cls(
            height=read_int(items[0], "height", low=1),
            block_hash=read_bytes(items[1], "block_hash", HASH_LEN),
            state_root=read_bytes(items[2], "state_root", HASH_LEN),
            sender=sender,
            signature=sig,
        )


# ----------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """2f+1 COMMIT signatures for (view, height, block_hash) from distinct members."""

    view: int
    height: int
    block_hash: bytes
    signatures: Signatures

    def to_wire(self) -> list[Any]:
        return [self.view, self.height, self.block_hash, _signatures_to_wire(self.signatures)]

    @classmethod
    def from_wire(cls, value: object, lim: WireLimits = DEFAULT_LIMITS) -> CommitCertificate:
        items = read_list(value, "commit_cert", length=4)
        return cls(
            view=read_int(items[0], "view"),
            height=read_int(items[1], "height", low=1),
            block_hash=read_bytes(items[2], "block_hash", HASH_LEN),
            signatures=_signatures_from_wire(items[3], "commit_cert.signatures", lim),
        )


@dataclass(frozen=True, slots=True)
class CheckpointCertificate:
    """2f+1 CHECKPOINT signatures for (height, block_hash, state_root); height 0 is the
    genesis checkpoint, which needs no signature."""

    height: int
    block_hash: bytes
    state_root: bytes
    signatures: Signatures

    def to_wire(self) -> list[Any]:
        return [
            self.height,
            self.block_hash,
            self.state_root,
            _signatures_to_wire(self.signatures),
        ]

    @classmethod
    def from_wire(cls, value: object, lim: WireLimits = DEFAULT_LIMITS) -> CheckpointCertificate:
        items = read_list(value, "checkpoint_cert", length=4)
        return cls(
            height=read_int(items[0], "height"),
            block_hash=read_bytes(items[1], "block_hash", HASH_LEN),
            state_root=read_bytes(items[2], "state_root", HASH_LEN),
            signatures=_signatures_from_wire(items[3], "checkpoint_cert.signatures", lim),
        )


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """A PRE-PREPARE plus 2f PREPARE signatures from distinct non-primary members."""

    pre_prepare: PrePrepare
    prepares: Signatures

    @property
    def view(self) -> int:
        return self.pre_prepare.view

    @property
    def height(self) -> int:
        return self.pre_prepare.height

    def to_wire(self) -> list[Any]:
        return [message_to_wire(self.pre_prepare), _signatures_to_wire(self.prepares)]

    @classmethod
    def from_wire(cls, value: object, lim: WireLimits = DEFAULT_LIMITS) -> PreparedCertificate:
        items = read_list(value, "prepared_cert", length=2)
        pre_prepare = message_from_wire(items[0], lim)
        if not isinstance(pre_prepare, PrePrepare):
            raise DecodeError("bad_field", "prepared_cert: pre-prepare expected")
        return cls(pre_prepare, _signatures_from_wire(items[1], "prepared_cert.prepares", lim))


# ------------------------------------------------------------- view change and transfer


@dataclass(frozen=True)
class ViewChange:
    KIND: ClassVar[int] = 5
    new_view: int
    checkpoint: CheckpointCertificate
    prepared: tuple[PreparedCertificate, ...]
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [self.new_view, self.checkpoint.to_wire(), [p.to_wire() for p in self.prepared]]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_VIEW_CHANGE, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> ViewChange:
        items = read_list(body, "view-change", length=3)
        prepared = read_list(items[2], "view-change.prepared", length_max=lim.items_max)
        return cls(
            new_view=read_int(items[0], "new_view", low=1),
            checkpoint=CheckpointCertificate.from_wire(items[1], lim),
            prepared=tuple(PreparedCertificate.from_wire(p, lim) for p in prepared),
            sender=sender,
            signature=sig,
        )


@dataclass(frozen=True)
class NewView:
    KIND: ClassVar[int] = 6
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [
            self.view,
            [message_to_wire(vc) for vc in self.view_changes],
            [message_to_wire(pp) for pp in self.pre_prepares],
        ]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_NEW_VIEW, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> NewView:
        items = read_list(body, "new-view", length=3)
        vcs = [
            message_from_wire(v, lim) for v in read_list(items[1], "vcs", length_max=lim.items_max)
        ]
        pps = [
            message_from_wire(p, lim) for p in read_list(items[2], "pps", length_max=lim.items_max)
        ]
        if not all(isinstance(v, ViewChange) for v in vcs):
            raise DecodeError("bad_field", "new-view: view-change expected")
        if not all(isinstance(p, PrePrepare) for p in pps):
            raise DecodeError("bad_field", "new-view: pre-prepare expected")
        return cls(
            view=read_int(items[0], "view", low=1),
            view_changes=tuple(v for v in vcs if isinstance(v, ViewChange)),
            pre_prepares=tuple(p for p in pps if isinstance(p, PrePrepare)),
            sender=sender,
            signature=sig,
        )


@dataclass(frozen=True, slots=True)
class StateTransferRequest:
    KIND: ClassVar[int] = 7
    from_height: int
    to_height: int
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [self.from_height, self.to_height]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_ST_REQUEST, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(
        cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits
    ) -> StateTransferRequest:
        items = read_list(body, "state-request", length=2)
        low = read_int(items[0], "from_height", low=1)
        return cls(low, read_int(items[1], "to_height", low=low), sender, sig)


@dataclass(frozen=True)
class StateTransferResponse:
    KIND: ClassVar[int] = 8
    entries: tuple[tuple[Block, CommitCertificate], ...]
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [[[b.to_wire(), c.to_wire()] for b, c in self.entries]]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_ST_RESPONSE, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(
        cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits
    ) -> StateTransferResponse:
        items = read_list(body, "state-response", length=1)
        entries: list[tuple[Block, CommitCertificate]] = []
        for raw in read_list(items[0], "entries", length_max=lim.items_max):
            pair = read_list(raw, "entry", length=2)
            block = Block.from_wire(pair[0], lim.block_txs_max, lim.tx_bytes_max)
            entries.append((block, CommitCertificate.from_wire(pair[1], lim)))
        return cls(tuple(entries), sender, sig)


@dataclass(frozen=True, slots=True)
class Suspect:
    """SUSPECT(view): the sender's timer says the primary of ``view`` fails (no progress
    on pending work, a transaction left unproposed, throughput far below recent views).

    Unlike VIEW-CHANGE it is not a promise to stop voting in ``view``, so it carries no
    safety weight and needs no prepared certificates: f+1 of them (one at least from an
    honest replica) make every replica send VIEW-CHANGE, and a lone suspicious replica
    keeps working in its view instead of sitting alone in a view change.
    """

    KIND: ClassVar[int] = 9
    view: int
    sender: str
    signature: bytes = b""

    def signed_fields(self) -> list[Any]:
        return [self.view]

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(TAG_SUSPECT, chain_id, self.sender, self.signed_fields())

    def body(self) -> list[Any]:
        return self.signed_fields()

    @classmethod
    def from_body(cls, sender: str, sig: bytes, body: list[Any], lim: WireLimits) -> Suspect:
        items = read_list(body, "suspect", length=1)
        return cls(view=read_int(items[0], "view"), sender=sender, signature=sig)


Message = (
    PrePrepare
    | Prepare
    | Commit
    | Checkpoint
    | ViewChange
    | NewView
    | StateTransferRequest
    | StateTransferResponse
    | Suspect
)

_KINDS: dict[int, Any] = {
    cls.KIND: cls
    for cls in (
        PrePrepare,
        Prepare,
        Commit,
        Checkpoint,
        ViewChange,
        NewView,
        StateTransferRequest,
        StateTransferResponse,
        Suspect,
    )
}


M = TypeVar(
    "M",
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    StateTransferRequest,
    StateTransferResponse,
    Suspect,
)


def sign_message(msg: M, chain_id: str, sign: Signer) -> M:
    """Return ``msg`` with its signature over the domain-separated bytes filled in."""
    return dataclasses.replace(msg, signature=sign(msg.signing_bytes(chain_id)))


def verify_message(msg: Message, chain_id: str, verify: Verifier) -> bool:
    return verify(msg.sender, msg.signing_bytes(chain_id), msg.signature)


def message_to_wire(msg: Message) -> list[Any]:
    return [msg.KIND, msg.sender, msg.signature, *msg.body()]


def message_from_wire(value: object, lim: WireLimits) -> Message:
    if type(value) is not list or len(value) < 3:
        raise DecodeError("bad_field", "message: array [kind, sender, signature, ...] expected")
    kind = read_int(value[0], "kind")
    cls = _KINDS.get(kind)
    if cls is None:
        raise DecodeError("unknown_kind", str(kind))
    sender = read_str(value[1], "sender", NODE_ID_LEN_MAX)
    signature = read_bytes(value[2], "signature", SIGNATURE_LEN)
    msg: Message = cls.from_body(sender, signature, value[3:], lim)
    return msg


def encode_message(msg: Message) -> bytes:
    return pack(message_to_wire(msg))


def decode_message(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Untrusted bytes to a message; raises ``DecodeError`` and only that.

    ``data`` is checked against ``limits.message_bytes_max`` before msgpack sees it, and
    the result must re-encode to exactly ``data`` (one encoding per message).
    """
    value = unpack_canonical(data, limits.message_bytes_max)
    try:
        return message_from_wire(value, limits)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("malformed", "nesting too deep") from None
