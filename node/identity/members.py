"""A member's public facts (``member.json``) and how genesis is assembled from them.

``mdtp init`` writes ``member.json`` on the member's machine: its id and name, the node's
Ed25519 public key, its endpoints, its admin account's public keys, and the fingerprints of
its TLS certificate request and TLS public key. Once the CA has signed the request, the
certificate's fingerprint (``tls_fingerprint``, what genesis pins) comes from the
certificate itself: :func:`attach_certificates` checks that each certificate is for the key
the member's request named (and, given the CA certificate, that the CA signed it).
Nothing here reads a private key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mdtp.node.errors import GenesisError
from mdtp.node.identity import pki
from mdtp.node.identity.csr import NodeRequest, issued_by
from mdtp.node.identity.keys import SigningKey

_MAX_MEMBER_BYTES = 64 * 1024


def member_document(
    *,
    node_id: str,
    name: str,
    node_key: SigningKey,
    admin_key: SigningKey,
    p2p: str,
    api: str,
    request: NodeRequest,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "name": name,
        "node_public_key": node_key.public_key.hex(),
        "p2p": p2p,
        "api": api,
        "tls_csr_sha256": request.csr_sha256,
        "tls_public_key_sha256": request.public_key_sha256,
        "admin": {
            "member": node_id,
            "account_id": admin_key.account_id,
            "public_key": admin_key.public_key.hex(),
            "encryption_public_key": (admin_key.encryption_public_key or b"").hex(),
        },
    }


def read_member_file(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_MEMBER_BYTES:
            raise GenesisError(f"{path}: too large for a member file")
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GenesisError(f"{path}: cannot read member file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise GenesisError(f"{path}: not a member file (no id)")
    return doc


def _load_cert(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise GenesisError(f"{source}: not a PEM certificate ({e})", reason="bad_cert") from None


def attach_certificates(
    members: list[dict[str, Any]],
    certs: list[tuple[str, bytes]],
    ca_pem: bytes | None = None,
) -> list[dict[str, Any]]:
    """Copies of ``members`` with ``tls_fingerprint`` from their signed certificates
    (``certs``: (source, PEM) pairs, matched to members by the certificate's node id)."""
    by_id = {m["id"]: dict(m) for m in members}
    ca_cert = _load_cert(ca_pem, "CA certificate") if ca_pem is not None else None
    for source, pem in certs:
        cert = _load_cert(pem, source)
        der = cert.public_bytes(serialization.Encoding.DER)
        node_id = pki.node_id_of_der(der)
        member = by_id.get(node_id or "")
        if member is None:
            raise GenesisError(
                f"{source}: certificate for {node_id!r}, which no member file names",
                reason="cert_member",
            )
        want = member.get("tls_public_key_sha256")
        if want is not None and want != pki.public_key_sha256(cert):
            raise GenesisError(
                f"{source}: not for the TLS key of {node_id}'s request (member file)",
                reason="cert_key_mismatch",
            )
        if ca_cert is not None and not issued_by(cert, ca_cert):
            raise GenesisError(
                f"{source}: not signed by the consortium CA", reason="cert_not_from_ca"
            )
        fingerprint = pki.fingerprint_der(der)
        if member.get("tls_fingerprint", fingerprint) != fingerprint:
            raise GenesisError(
                f"{source}: {node_id}'s member file pins another certificate",
                reason="cert_key_mismatch",
            )
        member["tls_fingerprint"] = fingerprint
    for member in by_id.values():
        if "tls_fingerprint" not in member:
            raise GenesisError(
                f"member {member['id']}: no certificate (give --cert with the certificate "
                "the CA signed for it)",
                reason="cert_missing",
            )
    return [by_id[m["id"]] for m in members]
