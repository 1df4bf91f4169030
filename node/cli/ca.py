"""Membership commands: every member makes its own keys, the CA signs requests only.

- ``mdtp init --home H --id ID``: on the member's machine, the node key, the TLS key and a
  certificate request in ``H``; the admin key in ``--admin-out`` (default ``H-admin``); the
  request to send, ``node.csr.pem`` and ``member.json``, in ``--request-out`` (default
  ``H-request``). With ``--ca-dir`` (one machine holding the CA) it signs and installs too;
  with ``--cert`` and ``--ca-cert`` it installs the signed certificate into an existing home.
- ``mdtp ca init --out DIR [--passphrase-file F | --passphrase-env VAR]``: the consortium CA,
  its key encrypted with the passphrase when one is given.
- ``mdtp ca sign CSR --ca DIR --out CERT``: checks a node's request and signs it.
- ``mdtp install-cert --home H --cert CERT --ca-cert CA.pem``: installs it into the home.
- ``mdtp genesis build``: genesis from the members' public ``member.json`` files and, with
  ``--cert``, the certificates the CA signed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mdtp.node.cli.options import UsageError, add_home_option
from mdtp.node.cli.output import add_json_option, emit
from mdtp.node.errors import KeyFileError

PASS_HELP = "file whose first line is the key passphrase (else MDTP_KEY_PASSPHRASE)"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        message = f"{path}: cannot read {what}: {e.strerror}"
        raise KeyFileError(message, reason="not_found") from None


def _ca_passphrase(args: argparse.Namespace, prefix: str = "") -> bytes | None:
    from mdtp.node.identity.ca import read_passphrase

    return read_passphrase(
        getattr(args, f"{prefix}passphrase_file"), getattr(args, f"{prefix}passphrase_env")
    )


def _add_ca_passphrase(sp: argparse.ArgumentParser, prefix: str = "") -> None:
    g = sp.add_mutually_exclusive_group()
    g.add_argument(
        f"--{prefix}passphrase-file",
        type=Path,
        metavar="FILE",
        help="file whose first line is the CA key's passphrase",
    )
    g.add_argument(
        f"--{prefix}passphrase-env",
        metavar="VAR",
        help="environment variable holding the CA key's passphrase",
    )


# -- CA operator ----------------------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> int:
    from mdtp.node.identity.ca import CA_CERT, CA_KEY, init_ca

    passphrase = _ca_passphrase(args)
    init_ca(Path(args.dir), args.name, passphrase)
    ca, ca_key = Path(args.dir) / CA_CERT, Path(args.dir) / CA_KEY
    doc = {"ca": str(ca), "ca_key": str(ca_key), "encrypted": passphrase is not None}
    protection = "passphrase-protected" if passphrase else "NOT passphrase-protected"
    text = f"consortium CA written to {ca} (key {ca_key}, {protection}: keep it offline)"
    return emit(args, doc, text)


def cmd_ca_sign(args: argparse.Namespace) -> int:
    from mdtp.node.identity import pki
    from mdtp.node.identity.ca import load_ca
    from mdtp.node.identity.csr import sign_node_csr

    csr_pem = _read(Path(args.csr), "the certificate request")
    ca = load_ca(Path(args.ca), _ca_passphrase(args))
    cert_pem, request = sign_node_csr(ca, csr_pem, str(args.csr))
    pki.write_private(Path(args.out), cert_pem)
    doc = {
        "cert": str(args.out),
        "node_id": request.node_id,
        "hosts": list(request.hosts),
        "tls_fingerprint": pki.fingerprint_pem(cert_pem),
        "csr_sha256": request.csr_sha256,
    }
    text = (
        f"certificate for node {request.node_id} (hosts {', '.join(request.hosts)}) written to "
        f"{args.out}; send it with {Path(args.ca) / 'ca.pem'} back to the member"
    )
    return emit(args, doc, text)


# -- member ---------------------------------------------------------------------------------


def _install(args: argparse.Namespace) -> dict[str, Any]:
    from mdtp.node.identity.config import load_config
    from mdtp.node.identity.home import install_certificate, install_genesis

    if not args.cert or not args.ca_cert:
        raise UsageError("installing a certificate needs both --cert and --ca-cert")
    home = Path(args.home)
    cert_pem = _read(Path(args.cert), "the certificate")
    fingerprint = install_certificate(home, cert_pem, _read(Path(args.ca_cert), "the CA cert"))
    doc: dict[str, Any] = {"home": str(home), "tls_fingerprint": fingerprint, "genesis": None}
    if args.genesis:
        genesis = install_genesis(home, _read(Path(args.genesis), "genesis"), str(args.genesis))
        joining = genesis.member(load_config(home).node_id) is None
        doc["genesis"] = {
            "chain_id": genesis.chain_id,
            "hash": genesis.hash().hex(),
            "joining": joining,
        }
    return doc


def cmd_install_cert(args: argparse.Namespace) -> int:
    doc = _install(args)
    text = f"certificate installed in {doc['home']} (fingerprint {doc['tls_fingerprint'][:16]}...)"
    if doc["genesis"] and doc["genesis"]["joining"]:
        text += (
            f"; genesis of chain {doc['genesis']['chain_id']} installed. It does not list this "
            "node: it joins the running chain once the members add it (an admin proposes "
            "its member.json with `mdtp member propose add`)"
            f"\nnext: mdtp start --home {doc['home']} (it follows once the addition is "
            "scheduled, and votes from its epoch)"
        )
    elif doc["genesis"]:
        text += f"; genesis of chain {doc['genesis']['chain_id']} checked and installed"
        text += f"\nnext: mdtp start --home {doc['home']}"
    else:
        text += "\nnext: install-cert --genesis genesis.json (or copy it in), then `mdtp start`"
    return emit(args, doc, text)


def cmd_init(args: argparse.Namespace) -> int:
    if args.cert or args.ca_cert:
        return cmd_install_cert(args)
    if not args.id:
        raise UsageError("mdtp init needs --id (or --cert and --ca-cert to install a certificate)")
    from mdtp.node.identity.home import (
        ADMIN_KEY_FILE,
        CSR_FILE,
        MEMBER_FILE,
        create_home,
        default_admin_dir,
        default_request_dir,
        init_home,
        load_ca,
    )
    from mdtp.node.identity.keys import read_passphrase_file

    home = Path(args.home)
    admin_dir = Path(args.admin_out) if args.admin_out else default_admin_dir(home)
    request_dir = Path(args.request_out) if args.request_out else default_request_dir(home)
    common: dict[str, Any] = {
        "node_id": args.id,
        "name": args.name or args.id,
        "p2p": args.p2p,
        "api": args.api,
        "metrics": args.metrics,
        "admin_key_file": admin_dir / ADMIN_KEY_FILE,
        "request_dir": request_dir,
        "passphrase": read_passphrase_file(args.passphrase_file),
    }
    if args.ca_dir:
        ca = load_ca(Path(args.ca_dir), _ca_passphrase(args, "ca_"))
        member = init_home(home, ca=ca, hosts=args.hosts, **common)
    else:
        member = create_home(home, hosts=args.hosts, **common)
    doc = {
        "home": str(home),
        "admin_key": str(admin_dir / ADMIN_KEY_FILE),
        "csr": str(request_dir / CSR_FILE),
        "member_file": str(request_dir / MEMBER_FILE),
        "certificate_installed": "tls_fingerprint" in member,
        "member": member,
    }
    if args.ca_dir:
        step = (
            "collect every member.json, run `mdtp genesis build`, copy genesis.json into the "
            f"home, then `mdtp start --home {home}`"
        )
    else:
        step = (
            f"send {doc['csr']} and {doc['member_file']} to the CA operator; install what comes "
            f"back with `mdtp install-cert --home {home} --cert node.pem --ca-cert ca.pem "
            f"--genesis genesis.json`, then `mdtp start --home {home}`"
        )
    text = (
        f"node home {home} created for {args.id} (node key "
        f"{member['node_public_key'][:16]}...); admin key in {doc['admin_key']} (keep it off "
        f"the node); public request in {request_dir}\nnext: {step}"
    )
    return emit(args, doc, text)


def cmd_tls_rotate(args: argparse.Namespace) -> int:
    from mdtp.node.identity.home import default_request_dir, rotate_tls_key

    home = Path(args.home)
    request_dir = Path(args.request_out) if args.request_out else default_request_dir(home)
    csr_path = rotate_tls_key(home, request_dir, args.hosts)
    doc = {"home": str(home), "csr": str(csr_path)}
    text = (
        f"new TLS key made in {home} beside the current one (the node keeps running on its "
        f"current certificate); request in {csr_path}\nnext: the CA signs it (`mdtp ca sign`), "
        "an admin proposes its fingerprint (`mdtp member propose rotate-cert ID --fingerprint "
        "HEX`); once the change is scheduled, `mdtp install-cert --home "
        f"{home} --cert node.pem --ca-cert ca.pem` and restart the node"
    )
    return emit(args, doc, text)


def cmd_rotate_node_key(args: argparse.Namespace) -> int:
    from mdtp.node.identity.home import rotate_node_key
    from mdtp.node.identity.keys import read_passphrase_file

    home = Path(args.home)
    key = rotate_node_key(home, read_passphrase_file(args.passphrase_file))
    doc = {"home": str(home), "node_public_key": key.public_key.hex()}
    text = (
        f"new node key made in {home} beside the current one: {doc['node_public_key']}\n"
        "next: restart the node (it holds both keys), then an admin proposes it: `mdtp member "
        f"propose rotate-node-key ID --node-key {doc['node_public_key']}`; from the epoch it "
        "takes effect the node signs with it"
    )
    return emit(args, doc, text)


def cmd_genesis_build(args: argparse.Namespace) -> int:
    from mdtp.node.identity.home import build_genesis, write_genesis
    from mdtp.node.identity.members import attach_certificates, read_member_file

    members = [read_member_file(Path(path)) for path in args.members]
    certs = [(str(p), _read(Path(p), "the certificate")) for p in args.cert or []]
    ca_pem = _read(Path(args.ca_cert), "the CA certificate") if args.ca_cert else None
    genesis = build_genesis(args.chain_id, attach_certificates(members, certs, ca_pem))
    write_genesis(genesis, Path(args.out))
    return emit(
        args,
        {"chain_id": genesis.chain_id, "members": len(members), "out": str(args.out)},
        f"genesis for chain {genesis.chain_id} with {len(members)} members written to {args.out}",
    )


# -- parser ---------------------------------------------------------------------------------


def register(sub: Any) -> None:
    from mdtp.node.cli import add_command, add_group

    ca = add_group(sub, "ca", "consortium certificate authority (the CA operator's machine)")
    sp = add_command(ca, "init", cmd_ca_init, "create a consortium CA")
    sp.add_argument(
        "--out", "--dir", dest="dir", required=True, help="directory for ca.pem and ca.key.pem"
    )
    sp.add_argument("--name", default="mdtp", help="consortium name in the CA certificate")
    _add_ca_passphrase(sp)
    add_json_option(sp)
    sp = add_command(ca, "sign", cmd_ca_sign, "check a node's certificate request and sign it")
    sp.add_argument("csr", help="the member's node.csr.pem")
    sp.add_argument("--ca", required=True, help="the CA directory (ca.pem, ca.key.pem)")
    sp.add_argument("--out", required=True, help="where to write the certificate (PEM)")
    _add_ca_passphrase(sp)
    add_json_option(sp)

    sp = add_command(
        sub, "init", cmd_init, "create a node home: its own keys and a certificate request"
    )
    add_home_option(sp)
    sp.add_argument("--id", help="member/node id, e.g. acme-works")
    sp.add_argument("--name", help="member display name")
    sp.add_argument("--p2p", default="127.0.0.1:26600", help="peer host:port")
    sp.add_argument("--api", default="127.0.0.1:26601", help="API host:port")
    sp.add_argument("--metrics", default="127.0.0.1:26602", help="metrics host:port")
    sp.add_argument(
        "--hosts",
        nargs="+",
        action="extend",
        metavar="HOST",
        help="more DNS names or IP addresses for the TLS certificate (beside the p2p and API "
        "hosts and localhost)",
    )
    sp.add_argument("--admin-out", metavar="DIR", help="where the admin key goes (else HOME-admin)")
    sp.add_argument(
        "--request-out",
        metavar="DIR",
        help="where node.csr.pem and member.json go (else HOME-request)",
    )
    sp.add_argument("--passphrase-file", type=Path, help=PASS_HELP)
    sp.add_argument(
        "--ca-dir", help="the CA directory, when this machine holds it: sign and install now"
    )
    _add_ca_passphrase(sp, "ca-")
    sp.add_argument("--cert", help="install this signed certificate into an existing home")
    sp.add_argument("--ca-cert", help="the consortium CA certificate (with --cert)")
    sp.add_argument("--genesis", help="with --cert: check and install the genesis file too")
    add_json_option(sp)

    sp = add_command(
        sub, "install-cert", cmd_install_cert, "install the node certificate the CA signed"
    )
    add_home_option(sp)
    sp.add_argument("--cert", required=True, help="the node certificate (PEM) from the CA")
    sp.add_argument("--ca-cert", required=True, help="the consortium CA certificate, ca.pem")
    sp.add_argument(
        "--genesis",
        help="the consortium's genesis.json: checked (it pins this certificate and node key) "
        "and installed",
    )
    add_json_option(sp)

    tls = add_group(sub, "tls", "the node's TLS certificate")
    sp = add_command(
        tls, "rotate", cmd_tls_rotate, "start a certificate rotation: a new key and its request"
    )
    add_home_option(sp)
    sp.add_argument("--request-out", metavar="DIR", help="where node.csr.pem goes (HOME-request)")
    sp.add_argument("--hosts", nargs="+", action="extend", metavar="HOST", help="more names")
    add_json_option(sp)

    node_key = add_group(sub, "node-key", "the node's Ed25519 key (consensus, peer handshakes)")
    sp = add_command(
        node_key, "rotate", cmd_rotate_node_key, "start a node key rotation: a new node key"
    )
    add_home_option(sp)
    sp.add_argument("--passphrase-file", type=Path, help=PASS_HELP)
    add_json_option(sp)

    genesis = add_group(sub, "genesis", "genesis file")
    sp = add_command(
        genesis, "build", cmd_genesis_build, "build genesis.json from members' member.json"
    )
    sp.add_argument("--chain-id", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument(
        "--cert",
        action="append",
        metavar="CERT",
        help="a member's node certificate the CA signed (repeat; matched by node id)",
    )
    sp.add_argument("--ca-cert", help="check that every --cert was signed by this CA")
    sp.add_argument("members", nargs="+", help="member.json files, in membership order")
    add_json_option(sp)
