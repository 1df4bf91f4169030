"""``mdtp snapshot export|import``: back up a stopped node's store at its latest stable
checkpoint, and restore it into a new node home, verified first (``node/ops/snapshot.py``).

Both take ``--home`` (else ``$MDTP_HOME``) and ``--json``; a refused import names its reason
(``wrong_chain``, ``bad_checkpoint_certificate``, ``checksum_mismatch``, ``truncated``,
``store_not_empty``, ...) and exits with status 1, leaving the home as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mdtp.node.cli import add_command, add_group
from mdtp.node.cli.options import add_home_option
from mdtp.node.cli.output import add_json_option, emit, failed
from mdtp.node.errors import MdtpError
from mdtp.storage.errors import StorageError


def _summary(doc: dict[str, Any]) -> str:
    kind = "full" if doc["full"] else f"state-only, blocks from {doc['base']}"
    return (
        f"height {doc['height']} (stable checkpoint {doc['checkpoint_height']}, {kind}), "
        f"{doc['entries']} entries, sha256 {doc['sha256'][:16]}..."
    )


def cmd_export(args: argparse.Namespace) -> int:
    from mdtp.node.ops.snapshot import export_snapshot

    try:
        doc = export_snapshot(Path(args.home), Path(args.out), full=args.full)
    except (MdtpError, StorageError) as e:
        return failed(args, e.reason, str(e))
    return emit(
        args, doc, f"snapshot of chain {doc['chain_id']} written to {doc['out']}: " + _summary(doc)
    )


def cmd_import(args: argparse.Namespace) -> int:
    from mdtp.node.ops.snapshot import import_snapshot

    try:
        doc = import_snapshot(Path(args.home), Path(args.file), replay=args.replay)
    except FileNotFoundError as e:
        return failed(args, "not_found", f"{args.file}: {e.strerror}")
    except (MdtpError, StorageError) as e:
        return failed(args, e.reason, str(e))
    return emit(
        args,
        doc,
        f"snapshot verified and restored into {doc['home']}: {_summary(doc)}\n"
        "next: `mdtp start`; the node starts there and catches up from its peers",
    )


def register(sub: Any) -> None:
    group = add_group(sub, "snapshot", "back up and restore a node's store (node stopped)")
    sp = add_command(
        group, "export", cmd_export, "write the store at its latest stable checkpoint to a file"
    )
    add_home_option(sp)
    sp.add_argument("--out", required=True, metavar="FILE", help="the snapshot file to write")
    sp.add_argument(
        "--full",
        action="store_true",
        help="every block from height 1 (audit proofs of old entries); default: state and "
        "the blocks from the checkpoint on",
    )
    add_json_option(sp)
    sp = add_command(
        group, "import", cmd_import, "verify a snapshot and restore it into an empty node home"
    )
    sp.add_argument("file", help="the snapshot file")
    add_home_option(sp)
    sp.add_argument(
        "--replay",
        action="store_true",
        help="full snapshots: also re-execute every block from genesis and require the "
        "file's state (proves the state entries; takes as long as replaying the chain)",
    )
    add_json_option(sp)
