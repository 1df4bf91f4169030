"""Creating node homes on the member's own machine, and installing their certificates.

A node home holds only what the daemon reads::

    config.toml      documented configuration (see node/identity/config.py)
    genesis.json     the consortium's genesis file (same bytes on every member)
    ca.pem           the consortium CA certificate
    node.pem         this node's TLS certificate    node.key.pem  its TLS key (0600)
    node_key.json    this node's Ed25519 key (0600, optionally passphrase-sealed)
    data/            LevelDB and the off-chain chunk store

``mdtp init`` (:func:`create_home`) writes the keys there and, outside the home, the
member's admin account key (``<home>-admin/admin_key.json`` unless told otherwise: the daemon
never uses it) and the public request the member sends to the CA operator
(``<home>-request/``: ``node.csr.pem`` and ``member.json``). :func:`install_certificate`
puts the certificate the CA signed and the CA certificate into the home.

Everything here is owner-only: directories 0700, files 0600 (public ones too — the owner
hands out what others need).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mdtp.node.errors import ConfigError, GenesisError, KeyFileError
from mdtp.node.identity import pki
from mdtp.node.identity.ca import init_ca, load_ca
from mdtp.node.identity.config import load_config, render_config
from mdtp.node.identity.csr import (
    build_node_csr,
    check_node_csr,
    issued_by,
    new_tls_key,
    sign_node_csr,
)
from mdtp.node.identity.genesis import (
    NODE_ID_RE,
    Admin,
    ConsensusParams,
    Genesis,
    Member,
    parse_genesis,
)
from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.identity.members import member_document

__all__ = ["init_ca", "load_ca"]  # the CA directory, for the callers that made it here

DIR_MODE = 0o700
FILE_MODE = 0o600
CSR_FILE = "node.csr.pem"
# A node key made for a node key rotation (``rotate_node_key``): the node holds both and signs
# with the one the epoch in effect lists.
NEXT_NODE_KEY_FILE = "node_key.next.json"
# A TLS key made for a certificate rotation, waiting for its certificate (``rotate_tls_key``).
NEXT_TLS_KEY_FILE = "node.next.key.pem"
MEMBER_FILE = "member.json"
ADMIN_KEY_FILE = "admin_key.json"


def _write(path: Path, data: bytes) -> None:
    """Write ``path`` owner-only (0600), whatever the process umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def default_admin_dir(home: Path) -> Path:
    """Where ``mdtp init`` puts the admin key unless told: beside the home, never in it."""
    home = home.absolute()
    return home.parent / f"{home.name}-admin"


def default_request_dir(home: Path) -> Path:
    """Where ``mdtp init`` puts the request for the CA operator unless told."""
    home = home.absolute()
    return home.parent / f"{home.name}-request"


def _hosts(p2p: str, api: str, extra: list[str] | None) -> list[str]:
    hosts = {p2p.rpartition(":")[0].strip("[]"), api.rpartition(":")[0].strip("[]")}
    hosts.discard("")
    hosts.discard("0.0.0.0")
    hosts.discard("::")
    return [*sorted(hosts), "localhost", *(extra or [])]


