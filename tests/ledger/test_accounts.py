from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger import notes
from mdtp.node.ledger.machine import nonce_key
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.accounts import rotation_proof
from tests.ledger.helpers import CHAIN_ID, Chain, register_body


def rotate_body(new: SigningKey, account_id: str) -> dict[str, object]:
    return {"public_key": new.public_key, "proof": rotation_proof(new, CHAIN_ID, account_id)}


def test_genesis_holds_admins_node_accounts_and_members():
    chain = Chain()
    for m in ("m1", "m2"):
        admin = layout.read(chain.kv, layout.account_key(chain.admins[m].account_id))
        assert (admin["kind"], admin["member"], admin["status"]) == ("admin", m, "active")
        node_id = account_id_from_public_key(chain.node_keys[m].public_key)
        node = layout.read(chain.kv, layout.account_key(node_id))
        assert (node["kind"], node["member"]) == ("node", m)
        assert layout.read(chain.kv, layout.member_key(m))["node_account"] == node_id


def test_admin_registers_an_account_that_then_signs_with_its_own_key():
    chain = Chain()
    user = chain.user("supplier", "consumer", name="Acme QA")
    record = layout.read(chain.kv, layout.account_key(user.account_id))
    assert record["roles"] == ["consumer", "supplier"]
    assert record["member"] == "m1"
    assert record["encryption_public_key"] == user.encryption_public_key
    assert record["registered"]["by"] == chain.admins["m1"].account_id
    # The new account can send: a harmless refused tx proves the key and nonce were accepted.
    chain.refused("unknown_dataset", user, "dataset.withdraw", {"dataset_id": "x", "reason": ""})


def test_an_unregistered_key_cannot_trade():
    chain = Chain()
    stranger = SigningKey.generate(with_encryption=True)
    for type_, body in [
        ("dataset.withdraw", {"dataset_id": "x", "reason": ""}),
        ("account.register", register_body(stranger, ["consumer"])),
    ]:
        result = chain.refused("not_registered", stranger, type_, body)
        assert stranger.account_id in result.detail


def test_a_key_no_member_registered_writes_nothing():
    chain = Chain()
    notes.register(chain.ledger)
    stranger = SigningKey.generate()
    result = chain.submit(stranger, "note.set", {"key": "k", "value": b"v"})
    assert (result.ok, result.reason) == (False, "not_registered")
    assert chain.kv.get(notes.note_key(stranger.account_id, "k")) is None
    assert chain.kv.get(nonce_key(stranger.account_id)) is None  # not even a nonce
    # a registered account writes notes; once it rotated away from its first key, that key
    # is refused.
    user = chain.user("consumer")
    chain.ok(user, "note.set", {"key": "k", "value": b"v"})
    assert chain.kv.get(notes.note_key(user.account_id, "k")) == b"v"
    new = SigningKey.generate()
    chain.ok(user, "account.rotate_key", rotate_body(new, user.account_id))
    result = chain.submit(user, "note.set", {"key": "k", "value": b"v"})
    assert (result.ok, result.reason) == (False, "wrong_key")


def test_a_malformed_sender_id_is_unknown():
    chain = Chain()
    raw = chain.tx(SigningKey.generate(), "note.set", {"key": "k", "value": b""}, sender="bob")
    result = chain.run(raw)[0]
    assert (result.ok, result.reason) == (False, "unknown_sender")


def test_only_an_admin_registers_accounts():
    chain = Chain()
    user = chain.user("consumer")
    other = SigningKey.generate(with_encryption=True)
    chain.refused("not_admin", user, "account.register", register_body(other, ["consumer"]))


def test_register_refuses_an_account_id_not_derived_from_the_key():
    chain = Chain()
    key, other = SigningKey.generate(with_encryption=True), SigningKey.generate()
    body = {**register_body(key, ["consumer"]), "account_id": other.account_id}
    chain.refused("account_id_mismatch", chain.admins["m1"], "account.register", body)


def test_register_refuses_an_existing_account():
    chain = Chain()
    user = chain.user("consumer")
    body = register_body(user, ["supplier"])
    chain.refused("account_exists", chain.admins["m2"], "account.register", body)


def test_register_refuses_a_key_another_account_rotated_to():
    chain = Chain()
    user = chain.user("consumer")
    new = SigningKey.generate(with_encryption=True)
    chain.ok(user, "account.rotate_key", rotate_body(new, user.account_id))
    body = register_body(new, ["consumer"])
    chain.refused("key_in_use", chain.admins["m1"], "account.register", body)


