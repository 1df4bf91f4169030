"""State transfer's signature checks in worker processes (``node/txpool/sigworkers.py``): the
same verdicts as ``decode_tx`` on the threads, and a worker killed mid-life costs a batch on
the threads, never a wrong verdict or a stuck catch-up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import Tx, TxError, canonical, sign_tx
from mdtp.node.ops.bench import child_pids
from mdtp.node.ops.cluster import process_alive
from mdtp.node.supervisor import Supervisor
from mdtp.node.txpool import sigworkers
from mdtp.node.txpool.sigverify import BatchVerifier

CHAIN = "chain-w"


def note(key: SigningKey, nonce: int, value: bytes = b"v", chain: str = CHAIN) -> bytes:
    return sign_tx(
        key,
        chain_id=chain,
        type_="note.set",
        sender=key.account_id,
        nonce=nonce,
        expires_at_ms=10**13,
        body={"key": f"k{nonce}", "value": value},
    )


def batch() -> list[bytes]:
    """Good ones, and one of every way a certified block's transaction can be bad."""
    key, other = SigningKey.generate(), SigningKey.generate()
    good = [note(key, n) for n in range(1, 40)]
    forged = good[0][:-1] + bytes([good[0][-1] ^ 1])
    unsigned, _, signature = msgpack.unpackb(good[1])
    wrong_key = canonical([unsigned, other.public_key, signature])  # well formed, not its key
    # a bad signature on a non-canonical envelope: the form error wins, as in decode_tx
    non_canonical = forged[:-66] + b"\xc5\x00\x40" + forged[-64:]
    return [
        *good,
        forged,
        wrong_key,
        note(key, 99, chain="other"),
        non_canonical,
        b"\xc1",
        b"",
        canonical([b"x", b"short", b"sig"]),
        note(key, 100, value=b"x" * 2000),
    ]


def workers() -> set[int]:
    """This process's signature workers (its children started by ``spawn_main``; the other
    child a spawn context starts is multiprocessing's resource tracker)."""
    out = set()
    for pid in child_pids(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.add(pid)
    return out


def verdicts(out: list[Tx | TxError]) -> list[str]:
    return [r.signed_bytes.hex() if isinstance(r, Tx) else f"error:{r.reason}" for r in out]


async def _check(verifier: BatchVerifier, raws: list[bytes]) -> list[Tx | TxError]:
    return await verifier.check_certified(raws)


def test_the_workers_give_exactly_the_threads_verdicts() -> None:
    raws = batch()

    async def both() -> tuple[list[Tx | TxError], list[Tx | TxError], set[int]]:
        threads = BatchVerifier(CHAIN, 512)
        pooled = BatchVerifier(CHAIN, 512, workers=2, registry=CollectorRegistry())
        pooled.start(Supervisor(CollectorRegistry()))
        try:
            a = await _check(threads, raws)
            b = await _check(pooled, raws)
            return a, b, workers()
        finally:
            await threads.close()
            await pooled.close()

    on_threads, on_workers, children = asyncio.run(both())
    assert verdicts(on_workers) == verdicts(on_threads)
    reasons = [r.reason for r in on_workers if isinstance(r, TxError)]
    assert reasons == [
        "bad_signature",
        "bad_signature",
        "wrong_chain",
        "non_canonical",
        "malformed",
        "malformed",
        "malformed",
    ]
    assert sum(isinstance(r, Tx) for r in on_workers) == 40
    assert len(children) == 2  # the checks ran in worker processes


def test_a_killed_worker_costs_one_batch_on_the_threads_then_new_workers_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raws = batch()
    registry = CollectorRegistry()

    async def scenario() -> tuple[list[list[str]], set[int], set[int]]:
        verifier = BatchVerifier(CHAIN, 512, workers=2, registry=registry)
        verifier.start(Supervisor(CollectorRegistry()))
        try:
            first = await _check(verifier, raws)
            before = workers()
            for pid in before:
                os.kill(pid, signal.SIGKILL)
            second = await _check(verifier, raws)  # the pool is broken: checked on threads
            third = await _check(verifier, raws)  # still within RESPAWN_S: threads again
            monkeypatch.setattr(sigworkers, "RESPAWN_S", 0.0)
            fourth = await _check(verifier, raws)  # new workers
            after = workers()
            return [verdicts(r) for r in (first, second, third, fourth)], before, after
        finally:
            await verifier.close()

    results, before, after = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert all(r == results[0] for r in results)
    assert before and after and not before & after
    failures = registry.get_sample_value("mdtp_sigverify_worker_failures_total")
    assert failures == 1


def test_a_hung_worker_is_killed_and_its_batch_checked_on_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raws = batch()
    registry = CollectorRegistry()
    monkeypatch.setattr(sigworkers, "ANSWER_S_BASE", 1.0)

    async def scenario() -> tuple[list[str], list[str], set[int]]:
        verifier = BatchVerifier(CHAIN, 512, workers=2, registry=registry)
        verifier.start(Supervisor(CollectorRegistry()))
        try:
            first = await _check(verifier, raws)
            stopped = workers()
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)  # alive, but never answers
            second = await _check(verifier, raws)
            return verdicts(first), verdicts(second), stopped
        finally:
            await verifier.close()

    first, second, stopped = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert second == first
    assert registry.get_sample_value("mdtp_sigverify_worker_failures_total") == 1
    deadline = time.monotonic() + 10
    while any(process_alive(p) for p in stopped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(p) for p in stopped), "the hung workers were left running"


NODE_THAT_DIES = """
import asyncio, os, sys
from prometheus_client import CollectorRegistry
from mdtp.node.supervisor import Supervisor
from mdtp.node.txpool.sigverify import BatchVerifier
from tests.node.test_sigworkers import batch, workers

async def main():
    verifier = BatchVerifier("chain-w", 512, workers=2, registry=CollectorRegistry())
    verifier.start(Supervisor(CollectorRegistry()))
    await verifier.check_certified(batch())
    print(" ".join(map(str, sorted(workers()))), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_the_workers_of_a_killed_node_end() -> None:
    """A node killed outright cannot stop its workers; they notice and end by themselves
    (a worker holds its own queue's pipe, so it would otherwise wait for work forever)."""
    root = Path(__file__).resolve().parents[2]
    node = subprocess.Popen(
        [sys.executable, "-c", NODE_THAT_DIES], stdout=subprocess.PIPE, cwd=root
    )
    assert node.stdout is not None
    try:
        pids = [int(p) for p in node.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        node.kill()
        node.wait()
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if process_alive(p)]
    assert not alive, f"workers {alive} outlived their node"
