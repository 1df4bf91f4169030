"""NodeClient's retries against a real HTTPS server (aiohttp's test server, TLS with the
consortium's kind of certificates) that answers "not now" before it answers: Retry-After is
honoured (capped), backoff is jittered without one, attempts and total wait are bounded,
only idempotent requests are retried, and a transaction the node already committed is
reported with its status."""

from __future__ import annotations

import datetime
import hashlib
import time

import msgpack
import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.retry import NO_RETRY, RetryEvent, RetryPolicy, parse_retry_after
from tests.sdk.fake_node import Answer, FakeNode, Tls

RAW = b"\x93signed transaction bytes"
TX_ID = hashlib.sha256(RAW).hexdigest()
PENDING: Answer = (202, {"id": TX_ID, "status": "pending"}, {})


def full(retry_after: str | None = "1", status: int = 503, reason: str = "mempool_full") -> Answer:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return (status, {"error": reason, "message": "not now"}, headers)


def client(address: str, tls: Tls, events: list[RetryEvent], **policy: object) -> NodeClient:
    return NodeClient(
        address,
        ca=tls.ca,
        cert=tls.cert,
        key=tls.key,
        retry=RetryPolicy(**policy),  # type: ignore[arg-type]
        on_retry=events.append,
    )


async def test_a_503_with_retry_after_is_retried_after_that_long(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("POST", "/v1/tx", full("1"), PENDING)
    events: list[RetryEvent] = []
    async with client(address, tls, events) as node:
        started = time.monotonic()
        doc = await node.submit(RAW)
        took = time.monotonic() - started
    assert doc == {"id": TX_ID, "status": "pending"}
    attempts = fake.requests("POST", "/v1/tx")
    assert [a.body for a in attempts] == [RAW, RAW]  # the same signed bytes again
    assert attempts[1].at - attempts[0].at >= 1.0
    assert took >= 1.0
    assert events == [RetryEvent("POST", "/v1/tx", 1, 1.0, 503, "mempool_full", 1.0)]


async def test_retry_after_is_capped_and_a_429_is_retried_too(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer(
        "POST",
        "/v1/tx",
        full("30", 429, "too_many_refused"),
        full("1", 503, "no_quorum"),
        PENDING,
    )
    events: list[RetryEvent] = []
    async with client(address, tls, events, retry_after_max_s=0.2) as node:
        await node.submit(RAW)
    assert [(e.attempt, e.wait_s, e.status, e.reason) for e in events] == [
        (1, 0.2, 429, "too_many_refused"),
        (2, 0.2, 503, "no_quorum"),
    ]
    assert len(fake.requests("POST", "/v1/tx")) == 3


async def test_without_retry_after_the_backoff_doubles_with_jitter(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("GET", "/v1/chain", full(None), full(None), full(None), (200, [], {}))
    events: list[RetryEvent] = []
    draws = iter([0.0, 1.0, 0.5])
    async with client(
        address, tls, events, backoff_base_s=0.1, backoff_max_s=0.3, uniform=lambda: next(draws)
    ) as node:
        assert await node.get("/v1/chain") == []
    # ceilings 0.1, 0.2, 0.3 (capped); each wait is half of it plus the jitter's share
    assert [round(e.wait_s, 6) for e in events] == [0.05, 0.2, 0.225]
    assert [e.retry_after_s for e in events] == [None, None, None]
    gaps = [b.at - a.at for a, b in zip(fake.seen, fake.seen[1:], strict=False)]
    assert all(gap >= e.wait_s for gap, e in zip(gaps, events, strict=True))


async def test_it_gives_up_after_max_attempts_with_the_last_answer(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("POST", "/v1/tx", *[full("0")] * 10)
    events: list[RetryEvent] = []
    async with client(address, tls, events, max_attempts=3) as node:
        with pytest.raises(ApiError) as e:
            await node.submit(RAW)
    assert (e.value.status, e.value.reason, e.value.retry_after_s) == (503, "mempool_full", 0.0)
    assert len(fake.requests("POST", "/v1/tx")) == 3 and len(events) == 2


async def test_it_gives_up_rather_than_wait_past_max_total_wait(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("POST", "/v1/tx", *[full("1")] * 10)
    events: list[RetryEvent] = []
    async with client(address, tls, events, max_total_wait_s=1.5) as node:
        started = time.monotonic()
        with pytest.raises(ApiError):
            await node.submit(RAW)
        assert time.monotonic() - started < 1.9  # the second wait of 1 s was not made
    assert len(fake.requests("POST", "/v1/tx")) == 2 and len(events) == 1


async def test_answers_that_are_not_not_now_and_unsafe_requests_are_not_retried(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("POST", "/v1/tx", (400, {"error": "bad_signature", "message": "no"}, {}))
    fake.answer("POST", "/v1/data/fetch", full("0"), (200, {}, {}))
    events: list[RetryEvent] = []
    async with client(address, tls, events) as node:
        with pytest.raises(ApiError) as e:
            await node.submit(RAW)
        assert e.value.reason == "bad_signature"
        with pytest.raises(ApiError) as e:  # a fetch request carries a nonce: not repeated
            await node._request("POST", "/v1/data/fetch", data=b"x")
        assert e.value.status == 503
    assert events == [] and len(fake.seen) == 2


async def test_no_retry_gives_every_answer_as_it_is(fake: FakeNode, address: str, tls: Tls) -> None:
    fake.answer("POST", "/v1/tx", full("1"), (400, {"error": "duplicate", "message": ""}, {}))
    async with NodeClient(address, ca=tls.ca, cert=tls.cert, key=tls.key, retry=NO_RETRY) as n:
        with pytest.raises(ApiError) as e:
            await n.submit(RAW)
        assert (e.value.status, e.value.retry_after_s) == (503, 1.0)
        with pytest.raises(ApiError) as e:
            await n.submit(RAW)
        assert e.value.reason == "duplicate"


async def test_a_transaction_the_node_committed_already_is_answered_with_its_status(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    """The answer to the first attempt was lost; the copy sent again is a duplicate."""
    committed = {"id": TX_ID, "status": "committed", "height": 7, "index": 0, "reason": None}
    fake.answer("POST", "/v1/tx", full("0"), (400, {"error": "duplicate", "message": ""}, {}))
    fake.answer("GET", f"/v1/tx/{TX_ID}", (200, committed, {}))
    events: list[RetryEvent] = []
    async with client(address, tls, events) as node:
        assert await node.submit(RAW, wait=True) == committed
    assert len(events) == 1


async def test_a_batch_sends_again_only_what_was_refused_for_a_moment(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    raws = [RAW + bytes([i]) for i in range(4)]
    ids = [hashlib.sha256(r).hexdigest() for r in raws]
    done = [{"id": i, "status": "committed", "height": 3, "index": n} for n, i in enumerate(ids)]
    fake.answer(
        "POST",
        "/v1/txs",
        (
            200,
            {
                "results": [
                    done[0],
                    {"index": 1, "error": "bad_nonce", "message": "gone"},
                    {"index": 2, "error": "mempool_full", "message": "full"},
                    {"index": 3, "error": "mempool_full", "message": "full"},
                ]
            },
            {"Retry-After": "1"},
        ),
        (
            200,
            {"results": [{"index": 0, "error": "duplicate", "message": ""}, done[3]]},
            {},
        ),
    )
    fake.answer("GET", f"/v1/tx/{ids[2]}", (200, done[2], {}))
    events: list[RetryEvent] = []
    async with client(address, tls, events) as node:
        results = await node.submit_many(raws, wait=True)
    assert results == [
        done[0],
        {"index": 1, "error": "bad_nonce", "message": "gone"},
        done[2],
        done[3],
    ]
    second = fake.requests("POST", "/v1/txs")[1]
    assert msgpack.unpackb(second.body) == raws[2:]  # in order, nothing else
    assert second.query == {"wait": "1", "timeout": "30"}
    assert events == [RetryEvent("POST", "/v1/txs", 1, 1.0, 200, "mempool_full", 1.0)]


async def test_a_signed_read_is_signed_afresh_for_each_attempt(
    fake: FakeNode, address: str, tls: Tls
) -> None:
    fake.answer("GET", "/v1/contracts/c1", full(None, 429, "too_many_reads"), (200, {}, {}))
    reader = SigningKey.generate()
    events: list[RetryEvent] = []
    async with client(address, tls, events, backoff_base_s=0.01) as node:
        await node.get_signed("/v1/contracts/c1", reader)
    nonces = [s.headers["X-Mdtp-Nonce"] for s in fake.requests("GET", "/v1/contracts/c1")]
    assert len(nonces) == 2 and nonces[0] != nonces[1]  # a replayed nonce would be refused
    assert events[0].reason == "too_many_reads"


async def test_a_refused_connection_is_retried_then_raised(tls: Tls) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events: list[RetryEvent] = []
    node = client(f"127.0.0.1:{port}", tls, events, max_attempts=3, backoff_base_s=0.01)
    async with node:
        with pytest.raises(OSError):
            await node.submit(RAW)
    assert [(e.attempt, e.status) for e in events] == [(1, None), (2, None)]
    assert events[0].reason == "ClientConnectorError"


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    now = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-2") == 0.0
    assert parse_retry_after("Mon, 30 Nov 2026 12:00:04 GMT", now=now) == 4.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_a_policy_refuses_nonsense_and_never_means_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_total_wait_s"):
        RetryPolicy(max_total_wait_s=-1)
    assert NO_RETRY.next_wait(1, 0.0, 1.0) is None
    assert RetryPolicy(honour_retry_after=False, uniform=lambda: 0.0).wait_s(1, 9.0) == 0.125
