"""The consortium CA's directory: ``ca.pem`` (public, handed to every member) and
``ca.key.pem`` (0600; encrypted with a passphrase when one is given, PKCS#8 with the best
encryption the ``cryptography`` library offers). Only the CA operator's machine holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mdtp.node.errors import ConfigError, KeyFileError
from mdtp.node.identity import pki

CA_CERT = "ca.pem"
CA_KEY = "ca.key.pem"
DIR_MODE = 0o700


def read_passphrase(file: Path | None, env: str | None) -> bytes | None:
    """The CA passphrase from ``file`` (its first line) or environment variable ``env``."""
    if file is not None and env is not None:
        raise ConfigError("give --passphrase-file or --passphrase-env, not both", reason="usage")
    if file is not None:
        try:
            lines = file.read_bytes().splitlines()
        except OSError as e:
            raise KeyFileError(f"{file}: cannot read passphrase file: {e.strerror}") from None
        value = lines[0] if lines else b""
        if not value:
            raise KeyFileError(f"{file}: the passphrase is empty", reason="passphrase_empty")
        return value
    if env is not None:
        text = os.environ.get(env)
        if not text:
            raise KeyFileError(
                f"environment variable {env} is unset or empty", reason="passphrase_empty"
            )
        return text.encode()
    return None


def _encrypted(key_pem: bytes, passphrase: bytes | None) -> bytes:
    if passphrase is None:
        return key_pem
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def init_ca(ca_dir: Path, name: str = "mdtp", passphrase: bytes | None = None) -> pki.Issued:
    """Create the CA in ``ca_dir``; returns it with its key decrypted (in memory only)."""
    ca_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    ca_dir.chmod(DIR_MODE)
    if (ca_dir / CA_CERT).exists() or (ca_dir / CA_KEY).exists():
        raise ConfigError(f"{ca_dir / CA_CERT}: a CA already exists here", reason="ca_exists")
    ca = pki.create_ca(name)
    pki.write_private(ca_dir / CA_KEY, _encrypted(ca.key_pem, passphrase))
    pki.write_private(ca_dir / CA_CERT, ca.cert_pem)
    return ca


def load_ca(ca_dir: Path, passphrase: bytes | None = None) -> pki.Issued:
    """The CA of ``ca_dir`` with its key decrypted; refuses a wrong or missing passphrase."""
    try:
        cert_pem = (ca_dir / CA_CERT).read_bytes()
        key_pem = (ca_dir / CA_KEY).read_bytes()
    except OSError as e:
        raise ConfigError(f"{ca_dir}: not a CA directory ({e.strerror}: {e.filename})") from None
    where = ca_dir / CA_KEY
    encrypted = b"ENCRYPTED" in key_pem.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise KeyFileError(
            f"{where}: the CA key is passphrase-protected; give --passphrase-file or "
            "--passphrase-env",
            reason="passphrase_required",
        )
    try:
        key = serialization.load_pem_private_key(key_pem, passphrase if encrypted else None)
    except ValueError:
        if encrypted:
            raise KeyFileError(f"{where}: wrong passphrase", reason="wrong_passphrase") from None
        raise KeyFileError(f"{where}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{where}: not an EC private key")
    return pki.Issued(cert_pem, pki.private_key_pem(key))
