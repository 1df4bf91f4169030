"""The options every client command shares, so ``mdtp account|dataset|contract|audit|data``
name a node, a key and an output the same way.

- node: ``--node HOST:PORT --ca ca.pem --cert node.pem --cert-key node.key.pem`` (the
  member's client certificate), or for a local cluster ``--cluster DIR [--member nodeI]``
  (which presents that member's certificate); defaults from ``MDTP_NODE``, ``MDTP_CA``,
  ``MDTP_CERT``, ``MDTP_CERT_KEY``, ``MDTP_CLUSTER``, ``MDTP_MEMBER``. A flag beats the
  environment; of the environment, ``MDTP_NODE`` beats ``MDTP_CLUSTER``.
- key: ``--key FILE`` (required by commands that sign; confidential reads such as ``contract
  show`` are signed with it) and ``--passphrase-file`` (else ``MDTP_KEY_PASSPHRASE``) for a
  sealed key file.
- output: ``--json`` for scripts.
- node home, for the commands run on a member's own machine (``init``, ``start``,
  ``status``): ``--home DIR``, else ``MDTP_HOME``.
- tags, where a command takes them: ``--tag T`` (repeatable) and ``--tags T1,T2`` both work.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mdtp.node.cli.output import add_json_option
from mdtp.node.cli.output import print_json as print_json  # re-exported: commands import it here
from mdtp.node.errors import ClusterError, MdtpError
from mdtp.node.identity.keys import SigningKey, load_key, read_passphrase_file
from mdtp.node.ops import cluster

NODE_ENV, CA_ENV, CLUSTER_ENV, MEMBER_ENV = "MDTP_NODE", "MDTP_CA", "MDTP_CLUSTER", "MDTP_MEMBER"
CERT_ENV, CERT_KEY_ENV = "MDTP_CERT", "MDTP_CERT_KEY"
HOME_ENV = "MDTP_HOME"


class UsageError(MdtpError):
    """Bad local input; the message says what to give instead."""

    reason = "usage"


def add_home_option(sp: argparse.ArgumentParser) -> None:
    """``--home DIR``, defaulting to ``$MDTP_HOME``; required when that is not set."""
    home = os.environ.get(HOME_ENV) or None
    sp.add_argument(
        "--home",
        metavar="DIR",
        default=home,
        required=home is None,
        help=f"the node's home directory (else ${HOME_ENV})",
    )


def add_client_options(sp: argparse.ArgumentParser, *, signs: bool) -> None:
    """Node, key and output options of a client command; ``signs``: ``--key`` is required."""
    g = sp.add_argument_group("node")
    g.add_argument("--node", metavar="HOST:PORT", help=f"node API (else ${NODE_ENV})")
    g.add_argument("--ca", help=f"consortium CA certificate, ca.pem (else ${CA_ENV})")
    g.add_argument(
        "--cert", help=f"the member's client certificate, e.g. node.pem (else ${CERT_ENV})"
    )
    g.add_argument("--cert-key", help=f"its private key, e.g. node.key.pem (else ${CERT_KEY_ENV})")
    g.add_argument(
        "--cluster", metavar="DIR", help=f"local cluster directory (else ${CLUSTER_ENV})"
    )
    g.add_argument(
        "--member", help=f"node of --cluster to use (else ${MEMBER_ENV}, else the first)"
    )
    add_json_option(sp)
    sp.add_argument(
        "--key", required=signs, help="account key file that signs" if signs else "your key file"
    )
    sp.add_argument(
        "--passphrase-file",
        type=Path,
        help="passphrase of the key files (else MDTP_KEY_PASSPHRASE)",
    )


def node_address(args: argparse.Namespace) -> tuple[str, Path]:
    """(API address, CA certificate) of the node the options name."""
    env = os.environ.get
    ca = args.ca or env(CA_ENV)
    if args.node and args.cluster:
        raise UsageError("give --node or --cluster, not both")
    if args.node or (not args.cluster and env(NODE_ENV)):
        if not ca:
            raise UsageError("--node needs --ca ca.pem (the consortium CA certificate)")
        return args.node or str(env(NODE_ENV)), Path(ca)
    cluster_dir, member = _cluster_member(args)
    return member.api, cluster_dir / "ca" / "ca.pem"


def member_certificate(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(certificate, key) the client presents as a member: ``--cert``/``--cert-key`` with
    ``--node``; with ``--cluster``, that member's node certificate (a local cluster's
    operator is every member)."""
    env = os.environ.get
    if args.node or (not args.cluster and env(NODE_ENV)):
        cert, key = args.cert or env(CERT_ENV), args.cert_key or env(CERT_KEY_ENV)
        if bool(cert) != bool(key):
            raise UsageError("give both --cert and --cert-key (the member's client certificate)")
        return (Path(cert), Path(key)) if cert and key else (None, None)
    home = _cluster_member(args)[1].home
    return home / "node.pem", home / "node.key.pem"


def _cluster_member(args: argparse.Namespace) -> tuple[Path, cluster.ClusterNode]:
    env = os.environ.get
    cluster_dir = args.cluster or env(CLUSTER_ENV)
    if not cluster_dir:
        raise UsageError(
            "name a node: --node HOST:PORT --ca ca.pem, or --cluster DIR [--member nodeI] "
            f"(or set {NODE_ENV} and {CA_ENV}, or {CLUSTER_ENV})"
        )
    try:
        nodes = cluster.load_cluster(Path(cluster_dir))
    except ClusterError as e:
        raise UsageError(str(e)) from None
    member = args.member or env(MEMBER_ENV) or nodes[0].id
    for n in nodes:
        if n.id == member:
            return Path(cluster_dir), n
    raise UsageError(f"--member {member}: not in the cluster ({', '.join(n.id for n in nodes)})")


def node_label(args: argparse.Namespace) -> str:
    """The node the options name, for a message saying it cannot be reached."""
    env = os.environ.get
    if args.node or (not args.cluster and env(NODE_ENV)):
        return str(args.node or env(NODE_ENV))
    return f"the {args.cluster or env(CLUSTER_ENV)} cluster"


def signing_key(args: argparse.Namespace, attr: str = "key") -> SigningKey:
    path = getattr(args, attr)
    if path is None:
        raise UsageError(f"give --{attr.replace('_', '-')} FILE (an account key file)")
    return load_key(Path(path), passphrase=read_passphrase_file(args.passphrase_file))


def add_tag_options(g: Any) -> None:
    g.add_argument("--tag", action="append", help="a tag; repeat for several")
    g.add_argument("--tags", help="comma-separated tags (the same as repeating --tag)")


def tags_of(args: argparse.Namespace) -> list[str] | None:
    """The tags ``--tag`` and ``--tags`` give, in order; None if neither was given."""
    if args.tag is None and args.tags is None:
        return None
    split = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
    return [*(args.tag or []), *split]
