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

Everything here is owner-only: directories 0700, files 0600 (public ones too — the owner
hands out what others need, e.g. member.json).
"""

from __future__ import annotations

import json
import os
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

DIR_MODE = 0o700
FILE_MODE = 0o600


def _write(path: Path, data: bytes) -> None:
    """Write ``path`` owner-only (0600), whatever the process umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def init_ca(ca_dir: Path, name: str = "mdtp") -> pki.Issued:
    _mkdir(ca_dir)
    if (ca_dir / "ca.pem").exists():
        raise ConfigError(f"{ca_dir / 'ca.pem'}: a CA already exists here")
    ca = pki.create_ca(name)
    pki.write_private(ca_dir / "ca.key.pem", ca.key_pem)
    _write(ca_dir / "ca.pem", ca.cert_pem)
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
    _mkdir(home)
    node_key = SigningKey.generate()
    admin_key = SigningKey.generate(with_encryption=True)
    save_key(home / "node_key.json", node_key, passphrase=passphrase)
    save_key(home / "admin_key.json", admin_key, passphrase=passphrase)
    hosts = sorted({p2p.rpartition(":")[0].strip("[]"), api.rpartition(":")[0].strip("[]")})
    hosts += ["localhost"]
    tls = pki.issue_node_certificate(ca, node_id, hosts)
    _write(home / "node.pem", tls.cert_pem)
    pki.write_private(home / "node.key.pem", tls.key_pem)
    _write(home / "ca.pem", ca.cert_pem)
    overrides = {
        "node.id": node_id,
        "p2p.listen": p2p,
        "api.listen": api,
        "metrics.listen": metrics,
    }
    overrides.update(extra_config or {})
    _write(home / "config.toml", render_config(overrides).encode())
    _mkdir(home / "data")
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
    _write(home / "member.json", (json.dumps(member, indent=2) + "\n").encode())
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
    _write(path, genesis.to_json().encode())