def test_register_validates_roles_and_names():
    chain = Chain()
    key = SigningKey.generate(with_encryption=True)
    admin = chain.admins["m1"]
    for body, needle in [
        (register_body(key, ["admin"]), "roles[0]"),
        (register_body(key, []), "roles"),
        (register_body(key, ["consumer", "consumer"]), "roles"),
        (register_body(key, ["consumer"], name=""), "display_name"),
        (register_body(key, ["consumer"], name="x" * 101), "display_name"),
        (register_body(key, ["consumer"], name="evil\x1b[2J"), "display_name"),
        ({**register_body(key, ["consumer"]), "public_key": b"short"}, "public_key"),
        ({**register_body(key, ["consumer"]), "colour": "red"}, "colour: unknown field"),
    ]:
        result = chain.refused("bad_body", admin, "account.register", body)
        assert result.detail.startswith(needle), result.detail


def test_rotated_key_replaces_the_old_one_and_the_id_stays():
    chain = Chain()
    user = chain.user("consumer")
    new = SigningKey.generate(with_encryption=True)
    chain.ok(user, "account.rotate_key", rotate_body(new, user.account_id))
    record = layout.read(chain.kv, layout.account_key(user.account_id))
    assert (record["public_key"], record["key_version"]) == (new.public_key, 2)
    old = chain.submit(user, "dataset.withdraw", {"dataset_id": "x", "reason": ""})
    assert old.reason == "wrong_key"
    body = {"dataset_id": "x", "reason": ""}
    chain.refused("unknown_dataset", new, "dataset.withdraw", body, sender=user.account_id)


def test_a_rotation_and_a_revocation_count_for_the_rest_of_their_own_block():
    # the block's read cache and the decoded-key cache must not serve the record as it was
    # before the block's own writes
    chain = Chain()
    user, other = chain.user("consumer"), chain.user("consumer", name="other")
    new = SigningKey.generate(with_encryption=True)
    body = {"dataset_id": "x", "reason": ""}
    results = chain.run(
        chain.tx(user, "dataset.withdraw", body),
        chain.tx(user, "account.rotate_key", rotate_body(new, user.account_id)),
        chain.tx(new, "dataset.withdraw", body, sender=user.account_id),
        chain.tx(user, "dataset.withdraw", body),
        chain.tx(other, "dataset.withdraw", body),
        chain.tx(other, "account.revoke", {"account_id": other.account_id, "reason": "lost"}),
        chain.tx(other, "dataset.withdraw", body),
    )
    assert [r.reason for r in results] == [
        "unknown_dataset",
        "",
        "unknown_dataset",
        "wrong_key",
        "unknown_dataset",
        "",
        "revoked",
    ]


def test_rotation_needs_a_proof_by_the_new_key():
    chain = Chain()
    user = chain.user("consumer")
    new, impostor = SigningKey.generate(), SigningKey.generate()
    body = {
        "public_key": new.public_key,
        "proof": rotation_proof(impostor, CHAIN_ID, user.account_id),
    }
    chain.refused("bad_proof", user, "account.rotate_key", body)


def test_rotation_to_a_key_bound_elsewhere_is_refused():
    chain = Chain()
    user = chain.user("consumer")
    admin = chain.admins["m1"]
    chain.refused("key_in_use", user, "account.rotate_key", rotate_body(admin, user.account_id))


def test_node_accounts_neither_rotate_nor_get_revoked():
    chain = Chain()
    node = chain.node_keys["m1"]
    new = SigningKey.generate()
    chain.refused("node_account", node, "account.rotate_key", rotate_body(new, node.account_id))
    body = {"account_id": node.account_id, "reason": ""}
    chain.refused("node_account", chain.admins["m1"], "account.revoke", body)


def test_an_account_revokes_itself_and_then_cannot_send():
    chain = Chain()
    user = chain.user("consumer")
    chain.ok(user, "account.revoke", {"account_id": user.account_id, "reason": "key lost"})
    result = chain.submit(user, "dataset.withdraw", {"dataset_id": "x", "reason": ""})
    assert (result.ok, result.reason) == (False, "revoked")


def test_the_members_admin_revokes_an_account():
    chain = Chain()
    user = chain.user("consumer")
    chain.ok(chain.admins["m1"], "account.revoke", {"account_id": user.account_id, "reason": ""})
    record = layout.read(chain.kv, layout.account_key(user.account_id))
    assert record["status"] == "revoked"
    assert record["revoked"]["by"] == chain.admins["m1"].account_id


def test_another_members_admin_or_user_cannot_revoke():
    chain = Chain()
    user, other = chain.user("consumer"), chain.user("consumer")
    body = {"account_id": user.account_id, "reason": ""}
    chain.refused("not_admin", chain.admins["m2"], "account.revoke", body)
    chain.refused("not_admin", other, "account.revoke", body)


def test_revoking_twice_or_an_unknown_account_is_refused():
    chain = Chain()
    user = chain.user("consumer")
    admin = chain.admins["m1"]
    chain.ok(admin, "account.revoke", {"account_id": user.account_id, "reason": ""})
    body = {"account_id": user.account_id, "reason": ""}
    chain.refused("account_revoked", admin, "account.revoke", body)
    ghost = SigningKey.generate().account_id
    chain.refused("unknown_account", admin, "account.revoke", {"account_id": ghost, "reason": ""})
