"""How every ``mdtp`` command prints: text for people, ``--json`` for scripts.

- :func:`add_json_option` gives a command ``--json``;
- :func:`emit` prints a command's result: its JSON document with ``--json`` (or when the
  command has no text form), else its text;
- :func:`failed` reports a failure: one line ``mdtp: error: REASON: message`` on stderr, and
  with ``--json`` also ``{"status": "failed", "reason", "message", ...}`` on stdout, so a
  script always gets a JSON document; it returns the exit status (non-zero).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def add_json_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="print JSON for scripts")


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def emit(args: argparse.Namespace, doc: Any, text: str | Callable[[], None] | None = None) -> int:
    """Print ``doc`` as JSON with ``--json`` (or when there is no ``text``), else ``text``
    (a string, or a function that prints it); exit status 0."""
    if wants_json(args) or text is None:
        print_json(doc)
    elif isinstance(text, str):
        print(text)
    else:
        text()
    return 0


def failed(
    args: argparse.Namespace,
    reason: str,
    message: str,
    *,
    status: int = 1,
    line: str | None = None,
    **fields: Any,
) -> int:
    """Report a failure (see the module docstring; ``line`` replaces the stderr line);
    returns ``status``."""
    if wants_json(args):
        print_json({"status": "failed", "reason": reason, "message": message, **fields})
    print(line or f"mdtp: error: {reason}: {message}", file=sys.stderr)
    return status
