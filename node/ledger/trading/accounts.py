"""Accounts: ``account.register``, ``account.rotate_key``, ``account.revoke``, and the key
resolver the execution loop uses to check who signed a transaction.

Kinds of account:

- ``admin``: a member's administrator, from the genesis file; registers and revokes the
  accounts of its member. Has no trading role.
- ``node``: one per member, keyed by the member's node key, from the genesis file; posts
  ``access.grant`` and ``delivery.receipt`` for datasets stored on that member's node. Its key
  changes only with the membership, so it cannot rotate or be revoked here.
- ``user``: registered by an admin, with roles from :data:`ROLES` (``capture``: a capturing
  system of the member, which signs provenance stamps: :mod:`.provenance`).

Account ids are self-certifying (``did:key`` of the first signing key) and stay the same when
the key rotates; from then on the state, not the id, says which key signs. A key is bound to
at most one account, ever (``acctkey/`` index), and a rotation carries a proof that the sender
holds the new key, so nobody can squat a key someone else is about to register.
"""

from __future__ import annotations

import functools
from typing import Any

from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.identity.genesis import Genesis
from mdtp.node.identity.keys import verify_signature
from mdtp.node.ledger.machine import BlockContext, Handler, Ledger, self_certifying_key
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, layout
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import PUBLIC_KEY_LEN, SIGNATURE_LEN, Fields
from mdtp.node.ledger.tx import Tx, canonical

ROLES = ("supplier", "consumer", "reviewer", "auditor", "capture")
DISPLAY_NAME_MAX_LEN = 100
REVOKE_REASON_MAX_LEN = 500
ROTATION_TAG = b"mdtp/v1/rotate\x00"


# ---- reads shared by every module ------------------------------------------------------