def create_home(
    home: Path,
    *,
    node_id: str,
    name: str,
    p2p: str,
    api: str,
    metrics: str,
    hosts: list[str] | None = None,
    admin_key_file: Path | None = None,
    request_dir: Path | None = None,
    passphrase: bytes | None = None,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a new node home with its own keys and a request for its TLS certificate; the
    admin key goes to ``admin_key_file`` and ``node.csr.pem`` + ``member.json`` to
    ``request_dir`` (both outside the home by default). Returns the member document."""
    if not NODE_ID_RE.match(node_id):
        raise ConfigError(f"node id {node_id!r} must match {NODE_ID_RE.pattern}")
    if (home / "config.toml").exists():
        raise ConfigError(f"{home}: already a node home (config.toml exists)")
    admin_key_file = admin_key_file or default_admin_dir(home) / ADMIN_KEY_FILE
    request_dir = request_dir or default_request_dir(home)
    for path in (admin_key_file, request_dir / CSR_FILE, request_dir / MEMBER_FILE):
        if path.exists():
            raise ConfigError(f"{path}: already exists; refusing to overwrite it")
    tls_key = new_tls_key()
    csr_pem = build_node_csr(tls_key, node_id, _hosts(p2p, api, hosts))
    request, _ = check_node_csr(csr_pem, "the new request")
    _mkdir(home)
    _mkdir(admin_key_file.parent)
    _mkdir(request_dir)
    node_key = SigningKey.generate()
    admin_key = SigningKey.generate(with_encryption=True)
    save_key(home / "node_key.json", node_key, passphrase=passphrase)
    save_key(admin_key_file, admin_key, passphrase=passphrase)
    pki.write_private(home / "node.key.pem", pki.private_key_pem(tls_key))
    overrides = {
        "node.id": node_id,
        "p2p.listen": p2p,
        "api.listen": api,
        "metrics.listen": metrics,
    }
    overrides.update(extra_config or {})
    _mkdir(home / "data")
    member = member_document(
        node_id=node_id,
        name=name,
        node_key=node_key,
        admin_key=admin_key,
        p2p=p2p,
        api=api,
        request=request,
    )
    _write(request_dir / CSR_FILE, csr_pem)
    _write(request_dir / MEMBER_FILE, (json.dumps(member, indent=2) + "\n").encode())
    # config.toml last: it is what makes the directory a node home
    _write(home / "config.toml", render_config(overrides).encode())
    return member


def _refuse(message: str, reason: str) -> KeyFileError:
    return KeyFileError(message, reason=reason)


def rotate_node_key(home: Path, passphrase: bytes | None = None) -> SigningKey:
    """Start a node key rotation: a new node key beside the current one
    (``node_key.next.json``). The node loads both at its next start and signs consensus
    messages and peer handshakes with the key the epoch in effect lists for it, so an admin's
    ``rotate_node_key`` proposal takes effect without downtime. Returns the new key."""
    cfg = load_config(home)
    path = cfg.path("node", "node_key").with_name(NEXT_NODE_KEY_FILE)
    if path.exists():
        raise ConfigError(f"{path}: a node key rotation is already under way")
    key = SigningKey.generate()
    save_key(path, key, passphrase=passphrase)
    return key


def rotate_tls_key(home: Path, request_dir: Path, hosts: list[str] | None = None) -> Path:
    """Start a certificate rotation: a new TLS key, kept beside the current one in the home
    (``node.next.key.pem``) until its certificate is installed, and a request for it in
    ``request_dir``. The node keeps running on its current certificate meanwhile; the CA
    signs the request, an admin proposes the new certificate's fingerprint
    (``mdtp member propose rotate-cert``), and :func:`install_certificate` swaps key and
    certificate once that change is scheduled. Returns the request's path."""
    cfg = load_config(home)
    next_key = home / NEXT_TLS_KEY_FILE
    if next_key.exists():
        raise ConfigError(
            f"{next_key}: a rotation is already under way (install its certificate, or remove "
            "the file to start again)"
        )
    tls_key = new_tls_key()
    p2p, api = str(cfg.get("p2p", "listen")), str(cfg.get("api", "listen"))
    csr_pem = build_node_csr(tls_key, cfg.node_id, _hosts(p2p, api, hosts))
    check_node_csr(csr_pem, "the new request")
    _mkdir(request_dir)
    pki.write_private(next_key, pki.private_key_pem(tls_key))
    path = request_dir / CSR_FILE
    _write(path, csr_pem)
    return path


def install_certificate(home: Path, cert_pem: bytes, ca_pem: bytes) -> str:
    """Install the certificate the CA signed for this home's TLS key, and the CA
    certificate, into the home; returns the certificate's fingerprint (genesis pins it).
    Refuses a certificate for another key or another node id, or one the CA did not sign.
    A certificate for the key of a rotation under way (:func:`rotate_tls_key`) replaces the
    installed key and certificate (the node uses them from its next start)."""
    cfg = load_config(home)
    cert_path, key_path, ca_path = (cfg.path("tls", k) for k in ("cert", "key", "ca"))
    next_key = home / NEXT_TLS_KEY_FILE
    rotating = next_key.exists() and _certifies(cert_pem, next_key)
    if rotating:
        key_path = next_key
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as e:
        raise _refuse(f"not a PEM certificate ({e})", "bad_cert") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise _refuse(f"{key_path}: TLS key not found", "key_missing") from None
    except (OSError, ValueError, TypeError) as e:
        raise _refuse(f"{key_path}: cannot read the TLS key ({e})", "bad_key_file") from None
    if pki.public_key_sha256(cert) != pki.fingerprint_der(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ):
        raise _refuse(f"the certificate is not for this home's TLS key {key_path}", "cert_key")
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_id = pki.node_id_of_der(der)
    if cert_id != cfg.node_id:
        raise _refuse(f"the certificate is for node {cert_id!r}, this home is {cfg.node_id!r}",
                      "cert_node_id")  # fmt: skip
    if not issued_by(cert, ca_cert):
        raise _refuse("the certificate was not signed by the given CA certificate", "cert_ca")
    if not rotating and cert_path.exists() and cert_path.read_bytes() != cert_pem:
        raise _refuse(f"{cert_path}: a certificate is already installed", "cert_exists")
    if rotating:
        os.replace(next_key, cfg.path("tls", "key"))  # the key first: then its certificate
    _write(cert_path, cert_pem)
    _write(ca_path, ca_pem)
    return pki.fingerprint_der(der)


def _certifies(cert_pem: bytes, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pki.public_key_sha256(cert) == pki.fingerprint_der(spki)


def install_genesis(home: Path, genesis_json: bytes, source: str = "genesis") -> Genesis:
    """Check that ``genesis_json`` names this home's node key and installed certificate
    under its node id (if it names the node at all: a member joining a running chain is not
    in genesis), then write it into the home."""
    cfg = load_config(home)
    try:
        genesis = parse_genesis(json.loads(genesis_json), source)
    except ValueError as e:
        raise GenesisError(f"{source}: not valid JSON ({e})") from None
    member = genesis.member(cfg.node_id)
    if member is None:
        # A member joining a running chain: genesis lists the founders only. The node follows
        # the chain once an admin's proposal to add it is scheduled, and checks its keys
        # against the chain's record at every start.
        _write(cfg.path("node", "genesis"), genesis_json)
        return genesis
    try:
        cert_pem = cfg.path("tls", "cert").read_bytes()
        node_key = json.loads(cfg.path("node", "node_key").read_text())["public_key"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        message = f"{home}: install the certificate first ({e})"
        raise GenesisError(message, reason="cert_missing") from None
    if member.tls_fingerprint != pki.fingerprint_pem(cert_pem):
        raise GenesisError(
            f"{source}: pins another TLS certificate for {cfg.node_id}", reason="cert_mismatch"
        )
    if member.node_public_key != node_key:
        raise GenesisError(
            f"{source}: names another node key for {cfg.node_id}", reason="node_key_mismatch"
        )
    _write(cfg.path("node", "genesis"), genesis_json)
    return genesis


def init_home(
    home: Path,
    *,
    node_id: str,
    name: str,
    ca: pki.Issued,
    p2p: str,
    api: str,
    metrics: str,
    hosts: list[str] | None = None,
    passphrase: bytes | None = None,
    extra_config: dict[str, Any] | None = None,
    admin_key_file: Path | None = None,
    request_dir: Path | None = None,
) -> dict[str, Any]:
    """Everything on one machine that holds the CA (local clusters, tests): create the home
    and its request, sign the request with ``ca``, install the certificate. Returns the
    member document with its ``tls_fingerprint`` (also written to ``member.json``)."""
    request_dir = request_dir or default_request_dir(home)
    member = create_home(
        home,
        node_id=node_id,
        name=name,
        p2p=p2p,
        api=api,
        metrics=metrics,
        hosts=hosts,
        admin_key_file=admin_key_file,
        request_dir=request_dir,
        passphrase=passphrase,
        extra_config=extra_config,
    )
    cert_pem, _ = sign_node_csr(ca, (request_dir / CSR_FILE).read_bytes())
    member["tls_fingerprint"] = install_certificate(home, cert_pem, ca.cert_pem)
    _write(request_dir / "node.pem", cert_pem)
    _write(request_dir / MEMBER_FILE, (json.dumps(member, indent=2) + "\n").encode())
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
