"""The consortium CA, node TLS certificates and the TLS 1.3 contexts built from them.

A node's certificate carries its node id as the subject common name and as a URI SAN
``mdtp://node/<id>``; the genesis file pins the SHA-256 fingerprint of each member's
certificate, so a certificate that the CA issued to someone else is still refused.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdtp.node.errors import KeyFileError

NODE_URI_PREFIX = "mdtp://node/"
CLIENT_URI_PREFIX = "mdtp://client/"
_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mdtp consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key))


def host_names(hosts: list[str] | tuple[str, ...]) -> list[x509.GeneralName]:
    """The DNS or IP subject alternative names of ``hosts``."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def leaf_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str,
    uri: str,
    hosts: list[str] | tuple[str, ...],
    server: bool,
) -> bytes:
    """A leaf certificate (PEM) for ``public_key``: client and, if ``server``, server auth,
    never a CA; the one template of every certificate the consortium CA signs."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri), *host_names(hosts)]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_parts(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and its (decrypted) private key."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise KeyFileError("the CA key is not an EC key")
    return ca_cert, ca_key


def issue_certificate(
    ca: Issued, *, common_name: str, uri: str, hosts: list[str], server: bool
) -> Issued:
    """Issue a leaf certificate and a new key (client and, if ``server``, server auth) signed
    by ``ca``: for test clients; a member's node makes its own key (:mod:`.csr`)."""
    ca_cert, ca_key = ca_parts(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = leaf_certificate(
        ca_cert,
        ca_key,
        key.public_key(),
        common_name=common_name,
        uri=uri,
        hosts=hosts,
        server=server,
    )
    return Issued(cert_pem, private_key_pem(key))


def issue_node_certificate(ca: Issued, node_id: str, hosts: list[str]) -> Issued:
    return issue_certificate(
        ca, common_name=node_id, uri=NODE_URI_PREFIX + node_id, hosts=hosts, server=True
    )


def fingerprint_der(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate, lowercase hex (what genesis pins)."""
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


def public_key_sha256(key: ec.EllipticCurvePublicKey | x509.Certificate) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo (DER), lowercase hex: what member.json
    records of the TLS key before its certificate exists."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return fingerprint_der(spki)


def fingerprint_pem(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


@functools.lru_cache(maxsize=1024)
def node_id_of_der(der: bytes) -> str | None:
    """The node id a certificate was issued for (its ``mdtp://node/`` URI SAN), or None.

    Remembered per certificate (a pure function of its bytes; the last 1,024 kept): the API
    reads it on every request of a member's client, and parsing the certificate cost more
    than the rest of the authorisation."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(NODE_URI_PREFIX):
            return uri[len(NODE_URI_PREFIX) :]
    return None


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file with mode 0600 (refusing to overwrite an existing one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    for p in (cert, key):
        if not p.is_file():
            raise KeyFileError(f"{p}: TLS file not found", reason="key_missing")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise KeyFileError(f"{cert} / {key}: cannot load TLS certificate and key: {e}") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as e:
        raise KeyFileError(f"{ca}: cannot load the consortium CA certificate: {e}") from None


def _tls13(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def p2p_server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Mutual TLS server side: a client certificate issued by the consortium CA is required."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def p2p_client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Mutual TLS client side. Host names are not checked: the peer's node id (URI SAN) and
    pinned fingerprint are checked against the genesis membership after the handshake."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    return ctx


def api_server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """API server: TLS 1.3; a client certificate is requested, not required (``/v1/status`` is
    public), and one that the consortium CA did not issue fails the handshake. Which member a
    verified certificate names, and what it may read, is decided per route by
    :mod:`mdtp.node.api.auth`."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def api_client_context(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False  # nodes are addressed by IP; the CA pins who they are
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_ca(ctx, ca)
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx
