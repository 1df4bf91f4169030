"""What every example reads from its command line, and how it reports retries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mdtp.node.identity.keys import SigningKey, load_key, read_passphrase_file
from mdtp.node.sdk.retry import RetryEvent


@dataclass(frozen=True)
class Options:
    node: str  # the node's API address, HOST:PORT
    home: Path  # a member's node home: ca.pem, node.pem, node.key.pem
    key: SigningKey  # the account that signs
    count: int


def parse(doc: str | None, argv: Sequence[str] | None, *, count: int = 1) -> Options:
    p = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--node", required=True, metavar="HOST:PORT", help="a node's API address")
    p.add_argument(
        "--home", required=True, type=Path, help="a member's node home (its client certificate)"
    )
    p.add_argument(
        "--key",
        type=Path,
        required=True,
        help="the signing account's key file (e.g. a member's admin key: c/admins/node0.json)",
    )
    p.add_argument("--passphrase-file", type=Path, help="passphrase of a sealed key file")
    if count > 1:
        p.add_argument("--count", type=int, default=count, help=f"how many (default {count})")
    args = p.parse_args(argv)
    key = load_key(args.key, passphrase=read_passphrase_file(args.passphrase_file))
    return Options(args.node, args.home, key, getattr(args, "count", 1))


def print_retry(event: RetryEvent) -> None:
    """An ``on_retry`` callback: one line on stderr per retry."""
    asked = "" if event.retry_after_s is None else f" (Retry-After {event.retry_after_s:g} s)"
    print(
        f"retry {event.method} {event.path}: attempt {event.attempt} answered "
        f"{event.status} {event.reason}{asked}; waiting {event.wait_s:.2f} s",
        file=sys.stderr,
    )
