"""Key/value state as the rules see it, and the state commitment after each block.

Rules read through an :class:`Overlay` and write into it; nothing reaches the store until the
block's whole write set is committed in one LevelDB batch together with the block. A
transaction that fails is rolled back by dropping its child overlay.

State commitment: ``root_h = SHA-256("mdtp/v1/state" || root_{h-1} || SHA-256(writes_h))``
where ``writes_h`` is the canonical encoding of block h's sorted write set. Two replicas that
start from the same genesis have equal roots at h iff they applied identical write sets to
every block up to h, so a diverging replica is caught at the first block where it diverges,
at O(writes) cost per block instead of re-hashing the whole state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol

import msgpack

from mdtp.node.ledger.tx import canonical

STATE_TAG = b"mdtp/v1/state"


class ReadableKV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class MemoryKV:
    """A dict-backed store (tests, and the empty state of a brand-new chain)."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data = dict(data or {})

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for k in sorted(self.data):
            if k.startswith(prefix):
                yield k, self.data[k]

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v


_MISSING = object()


class Overlay:
    """Buffered writes over a readable store; ``None`` marks a deletion.

    ``cache_reads``: remember what each key read from ``base`` returned, so a key read by
    many transactions of a block (the sender's account record) is read from the store once.
    Only for an overlay whose base does not change while it lives and that lives at most one
    block (the executor's root overlay); the cache holds at most the keys the block read."""

    def __init__(self, base: ReadableKV, *, cache_reads: bool = False) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._reads: dict[bytes, bytes | None] | None = {} if cache_reads else None

    def get(self, key: bytes) -> bytes | None:
        value = self.writes.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        reads = self._reads
        if reads is None:
            return self.base.get(key)
        value = reads.get(key, _MISSING)
        if value is _MISSING:
            value = reads[key] = self.base.get(key)
        return value  # type: ignore[return-value]

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merged, key-ordered view of the base and the buffered writes under ``prefix``."""
        merged: dict[bytes, bytes | None] = dict(self.base.scan(prefix))
        merged.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        for k in sorted(merged):
            v = merged[k]
            if v is not None:
                yield k, v

    def get_obj(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else msgpack.unpackb(raw, raw=False, strict_map_key=False)

    def put_obj(self, key: bytes, value: Any) -> None:
        self.put(key, canonical(value))

    def child(self) -> Overlay:
        return Overlay(self)

    def merge(self, child: Overlay) -> None:
        assert child.base is self, "only a direct child merges into its parent"
        self.writes.update(child.writes)


def write_set_digest(writes: dict[bytes, bytes | None]) -> bytes:
    items = [[k, v] for k, v in sorted(writes.items())]
    return hashlib.sha256(msgpack.packb(items, use_bin_type=True)).digest()


def next_state_root(previous_root: bytes, writes: dict[bytes, bytes | None]) -> bytes:
    assert len(previous_root) == 32
    return hashlib.sha256(STATE_TAG + previous_root + write_set_digest(writes)).digest()


def genesis_state_root(genesis_hash: bytes) -> bytes:
    return hashlib.sha256(STATE_TAG + b"genesis" + genesis_hash).digest()
