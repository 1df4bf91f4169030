"""``mdtp member ...``: membership changes decided on the ledger.

- ``mdtp member propose add --member-file member.json [--node-cert node.pem] | remove ID |
  rotate-node-key ID --node-key HEX | rotate-cert ID --fingerprint HEX | policy --threshold
  2/3 [--min-members 4]`` — signed with ``--key`` (a member admin's key file); ``--id`` names the
  proposal (default: a random ``p-...``), ``--expires`` its expiry (default ``+7d``).
- ``mdtp member vote PROPOSAL [--reject]`` — approve (or reject) for the admin's member.
- ``mdtp member list`` (the membership in effect and any scheduled change), ``mdtp member
  history`` (every epoch), ``mdtp member proposals [--status S]``, ``mdtp member proposal ID``.

All take the shared connection options and ``--json``; failures print like the trading
commands (:func:`mdtp.node.cli.trading.run`). The new node key of ``rotate-node-key`` is
``--node-key`` because ``--key`` is the admin key file that signs, as in every command.
"""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdtp.node.cli import _print_table, add_command, add_group
from mdtp.node.cli.options import (
    UsageError,
    add_client_options,
    node_address,
    print_json,
    signing_key,
)
from mdtp.node.cli.trading import fmt_time, parse_time, run, short
from mdtp.node.errors import MdtpError
from mdtp.node.identity.members import attach_certificates
from mdtp.node.ledger.governance import bodies as gb
from mdtp.node.ledger.governance.rules import STATUSES
from mdtp.node.sdk.governance import GovernanceClient
from mdtp.node.sdk.trading import Committed, TradingClient


def _committed(args: argparse.Namespace, c: Committed, what: str, extra: Any) -> int:
    if args.json:
        print_json({"status": "committed", **c.__dict__, "result": extra})
    else:
        print(f"{what} (tx {c.id[:16]}..., height {c.height})")
    return 0


def _hex32(text: str, flag: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{flag}: must be hex") from None
    if len(value) != 32:
        raise UsageError(f"{flag}: must be 32 bytes (64 hex digits)")
    return value


def _change(args: argparse.Namespace) -> gb.Change:
    kind = args.change
    if kind == "remove-observer":
        return gb.RemoveObserver(args.observer_id)
    if kind in ("add", "add-observer"):
        path = Path(args.member_file)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot read the member file ({e})") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: the member file must be a JSON object")
        if args.node_cert:
            # the fingerprint genesis would pin: of the certificate the CA signed for the
            # key the member's request named (checked, with the CA certificate)
            cert = Path(args.node_cert)
            try:
                ca_pem = node_address(args)[1].read_bytes()
                doc = attach_certificates([doc], [(str(cert), cert.read_bytes())], ca_pem)[0]
            except (OSError, MdtpError) as e:
                raise UsageError(f"{cert}: {e}") from None
        try:
            if kind == "add-observer":
                doc.setdefault("admins", [])  # an observer has none; a member file's is ignored
                doc.pop("admin", None)
                return gb.AddObserver(gb.NewObserver.of_member(gb.NewMember.from_json(doc)))
            return gb.AddMember(gb.NewMember.from_json(doc))
        except ValueError as e:
            raise UsageError(f"{path}: {e}") from None
    if kind == "remove":
        return gb.RemoveMember(args.member_id)
    if kind == "rotate-node-key":
        return gb.RotateNodeKey(args.member_id, _hex32(args.node_key, "--node-key"))
    if kind == "rotate-cert":
        return gb.RotateCertificate(args.member_id, _hex32(args.fingerprint, "--fingerprint"))
    num, sep, den = args.threshold.partition("/")
    if not sep or not num.isdigit() or not den.isdigit():
        raise UsageError("--threshold: give a fraction such as 2/3")
    return gb.PolicyChange(int(num), int(den), args.min_members)


