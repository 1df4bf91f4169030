"""Replay protection for fetch requests: each nonce is remembered until its request expires,
across restarts, with a bound per requester account.

A request carries its expiry (at most ``request_ttl_ms_max`` ahead), so a nonce needs
remembering only until then. The nonces live in the chunk index (key space ``n/``: requester
account, NUL, nonce -> expiry as u64 big-endian) and are written, synced, before a byte is
served, so a supplier that restarts still refuses a captured request. On start the expired
ones are dropped and the rest loaded.

The bound is per account (``nonce_cache_max`` nonces each): the supplier claims a nonce only
after the request's signature, contract, consumer, status and quota checked out, so only the
consumer of an active contract with downloads left can claim any, and one account filling
its share never refuses another (``nonce_quota``, counted like every refusal). The total is
then bounded by the accounts the consortium registered.
"""

from __future__ import annotations

import heapq
import struct

from mdtp.node.data.ports import KeySpace
from mdtp.node.data.protocol import Refused

_U64 = struct.Struct(">Q")


def _key(account: str, nonce: bytes) -> bytes:
    return account.encode() + b"\x00" + nonce


class ReplayGuard:
    def __init__(self, space: KeySpace, per_account_max: int, now_ms: int) -> None:
        assert per_account_max > 0
        self.per_account_max = per_account_max
        self._space = space
        self._expiry: dict[str, dict[bytes, int]] = {}
        self._heap: list[tuple[int, str, bytes]] = []
        for key, value in list(space):
            account, _, nonce = key.partition(b"\x00")
            self._remember(account.decode(), nonce, _U64.unpack(value)[0])
        self.prune(now_ms)

    def __len__(self) -> int:
        return len(self._heap)

    def held(self, account: str) -> int:
        return len(self._expiry.get(account, ()))

    def _remember(self, account: str, nonce: bytes, expires_at_ms: int) -> None:
        self._expiry.setdefault(account, {})[nonce] = expires_at_ms
        heapq.heappush(self._heap, (expires_at_ms, account, nonce))

    def prune(self, now_ms: int) -> None:
        """Forget (here and on disk) every nonce whose request has expired."""
        while self._heap and self._heap[0][0] <= now_ms:
            _, account, nonce = heapq.heappop(self._heap)
            nonces = self._expiry[account]
            del nonces[nonce]
            if not nonces:
                del self._expiry[account]
            self._space.delete(_key(account, nonce))

    def claim(self, account: str, nonce: bytes, expires_at_ms: int, now_ms: int) -> None:
        """Remember ``nonce`` of ``account`` until ``expires_at_ms``; Refused if seen or full."""
        self.prune(now_ms)
        nonces = self._expiry.get(account, {})
        if nonce in nonces:
            raise Refused("replayed_nonce")
        if len(nonces) >= self.per_account_max:
            raise Refused("nonce_quota", f"{len(nonces)} unexpired requests of {account} held")
        self._space.put(_key(account, nonce), _U64.pack(expires_at_ms), sync=True)
        self._remember(account, nonce, expires_at_ms)
