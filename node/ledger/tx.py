"""Signed transactions: canonical bytes, signatures, ids, size limits.

A transaction is ``msgpack([chain_id, type, sender, nonce, expires_at_ms, body])`` — the
*unsigned bytes* — and travels as ``msgpack([unsigned_bytes, public_key, signature])``, the
*signed bytes*, where the signature is Ed25519 over ``b"mdtp/v1/tx\\0" + unsigned_bytes`` by
``public_key``. The id is SHA-256 of the signed bytes.

Canonical means one encoding per transaction: map keys sorted, no floats, and a decoded
transaction must re-encode to exactly the bytes it came from (so two different byte strings
can never carry "the same" transaction under two ids). The size limit is checked before a
byte is decoded.

The key that signs must be the sender account's current key; that is a question for the
ledger state (keys rotate), so :func:`decode_tx` only checks that the signature matches the
key carried, and the state machine checks the key belongs to the sender.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

from mdtp.consensus.codec import SCAN_ABOVE_BYTES, check_structure, elements_max_for
from mdtp.consensus.errors import DecodeError
from mdtp.node.errors import MdtpError

DOMAIN_TAG = b"mdtp/v1/tx\x00"
MAX_TX_BYTES_DEFAULT = 64 * 1024
TYPE_MAX_LEN = 40
SENDER_MAX_LEN = 64
NONCE_MAX = 2**63 - 1
# Nesting of arrays and maps in a transaction (the envelope counts 2; trading bodies need 4).
# Checked right after unpacking, before any recursive work, so no input reaches Python's
# recursion limit.
DEPTH_MAX = 16


class TxError(MdtpError):
    """A transaction refused before it reaches the ledger (reason is the metric label)."""

    reason = "bad_tx"


def canonical(obj: Any) -> bytes:
    """Canonical msgpack: maps with sorted keys (recursively), bytes as bin, no floats."""
    packed: bytes = msgpack.packb(_sorted(obj), use_bin_type=True)
    return packed


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TxError("map keys must be strings", reason="non_canonical")
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [_sorted(v) for v in obj]
    if isinstance(obj, float):
        raise TxError("floats are not allowed in transactions", reason="non_canonical")
    return obj


def _unpack(data: bytes, what: str) -> Any:
    return _unpack_shaped(data, what)[0]


def _unpack_shaped(data: bytes, what: str) -> tuple[Any, bool]:
    """The decoded object, and whether it is already in canonical shape (every map's keys
    strings in sorted order, no floats), so that :func:`canonical` of it is plain packing."""
    if len(data) > SCAN_ABOVE_BYTES:
        # walked first: one value per byte would decode into ~64 bytes of memory per byte
        try:
            check_structure(
                data, depth_max=DEPTH_MAX + 1, elements_max=elements_max_for(len(data), 16)
            )
        except DecodeError as e:
            raise TxError(f"{what}: {e}", reason="malformed") from None
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise TxError(
            f"{what} is not valid msgpack ({type(e).__name__})", reason="malformed"
        ) from None
    return obj, _check_depth(obj, what)


def _check_depth(obj: Any, what: str) -> bool:
    """Refuse nesting deeper than :data:`DEPTH_MAX` (iteratively: the check cannot overflow);
    True if ``obj`` is in canonical shape (see :func:`_unpack_shaped`). One pass over the
    containers only (msgpack decodes to exactly ``dict``, ``list`` and scalars)."""
    shaped = type(obj) is not float
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            keys = list(item)
            # keys of one map are distinct, so sorted order is the canonical one
            if shaped and not (all(type(k) is str for k in keys) and keys == sorted(keys)):
                shaped = False
            values: Any = item.values()
        elif type(item) is list:
            values = item
        else:
            continue
        if depth >= DEPTH_MAX:
            raise TxError(f"{what} nests deeper than {DEPTH_MAX} levels", reason="malformed")
        for v in values:
            kind = type(v)
            if kind is dict or kind is list:
                stack.append((v, depth + 1))
            elif kind is float:
                shaped = False
    return shaped


@dataclass(frozen=True)
class Tx:
    chain_id: str
    type: str
    sender: str
    nonce: int
    expires_at_ms: int
    body: dict[str, Any]
    public_key: bytes
    signature: bytes
    signed_bytes: bytes
    # SHA-256 of the signed bytes, hashed once when the transaction is made (admission, the
    # mempool and execution each ask for it; a ``cached_property`` takes a lock per read)
    id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", hashlib.sha256(self.signed_bytes).digest())

    @property
    def unsigned_bytes(self) -> bytes:
        return unsigned_bytes(
            self.chain_id, self.type, self.sender, self.nonce, self.expires_at_ms, self.body
        )


def unsigned_bytes(
    chain_id: str, type_: str, sender: str, nonce: int, expires_at_ms: int, body: dict[str, Any]
) -> bytes:
    return canonical([chain_id, type_, sender, nonce, expires_at_ms, body])


def sign_tx(
    signer: Any,
    *,
    chain_id: str,
    type_: str,
    sender: str,
    nonce: int,
    expires_at_ms: int,
    body: dict[str, Any],
) -> bytes:
    """Signed bytes of a transaction; ``signer`` has ``public_key`` and ``sign(bytes)``."""
    unsigned = unsigned_bytes(chain_id, type_, sender, nonce, expires_at_ms, body)
    signature = signer.sign(DOMAIN_TAG + unsigned)
    return canonical([unsigned, signer.public_key, signature])


def signature_error() -> TxError:
    """What a transaction whose signature does not verify is refused with."""
    return TxError("signature does not verify", reason="bad_signature")


def decode_tx(
    data: bytes, *, chain_id: str, max_bytes: int = MAX_TX_BYTES_DEFAULT, verify: bool = True
) -> Tx:
    """Decode and check a transaction's form and signature; :class:`TxError` on anything."""
    if len(data) > max_bytes:
        raise TxError(f"transaction is {len(data)} bytes, above {max_bytes}", reason="oversized")
    outer = _unpack(data, "transaction")
    if (
        not isinstance(outer, list)
        or len(outer) != 3
        or not isinstance(outer[0], bytes)
        or not isinstance(outer[1], bytes)
        or not isinstance(outer[2], bytes)
    ):
        raise TxError("transaction must be [unsigned, public_key, signature]", reason="malformed")
    unsigned, public_key, signature = outer
    if len(public_key) != 32 or len(signature) != 64:
        raise TxError("public key must be 32 bytes and signature 64", reason="malformed")
    inner, shaped = _unpack_shaped(unsigned, "unsigned transaction")
    if not isinstance(inner, list) or len(inner) != 6:
        raise TxError("unsigned transaction must have 6 fields", reason="malformed")
    tx_chain, type_, sender, nonce, expires_at_ms, body = inner
    if not isinstance(tx_chain, str) or tx_chain != chain_id:
        raise TxError(f"transaction is for chain {tx_chain!r}", reason="wrong_chain")
    if not isinstance(type_, str) or not 0 < len(type_) <= TYPE_MAX_LEN:
        raise TxError("bad transaction type", reason="malformed")
    if not isinstance(sender, str) or not 0 < len(sender) <= SENDER_MAX_LEN:
        raise TxError("bad sender", reason="malformed")
    for name, value in (("nonce", nonce), ("expires_at_ms", expires_at_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= NONCE_MAX:
            raise TxError(f"{name} must be a non-negative integer", reason="malformed")
    if not isinstance(body, dict):
        raise TxError("body must be a map", reason="malformed")
    # ``outer`` is three byte strings, so its canonical form is its plain packing; so is
    # ``inner``'s when it is in canonical shape, else canonical() sorts it (or refuses it)
    if (
        msgpack.packb(outer, use_bin_type=True) != data
        or (msgpack.packb(inner, use_bin_type=True) if shaped else canonical(inner)) != unsigned
    ):
        raise TxError("transaction is not canonically encoded", reason="non_canonical")
    if verify:
        from mdtp.node.identity.keys import verify_signature

        if not verify_signature(public_key, DOMAIN_TAG + unsigned, signature):
            raise signature_error()
    return Tx(tx_chain, type_, sender, nonce, expires_at_ms, body, public_key, signature, data)
