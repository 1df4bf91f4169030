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


# msgpack: the bytes that follow a marker before its content, by marker (0xc4-0xdf), and
# whether that length field counts bytes of content ("raw") or values ("array"/"map")
_SIZED: dict[int, tuple[int, str]] = {
    0xC4: (1, "raw"), 0xC5: (2, "raw"), 0xC6: (4, "raw"),  # bin 8/16/32
    0xC7: (1, "ext"), 0xC8: (2, "ext"), 0xC9: (4, "ext"),  # ext 8/16/32
    0xD9: (1, "raw"), 0xDA: (2, "raw"), 0xDB: (4, "raw"),  # str 8/16/32
    0xDC: (2, "array"), 0xDD: (4, "array"),
    0xDE: (2, "map"), 0xDF: (4, "map"),
}  # fmt: skip
# fixed-size values: marker -> bytes after it (float, unsigned, signed ints, fixext)
_FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4,
          0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}  # fmt: skip

SCAN_ABOVE_BYTES = 64 * 1024
"""Input up to this size is decoded at once: its worst case (one value per byte, ~64 bytes of
memory each) is ~4 MiB. Larger input is walked first by :func:`check_structure`."""


def elements_max_for(size: int, bytes_per_element: int) -> int:
    """The values a ``size``-byte input may hold: 65,536, plus one per ``bytes_per_element``
    bytes -- legitimate large input is a few large byte strings (transactions, blocks,
    chunks), while one value per byte decodes into ~64 bytes of memory per byte (a 16 MiB
    frame of empty arrays: ~1 GiB and tens of seconds)."""
    return 65_536 + size // bytes_per_element


def check_structure(data: bytes, *, depth_max: int, elements_max: int) -> None:
    """Walk ``data``'s msgpack headers without building a value: a :class:`DecodeError` if
    it holds more than ``elements_max`` values, nests containers deeper than ``depth_max``,
    or ends early. Costs one step per value, so call it before decoding large input."""
    size = len(data)
    pos = 0
    elements = 0
    open_counts = [1]  # values still to read in each open container; the top level holds 1
    while open_counts:
        if not open_counts[-1]:
            open_counts.pop()
            continue
        open_counts[-1] -= 1
        elements += 1
        if elements > elements_max:
            raise DecodeError("too_many_values", f"more than {elements_max} values")
        if pos >= size:
            raise DecodeError("malformed", "ends inside a value")
        marker = data[pos]
        pos += 1
        count = -1  # the values of a container opened here
        if marker <= 0x7F or marker >= 0xE0 or marker in (0xC0, 0xC2, 0xC3):
            continue  # fixint, nil, false, true
        if 0xA0 <= marker <= 0xBF:
            pos += marker & 0x1F
        elif 0x90 <= marker <= 0x9F:
            count = marker & 0x0F
        elif 0x80 <= marker <= 0x8F:
            count = 2 * (marker & 0x0F)
        elif marker in _FIXED:
            pos += _FIXED[marker]
        elif marker in _SIZED:
            width, what = _SIZED[marker]
            length = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if what == "raw":
                pos += length
            elif what == "ext":
                pos += 1 + length
            else:
                count = length if what == "array" else 2 * length
        else:
            raise DecodeError("malformed", f"byte 0x{marker:02x} is no msgpack value")
        if count >= 0:
            if len(open_counts) > depth_max:
                raise DecodeError("too_deep", f"containers nest deeper than {depth_max}")
            if count > size - pos:  # each value takes at least a byte
                raise DecodeError("malformed", f"{count} values announced in {size - pos} bytes")
            open_counts.append(count)
    if pos > size:
        raise DecodeError("malformed", "ends inside a value")


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
    if len(data) > SCAN_ABOVE_BYTES:
        # signature-dense parts (certificates) are bounded in count by the wire limits;
        # what makes a message large is byte strings
        check_structure(data, depth_max=DEPTH_MAX, elements_max=elements_max_for(len(data), 32))
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