def cmd_propose(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        change = _change(args)
        admin = signing_key(args)
        proposal_id = args.id or f"p-{secrets.token_hex(4)}"
        g = GovernanceClient(t)
        c = await g.propose(admin, proposal_id, change, expires_at_ms=parse_time(args.expires))
        proposal = await g.proposal(proposal_id)
        what = f"proposed {proposal_id} ({change.KIND}): {proposal['status']}"
        if proposal["status"] == "passed":
            what += f", in effect from height {proposal['activation_height']}"
        if not args.json:
            print(proposal_id)
        return _committed(args, c, what, proposal)

    return run(args, body)


def cmd_vote(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        g = GovernanceClient(t)
        c = await g.vote(signing_key(args), args.proposal_id, approve=not args.reject)
        proposal = await g.proposal(args.proposal_id)
        what = (
            f"{'rejected' if args.reject else 'approved'} {args.proposal_id}: {proposal['status']}"
        )
        if proposal["status"] == "passed":
            what += f", in effect from height {proposal['activation_height']}"
        return _committed(args, c, what, proposal)

    return run(args, body)


def _print_epoch(epoch: dict[str, Any], label: str) -> None:
    policy = epoch["policy"]
    print(
        f"{label}: epoch {epoch['epoch']} from height {epoch['activation_height']} "
        f"(proposal {epoch['proposal_id'] or 'genesis'}); n={epoch['n']} f={epoch['f']} "
        f"quorum={epoch['quorum']}; passes with more than "
        f"{policy['threshold_num']}/{policy['threshold_den']}, at least "
        f"{policy['min_members']} members"
    )
    admins: dict[str, int] = {}
    for a in epoch["admins"]:
        admins[a["member"]] = admins.get(a["member"], 0) + 1
    rows = [
        {
            "id": m["id"],
            "name": m["name"],
            "node_key": m["node_public_key"][:16] + "...",
            "tls": m["tls_fingerprint"][:16] + "...",
            "p2p": m["p2p"],
            "api": m["api"],
            "admins": admins.get(m["id"], 0),
        }
        for m in epoch["members"]
    ]
    _print_table(rows, ("id", "name", "node_key", "tls", "p2p", "api", "admins"))


def cmd_list(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        doc = await GovernanceClient(t).members()
        if args.json:
            print_json(doc)
            return 0
        _print_epoch(doc["current"], f"in effect at height {doc['as_of_height']}")
        for e in doc["scheduled"]:
            print()
            _print_epoch(e, "scheduled")
        return 0

    return run(args, body)


def cmd_history(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        if args.proofs:
            # for offline verification (`mdtp verify-receipt --history FILE`): always JSON
            print_json(await GovernanceClient(t).history_with_proofs())
            return 0
        epochs = await GovernanceClient(t).history()
        if args.json:
            print_json(epochs)
            return 0
        rows = [
            {
                "epoch": e["epoch"],
                "from_height": e["activation_height"],
                "proposal": e["proposal_id"] or "genesis",
                "n": e["n"],
                "f": e["f"],
                "quorum": e["quorum"],
                "members": ",".join(m["id"] for m in e["members"]),
            }
            for e in epochs
        ]
        _print_table(rows, ("epoch", "from_height", "proposal", "n", "f", "quorum", "members"))
        return 0

    return run(args, body)


def _proposal_row(p: dict[str, Any]) -> dict[str, Any]:
    approvals = sum(1 for v in p["votes"] if v["approve"])
    return {
        "id": p["id"],
        "kind": p["change"]["kind"],
        "subject": p["subject"],
        "status": p["status"],
        "proposer": p["proposer_member"],
        "approve": approvals,
        "reject": len(p["votes"]) - approvals,
        "expires": fmt_time(p["expires_at_ms"]),
        "from_height": p["activation_height"],
    }


_COLUMNS = ("id", "kind", "subject", "status", "proposer", "approve", "reject", "expires")


def cmd_proposals(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        doc = await GovernanceClient(t).proposals(
            status=args.status, after=args.after, limit=args.limit
        )
        if args.json:
            print_json(doc)
            return 0
        _print_table([_proposal_row(p) for p in doc["proposals"]], (*_COLUMNS, "from_height"))
        if doc["next_after"]:
            print(f"(more: --after {doc['next_after']})")
        return 0

    return run(args, body)


def cmd_proposal(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        p = await GovernanceClient(t).proposal(args.proposal_id)
        if args.json:
            print_json(p)
            return 0
        row = _proposal_row(p)
        for label in (*_COLUMNS, "from_height"):
            print(f"{label:<12} {row[label] if row[label] is not None else '-'}")
        print(f"{'change':<12} {json.dumps(p['change'], sort_keys=True)}")
        votes = [
            {
                "member": v["member"],
                "vote": "approve" if v["approve"] else "reject",
                "account": short(v["account"]),
                "height": v["height"],
                "tx": v["tx_id"][:16] + "...",
            }
            for v in p["votes"]
        ]
        print()
        _print_table(votes, ("member", "vote", "account", "height", "tx"))
        return 0

    return run(args, body)


def register(sub: Any) -> None:
    def cmd(
        parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str, signs: bool
    ) -> argparse.ArgumentParser:
        sp = add_command(parent, name, fn, help)
        add_client_options(sp, signs=signs)
        return sp

    member = add_group(sub, "member", "consortium membership, changed by member admins' votes")
    propose = add_command(member, "propose", cmd_propose, "propose a membership change")
    kinds = propose.add_subparsers(dest="change", required=True, metavar="CHANGE")

    def change(name: str, help: str) -> argparse.ArgumentParser:
        sp = cmd(kinds, name, cmd_propose, help, True)
        sp.add_argument("--id", help="proposal id (default: a random p-...)")
        sp.add_argument(
            "--expires", default="+7d", help="expiry: +7d, an ISO time or ms (default +7d)"
        )
        return sp

    sp = change("add", "add a member (its public facts and admins' keys)")
    sp.add_argument(
        "--member-file",
        required=True,
        help="the new member's member.json (as `mdtp init` writes it), or JSON: id, name, "
        "node_public_key, tls_fingerprint, p2p, api, admins [{public_key, "
        "encryption_public_key}] (hex keys)",
    )
    sp.add_argument(
        "--node-cert",
        metavar="PEM",
        help="the certificate the CA signed for it: its fingerprint is the one proposed "
        "(checked against the member file's TLS key and the CA)",
    )
    sp = change("add-observer", "add an observer: a node that follows and serves reads, no vote")
    sp.add_argument(
        "--member-file",
        required=True,
        help="the observer home's member.json (as `mdtp init` writes it; its admin is ignored)",
    )
    sp.add_argument("--node-cert", metavar="PEM", help="the certificate the CA signed for it")
    sp = change("remove-observer", "remove an observer")
    sp.add_argument("observer_id")
    sp = change("remove", "remove a member")
    sp.add_argument("member_id")
    sp = change("rotate-node-key", "give a member a new node key")
    sp.add_argument("member_id")
    sp.add_argument("--node-key", required=True, metavar="HEX", help="new Ed25519 public key")
    sp = change("rotate-cert", "give a member a new TLS certificate fingerprint")
    sp.add_argument("member_id")
    sp.add_argument("--fingerprint", required=True, metavar="HEX", help="SHA-256 of the DER")
    sp = change("policy", "change the approval threshold and the minimum membership")
    sp.add_argument("--threshold", required=True, metavar="NUM/DEN", help="e.g. 2/3")
    sp.add_argument("--min-members", type=int, default=4, help="default 4 (3f+1 with f=1)")

    sp = cmd(member, "vote", cmd_vote, "vote on a proposal for your member", True)
    sp.add_argument("proposal_id")
    sp.add_argument("--reject", action="store_true", help="vote against (default: approve)")
    cmd(member, "list", cmd_list, "the membership in effect and any scheduled change", False)
    sp = cmd(member, "history", cmd_history, "every epoch of the membership", False)
    sp.add_argument(
        "--proofs",
        action="store_true",
        help="print the history with the certified blocks that prove each change (JSON), for "
        "`mdtp verify-receipt --history`",
    )
    sp = cmd(member, "proposals", cmd_proposals, "list proposals", False)
    sp.add_argument("--status", choices=STATUSES)
    sp.add_argument("--after", help="resume after this proposal id")
    sp.add_argument("--limit", type=int)
    sp = cmd(member, "proposal", cmd_proposal, "show one proposal and its votes", False)
    sp.add_argument("proposal_id")
