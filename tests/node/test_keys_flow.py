"""Every member makes its own keys: certificate requests, the CA that signs them without
seeing a private key (its key encrypted at rest), installing the certificate, genesis from
public files, and local clusters made the same way."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdtp.node.cli import main
from mdtp.node.errors import GenesisError, KeyFileError
from mdtp.node.identity import pki
from mdtp.node.identity.ca import init_ca, load_ca
from mdtp.node.identity.csr import CsrRefused, build_node_csr, check_node_csr, sign_node_csr
from mdtp.node.identity.home import create_home, install_certificate
from mdtp.node.identity.members import attach_certificates
from mdtp.node.ops import cluster

PASS = b"correct horse battery staple"


def _csr(
    key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName], *, ca: bool = False
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _uri(value: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(value)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca"
    init_ca(path, "test", PASS)
    return path


def _home(root: Path, node_id: str) -> tuple[Path, Path, dict[str, Any]]:
    home, request = root / node_id, root / f"{node_id}-request"
    member = create_home(
        home,
        node_id=node_id,
        name=node_id.title(),
        p2p=f"{node_id}.example:26600",
        api=f"{node_id}.example:26601",
        metrics="127.0.0.1:26602",
        hosts=["10.0.0.7"],
        admin_key_file=root / f"{node_id}-admin" / "admin_key.json",
        request_dir=request,
    )
    return home, request, member


def test_a_request_round_trips_with_the_node_uri_and_hosts() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request, _ = check_node_csr(build_node_csr(key, "acme", ["acme.example", "10.0.0.7"]))
    assert request.node_id == "acme"
    assert request.hosts == ("acme.example", "10.0.0.7")
    assert request.public_key_sha256 == pki.public_key_sha256(key.public_key())


def test_the_ca_key_at_rest_is_encrypted_and_needs_the_passphrase(ca_dir: Path) -> None:
    raw = (ca_dir / "ca.key.pem").read_bytes()
    assert raw.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE((ca_dir / "ca.key.pem").stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(raw, password=None)
    with pytest.raises(KeyFileError) as missing:
        load_ca(ca_dir)
    assert missing.value.reason == "passphrase_required"
    with pytest.raises(KeyFileError) as wrong:
        load_ca(ca_dir, b"wrong")
    assert wrong.value.reason == "wrong_passphrase"
    assert load_ca(ca_dir, PASS).cert_pem == (ca_dir / "ca.pem").read_bytes()


@pytest.mark.parametrize(
    ("names", "ca", "reason"),
    [
        ([_uri("mdtp://node/a"), _uri("mdtp://node/b")], False, "csr_node_uri"),
        ([], False, "csr_node_uri"),
        ([_uri("mdtp://node/a"), _uri("mdtp://client/a")], False, "csr_other_uri"),
        ([_uri("mdtp://client/a")], False, "csr_other_uri"),
        ([_uri("mdtp://node/a"), x509.DNSName("*.example")], False, "csr_wildcard"),
        ([_uri("mdtp://node/a"), x509.RFC822Name("a@example")], False, "csr_other_name"),
        ([_uri("mdtp://node/a")], True, "csr_ca_request"),
        ([_uri("mdtp://node/A_B")], False, "csr_id"),
    ],
)
def test_the_ca_refuses_requests_it_must_not_sign(
    ca_dir: Path, names: list[x509.GeneralName], ca: bool, reason: str
) -> None:
    pem = _csr(ec.generate_private_key(ec.SECP256R1()), names, ca=ca)
    with pytest.raises(CsrRefused) as refused:
        sign_node_csr(load_ca(ca_dir, PASS), pem)
    assert refused.value.reason == reason


def test_the_ca_refuses_a_request_with_a_broken_signature(ca_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(build_node_csr(key, "acme", ["acme.example"]))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRefused) as refused:
        sign_node_csr(load_ca(ca_dir, PASS), pem)
    assert refused.value.reason == "csr_signature"
    with pytest.raises(CsrRefused) as unreadable:
        check_node_csr(b"not a request")
    assert unreadable.value.reason == "csr_unreadable"


def test_a_signed_certificate_matches_what_node_certificates_always_were(ca_dir: Path) -> None:
    ca = load_ca(ca_dir, PASS)
    key = ec.generate_private_key(ec.SECP256R1())
    pem, _ = sign_node_csr(ca, build_node_csr(key, "acme", ["acme.example", "10.0.0.7"]))
    new = x509.load_pem_x509_certificate(pem)
    old = x509.load_pem_x509_certificate(
        pki.issue_node_certificate(ca, "acme", ["acme.example", "10.0.0.7"]).cert_pem
    )
    assert [e.oid for e in new.extensions] == [e.oid for e in old.extensions]
    for ext in (x509.BasicConstraints, x509.ExtendedKeyUsage, x509.SubjectAlternativeName):
        assert new.extensions.get_extension_for_class(ext).value == (
            old.extensions.get_extension_for_class(ext).value
        )
    assert new.subject == old.subject and new.issuer == old.issuer
    assert pki.node_id_of_der(new.public_bytes(serialization.Encoding.DER)) == "acme"


def test_init_keeps_the_admin_key_and_the_request_out_of_the_home(tmp_path: Path) -> None:
    home, request, member = _home(tmp_path, "acme")
    assert sorted(os.listdir(home)) == ["config.toml", "data", "node.key.pem", "node_key.json"]
    assert sorted(os.listdir(request)) == ["member.json", "node.csr.pem"]
    admin = tmp_path / "acme-admin" / "admin_key.json"
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    assert json.loads((request / "member.json").read_text()) == member
    assert "tls_fingerprint" not in member
    assert "secret" not in (request / "member.json").read_text()
    csr, _ = check_node_csr((request / "node.csr.pem").read_bytes())
    assert csr.node_id == "acme" and set(csr.hosts) == {"acme.example", "localhost", "10.0.0.7"}
    assert member["tls_public_key_sha256"] == csr.public_key_sha256


def test_install_refuses_a_certificate_for_another_key_id_or_ca(
    tmp_path: Path, ca_dir: Path
) -> None:
    ca = load_ca(ca_dir, PASS)
    home, request, _ = _home(tmp_path, "acme")
    _, other_request, _ = _home(tmp_path, "beta")
    other_cert, _ = sign_node_csr(ca, (other_request / "node.csr.pem").read_bytes())
    with pytest.raises(KeyFileError) as other_key:
        install_certificate(home, other_cert, ca.cert_pem)
    assert other_key.value.reason == "cert_key"
    # this home's own TLS key, but a request for another id
    key = serialization.load_pem_private_key((home / "node.key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    wrong_id, _ = sign_node_csr(ca, build_node_csr(key, "beta", ["beta.example"]))
    with pytest.raises(KeyFileError) as other_id:
        install_certificate(home, wrong_id, ca.cert_pem)
    assert other_id.value.reason == "cert_node_id"
    own, _ = sign_node_csr(ca, (request / "node.csr.pem").read_bytes())
    with pytest.raises(KeyFileError) as other_ca:
        install_certificate(home, own, pki.create_ca("someone else").cert_pem)
    assert other_ca.value.reason == "cert_ca"
    assert not (home / "node.pem").exists()
    fingerprint = install_certificate(home, own, ca.cert_pem)
    assert fingerprint == pki.fingerprint_pem(own)
    assert (home / "node.pem").read_bytes() == own
    assert (home / "ca.pem").read_bytes() == ca.cert_pem


def test_genesis_takes_certificates_only_for_the_requested_keys(
    tmp_path: Path, ca_dir: Path
) -> None:
    ca = load_ca(ca_dir, PASS)
    _, request, member = _home(tmp_path, "acme")
    with pytest.raises(GenesisError) as missing:
        attach_certificates([member], [])
    assert missing.value.reason == "cert_missing"
    impostor = ec.generate_private_key(ec.SECP256R1())
    forged, _ = sign_node_csr(ca, build_node_csr(impostor, "acme", ["acme.example"]))
    with pytest.raises(GenesisError) as mismatch:
        attach_certificates([member], [("forged", forged)])
    assert mismatch.value.reason == "cert_key_mismatch"
    own, _ = sign_node_csr(ca, (request / "node.csr.pem").read_bytes())
    with pytest.raises(GenesisError) as foreign:
        attach_certificates([member], [("own", own)], pki.create_ca("other").cert_pem)
    assert foreign.value.reason == "cert_not_from_ca"
    (done,) = attach_certificates([member], [("own", own)], ca.cert_pem)
    assert done["tls_fingerprint"] == pki.fingerprint_pem(own)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    assert main([*argv, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def test_the_whole_flow_across_machines_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDTP_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("CA_PASS", "s3cret")
    operator, machines = tmp_path / "operator", tmp_path / "machines"
    made = _cli(capsys, "ca", "init", "--out", str(operator / "ca"), "--passphrase-env", "CA_PASS")
    assert made["encrypted"] is True
    members, certs = [], []
    for node_id in ["acme", "beta"]:
        home = machines / node_id / "home"
        init = _cli(
            capsys,
            "init",
            "--home",
            str(home),
            "--id",
            node_id,
            "--p2p",
            f"{node_id}.example:26600",
            "--api",
            f"{node_id}.example:26601",
        )
        assert init["certificate_installed"] is False
        assert Path(init["admin_key"]) == machines / node_id / "home-admin" / "admin_key.json"
        # the member sends node.csr.pem and member.json; the operator signs
        cert = operator / f"{node_id}.pem"
        signed = _cli(
            capsys,
            "ca",
            "sign",
            init["csr"],
            "--ca",
            str(operator / "ca"),
            "--out",
            str(cert),
            "--passphrase-env",
            "CA_PASS",
        )
        assert signed["node_id"] == node_id
        members.append(init["member_file"])
        certs += ["--cert", str(cert)]
        # what comes back: the certificate and ca.pem
        _cli(
            capsys,
            "install-cert",
            "--home",
            str(home),
            "--cert",
            str(cert),
            "--ca-cert",
            str(operator / "ca" / "ca.pem"),
        )
        assert sorted(os.listdir(home)) == sorted(
            ["ca.pem", "config.toml", "data", "node.key.pem", "node.pem", "node_key.json"]
        )
    out = operator / "genesis.json"
    _cli(
        capsys,
        "genesis",
        "build",
        "--chain-id",
        "c1",
        "--out",
        str(out),
        *certs,
        "--ca-cert",
        str(operator / "ca" / "ca.pem"),
        *members,
    )
    genesis = json.loads(out.read_text())
    for member in genesis["members"]:
        home = machines / member["id"] / "home"
        assert member["tls_fingerprint"] == pki.fingerprint_pem((home / "node.pem").read_bytes())
        # what comes back with genesis.json: installed again (same certificate), with genesis
        done = _cli(
            capsys,
            "install-cert",
            "--home",
            str(home),
            "--cert",
            str(operator / f"{member['id']}.pem"),
            "--ca-cert",
            str(operator / "ca" / "ca.pem"),
            "--genesis",
            str(out),
        )
        assert done["genesis"]["chain_id"] == "c1"
        assert (home / "genesis.json").read_bytes() == out.read_bytes()
    # a genesis that pins another certificate for acme is refused
    forged = json.loads(out.read_text())
    forged["members"][0]["tls_fingerprint"] = "ab" * 32
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    home = machines / "acme" / "home"
    doc = _cli(
        capsys,
        "install-cert",
        "--home",
        str(home),
        "--cert",
        str(operator / "acme.pem"),
        "--ca-cert",
        str(operator / "ca" / "ca.pem"),
        "--genesis",
        str(tmp_path / "forged.json"),
        code=2,
    )
    assert doc["reason"] == "cert_mismatch"
    assert (home / "genesis.json").read_bytes() == out.read_bytes()
    assert [a["member"] for a in genesis["admins"]] == ["acme", "beta"]
    # the operator's machine never held a member's private key
    assert not list(operator.rglob("*key.json")) and not list(operator.rglob("node.key.pem"))
    # without the passphrase, or with the wrong one, the CA signs nothing
    monkeypatch.setenv("CA_PASS", "wrong")
    req = machines / "acme" / "home-request" / "node.csr.pem"
    doc = _cli(
        capsys,
        "ca",
        "sign",
        str(req),
        "--ca",
        str(operator / "ca"),
        "--out",
        str(tmp_path / "x.pem"),
        "--passphrase-env",
        "CA_PASS",
        code=2,
    )
    assert doc["status"] == "failed" and doc["reason"] == "wrong_passphrase"
    doc = _cli(
        capsys,
        "ca",
        "sign",
        str(req),
        "--ca",
        str(operator / "ca"),
        "--out",
        str(tmp_path / "x.pem"),
        code=2,
    )
    assert doc["reason"] == "passphrase_required"
    assert not (tmp_path / "x.pem").exists()


def test_a_cluster_node_home_holds_no_admin_key_and_no_ca_key(tmp_path: Path) -> None:
    (node,) = cluster.init_cluster(tmp_path / "c", 1)
    assert sorted(os.listdir(node.home)) == sorted(
        [
            "ca.pem",
            "config.toml",
            "data",
            "genesis.json",
            "node.key.pem",
            "node.pem",
            "node_key.json",
        ]
    )
    assert node.admin_key_file == tmp_path / "c" / "admins" / "node0.json"
    assert stat.S_IMODE(node.admin_key_file.stat().st_mode) == 0o600
    assert not (tmp_path / "c" / "ca" / "ca.key.pem").is_relative_to(node.home)
    for path in node.home.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes() or path.name == "node.key.pem"
            assert path.name not in ("admin_key.json", "ca.key.pem")


def test_one_machine_holding_an_encrypted_ca_signs_and_installs_at_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDTP_KEY_PASSPHRASE", raising=False)
    (tmp_path / "pass").write_text("lab secret\n")
    ca = tmp_path / "ca"
    _cli(capsys, "ca", "init", "--out", str(ca), "--passphrase-file", str(tmp_path / "pass"))
    home = tmp_path / "lab"
    doc = _cli(capsys, "init", "--home", str(home), "--id", "lab", "--ca-dir", str(ca), code=2)
    assert doc["reason"] == "passphrase_required"
    doc = _cli(
        capsys,
        "init",
        "--home",
        str(home),
        "--id",
        "lab",
        "--ca-dir",
        str(ca),
        "--ca-passphrase-file",
        str(tmp_path / "pass"),
    )
    assert doc["certificate_installed"] is True
    assert doc["member"]["tls_fingerprint"] == pki.fingerprint_pem((home / "node.pem").read_bytes())
    out = tmp_path / "genesis.json"
    built = _cli(
        capsys, "genesis", "build", "--chain-id", "lab", "--out", str(out), doc["member_file"]
    )
    assert built["members"] == 1


def test_a_request_whose_subject_names_another_node_is_refused(ca_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = _csr(key, [_uri("mdtp://node/a")])  # subject common name "x"
    with pytest.raises(CsrRefused) as refused:
        check_node_csr(pem)
    assert refused.value.reason == "csr_subject"
    p521 = _csr(ec.generate_private_key(ec.SECP521R1()), [_uri("mdtp://node/x")])
    with pytest.raises(CsrRefused) as curve:
        check_node_csr(p521)
    assert curve.value.reason == "csr_key_type"


def test_rotations_stage_new_keys_beside_the_current_ones(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mdtp node-key rotate` and `mdtp tls rotate` make new keys beside the current ones
    (owner-only), once; a certificate for the staged TLS key replaces key and certificate."""
    home, request, _ = _home(tmp_path, "acme")
    cert_pem, _ = sign_node_csr(load_ca(ca_dir, PASS), (request / "node.csr.pem").read_bytes())
    ca_pem = (ca_dir / "ca.pem").read_bytes()
    first = install_certificate(home, cert_pem, ca_pem)

    assert main(["node-key", "rotate", "--home", str(home), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    staged = home / "node_key.next.json"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    assert json.loads(staged.read_text())["public_key"] == made["node_public_key"]
    assert main(["node-key", "rotate", "--home", str(home), "--json"]) != 0  # one at a time
    capsys.readouterr()

    rotation = tmp_path / "rotation"
    assert main(["tls", "rotate", "--home", str(home), "--request-out", str(rotation)]) == 0
    capsys.readouterr()
    next_key = home / "node.next.key.pem"
    assert stat.S_IMODE(next_key.stat().st_mode) == 0o600
    new_pem, _ = sign_node_csr(load_ca(ca_dir, PASS), (rotation / "node.csr.pem").read_bytes())
    second = install_certificate(home, new_pem, ca_pem)
    assert second != first and not next_key.exists()
    assert (home / "node.pem").read_bytes() == new_pem
    # the old certificate is for a key this home no longer holds
    with pytest.raises(KeyFileError):
        install_certificate(home, cert_pem, ca_pem)
