"""The genesis file: chain id, founding members, consensus parameters, admin accounts.

It is plain JSON so that operators can read and diff it; its hash (over canonical JSON) is
what every node agrees on. Every field is validated on load and every error names the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.errors import GenesisError

NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
CHAIN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_GENESIS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    node_public_key: str  # hex Ed25519
    tls_fingerprint: str  # hex SHA-256 of the DER certificate
    p2p: str  # host:port
    api: str  # host:port


@dataclass(frozen=True)
class Admin:
    member: str
    account_id: str
    public_key: str  # hex Ed25519
    encryption_public_key: str  # hex X25519


@dataclass(frozen=True)
class ConsensusParams:
    checkpoint_interval: int = 8
    window: int = 16
    # 1: block h+1 is proposed once h is executed and carries h's state root. Measured on
    # the 2-core VM (README "Benchmarks", fourth pass) it commits more than 2 at every load:
    # a block costs ~2.5 ms of CPU per node whatever it holds, so fewer, fuller blocks win
    # where CPU, not the network's round trip, bounds the rate. A chain over a slow network
    # may choose 2 or more in its genesis (blocks proposed before their predecessor ran).
    pipeline_depth: int = 1
    view_timeout_ms: int = 3000
    view_timeout_ms_max: int = 60000
    max_clock_skew_ms: int = 15000


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    members: tuple[Member, ...]
    admins: tuple[Admin, ...] = ()
    consensus: ConsensusParams = field(default_factory=ConsensusParams)

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    def member(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    @property
    def f(self) -> int:
        return (len(self.members) - 1) // 3

    @property
    def quorum(self) -> int:
        return 2 * self.f + 1

    def to_json(self) -> str:
        doc = asdict(self)
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def hash(self) -> bytes:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(b"mdtp/v1/genesis" + canonical).digest()


def _need(doc: dict[str, Any], key: str, typ: type, where: str) -> Any:
    if key not in doc:
        raise GenesisError(f"{where}: missing field '{key}'")
    value = doc[key]
    if (typ is int and isinstance(value, bool)) or not isinstance(value, typ):
        raise GenesisError(f"{where}: field '{key}' must be a {typ.__name__}")
    return value


def _hex(value: str, nbytes: int, where: str) -> str:
    if len(value) != 2 * nbytes or not re.fullmatch(r"[0-9a-f]+", value):
        raise GenesisError(f"{where}: expected {nbytes} bytes of lowercase hex")
    return value


def _address(value: str, where: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GenesisError(f"{where}: expected host:port, got {value!r}")
    return value


def parse_genesis(doc: Any, source: str = "genesis") -> Genesis:
    if not isinstance(doc, dict):
        raise GenesisError(f"{source}: expected a JSON object")
    chain_id = _need(doc, "chain_id", str, source)
    if not CHAIN_ID_RE.match(chain_id):
        raise GenesisError(f"{source}: chain_id {chain_id!r} must match {CHAIN_ID_RE.pattern}")
    genesis_time_ms = _need(doc, "genesis_time_ms", int, source)
    raw_members = _need(doc, "members", list, source)
    members: list[Member] = []
    for i, m in enumerate(raw_members):
        where = f"{source}: members[{i}]"
        if not isinstance(m, dict):
            raise GenesisError(f"{where}: expected an object")
        node_id = _need(m, "id", str, where)
        if not NODE_ID_RE.match(node_id):
            raise GenesisError(f"{where}: id {node_id!r} must match {NODE_ID_RE.pattern}")
        members.append(
            Member(
                id=node_id,
                name=_need(m, "name", str, where),
                node_public_key=_hex(_need(m, "node_public_key", str, where), 32, where),
                tls_fingerprint=_hex(_need(m, "tls_fingerprint", str, where), 32, where),
                p2p=_address(_need(m, "p2p", str, where), where + ".p2p"),
                api=_address(_need(m, "api", str, where), where + ".api"),
            )
        )
    if len(members) < 1:
        raise GenesisError(f"{source}: at least one member is required")
    ids = [m.id for m in members]
    if len(set(ids)) != len(ids):
        raise GenesisError(f"{source}: duplicate member ids")
    if len({m.node_public_key for m in members}) != len(members):
        raise GenesisError(f"{source}: two members share a node key")
    admins: list[Admin] = []
    for i, a in enumerate(doc.get("admins", [])):
        where = f"{source}: admins[{i}]"
        if not isinstance(a, dict):
            raise GenesisError(f"{where}: expected an object")
        pub = _hex(_need(a, "public_key", str, where), 32, where)
        admin = Admin(
            member=_need(a, "member", str, where),
            account_id=_need(a, "account_id", str, where),
            public_key=pub,
            encryption_public_key=_hex(_need(a, "encryption_public_key", str, where), 32, where),
        )
        if admin.member not in ids:
            raise GenesisError(f"{where}: member {admin.member!r} is not a member")
        if admin.account_id != account_id_from_public_key(bytes.fromhex(pub)):
            raise GenesisError(f"{where}: account_id does not match public_key")
        admins.append(admin)
    raw_params = doc.get("consensus", {})
    if not isinstance(raw_params, dict):
        raise GenesisError(f"{source}: consensus must be an object")
    defaults = ConsensusParams()
    values: dict[str, int] = {}
    for name in asdict(defaults):
        value = raw_params.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise GenesisError(f"{source}: consensus.{name} must be a positive integer")
        values[name] = value
    unknown = set(raw_params) - set(values)
    if unknown:
        raise GenesisError(f"{source}: unknown consensus parameter(s) {sorted(unknown)}")
    params = ConsensusParams(**values)
    if params.window < 2 * params.checkpoint_interval:
        raise GenesisError(f"{source}: consensus.window must be >= 2 * checkpoint_interval")
    return Genesis(chain_id, genesis_time_ms, tuple(members), tuple(admins), params)


def load_genesis(path: Path) -> Genesis:
    try:
        if path.stat().st_size > _MAX_GENESIS_BYTES:
            raise GenesisError(f"{path}: genesis file is larger than 1 MiB")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise GenesisError(f"{path}: genesis file not found") from None
    except OSError as e:
        raise GenesisError(f"{path}: cannot read genesis file: {e.strerror}") from None
    except ValueError as e:
        raise GenesisError(f"{path}: not valid JSON ({e})") from None
    return parse_genesis(doc, str(path))


class MemberSignatures:
    """Checks a member's Ed25519 signature (consensus messages, certificates) by node id;
    an unknown member or a malformed signature is simply invalid."""

    def __init__(self, members: tuple[Member, ...]) -> None:
        self._keys = {
            m.id: nacl.signing.VerifyKey(bytes.fromhex(m.node_public_key)) for m in members
        }

    def __call__(self, node_id: str, data: bytes, signature: bytes) -> bool:
        key = self._keys.get(node_id)
        if key is None or len(signature) != 64:
            return False
        try:
            key.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            return False
        return True
