"""Static configuration of one replica; every time is in integer milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

from mdtp.consensus.errors import ConfigError

NODE_ID_LEN_MAX = 64
CHAIN_ID_LEN_MAX = 64
MEMBERS_MAX = 256


@dataclass(frozen=True, slots=True)
class EpochBase:
    """Where an epoch after the first starts: the last block of the previous epoch (a
    checkpoint height), its hash, timestamp and state root. Every replica of the chain
    derives it from its own executed chain, so it needs no signatures of the new members."""

    height: int
    block_hash: bytes
    timestamp_ms: int
    state_root: bytes


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """What every replica of a chain must agree on, plus this replica's own id.

    ``members`` is the ordered membership of one *epoch*: the primary of view ``v`` is
    ``members[v % n]``. Epoch 0 starts at genesis; a later epoch starts after ``base``, the
    last block of the previous one, with views counted from 0 again. Every signature of an
    epoch is made in its own ``domain`` (the chain id, then ``"<chain id>#<epoch>"``), so a
    message of one epoch never counts in another.  Heights ``h`` are accepted only inside
    the watermark window ``(stable_checkpoint, stable_checkpoint + window_size]``.  A block
    at height ``h`` commits to the state root after executing ``h - pipeline_depth`` (the
    genesis root while ``h <= pipeline_depth``).
    """

    chain_id: str
    members: tuple[str, ...]
    my_id: str
    epoch: int = 0
    base: EpochBase | None = None
    genesis_state_root: bytes = b"\x00" * 32
    checkpoint_interval: int = 16
    window_size: int = 64
    pipeline_depth: int = 2
    timeout_ms_base: int = 2_000
    timeout_ms_cap: int = 60_000
    retransmit_interval_ms: int = 1_000
    state_transfer_timeout_ms: int = 5_000
    clock_skew_ms_max: int = 5_000
    block_txs_max: int = 10_000
    block_bytes_max: int = 4 * 1024 * 1024
    message_bytes_max: int = 64 * 1024 * 1024
    future_messages_per_sender_max: int = 256
    # Bytes of future-view messages buffered per sender: room for two full proposals.
    future_bytes_per_sender_max: int = 8 * 1024 * 1024 + 64 * 1024
    checkpoints_per_sender_max: int = 4
    # CHECKPOINTs are stored only up to this many heights above max(low watermark,
    # delivered height); beyond it each sender's single highest one is remembered, enough
    # to learn that f+1 replicas are far ahead and catch up by state transfer.
    checkpoint_horizon: int = 256
    # PBFT's per-request timer: a backup that has held a transaction this long in one view
    # without seeing it committed suspects the primary, even while other blocks commit.
    # It must exceed a normal commit, including the queueing of a loaded mempool, by far.
    request_timer: bool = True
    request_timeout_ms: int = 30_000
    requests_tracked_max: int = 4_096
    # Aardvark (``primary_monitor``): after ``throughput_grace_ms`` in a view a backup
    # suspects a primary delivering under ``throughput_floor_pct`` % of the best of the last
    # n views (scaled to today's load), and a view under load ends after ``rotation_ms``
    # so every primary is measured. 0 switches either off.
    throughput_floor_pct: int = 50
    throughput_grace_ms: int = 1_000
    rotation_ms: int = 5_000
    evidence_max: int = 1_024
    state_transfer_blocks_max: int = 64

    def __post_init__(self) -> None:
        n = len(self.members)
        if not 1 <= len(self.chain_id) <= CHAIN_ID_LEN_MAX:
            raise ConfigError("bad_chain_id", repr(self.chain_id))
        if not 1 <= n <= MEMBERS_MAX or len(set(self.members)) != n:
            raise ConfigError("bad_members", "members must be 1..256 distinct ids")
        if any(not 1 <= len(m) <= NODE_ID_LEN_MAX for m in self.members):
            raise ConfigError("bad_members", "node ids are 1..64 characters")
        if not 1 <= len(self.my_id) <= NODE_ID_LEN_MAX:
            raise ConfigError("bad_node_id", repr(self.my_id))
        if (self.epoch == 0) != (self.base is None) or self.epoch < 0:
            raise ConfigError("bad_epoch", "epoch 0 starts at genesis, later ones at a base")
        if self.base is not None and self.base.height % self.checkpoint_interval != 0:
            raise ConfigError("bad_epoch", "an epoch starts after a checkpoint height")
        if len(self.genesis_state_root) != 32:
            raise ConfigError("bad_genesis_root", "32 bytes expected")
        if self.checkpoint_interval < 1 or self.pipeline_depth < 1:
            raise ConfigError("bad_interval", "checkpoint interval and depth must be >= 1")
        # The window must hold two checkpoint intervals so proposing continues while the
        # newest checkpoint is still collecting signatures, and must exceed the pipeline.
        if self.window_size < 2 * self.checkpoint_interval:
            raise ConfigError("bad_window", "window_size must be >= 2 * checkpoint_interval")
        if self.window_size <= self.pipeline_depth:
            raise ConfigError("bad_window", "window_size must exceed pipeline_depth")
        if not 0 < self.timeout_ms_base <= self.timeout_ms_cap:
            raise ConfigError("bad_timeout", "0 < timeout_ms_base <= timeout_ms_cap")
        if self.retransmit_interval_ms <= 0 or self.state_transfer_timeout_ms <= 0:
            raise ConfigError("bad_timeout", "intervals must be positive")
        if self.request_timeout_ms <= self.timeout_ms_base:
            raise ConfigError("bad_timeout", "request_timeout_ms must exceed timeout_ms_base")
        if self.requests_tracked_max < 1 or self.checkpoint_horizon < self.window_size:
            raise ConfigError("bad_bound", "requests_tracked_max >= 1, horizon >= window")
        if not 0 <= self.throughput_floor_pct <= 100 or self.throughput_grace_ms <= 0:
            raise ConfigError("bad_bound", "throughput_floor_pct 0..100, grace > 0")
        if self.rotation_ms and self.rotation_ms <= self.throughput_grace_ms:
            raise ConfigError("bad_timeout", "rotation_ms must exceed throughput_grace_ms")
        if self.future_bytes_per_sender_max <= self.block_bytes_max:
            raise ConfigError("bad_bound", "future buffer must hold a full proposal")

    @property
    def domain(self) -> str:
        """What every signature of this epoch is made over (besides its fields)."""
        return self.domain_of(self.chain_id, self.epoch)

    @staticmethod
    def domain_of(chain_id: str, epoch: int) -> str:
        return chain_id if epoch == 0 else f"{chain_id}#{epoch}"

    @property
    def voting(self) -> bool:
        """Whether this replica is a member of the epoch (else it follows, never votes)."""
        return self.my_id in self.members

    @property
    def base_height(self) -> int:
        return 0 if self.base is None else self.base.height

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def f(self) -> int:
        """Byzantine replicas tolerated: n = 3f + 1 (extra members add no tolerance)."""
        return (len(self.members) - 1) // 3

    @property
    def quorum(self) -> int:
        """2f+1 when n = 3f+1; for other n the smallest size whose pairwise overlap
        still contains an honest replica: floor((n + f) / 2) + 1."""
        return quorum_size(len(self.members))

    def primary(self, view: int) -> str:
        return self.members[view % len(self.members)]


def quorum_size(n: int) -> int:
    """2f+1 when n = 3f+1; for other n the smallest size whose pairwise overlap still
    contains an honest replica: floor((n + f) / 2) + 1."""
    f = (n - 1) // 3
    return (n + f) // 2 + 1
