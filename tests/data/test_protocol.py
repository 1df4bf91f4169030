"""Fetch requests: signature by the account's current key, id grammar, expiry."""

from __future__ import annotations

import pytest

from mdtp.node.data.protocol import (
    FETCH_TAG,
    Refused,
    check_expiry,
    check_signature,
    decode_fetch_request,
    sign_fetch_request,
)
from mdtp.node.identity.keys import SigningKey


def _request(key: SigningKey, **kw: object) -> bytes:
    args: dict[str, object] = {
        "chain_id": "chain",
        "contract_id": "c1",
        "first_chunk": 0,
        "last_chunk": 9,
        "expires_at_ms": 2_000,
    }
    args.update(kw)
    return sign_fetch_request(key, **args)  # type: ignore[arg-type]


def test_request_signed_by_the_account_key_decodes_and_verifies() -> None:
    key = SigningKey.generate()
    req = decode_fetch_request(_request(key), "chain")
    assert (req.contract_id, req.first_chunk, req.last_chunk) == ("c1", 0, 9)
    assert req.requester == key.account_id
    check_signature(req.envelope, FETCH_TAG, key.public_key)


def test_request_signed_by_another_key_is_bad_signature() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    req = decode_fetch_request(_request(other), "chain")
    with pytest.raises(Refused) as e:
        check_signature(req.envelope, FETCH_TAG, key.public_key)
    assert e.value.reason == "bad_signature"


def test_request_with_a_flipped_signature_bit_is_bad_signature() -> None:
    key = SigningKey.generate()
    raw = bytearray(_request(key))
    raw[-1] ^= 1
    req = decode_fetch_request(bytes(raw), "chain")
    with pytest.raises(Refused) as e:
        check_signature(req.envelope, FETCH_TAG, key.public_key)
    assert e.value.reason == "bad_signature"


def test_garbage_and_other_chains_are_refused_by_reason() -> None:
    with pytest.raises(Refused) as e:
        decode_fetch_request(b"\x93garbage", "chain")
    assert e.value.reason == "malformed"
    with pytest.raises(Refused) as e:
        decode_fetch_request(_request(SigningKey.generate()), "other")
    assert e.value.reason == "wrong_chain"


def test_expired_request_and_request_expiring_too_far_ahead_are_refused() -> None:
    with pytest.raises(Refused) as e:
        check_expiry(1_000, 1_000, 300_000)
    assert e.value.reason == "request_expired"
    with pytest.raises(Refused) as e:
        check_expiry(1_000_000, 1_000, 300_000)
    assert e.value.reason == "expiry_too_far"
    check_expiry(2_000, 1_000, 300_000)


@pytest.mark.parametrize(
    "fields",
    [
        {"contract_id": "c1\nrefused everything by admin"},
        {"contract_id": "../../pwn"},
        {"contract_id": "x" * 65},
    ],
)
def test_ids_outside_the_ledger_grammar_are_refused_before_any_lookup(
    fields: dict[str, object],
) -> None:
    with pytest.raises(Refused) as e:
        decode_fetch_request(_request(SigningKey.generate(), **fields), "chain")
    assert e.value.reason == "bad_id"


def test_a_requester_that_is_not_an_account_id_is_refused() -> None:
    class Forger:
        public_key = SigningKey.generate().public_key
        account_id = "did:key:z6Mk\n2024 audit: all good"

        def sign(self, message: bytes) -> bytes:
            return bytes(64)

    with pytest.raises(Refused) as e:
        decode_fetch_request(_request(Forger()), "chain")  # type: ignore[arg-type]
    assert e.value.reason == "bad_id"
