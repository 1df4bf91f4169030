"""Creating node homes, the consortium CA and the genesis file.

A node home holds::

    config.toml      documented configuration (see node/config.py)
    genesis.json     the consortium's genesis file (same bytes on every member)
    ca.pem           the consortium CA certificate
    node.pem         this node's TLS certificate    node.key.pem  its TLS key (0600)
    node_key.json    this node's Ed25519 key (0600, optionally passphrase-sealed)
    admin_key.json   the member's admin account key (0600)
    member.json      the public facts genesis needs about this member
    data/            LevelDB and the off-chain chunk store
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mdtp.node.errors import ConfigError, GenesisError
from mdtp.node.identity import pki
from mdtp.node.identity.config import render_config
from mdtp.node.identity.genesis import (
    NODE_ID_RE,
    Admin,
    ConsensusParams,
    Genesis,
    Member,
    parse_genesis,
)
from mdtp.node.identity.keys import SigningKey, save_key


def init_ca(ca_dir: Path, name: str = "mdtp") -> pki.Issued:
    ca_dir.mkdir(parents=True, exist_ok=True)
    if (ca_dir / "ca.pem").exists():
        raise ConfigError(f"{ca_dir / 'ca.pem'}: a CA already exists here")
    ca = pki.create_ca(name)
    pki.write_private(ca_dir / "ca.key.pem", ca.key_pem)
    (ca_dir / "ca.pem").write_bytes(ca.cert_pem)
    return ca


def load_ca(ca_dir: Path) -> pki.Issued:
    try:
        return pki.Issued((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca.key.pem").read_bytes())
    except OSError as e:
        raise ConfigError(f"{ca_dir}: not a CA directory ({e.strerror}: {e.filename})") from None


def init_home(
    home: Path,
    *,
    node_id: str,
    name: str,
    ca: pki.Issued,
    p2p: str,
    api: str,
    metrics: str,
    passphrase: bytes | None = None,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a new node home; returns its public member document (also in member.json)."""
    if not NODE_ID_RE.match(node_id):
        raise ConfigError(f"node id {node_id!r} must match {NODE_ID_RE.pattern}")
    if (home / "config.toml").exists():
        raise ConfigError(f"{home}: already a node home (config.toml exists)")
    home.mkdir(parents=True, exist_ok=True)
    node_key = SigningKey.generate()
    admin_key = SigningKey.generate(with_encryption=True)
    save_key(home / "node_key.json", node_key, passphrase=passphrase)
    save_key(home / "admin_key.json", admin_key, passphrase=passphrase)
    hosts = sorted({p2p.rpartition(":")[0].strip("[]"), api.rpartition(":")[0].strip("[]")})
    hosts += ["localhost"]
    tls = pki.issue_node_certificate(ca, node_id, hosts)
    (home / "node.pem").write_bytes(tls.cert_pem)
    pki.write_private(home / "node.key.pem", tls.key_pem)
    (home / "ca.pem").write_bytes(ca.cert_pem)
    overrides = {
        "node.id": node_id,
        "p2p.listen": p2p,
        "api.listen": api,
        "metrics.listen": metrics,
    }
    overrides.update(extra_config or {})
    (home / "config.toml").write_text(render_config(overrides))
    (home / "data").mkdir(exist_ok=True)
    member = {
        "id": node_id,
        "name": name,
        "node_public_key": node_key.public_key.hex(),
        "tls_fingerprint": pki.fingerprint_pem(tls.cert_pem),
        "p2p": p2p,
        "api": api,
        "admin": {
            "member": node_id,
            "account_id": admin_key.account_id,
            "public_key": admin_key.public_key.hex(),
            "encryption_public_key": (admin_key.encryption_public_key or b"").hex(),
        },
    }
    (home / "member.json").write_text(json.dumps(member, indent=2) + "\n")
    return member


def build_genesis(
    chain_id: str, members: list[dict[str, Any]], params: ConsensusParams | None = None
) -> Genesis:
    """Genesis from the members' ``member.json`` documents, validated like a loaded file."""
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "genesis_time_ms": int(time.time() * 1000),
        "members": [{k: m[k] for k in Member.__dataclass_fields__ if k in m} for m in members],
        "admins": [m["admin"] for m in members if "admin" in m],
        "consensus": (params or ConsensusParams()).__dict__,
    }
    for field in Admin.__dataclass_fields__:
        for admin in doc["admins"]:
            if field not in admin:
                raise GenesisError(f"member admin lacks {field!r}")
    return parse_genesis(doc, "genesis")


def write_genesis(genesis: Genesis, path: Path) -> None:
    path.write_text(genesis.to_json())
