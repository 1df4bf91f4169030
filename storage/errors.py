"""Storage errors, each with a stable reason code."""

from __future__ import annotations


class StorageError(Exception):
    reason = "storage"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InconsistentStore(StorageError):
    """The store contradicts itself; the node must stop and say exactly what and where."""

    reason = "inconsistent_store"


class WrongChain(StorageError):
    reason = "wrong_chain"
