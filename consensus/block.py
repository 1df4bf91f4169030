"""Blocks: a header that binds everything, and a payload of opaque transactions.

``Block.hash()`` hashes the canonical header bytes only; the header binds the payload
through ``payload_hash``, so a commit certificate over the block hash certifies the
transactions too and a header can be checked without its payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mdtp.consensus.codec import (
    HASH_LEN,
    hash_bytes,
    pack,
    read_bytes,
    read_int,
    read_list,
    read_str,
    transaction_id,
)
from mdtp.consensus.config import CHAIN_ID_LEN_MAX, NODE_ID_LEN_MAX, ConsensusConfig

HEADER_TAG = b"mdtp/v1/header"
PAYLOAD_TAG = b"mdtp/v1/payload"
GENESIS_TAG = b"mdtp/v1/genesis"


def payload_hash(payload: tuple[bytes, ...]) -> bytes:
    return hash_bytes(PAYLOAD_TAG + pack(list(payload)))


def genesis_hash(chain_id: str, genesis_state_root: bytes) -> bytes:
    """The hash that block 1 links to: derived, so every member computes the same one."""
    return hash_bytes(GENESIS_TAG + pack([chain_id, genesis_state_root]))


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    state_root: bytes  # root after executing height - pipeline_depth
    timestamp_ms: int
    proposer: str
    payload_hash: bytes

    def to_wire(self) -> list[Any]:
        return [
            self.chain_id,
            self.height,
            self.prev_hash,
            self.state_root,
            self.timestamp_ms,
            self.proposer,
            self.payload_hash,
        ]

    @classmethod
    def from_wire(cls, value: object) -> BlockHeader:
        items = read_list(value, "header", length=7)
        return cls(
            chain_id=read_str(items[0], "header.chain_id", CHAIN_ID_LEN_MAX),
            height=read_int(items[1], "header.height", low=1),
            prev_hash=read_bytes(items[2], "header.prev_hash", HASH_LEN),
            state_root=read_bytes(items[3], "header.state_root", HASH_LEN),
            timestamp_ms=read_int(items[4], "header.timestamp_ms"),
            proposer=read_str(items[5], "header.proposer", NODE_ID_LEN_MAX),
            payload_hash=read_bytes(items[6], "header.payload_hash", HASH_LEN),
        )

    @cached_property
    def digest(self) -> bytes:
        return hash_bytes(HEADER_TAG + pack(self.to_wire()))


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    payload: tuple[bytes, ...]

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.digest

    @cached_property
    def tx_ids(self) -> tuple[bytes, ...]:
        """Each transaction's id (``codec.transaction_id``), hashed once per block: the core's
        request timers, the driver's checks and the executor all ask for them."""
        return tuple(transaction_id(tx) for tx in self.payload)

    def payload_matches(self) -> bool:
        return payload_hash(self.payload) == self.header.payload_hash

    def to_wire(self) -> list[Any]:
        return [self.header.to_wire(), list(self.payload)]

    @classmethod
    def from_wire(cls, value: object, txs_max: int, tx_bytes_max: int) -> Block:
        items = read_list(value, "block", length=2)
        header = BlockHeader.from_wire(items[0])
        txs = read_list(items[1], "block.payload", length_max=txs_max)
        payload = tuple(read_bytes(tx, "block.tx", length_max=tx_bytes_max) for tx in txs)
        return cls(header=header, payload=payload)

    @staticmethod
    def build(
        config: ConsensusConfig,
        height: int,
        prev_hash: bytes,
        state_root: bytes,
        timestamp_ms: int,
        payload: tuple[bytes, ...],
    ) -> Block:
        header = BlockHeader(
            chain_id=config.chain_id,
            height=height,
            prev_hash=prev_hash,
            state_root=state_root,
            timestamp_ms=timestamp_ms,
            proposer=config.my_id,
            payload_hash=payload_hash(payload),
        )
        return Block(header=header, payload=payload)


def payload_size(payload: tuple[bytes, ...]) -> int:
    return sum(len(tx) for tx in payload)
