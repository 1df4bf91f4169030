"""Every decoder of untrusted bytes answers with its typed error: never another exception,
never a hang. Inputs: random bytes, msgpack-shaped garbage and mutations of valid encodings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from hypothesis import HealthCheck, given, settings

from mdtp.consensus.errors import DecodeError
from mdtp.consensus.messages import decode_message, encode_message
from mdtp.node.errors import FrameError
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import TxError, decode_tx, sign_tx
from mdtp.node.p2p.frames import decode_payload, encode_frame, read_frame
from tests.consensus.helpers import commit, pre_prepare, prepare, signed
from tests.fuzz.strategies import untrusted

pytestmark = pytest.mark.faults

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
CHAIN = "fuzz-chain"
KEY = SigningKey.generate()
MAX_FRAME = 4096

VALID_TX = [
    sign_tx(
        KEY,
        chain_id=CHAIN,
        type_="note.set",
        sender=KEY.account_id,
        nonce=n,
        expires_at_ms=2**40,
        body={"key": "k", "value": b"v" * n},
    )
    for n in (1, 7)
]
_PP = signed(pre_prepare())
VALID_MESSAGES = [
    encode_message(m) for m in (_PP, signed(prepare(_PP, "n1")), signed(commit(_PP, "n2")))
]
VALID_FRAMES = [encode_frame("consensus", m, 1 << 20) for m in VALID_MESSAGES] + [
    encode_frame("txs", VALID_TX, 1 << 20)
]


@FUZZ
@given(untrusted([f[4:] for f in VALID_FRAMES]))
def test_frame_payload_decoder_raises_only_frame_error(data: bytes) -> None:
    try:
        kind, _ = decode_payload(data)
    except FrameError as e:
        assert e.reason == "undecodable"
    else:
        assert isinstance(kind, str) and 0 < len(kind) <= 32


async def _read_all(data: bytes) -> list[str]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    kinds = []
    for _ in range(len(data) + 1):  # every frame consumes at least its 4-byte header
        try:
            kind, _, _ = await read_frame(reader, MAX_FRAME)
            kinds.append(kind)
        except FrameError as e:
            if e.reason == "oversized_fatal":
                break
        except asyncio.IncompleteReadError:
            break
    return kinds


@FUZZ
@given(untrusted([*VALID_FRAMES, b"".join(VALID_FRAMES[:2])]))
def test_frame_stream_reader_ends_with_frame_error_or_eof_never_hangs(data: bytes) -> None:
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(_read_all(data), 10))
    assert time.monotonic() - started < 10


@FUZZ
@given(untrusted(VALID_TX))
def test_transaction_decoder_raises_only_tx_error(data: bytes) -> None:
    try:
        tx = decode_tx(data, chain_id=CHAIN)
    except TxError as e:
        assert e.reason
    else:
        assert tx.sender == KEY.account_id  # only a validly signed one gets through


@FUZZ
@given(untrusted(VALID_MESSAGES))
def test_consensus_message_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)  # anything else escapes and fails the test


def test_chunk_request_decoder_raises_only_refused() -> None:
    protocol = pytest.importorskip("mdtp.node.data.protocol")
    valid = [
        protocol.sign_fetch_request(
            KEY,
            chain_id=CHAIN,
            contract_id="c" * 64,
            first_chunk=0,
            last_chunk=3,
            expires_at_ms=2**40,
        )
    ]

    @FUZZ
    @given(untrusted(valid))
    def check(data: bytes) -> None:
        try:
            protocol.decode_fetch_request(data, CHAIN)
        except protocol.Refused as e:
            assert e.reason in protocol.REFUSALS

    check()
