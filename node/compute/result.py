"""A query result's canonical form and hash, and the noise added to it.

The result is ``{"columns": [name, ...], "rows": [[value, ...], ...]}`` with JSON values
only: integers (as strings beyond 64 bits), finite floats (NaN and infinities become null),
strings, booleans, null; dates and times as ISO 8601 strings, decimals as floats, bytes as
hex. Its hash is SHA-256 over a domain tag and its compact JSON (keys in order, no spaces,
UTF-8); floats are written as Python writes them, which reads back to the same float, so the
consumer re-hashes exactly the table it received (:func:`result_hash`) and compares it with
the receipt on the ledger.

Noise: the rule's Laplace scale ``b`` is added to every aggregate cell. The noise of a cell
is drawn from SHA-256(seed, row, column) with the seed derived from the request id and the
rule hash (:func:`noise_seed`), so the supplier's node can show the noise was not chosen
after seeing the data, and each new request (a fresh nonce) draws fresh noise.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

RESULT_TAG = b"mdtp/v1/result\x00"
NOISE_TAG = b"mdtp/v1/noise\x00"
_INT_MAX = 2**63 - 1
_U64 = struct.Struct(">Q")


def cell(value: Any) -> Any:
    """One value in the result's JSON form."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_INT_MAX <= value <= _INT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return cell(float(value))
    if isinstance(value, datetime.date | datetime.time | datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def canonical_result(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    doc = {"columns": list(columns), "rows": [list(r) for r in rows]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def result_hash(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    return hashlib.sha256(RESULT_TAG + canonical_result(columns, rows)).digest()


def noise_seed(request_id: bytes, rule_hash: bytes) -> bytes:
    return hashlib.sha256(NOISE_TAG + request_id + rule_hash).digest()


def laplace(seed: bytes, row: int, column: int, scale: float) -> float:
    """A Laplace(0, scale) draw, determined by the seed and the cell."""
    digest = hashlib.sha256(seed + _U64.pack(row) + _U64.pack(column)).digest()
    u = (_U64.unpack(digest[:8])[0] + 0.5) / 2**64 - 0.5  # in (-0.5, 0.5)
    return -scale * math.copysign(1.0, u) * math.log(1 - 2 * abs(u))


def add_noise(
    rows: list[list[Any]], aggregates: Sequence[bool], seed: bytes, scale: float
) -> list[list[Any]]:
    """Every numeric aggregate cell plus its Laplace draw (rounded to 6 decimals)."""
    if scale <= 0:
        return rows
    out: list[list[Any]] = []
    for i, row in enumerate(rows):
        noisy = list(row)
        for j, value in enumerate(row):
            if aggregates[j] and isinstance(value, int | float) and not isinstance(value, bool):
                noisy[j] = round(value + laplace(seed, i, j, scale), 6)
        out.append(noisy)
    return out
