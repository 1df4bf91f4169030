"""A Byzantine supplier: serve chosen datasets with one byte flipped in every chunk.

``MDTP_TEST_BYZANTINE_DATASETS=ID,...`` names the datasets. The flip happens after the
node's own disk check, so only the consumer's node can notice (the chunk no longer matches
the Merkle root the contract pinned). Never set in production.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

TAMPER_ENV = "MDTP_TEST_BYZANTINE_DATASETS"

log = logging.getLogger("mdtp.testing")


class TamperedChunks:
    """A chunk hook of the chunk service that corrupts the chunks of ``datasets``."""

    def __init__(self, datasets: frozenset[str]) -> None:
        self.datasets = datasets

    def __call__(self, dataset_id: str, index: int, data: bytes) -> bytes:
        if dataset_id not in self.datasets or not data:
            return data
        return bytes([data[0] ^ 0xFF]) + data[1:]

    def __repr__(self) -> str:
        return f"TamperedChunks({sorted(self.datasets)})"


def hook_from_env(environ: Mapping[str, str] = os.environ) -> TamperedChunks | None:
    datasets = frozenset(d for d in environ.get(TAMPER_ENV, "").split(",") if d)
    if not datasets:
        return None
    log.warning("TEST HOOK: serving tampered chunks of %s", sorted(datasets))
    return TamperedChunks(datasets)
