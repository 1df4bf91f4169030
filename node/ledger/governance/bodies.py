"""Typed builders of the governance transaction bodies, in the style of
:mod:`mdtp.node.ledger.trading.bodies` (same :class:`Body` base: ``to_body`` is the map the
transaction carries, bytes stay bytes; ``from_json`` reads the JSON forms people write, keys
and fingerprints as hex).

``member.propose`` carries one :class:`Change`: :class:`AddMember` (the new member's public
facts, as in the genesis file's ``members`` entry, plus its admins' public keys),
:class:`RemoveMember`, :class:`RotateNodeKey`, :class:`RotateCertificate`,
:class:`PolicyChange`, :class:`AddObserver` (a node that follows and serves reads, never votes)
or :class:`RemoveObserver`. The rules (:mod:`.rules`) are the authority on what a body may hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from mdtp.node.ledger.trading.bodies import Body, BodyPart


def _hex(doc: Mapping[str, Any], name: str, where: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{where}{name}: missing or not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{where}{name}: must be hex") from None


@dataclass(frozen=True)
class AdminKeys(BodyPart):
    """An admin account of an added member: its signing and encryption public keys (the
    account id is the ``did:key`` of the signing key)."""

    public_key: bytes
    encryption_public_key: bytes

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "") -> Self:
        # the genesis file's admin entries also name the member and the account id
        known = {"public_key", "encryption_public_key", "member", "account_id"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"{where}{unknown[0]}: unknown field")
        return cls(_hex(doc, "public_key", where), _hex(doc, "encryption_public_key", where))


@dataclass(frozen=True)
class NewMember(BodyPart):
    """The public facts of a member to add (the genesis ``members`` entry) and its admins."""

    id: str
    name: str
    node_public_key: bytes
    tls_fingerprint: bytes
    p2p: str
    api: str
    admins: tuple[AdminKeys, ...]

    def to_body(self) -> dict[str, Any]:
        out = super().to_body()
        out["admins"] = [a.to_body() for a in self.admins]
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "") -> Self:
        """From a member file: ``{"id", "name", "node_public_key", "tls_fingerprint", "p2p",
        "api", "admins": [{"public_key", "encryption_public_key"}, ...]}`` (hex keys), or the
        ``member.json`` that ``mdtp init`` writes (one ``admin``; its request's
        ``tls_csr_sha256`` and ``tls_public_key_sha256`` are ignored here) once the
        certificate's ``tls_fingerprint`` is in it."""
        required = {"id", "name", "node_public_key", "tls_fingerprint", "p2p", "api"}
        known = required | {"admins", "admin", "tls_csr_sha256", "tls_public_key_sha256"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"{where}{unknown[0]}: unknown field")
        missing = sorted(required - set(doc))
        if missing:
            raise ValueError(f"{where}{missing[0]}: missing")
        if ("admins" in doc) == ("admin" in doc):
            raise ValueError(f"{where}admins: give admins (a list) or admin (one)")
        admins = doc["admins"] if "admins" in doc else [doc["admin"]]
        if not isinstance(admins, list) or not all(isinstance(a, Mapping) for a in admins):
            raise ValueError(f"{where}admins: must be a list of objects")
        return cls(
            id=doc["id"],
            name=doc["name"],
            node_public_key=_hex(doc, "node_public_key", where),
            tls_fingerprint=_hex(doc, "tls_fingerprint", where),
            p2p=doc["p2p"],
            api=doc["api"],
            admins=tuple(
                AdminKeys.from_json(a, f"{where}admins[{i}].") for i, a in enumerate(admins)
            ),
        )


@dataclass(frozen=True)
class Change(BodyPart):
    """The change a proposal makes; ``KIND`` is its ``kind`` field."""

    KIND: ClassVar[str]

    def to_body(self) -> dict[str, Any]:
        return {"kind": self.KIND, **super().to_body()}


@dataclass(frozen=True)
class AddMember(Change):
    KIND = "add"
    member: NewMember


@dataclass(frozen=True)
class RemoveMember(Change):
    KIND = "remove"
    member_id: str


@dataclass(frozen=True)
class RotateNodeKey(Change):
    KIND = "rotate_node_key"
    member_id: str
    node_public_key: bytes


@dataclass(frozen=True)
class RotateCertificate(Change):
    KIND = "rotate_certificate"
    member_id: str
    tls_fingerprint: bytes


@dataclass(frozen=True)
class PolicyChange(Change):
    """More than ``threshold_num/threshold_den`` of the members must approve; no removal may
    leave fewer than ``min_members``."""

    KIND = "policy"
    threshold_num: int
    threshold_den: int
    min_members: int = 4


@dataclass(frozen=True)
class NewObserver(BodyPart):
    """The public facts of an observer's node: a genesis ``members`` entry without admins."""

    id: str
    name: str
    node_public_key: bytes
    tls_fingerprint: bytes
    p2p: str
    api: str

    @classmethod
    def of_member(cls, m: NewMember) -> NewObserver:
        """From a member file (``mdtp init`` writes one for an observer's home too; its
        admin is not an observer's: an observer has no accounts)."""
        return cls(m.id, m.name, m.node_public_key, m.tls_fingerprint, m.p2p, m.api)


@dataclass(frozen=True)
class AddObserver(Change):
    KIND = "add_observer"
    observer: NewObserver


@dataclass(frozen=True)
class RemoveObserver(Change):
    KIND = "remove_observer"
    observer_id: str


@dataclass(frozen=True)
class MemberPropose(Body):
    TYPE = "member.propose"
    proposal_id: str
    change: Change
    expires_at_ms: int


@dataclass(frozen=True)
class MemberVote(Body):
    TYPE = "member.vote"
    proposal_id: str
    approve: bool = True


BODIES: dict[str, type[Body]] = {b.TYPE: b for b in (MemberPropose, MemberVote)}
