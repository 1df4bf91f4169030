import os
import stat

import pytest

from mdtp.node.encoding import account_id_from_public_key, public_key_from_account_id
from mdtp.node.errors import KeyFileError
from mdtp.node.identity.keys import SigningKey, load_key, save_key, verify_signature


def test_key_file_round_trips_with_mode_0600(tmp_path):
    key = SigningKey.generate(with_encryption=True)
    path = tmp_path / "k.json"
    save_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_key(path)
    assert loaded.public_key == key.public_key
    assert loaded.encryption_public_key == key.encryption_public_key
    sig = loaded.sign(b"hello")
    assert verify_signature(key.public_key, b"hello", sig)
    assert not verify_signature(key.public_key, b"hellO", sig)


def test_passphrase_sealed_key_needs_the_right_passphrase(tmp_path):
    key = SigningKey.generate()
    path = tmp_path / "k.json"
    save_key(path, key, passphrase=b"correct horse")
    assert "secret" not in path.read_text()
    assert load_key(path, passphrase=b"correct horse").public_key == key.public_key
    with pytest.raises(KeyFileError) as e:
        load_key(path, passphrase=b"wrong")
    assert e.value.reason == "wrong_passphrase"
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    assert e.value.reason == "passphrase_required"


def test_key_readable_by_others_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "k.json"
    save_key(path, SigningKey.generate())
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    assert e.value.reason == "key_permissions"
    assert f"chmod 600 {path}" in str(e.value)


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[]", b'{"type": "ed25519", "version": 1}', b"\xff" * 10]
)
def test_malformed_key_files_name_the_file(tmp_path, content):
    path = tmp_path / "k.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    assert str(path) in str(e.value)


def test_missing_key_file_and_no_overwrite(tmp_path):
    with pytest.raises(KeyFileError) as e:
        load_key(tmp_path / "nope.json")
    assert e.value.reason == "key_missing"
    path = tmp_path / "k.json"
    save_key(path, SigningKey.generate())
    with pytest.raises(KeyFileError):
        save_key(path, SigningKey.generate())


def test_account_ids_are_self_certifying_did_keys():
    key = SigningKey.generate()
    account_id = account_id_from_public_key(key.public_key)
    assert account_id.startswith("did:key:z6Mk")
    assert public_key_from_account_id(account_id) == key.public_key
    with pytest.raises(ValueError):
        public_key_from_account_id("did:key:zNOTBASE58!")
