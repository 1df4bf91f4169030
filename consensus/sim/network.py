"""A simulated network: per-message loss, delay (hence reordering), duplication,
corruption and replay, plus partitions between node instances.  Everything random
comes from the seed's ``Rng``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtp.consensus.sim.rng import Rng

REPLAY_BUFFER_MAX = 256


@dataclass(frozen=True, slots=True)
class LinkFaults:
    loss: float = 0.0
    duplicate: float = 0.0
    delay_ms_min: int = 2
    delay_ms_max: int = 20
    slow: float = 0.0  # probability of a long delay (reorders well past neighbours)
    slow_ms_max: int = 400
    mutate: float = 0.0  # flip a byte: the receiver must reject, never crash
    replay: float = 0.0  # re-inject an old frame much later


@dataclass
class Network:
    rng: Rng
    faults: LinkFaults = field(default_factory=LinkFaults)
    # instance -> group; instances in different groups cannot talk while partitioned
    groups: dict[str, int] = field(default_factory=dict)
    faults_on: bool = True
    _old_frames: list[bytes] = field(default_factory=list)

    def partition(self, groups: dict[str, int]) -> None:
        self.groups = dict(groups)

    def heal(self) -> None:
        self.groups = {}
        self.faults_on = False

    def connected(self, a: str, b: str) -> bool:
        return self.groups.get(a, 0) == self.groups.get(b, 0)

    def plan(self, src: str, dst: str, data: bytes, now_ms: int) -> list[tuple[int, bytes]]:
        """When (and as what bytes) ``data`` sent from ``src`` reaches ``dst``."""
        if not self.connected(src, dst):
            return []
        f = self.faults if self.faults_on else LinkFaults()
        if self.rng.chance(f.loss):
            return []
        copies = 2 if self.rng.chance(f.duplicate) else 1
        out: list[tuple[int, bytes]] = []
        for _ in range(copies):
            delay = self.rng.randint(f.delay_ms_min, f.delay_ms_max)
            if self.rng.chance(f.slow):
                delay += self.rng.randint(0, f.slow_ms_max)
            frame = data
            if self.rng.chance(f.mutate) and data:
                i = self.rng.randint(0, len(data) - 1)
                frame = data[:i] + bytes([data[i] ^ (1 << self.rng.randint(0, 7))]) + data[i + 1 :]
            out.append((now_ms + delay, frame))
        if f.replay > 0:
            if len(self._old_frames) < REPLAY_BUFFER_MAX:
                self._old_frames.append(data)
            else:
                self._old_frames[self.rng.randint(0, REPLAY_BUFFER_MAX - 1)] = data
            if self.rng.chance(f.replay):
                old = self.rng.choice(self._old_frames)
                out.append((now_ms + self.rng.randint(0, f.slow_ms_max), old))
        return out
