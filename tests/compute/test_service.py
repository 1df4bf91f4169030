"""The supplier's query server on a real ledger state: who may ask is decided before any SQL
is parsed, a refused request claims no nonce, and only authentic requests count against a
contract's refusal tally."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.compute.engine import Engine, EngineLimits
from mdtp.node.compute.metrics import ComputeMetrics
from mdtp.node.compute.protocol import sign_query_request
from mdtp.node.compute.service import ComputeLimits, QueryServer
from mdtp.node.data.keystore import KeyStore
from mdtp.node.data.link import PeerLink
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.tasks import Tasks
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading.analysis import rule_hash
from mdtp.storage.chunkstore import ChunkStore
from tests.compute.attacks import rule
from tests.ledger.helpers import CHAIN_ID, DAY_MS, Market

NOW = int(time.time() * 1000)


@dataclass
class Record:
    timestamp_ms: int


class Ledger:
    def __init__(self, market: Market) -> None:
        self.market = market

    @property
    def state(self) -> Any:
        return self.market.chain.kv

    def tip(self) -> tuple[int, bytes]:
        return self.market.chain.height, b""

    def record(self, height: int) -> Record:
        return Record(self.market.chain.time_ms)

    def tx_location(self, tx_id: bytes) -> None:
        return None


@dataclass
class Bed:
    market: Market
    server: QueryServer
    replay: ReplayGuard
    sent: list[tuple[str, str, dict[str, Any]]]
    parts: dict[str, Any]  # what the server was built from (to build it again: a restart)

    def ask(self, signer: Any, sql: str, contract: str = "c1", peer: str = "m2") -> str:
        raw = sign_query_request(
            signer,
            chain_id=CHAIN_ID,
            contract_id=contract,
            sql=sql,
            expires_at_ms=int(time.time() * 1000) + 60_000,
        )
        self.server.on_request(peer, "compute.req", {"qid": b"q" * 16, "req": raw})
        _, kind, body = self.sent.pop()
        assert kind == "compute.refuse"
        return str(body["reason"])


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    market = Market()
    period = {"use_start_ms": NOW - DAY_MS, "use_end_ms": NOW + DAY_MS}
    period["disposal_deadline_ms"] = NOW + 2 * DAY_MS
    market.chain.time_ms = NOW - 60_000
    market.activate("c1", delivery_method="clean_room", analysis_rule=rule(), **period)
    market.activate("c2", **period)
    sent: list[tuple[str, str, dict[str, Any]]] = []

    def send(peer: str, kind: str, body: Any) -> bool:
        sent.append((peer, kind, body))
        return True

    store = ChunkStore(tmp_path / "chunks")
    replay = ReplayGuard(store.db.prefixed_db(b"q/"), 10, NOW)
    parts: dict[str, Any] = dict(
        node_id="m1",
        chain_id=CHAIN_ID,
        ledger=Ledger(market),
        submitter=None,  # nothing here is authorised to run
        store=store,
        keys=KeyStore(store, market.node),
        signer=None,
        link=PeerLink("m1", send, lambda *a: None),
        replay=replay,
        engine=Engine(tmp_path / "compute", EngineLimits()),
        pool=ThreadPoolExecutor(1),
        tasks=Tasks(),
        limits=ComputeLimits(),
        metrics=ComputeMetrics(CollectorRegistry()),
        counts=store.db.prefixed_db(b"qr/"),
    )
    server = QueryServer(**parts)
    return Bed(market, server, replay, sent, parts)


class Impostor:
    """Names the consumer as requester, signs with another key."""

    def __init__(self, named: SigningKey, key: SigningKey) -> None:
        self.account_id = named.account_id
        self.public_key = key.public_key
        self.sign = key.sign


def test_authority_is_decided_before_the_sql_is_parsed(bed: Bed) -> None:
    m = bed.market
    stranger = m.chain.user("consumer", member="m2", name="stranger")
    star = "SELECT * FROM data"
    assert bed.ask(Impostor(m.consumer, stranger), star) == "bad_signature"
    assert bed.ask(stranger, star) == "not_consumer"
    assert bed.ask(m.consumer, star, peer="m3") == "foreign_relay"
    assert bed.ask(m.consumer, star, contract="c2") == "not_clean_room"
    assert bed.ask(m.consumer, star, contract="nope") == "unknown_contract"
    assert bed.replay.held(m.consumer.account_id) == 0, "no refused request claims a nonce"
    # the forged request is not counted against the contract: anyone could send one
    assert bed.server.refusals("c1") == {"not_consumer": 1}
    assert bed.server.refusals("c2") == {"not_clean_room": 1}
    # the tally is kept in the chunk index: a restarted server reads it back
    assert QueryServer(**bed.parts).refusals("c1") == {"not_consumer": 1}


def test_a_query_beyond_the_budget_is_refused_before_it_runs(bed: Bed) -> None:
    m = bed.market
    m.chain.ok(
        m.node,
        "compute.receipt",
        {
            "contract_id": "c1",
            "request_id": b"r" * 32,
            "authorised_height": 1,
            "authorised_at_ms": NOW,
            "query_hash": b"q" * 32,
            "rule_hash": rule_hash(rule()),
            "result_hash": b"h" * 32,
            "rows_scanned": 1,
            "rows_returned": 1,
            "rows_suppressed": 0,
            "budget_used": 40,
        },
    )
    assert bed.ask(m.consumer, "SELECT COUNT(*) FROM data") == "budget_exhausted"


def test_the_relay_passes_on_only_results_that_match_their_receipt() -> None:
    import hashlib

    from mdtp.node.compute.reasons import QueryRefused
    from mdtp.node.compute.relay import _checked_result
    from mdtp.node.compute.result import RESULT_TAG, canonical_result

    def answer(result: object) -> dict[str, Any]:
        digest = hashlib.sha256(RESULT_TAG + result).hexdigest() if type(result) is bytes else ""
        return {"result": result, "receipt": {"result_hash": digest}}

    good = canonical_result(["m", "avg"], [["M1", 1.5]])
    checked = _checked_result(answer(good), "m1", 1024)
    assert (checked["columns"], checked["rows"]) == (["m", "avg"], [["M1", 1.5]])
    other = canonical_result(["m", "avg"], [["M1", 2.5]])
    for bad in (
        {**answer(good), "result": other},  # another table than the receipt's
        {**answer(good), "result": [["M1", 1.5]]},  # not the canonical bytes
        answer(b'{"columns":["m","avg"],"rows":[["M1",{"x":1}]]}'),  # not a result cell
        answer(b'{"columns":["m","avg"],"rows":[["M1"]]}'),  # ragged
        answer(b'{"columns":"m","rows":[]}'),
        answer(b"[" * 100_000),  # deeper than the parser goes
        answer(b"not json"),
    ):
        with pytest.raises(QueryRefused, match="bad_result"):
            _checked_result(bad, "m1", 2**20)
    with pytest.raises(QueryRefused, match="result_too_large"):
        _checked_result(answer(good), "m1", len(good) - 1)


def test_a_query_is_refused_while_an_overdue_invoice_suspends_access(bed: Bed) -> None:
    m = bed.market
    period = {"use_start_ms": NOW - DAY_MS, "use_end_ms": NOW + DAY_MS}
    billing = {"payment_due_ms": 0, "suspend_when_overdue": True}  # due at activation
    m.activate(
        "c3",
        delivery_method="clean_room",
        analysis_rule=rule(),
        billing=billing,
        disposal_deadline_ms=NOW + 2 * DAY_MS,
        **period,
    )
    assert bed.ask(m.consumer, "SELECT COUNT(*) FROM data", contract="c3") == "payment_overdue"
    assert bed.server.refusals("c3") == {"payment_overdue": 1}
    assert bed.replay.held(m.consumer.account_id) == 0
