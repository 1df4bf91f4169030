"""Canonical msgpack and strict field readers for untrusted input.

Canonical means: one byte string per value.  msgpack-python already packs every integer in
its shortest form and keeps list order, so we only forbid maps and floats and check on
decode that re-packing reproduces the input byte for byte.  Field readers raise
``DecodeError`` with a stable reason and nothing else.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]

from mdtp.consensus.errors import DecodeError

HASH_LEN = 32
SIGNATURE_LEN = 64
INT_MAX = 2**63 - 1
# Deepest legitimate value: a persisted NEW-VIEW (state > new-view > view-changes > view-change
# > prepared > certificate > pre-prepare > block > header) is 9 arrays deep.  msgpack's own
# stack allows ~1000 levels and the re-encoding recurses, so the bound is ours.
DEPTH_MAX = 16


def pack(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def hash_bytes(data: bytes) -> bytes:
    """blake2b-256: the one hash of the ledger (block ids, payload binding, roots)."""
    return hashlib.blake2b(data, digest_size=HASH_LEN).digest()


def transaction_id(tx: bytes) -> bytes:
    """A transaction's id: SHA-256 of its signed bytes, the id the ledger and the mempool
    use (DESIGN §4), so the core's request timers and the driver name a transaction alike."""
    return hashlib.sha256(tx).digest()


def _depth_within(value: object, depth_max: int) -> bool:
    """True if no array nests deeper than ``depth_max``; iterative, so hostile input
    cannot exhaust the interpreter stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is list:
            if depth > depth_max:
                return False
            stack.extend((child, depth + 1) for child in item if type(child) is list)
    return True


def unpack_canonical(data: bytes, size_max: int) -> Any:
    """Decode untrusted bytes: size first, then msgpack with tight limits, then nesting
    depth (before anything recurses over the value), then canonicity."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("not_bytes", type(data).__name__)
    data = bytes(data)
    if len(data) > size_max:
        raise DecodeError("oversize", f"{len(data)} > {size_max}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=size_max,
            max_bin_len=size_max,
            max_array_len=size_max,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many unrelated types; all mean "malformed"
        raise DecodeError("malformed", type(exc).__name__) from None
    if not _depth_within(value, DEPTH_MAX):
        raise DecodeError("too_deep", f"arrays nest deeper than {DEPTH_MAX}")
    try:
        canonical = pack(value) == data
    except Exception:  # e.g. an ext type slipped through: not ours
        canonical = False
    if not canonical:
        raise DecodeError("non_canonical", "re-encoding differs from input")
    return value


def read_int(value: object, name: str, low: int = 0, high: int = INT_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise DecodeError("bad_field", f"{name}: integer in [{low}, {high}] expected")
    return value


def read_bytes(value: object, name: str, length: int | None = None, length_max: int = 0) -> bytes:
    if type(value) is not bytes:
        raise DecodeError("bad_field", f"{name}: bytes expected")
    if length is not None and len(value) != length:
        raise DecodeError("bad_field", f"{name}: {length} bytes expected")
    if length is None and len(value) > length_max:
        raise DecodeError("bad_field", f"{name}: at most {length_max} bytes")
    return value


def read_str(value: object, name: str, length_max: int) -> str:
    if type(value) is not str or not 1 <= len(value) <= length_max:
        raise DecodeError("bad_field", f"{name}: string of 1..{length_max} expected")
    return value


def read_list(
    value: object, name: str, length: int | None = None, length_max: int = 0
) -> list[Any]:
    if type(value) is not list:
        raise DecodeError("bad_field", f"{name}: array expected")
    if length is not None and len(value) != length:
        raise DecodeError("bad_field", f"{name}: {length} items expected")
    if length is None and len(value) > length_max:
        raise DecodeError("bad_field", f"{name}: at most {length_max} items")
    return value
