"""Ed25519 signing keys of nodes and accounts, stored as small JSON files with mode 0600.

A key file holds the 32-byte Ed25519 seed (and, for accounts, a separate X25519 secret used
to receive sealed dataset keys). With a passphrase the secrets are sealed with libsodium's
Argon2id ``pwhash`` and ``secretbox``; without one they are stored in the clear and only the
file mode protects them. Loading refuses files that others can read, like ssh does.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.errors import KeyFileError

KEY_FILE_VERSION = 1
# Interactive limits: a wrong passphrase is found in well under a second on a small machine.
_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
_MAX_KEY_FILE_BYTES = 16 * 1024


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair (node or account) plus, for accounts, an X25519 key pair."""

    signing: nacl.signing.SigningKey
    encryption: nacl.public.PrivateKey | None = None

    @classmethod
    def generate(cls, *, with_encryption: bool = False) -> SigningKey:
        enc = nacl.public.PrivateKey.generate() if with_encryption else None
        return cls(nacl.signing.SigningKey.generate(), enc)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing.verify_key)

    @property
    def account_id(self) -> str:
        return account_id_from_public_key(self.public_key)

    @property
    def encryption_public_key(self) -> bytes | None:
        return None if self.encryption is None else bytes(self.encryption.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.signing.sign(data).signature


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False
    return True


def _secrets_blob(key: SigningKey) -> bytes:
    blob = bytes(key.signing)
    if key.encryption is not None:
        blob += bytes(key.encryption)
    return blob


def save_key(path: Path, key: SigningKey, *, passphrase: bytes | None = None) -> None:
    """Write ``key`` to ``path`` (mode 0600, created exclusively: never overwrites a key)."""
    doc: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "type": "ed25519",
        "public_key": key.public_key.hex(),
        "account_id": key.account_id,
    }
    if key.encryption_public_key is not None:
        doc["encryption_public_key"] = key.encryption_public_key.hex()
    secrets = _secrets_blob(key)
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box_key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, _OPSLIMIT, _MEMLIMIT
        )
        sealed = nacl.secret.SecretBox(box_key).encrypt(secrets)
        doc["sealed"] = {
            "kdf": "argon2id",
            "opslimit": _OPSLIMIT,
            "memlimit": _MEMLIMIT,
            "salt": salt.hex(),
            "box": bytes(sealed).hex(),
        }
    else:
        doc["secret"] = secrets.hex()
    data = (json.dumps(doc, indent=2) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key file already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load_key(path: Path, *, passphrase: bytes | None = None) -> SigningKey:
    """Read a key file; every problem is a :class:`KeyFileError` naming the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found", reason="key_missing") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: key file is accessible by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}",
            reason="key_permissions",
        )
    if st.st_size > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: not a key file (too large)")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a key file ({e})") from None
    if not isinstance(doc, dict) or doc.get("type") != "ed25519":
        raise KeyFileError(f"{path}: not an mdtp Ed25519 key file")
    if doc.get("version") != KEY_FILE_VERSION:
        raise KeyFileError(f"{path}: unsupported key file version {doc.get('version')!r}")
    try:
        if "sealed" in doc:
            if not passphrase:
                raise KeyFileError(
                    f"{path}: key file is passphrase-protected; give the passphrase "
                    "(MDTP_KEY_PASSPHRASE or --passphrase-file)",
                    reason="passphrase_required",
                )
            sealed = doc["sealed"]
            if sealed.get("kdf") != "argon2id":
                raise KeyFileError(f"{path}: unknown key derivation {sealed.get('kdf')!r}")
            box_key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase,
                bytes.fromhex(sealed["salt"]),
                int(sealed["opslimit"]),
                int(sealed["memlimit"]),
            )
            try:
                secrets = nacl.secret.SecretBox(box_key).decrypt(bytes.fromhex(sealed["box"]))
            except nacl.exceptions.CryptoError:
                raise KeyFileError(f"{path}: wrong passphrase", reason="wrong_passphrase") from None
        else:
            secrets = bytes.fromhex(doc["secret"])
        if len(secrets) not in (32, 64):
            raise KeyFileError(f"{path}: key material has the wrong length")
        key = SigningKey(
            nacl.signing.SigningKey(secrets[:32]),
            nacl.public.PrivateKey(secrets[32:]) if len(secrets) == 64 else None,
        )
        if key.public_key.hex() != doc["public_key"]:
            raise KeyFileError(f"{path}: public key does not match the secret key")
    except KeyFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KeyFileError(f"{path}: malformed key file ({type(e).__name__}: {e})") from None
    return key


def read_passphrase_file(path: Path | None) -> bytes | None:
    """Passphrase from a file (first line), else from MDTP_KEY_PASSPHRASE, else None."""
    if path is not None:
        try:
            return path.read_bytes().splitlines()[0] if path.stat().st_size else b""
        except OSError as e:
            raise KeyFileError(f"{path}: cannot read passphrase file: {e.strerror}") from None
    env = os.environ.get("MDTP_KEY_PASSPHRASE")
    return env.encode() if env else None
