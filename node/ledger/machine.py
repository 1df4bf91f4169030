"""Executing a committed block: common checks, then the handler of each transaction's type.

Execute-after-order: every transaction in a committed block gets a result, ``ok`` or
``failed`` with a reason code; nothing is silently dropped. Order of checks per transaction:

1. decodes and is for this chain (blocks are validated before votes, so this only fails on
   a bug — still recorded, never raised);
2. not expired: block time <= ``expires_at_ms`` (else ``expired``; nonce untouched);
3. the sender is an account the state knows and signed with its current key
   (``unknown_sender``; ``not_registered`` for a self-certifying id no member registered;
   ``wrong_key``, ``revoked``; nonce untouched);
4. nonce is exactly the sender's last nonce + 1 (``bad_nonce``; nonce untouched);
5. the nonce is consumed, then the type's handler runs in a child overlay; a
   :class:`Refusal` rolls back the handler's writes and records its reason, but the nonce
   stays consumed so the same signed transaction can never be replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mdtp.node.encoding import public_key_from_account_id
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.tx import Tx, TxError, decode_tx


class Refusal(Exception):
    """A well-formed transaction that the state does not allow; ``reason`` is recorded."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BlockContext:
    chain_id: str
    height: int
    timestamp_ms: int
    proposer: str


@dataclass(frozen=True)
class TxResult:
    tx_id: bytes
    index: int
    ok: bool
    reason: str = ""
    detail: str = ""
    # the executed transaction, so listeners react to its type and body without decoding
    # the block again; None only when it did not decode
    tx: Tx | None = field(default=None, compare=False, repr=False)


Handler = Callable[[BlockContext, Overlay, Tx], None]
KeyResolver = Callable[[Overlay, str], tuple[bytes | None, str]]
"""Returns (current public key or None if unknown, status) for an account id. Status
``unregistered``: a self-certifying id whose key is known but that no member registered."""

UNREGISTERED = "unregistered"

NONCE_PREFIX = b"nonce/"


def nonce_key(account_id: str) -> bytes:
    return NONCE_PREFIX + account_id.encode()


def account_nonce(state: Overlay, account_id: str) -> int:
    raw = state.get(nonce_key(account_id))
    return int.from_bytes(raw, "big") if raw else 0


def self_certifying_key(_state: Overlay, account_id: str) -> tuple[bytes | None, str]:
    """Default resolver: the key is the one the did:key id was derived from."""
    try:
        return public_key_from_account_id(account_id), "active"
    except ValueError:
        return None, "unknown"


class Ledger:
    """A registry of transaction handlers plus the per-block execution loop."""

    def __init__(self, chain_id: str, key_resolver: KeyResolver = self_certifying_key) -> None:
        self.chain_id = chain_id
        self.handlers: dict[str, Handler] = {}
        self.key_resolver = key_resolver

    def register(self, tx_type: str, handler: Handler) -> None:
        assert tx_type not in self.handlers, f"handler for {tx_type} registered twice"
        self.handlers[tx_type] = handler

    def check_sender(self, state: Overlay, tx: Tx) -> None:
        """Raise :class:`Refusal` unless ``tx`` is signed by its sender's current key."""
        key, status = self.key_resolver(state, tx.sender)
        # A permissioned ledger: whoever writes to it is accountable to a member, so a key
        # that merely names itself writes nothing, not even a failed transaction or a nonce.
        if status == UNREGISTERED:
            raise Refusal("not_registered", f"{tx.sender} is not registered by a member admin")
        if status == "revoked":
            raise Refusal("revoked", f"account {tx.sender} is revoked")
        if key is None:
            raise Refusal("unknown_sender", f"account {tx.sender} is not known")
        if key != tx.public_key:
            raise Refusal("wrong_key", "signed by a key that is not the sender's current key")

    def execute_block(
        self,
        ctx: BlockContext,
        state: Overlay,
        txs: tuple[bytes, ...],
        decoded: Sequence[Tx | TxError | None] | None = None,
    ) -> list[TxResult]:
        """``decoded``: each transaction as :func:`decode_tx` with ``max_bytes=len(raw)``
        decoded it already (state transfer checks the signatures in a batch first; the
        executor passes what admission decoded), so it is decoded once; a None entry, or
        ``decoded`` None, is decoded here."""
        if decoded is not None and len(decoded) != len(txs):
            raise ValueError(f"{len(decoded)} decoded transactions for {len(txs)}")
        results = []
        for index, raw in enumerate(txs):
            pre = None if decoded is None else decoded[index]
            results.append(self._execute(ctx, state, index, raw, pre))
        assert len(results) == len(txs)
        return results

    def _execute(
        self, ctx: BlockContext, state: Overlay, index: int, raw: bytes, pre: Tx | TxError | None
    ) -> TxResult:
        try:
            if pre is None:
                tx = decode_tx(raw, chain_id=self.chain_id, max_bytes=len(raw), verify=False)
            elif isinstance(pre, TxError):
                raise pre
            elif pre.signed_bytes is raw or pre.signed_bytes == raw:
                tx = pre
            else:
                raise ValueError(f"transaction {index} was decoded from other bytes")
        except TxError as e:
            return TxResult(hashlib.sha256(raw).digest(), index, False, e.reason, str(e))
        tx_id = tx.id
        if ctx.timestamp_ms > tx.expires_at_ms:
            return TxResult(tx_id, index, False, "expired", "block time is past expires_at", tx)
        try:
            self.check_sender(state, tx)
        except Refusal as r:
            return TxResult(tx_id, index, False, r.reason, r.detail, tx)
        expected = account_nonce(state, tx.sender) + 1
        if tx.nonce != expected:
            return TxResult(tx_id, index, False, "bad_nonce", f"expected nonce {expected}", tx)
        state.put(nonce_key(tx.sender), tx.nonce.to_bytes(8, "big"))
        handler = self.handlers.get(tx.type)
        if handler is None:
            return TxResult(
                tx_id, index, False, "unknown_type", f"no transaction type {tx.type!r}", tx
            )
        child = state.child()
        try:
            handler(ctx, child, tx)
        except Refusal as r:
            return TxResult(tx_id, index, False, r.reason, r.detail, tx)
        state.merge(child)
        return TxResult(tx_id, index, True, tx=tx)
