"""Fetch requests: signature by the account's current key, nonce replay, expiry."""

from __future__ import annotations

import pytest

from mdtp.node.data.protocol import (
    FETCH_TAG,
    NonceCache,
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


def test_nonce_is_accepted_once_until_it_expires() -> None:
    cache = NonceCache(10)
    cache.claim(b"n1", 2_000, 1_000)
    with pytest.raises(Refused) as e:
        cache.claim(b"n1", 2_000, 1_500)
    assert e.value.reason == "replayed_nonce"
    cache.claim(b"n1", 3_000, 2_001)  # the first expired: its request can no longer be valid


def test_full_nonce_cache_refuses_rather_than_forget_a_live_nonce() -> None:
    cache = NonceCache(2)
    cache.claim(b"a", 5_000, 1_000)
    cache.claim(b"b", 5_000, 1_000)
    with pytest.raises(Refused) as e:
        cache.claim(b"c", 5_000, 1_000)
    assert e.value.reason == "busy"
    with pytest.raises(Refused):
        cache.claim(b"a", 5_000, 1_000)
    cache.claim(b"c", 9_000, 5_001)  # expired entries make room
    assert len(cache) == 1
