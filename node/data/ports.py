"""What the chunk service needs from the rest of the node, declared here as narrow interfaces.

The daemon passes concrete parts that satisfy them (the block store, the driver, its
mempool, the transport's send); nothing in this package knows the daemon. Each interface
names only what the service calls, so a test can hand in a small fake instead.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.tx import Tx
from mdtp.storage.blockstore import TxLocation


class Timestamped(Protocol):
    @property
    def timestamp_ms(self) -> int: ...


class CommittedLedger(Protocol):
    """The committed chain as stored (the node's block store)."""

    @property
    def state(self) -> ReadableKV: ...

    def tip(self) -> tuple[int, bytes]: ...

    def record(self, height: int) -> Timestamped | None: ...

    def tx_location(self, tx_id: bytes) -> TxLocation | None: ...


class KeySpace(Protocol):
    """A key space of the chunk service's own LevelDB index (a ``plyvel`` prefixed DB)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, sync: bool = False) -> None: ...

    def delete(self, key: bytes, sync: bool = False) -> None: ...

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]: ...


class TxSubmitter(Protocol):
    """Where the node's own transactions enter the chain (the driver)."""

    def committed_nonce(self, account_id: str) -> int: ...

    async def submit(self, raw: bytes) -> Tx: ...

    def wait_committed(self, tx_id: bytes) -> Awaitable[None]: ...


class Mempool(Protocol):
    """The node's mempool: which transactions are waiting to be proposed."""

    def __contains__(self, tx_id: bytes) -> bool: ...


PeerSend = Callable[[str, str, Any], bool]
"""Queue a frame ``(peer id, kind, body)`` on a peer link; False if it cannot be queued now."""

FrameHandler = Callable[[str, str, Any], None]
"""Handle a frame ``(peer id, kind, body)`` received from a peer."""

ChunkHook = Callable[[str, int, bytes], bytes]
"""``(dataset id, chunk index, chunk read and checked on disk)`` -> the bytes to send. Only the
testing entry point installs one (a Byzantine supplier); the node sends what it read."""


def now_ms() -> int:
    return int(time.time() * 1000)


def ledger_now_ms(ledger: CommittedLedger) -> int:
    """The later of the wall clock and the last block time: never serve on a stale view."""
    height = ledger.tip()[0]
    record = ledger.record(height) if height else None
    return max(now_ms(), record.timestamp_ms if record is not None else 0)
