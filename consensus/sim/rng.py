"""Seeded pseudo-random numbers for the simulator (SplitMix64).

Our own generator, not ``random``: the whole package stays free of global randomness,
and a seed means the same run on every Python version and platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
_MASK = (1 << 64) - 1


class Rng:
    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.next_u64() >> 11) / float(1 << 53)

    def chance(self, p: float) -> bool:
        return p > 0 and self.random() < p

    def randint(self, low: int, high: int) -> int:
        """Uniform in [low, high]."""
        return low + self.next_u64() % (high - low + 1)

    def choice(self, items: Sequence[T]) -> T:
        return items[self.next_u64() % len(items)]

    def shuffled(self, items: Sequence[T]) -> list[T]:
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.next_u64() % (i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def fork(self, label: int) -> Rng:
        """An independent stream, so adding draws in one component does not shift others."""
        return Rng(self.next_u64() ^ (label * 0xD1B54A32D192ED03))