def load_account(state: ReadableKV, account_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = layout.read(state, layout.account_key(account_id))
    return record


def require_active(state: ReadableKV, account_id: str, field: str) -> dict[str, Any]:
    """The account named by a body field; refused if unknown or revoked."""
    record = load_account(state, account_id)
    if record is None:
        refuse("unknown_account", f"{field}: no account {account_id}")
    if record["status"] != "active":
        refuse("account_revoked", f"{field}: account {account_id} is revoked")
    return record


def has_role(record: dict[str, Any], role: str) -> bool:
    assert role in ROLES
    return record["kind"] == "user" and role in record["roles"]


def node_account_of(state: ReadableKV, member_id: str) -> str | None:
    member = layout.read(state, layout.member_key(member_id))
    return None if member is None else str(member["node_account"])


def resolve_key(state: Overlay, account_id: str) -> tuple[bytes | None, str]:
    """Key resolver for :class:`Ledger`: the state's key for a known account (rotated or
    revoked), else the key the did:key id itself names, with status ``unregistered``.

    The fallback keeps the other applications on the same ledger (``note.set`` and its load
    generator) open to any self-certifying account; every trading handler is wrapped in
    :func:`registered_only`, so trading still needs an account registered by an admin.
    """
    raw = state.get(layout.account_key(account_id))
    if raw is None:
        key, status = self_certifying_key(state, account_id)
        return key, "unregistered" if key is not None else status
    return _key_and_status(raw)


@functools.lru_cache(maxsize=1024)
def _key_and_status(raw_record: bytes) -> tuple[bytes, str]:
    """(public key, status) of an encoded account record: a function of its bytes alone,
    so remembering the last records decoded (at most ~1 MB) changes no result, and the
    sender of every transaction in a block or an admitted batch is decoded once."""
    record = layout.decode(raw_record)
    return bytes(record["public_key"]), str(record["status"])


def registered_only(handler: Handler) -> Handler:
    """``handler`` behind a check that the sender is a registered account."""

    @functools.wraps(handler)
    def guarded(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
        if load_account(state, tx.sender) is None:
            refuse("not_registered", f"{tx.sender} is not registered by a member admin")
        handler(ctx, state, tx)

    return guarded


def rotation_proof_message(chain_id: str, account_id: str, new_public_key: bytes) -> bytes:
    return ROTATION_TAG + canonical([chain_id, account_id, new_public_key])


def rotation_proof(new_signer: Any, chain_id: str, account_id: str) -> bytes:
    """The ``proof`` of ``account.rotate_key``: the new key signs (chain, account, new key)."""
    message = rotation_proof_message(chain_id, account_id, new_signer.public_key)
    signature: bytes = new_signer.sign(message)
    return signature


# ---- genesis ---------------------------------------------------------------------------


def _account(
    account_id: str,
    *,
    kind: str,
    member: str,
    public_key: bytes,
    encryption_public_key: bytes,
    roles: list[str],
    display_name: str,
    registered: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": account_id,
        "kind": kind,
        "member": member,
        "roles": roles,
        "display_name": display_name,
        "public_key": public_key,
        "encryption_public_key": encryption_public_key,
        "key_version": 1,
        "status": "active",
        "registered": registered,
        "revoked": None,
    }


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """Member records, a node account per member and the genesis admin accounts."""
    writes: dict[bytes, bytes] = {}

    def put_account(record: dict[str, Any]) -> None:
        key = layout.account_key(record["id"])
        if key in writes:
            raise ValueError(f"genesis binds account {record['id']} twice")
        writes[key] = canonical(record)
        writes[layout.account_key_index(record["public_key"])] = record["id"].encode()

    for member in genesis.members:
        node_key = bytes.fromhex(member.node_public_key)
        node_account = account_id_from_public_key(node_key)
        writes[layout.member_key(member.id)] = canonical(
            {"id": member.id, "name": member.name, "node_account": node_account}
        )
        put_account(
            _account(
                node_account,
                kind="node",
                member=member.id,
                public_key=node_key,
                encryption_public_key=b"",
                roles=[],
                display_name=f"node {member.id}"[:DISPLAY_NAME_MAX_LEN],
                registered=None,
            )
        )
    for admin in genesis.admins:
        put_account(
            _account(
                admin.account_id,
                kind="admin",
                member=admin.member,
                public_key=bytes.fromhex(admin.public_key),
                encryption_public_key=bytes.fromhex(admin.encryption_public_key),
                roles=[],
                display_name=f"admin of {admin.member}"[:DISPLAY_NAME_MAX_LEN],
                registered=None,
            )
        )
    return writes


# ---- handlers --------------------------------------------------------------------------


def _sender(state: Overlay, tx: Tx) -> dict[str, Any]:
    record = load_account(state, tx.sender)
    # The execution loop already resolved the sender's key through this same state.
    assert record is not None and record["status"] == "active", tx.sender
    return record


def _claim_key(state: Overlay, public_key: bytes, account_id: str) -> None:
    index = layout.account_key_index(public_key)
    if state.get(index) is not None:
        refuse("key_in_use", f"public_key {public_key.hex()} is already bound to an account")
    state.put(index, account_id.encode())


def account_register(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    account_id = f.account_id("account_id")
    public_key = f.blob("public_key", size=PUBLIC_KEY_LEN)
    encryption_public_key = f.blob("encryption_public_key", size=PUBLIC_KEY_LEN)
    roles = f.string_list("roles", max_items=len(ROLES), min_items=1, options=ROLES)
    display_name = f.text("display_name", min_len=1, max_len=DISPLAY_NAME_MAX_LEN)
    f.finish()
    admin = _sender(state, tx)
    if admin["kind"] != "admin":
        refuse("not_admin", "only a member admin registers accounts")
    if account_id_from_public_key(public_key) != account_id:
        refuse("account_id_mismatch", "account_id must be the did:key of public_key")
    if load_account(state, account_id) is not None:
        refuse("account_exists", f"account {account_id} is already registered")
    _claim_key(state, public_key, account_id)
    registered = {
        "height": ctx.height,
        "time_ms": ctx.timestamp_ms,
        "tx_id": tx.id,
        "by": tx.sender,
    }
    state.put_obj(
        layout.account_key(account_id),
        _account(
            account_id,
            kind="user",
            member=admin["member"],
            public_key=public_key,
            encryption_public_key=encryption_public_key,
            roles=sorted(roles),
            display_name=display_name,
            registered=registered,
        ),
    )
    audit.record(
        ctx,
        state,
        tx,
        [("account", account_id), ("account", tx.sender)],
        f"registered {account_id} for {admin['member']} as {', '.join(sorted(roles))}",
    )


def account_rotate_key(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    public_key = f.blob("public_key", size=PUBLIC_KEY_LEN)
    proof = f.blob("proof", size=SIGNATURE_LEN)
    encryption_public_key = (
        f.blob("encryption_public_key", size=PUBLIC_KEY_LEN)
        if f.has("encryption_public_key")
        else None
    )
    f.finish()
    record = _sender(state, tx)
    if record["kind"] == "node":
        refuse("node_account", "a node key changes with the membership, not by rotation")
    message = rotation_proof_message(ctx.chain_id, tx.sender, public_key)
    if not verify_signature(public_key, message, proof):
        refuse("bad_proof", "proof must be the new key's signature of (chain, account, key)")
    _claim_key(state, public_key, tx.sender)
    record["public_key"] = public_key
    record["key_version"] += 1
    if encryption_public_key is not None:
        record["encryption_public_key"] = encryption_public_key
    state.put_obj(layout.account_key(tx.sender), record)
    audit.record(
        ctx,
        state,
        tx,
        [("account", tx.sender)],
        f"rotated to key {public_key.hex()[:16]}... (key version {record['key_version']})",
    )


def account_revoke(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    account_id = f.account_id("account_id")
    reason = f.text("reason", max_len=REVOKE_REASON_MAX_LEN)
    f.finish()
    sender = _sender(state, tx)
    target = require_active(state, account_id, "account_id")
    if target["kind"] == "node":
        refuse("node_account", "a node account leaves only with its member")
    by_self = account_id == tx.sender
    by_admin = sender["kind"] == "admin" and sender["member"] == target["member"]
    if not (by_self or by_admin):
        refuse("not_admin", "only the account itself or an admin of its member revokes it")
    target["status"] = "revoked"
    target["revoked"] = {
        "height": ctx.height,
        "time_ms": ctx.timestamp_ms,
        "tx_id": tx.id,
        "by": tx.sender,
        "reason": reason,
    }
    state.put_obj(layout.account_key(account_id), target)
    audit.record(
        ctx,
        state,
        tx,
        [("account", account_id), ("account", tx.sender)],
        f"revoked {account_id}" + (f": {reason}" if reason else ""),
    )


def register(ledger: Ledger) -> None:
    ledger.register("account.register", registered_only(account_register))
    ledger.register("account.rotate_key", registered_only(account_rotate_key))
    ledger.register("account.revoke", registered_only(account_revoke))
