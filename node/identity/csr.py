"""Certificate signing requests of member nodes: made on the member's machine, checked and
signed by the consortium CA, which never sees a private key.

A node's request names exactly one ``mdtp://node/<id>`` URI and its host names (DNS names
or IP addresses, never a wildcard); anything else (a client URI, a second node URI, a CA
request, an unknown key type, a broken signature) is refused with a reason code. The
certificate the CA issues copies only the id, the hosts and the public key from the
request; every extension comes from the CA's one template (:func:`pki.leaf_certificate`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdtp.node.errors import MdtpError
from mdtp.node.identity import pki
from mdtp.node.identity.genesis import NODE_ID_RE

_MAX_CSR_BYTES = 16 * 1024
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_CURVES = (ec.SECP256R1, ec.SECP384R1)


class CsrRefused(MdtpError):
    """A certificate signing request the CA will not sign; ``reason`` says why."""

    reason = "csr_refused"


@dataclass(frozen=True)
class NodeRequest:
    """What a checked request asks for."""

    node_id: str
    hosts: tuple[str, ...]
    public_key: ec.EllipticCurvePublicKey
    csr_sha256: str  # SHA-256 of the request's DER
    public_key_sha256: str  # SHA-256 of the TLS key's SubjectPublicKeyInfo


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a plain DNS name (no wildcard), else refused."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if "*" in host:
        raise CsrRefused(f"host {host!r}: wildcard names are refused", reason="csr_wildcard")
    if not _DNS_RE.match(host):
        raise CsrRefused(f"host {host!r}: not a DNS name or IP address", reason="csr_bad_host")
    return host


def build_node_csr(key: ec.EllipticCurvePrivateKey, node_id: str, hosts: list[str]) -> bytes:
    """A PKCS#10 request (PEM) for ``node_id``'s TLS certificate, signed by ``key``."""
    if not NODE_ID_RE.match(node_id):
        raise CsrRefused(f"node id {node_id!r} must match {NODE_ID_RE.pattern}", reason="csr_id")
    unique = list(dict.fromkeys(check_host(h) for h in hosts))
    sans = [x509.UniformResourceIdentifier(pki.NODE_URI_PREFIX + node_id), *pki.host_names(unique)]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _load(pem: bytes, source: str) -> x509.CertificateSigningRequest:
    if len(pem) > _MAX_CSR_BYTES:
        raise CsrRefused(f"{source}: too large for a request", reason="csr_unreadable")
    try:
        return x509.load_pem_x509_csr(pem)
    except ValueError as e:
        message = f"{source}: not a PEM certificate request ({e})"
        raise CsrRefused(message, reason="csr_unreadable") from None


def _node_id(uris: list[str], source: str) -> str:
    node_uris = [u for u in uris if u.startswith(pki.NODE_URI_PREFIX)]
    others = [u for u in uris if not u.startswith(pki.NODE_URI_PREFIX)]
    if others:
        kind = "a client" if any(u.startswith(pki.CLIENT_URI_PREFIX) for u in others) else "a"
        raise CsrRefused(
            f"{source}: asks for {kind} URI other than the node's ({', '.join(others)})",
            reason="csr_other_uri",
        )
    if len(node_uris) != 1:
        raise CsrRefused(
            f"{source}: must name exactly one {pki.NODE_URI_PREFIX}<id> URI, names "
            f"{len(node_uris)}",
            reason="csr_node_uri",
        )
    node_id = node_uris[0][len(pki.NODE_URI_PREFIX) :]
    if not NODE_ID_RE.match(node_id):
        raise CsrRefused(
            f"{source}: node id {node_id!r} must match {NODE_ID_RE.pattern}", reason="csr_id"
        )
    return node_id


def check_node_csr(pem: bytes, source: str = "request") -> tuple[NodeRequest, bytes]:
    """Check a node's request; returns what it asks for and its DER bytes."""
    csr = _load(pem, source)
    if not csr.is_signature_valid:
        raise CsrRefused(f"{source}: the request's signature is invalid", reason="csr_signature")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, _CURVES
    ):
        raise CsrRefused(f"{source}: the key must be EC P-256 or P-384", reason="csr_key_type")
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CsrRefused(f"{source}: asks to be a CA", reason="csr_ca_request")
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CsrRefused(f"{source}: names no node URI", reason="csr_node_uri") from None
    allowed = (x509.UniformResourceIdentifier, x509.DNSName, x509.IPAddress)
    strange = [n for n in sans if not isinstance(n, allowed)]
    if strange:
        raise CsrRefused(
            f"{source}: only a node URI, DNS names and IP addresses may be named, not {strange[0]}",
            reason="csr_other_name",
        )
    node_id = _node_id(sans.get_values_for_type(x509.UniformResourceIdentifier), source)
    hosts = [check_host(h) for h in sans.get_values_for_type(x509.DNSName)]
    hosts += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [a.value for a in common_names] not in ([], [node_id]):
        raise CsrRefused(
            f"{source}: subject common name must be the node id {node_id!r}", reason="csr_subject"
        )
    der = csr.public_bytes(serialization.Encoding.DER)
    request = NodeRequest(
        node_id=node_id,
        hosts=tuple(hosts),
        public_key=public_key,
        csr_sha256=pki.fingerprint_der(der),
        public_key_sha256=pki.public_key_sha256(public_key),
    )
    return request, der


def sign_node_csr(ca: pki.Issued, pem: bytes, source: str = "request") -> tuple[bytes, NodeRequest]:
    """Check a node's request and issue its certificate (PEM) as ``issue_node_certificate``
    would: server and client auth, the node URI and the hosts, 10 years."""
    request, _ = check_node_csr(pem, source)
    ca_cert, ca_key = pki.ca_parts(ca)
    cert = pki.leaf_certificate(
        ca_cert,
        ca_key,
        request.public_key,
        common_name=request.node_id,
        uri=pki.NODE_URI_PREFIX + request.node_id,
        hosts=request.hosts,
        server=True,
    )
    return cert, request


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True iff ``cert``'s signature was made by ``ca_cert``'s key."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
