"""Strict validation of transaction bodies: every field's type, length and range.

A body is a map whose fields are all known: a missing required field, an unknown field, a
wrong type or an out-of-range value is ``Refusal("bad_body", "<field>: <what>")``. Nested
maps name their fields with a dotted path (``terms.use_end_ms``). Texts refuse control
characters (only multi-line texts may hold newlines and tabs), so nothing on the ledger can
fake log lines or terminal escapes in a CLI listing. Every length and count has a limit.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from mdtp.node.encoding import public_key_from_account_id
from mdtp.node.ledger.trading.reasons import refuse

# Dataset and contract ids are chosen by clients (e.g. the hex of a hash); never a '/'.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
ID_MAX_LEN = 64
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
ACCOUNT_ID_MAX_LEN = 64
INT_MAX = 2**53 - 1  # integers stay exact in JSON clients
HASH_LEN = 32
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_SINGLE_LINE_OK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def bad(field: str, what: str) -> NoReturn:
    refuse("bad_body", f"{field}: {what}")


class Fields:
    """A view of one body map that remembers which fields were read.

    ``finish()`` refuses any field nobody asked for, so a typo in a client's field name is a
    failed transaction instead of a silently ignored term.
    """

    def __init__(self, body: Any, where: str = "") -> None:
        if not isinstance(body, Mapping):
            bad(where or "body", "must be a map")
        self.body: Mapping[str, Any] = body
        self.where = where
        self.seen: set[str] = set()

    def name(self, field: str) -> str:
        return f"{self.where}.{field}" if self.where else field

    def has(self, field: str) -> bool:
        return field in self.body

    def raw(self, field: str) -> Any:
        self.seen.add(field)
        if field not in self.body:
            bad(self.name(field), "missing")
        return self.body[field]

    def finish(self) -> None:
        unknown = sorted(set(self.body) - self.seen)
        if unknown:
            bad(self.name(unknown[0]), "unknown field")

    def text(self, field: str, *, max_len: int, min_len: int = 0, multiline: bool = False) -> str:
        value = self.raw(field)
        if not isinstance(value, str):
            bad(self.name(field), "must be a string")
        if not min_len <= len(value) <= max_len:
            bad(self.name(field), f"must be {min_len}..{max_len} characters")
        pattern = _CONTROL_SINGLE_LINE_OK if multiline else _CONTROL_RE
        if pattern.search(value):
            bad(self.name(field), "must not contain control characters")
        return value

    def ident(self, field: str) -> str:
        value = self.raw(field)
        if not isinstance(value, str) or not ID_RE.match(value):
            bad(self.name(field), f"must match {ID_RE.pattern}")
        return value

    def account_id(self, field: str) -> str:
        value = self.raw(field)
        if not isinstance(value, str) or len(value) > ACCOUNT_ID_MAX_LEN:
            bad(self.name(field), "must be an account id (did:key:z...)")
        try:
            public_key_from_account_id(value)
        except ValueError:
            bad(self.name(field), "must be an account id (did:key:z...)")
        return value

    def integer(self, field: str, *, lo: int = 0, hi: int = INT_MAX) -> int:
        value = self.raw(field)
        if isinstance(value, bool) or not isinstance(value, int):
            bad(self.name(field), "must be an integer")
        if not lo <= value <= hi:
            bad(self.name(field), f"must be in {lo}..{hi}")
        return value

    def boolean(self, field: str) -> bool:
        value = self.raw(field)
        if not isinstance(value, bool):
            bad(self.name(field), "must be true or false")
        return value

    def blob(self, field: str, *, size: int | None = None, max_len: int = 0) -> bytes:
        value = self.raw(field)
        if not isinstance(value, bytes):
            bad(self.name(field), "must be bytes")
        if size is not None and len(value) != size:
            bad(self.name(field), f"must be {size} bytes")
        if size is None and not 0 < len(value) <= max_len:
            bad(self.name(field), f"must be 1..{max_len} bytes")
        return value

    def choice(self, field: str, options: Collection[str]) -> str:
        value = self.raw(field)
        if not isinstance(value, str) or value not in options:
            bad(self.name(field), f"must be one of {', '.join(sorted(options))}")
        return value

    def string_list(
        self,
        field: str,
        *,
        max_items: int,
        pattern: re.Pattern[str] | None = None,
        options: Collection[str] | None = None,
        min_items: int = 0,
    ) -> list[str]:
        value = self.raw(field)
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            bad(self.name(field), f"must be a list of {min_items}..{max_items} strings")
        for i, item in enumerate(value):
            item_name = f"{self.name(field)}[{i}]"
            if not isinstance(item, str):
                bad(item_name, "must be a string")
            if pattern is not None and not pattern.match(item):
                bad(item_name, f"must match {pattern.pattern}")
            if options is not None and item not in options:
                bad(item_name, f"must be one of {', '.join(sorted(options))}")
        if len(set(value)) != len(value):
            bad(self.name(field), "must not repeat an item")
        return list(value)

    def nested(self, field: str) -> Fields:
        return Fields(self.raw(field), self.name(field))
