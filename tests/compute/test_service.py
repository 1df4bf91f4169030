"""The supplier's query server on a real ledger state: who may ask is decided before any SQL
is parsed, a refused request claims no nonce, and only the contract's own consumer's
requests count against its refusal tally, within bounds no one requester can exhaust."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.compute import service
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
    # neither the forged request nor the stranger's counts against c1: anyone could send one
    assert bed.server.refusals("c1") == {}
    assert bed.server.refusals("c2") == {"not_clean_room": 1}
    assert bed.server.refusals("nope") == {}
    # the tally is kept in the chunk index: a restarted server reads it back
    assert QueryServer(**bed.parts).refusals("c2") == {"not_clean_room": 1}


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


def test_only_the_contracts_own_consumer_counts_against_its_tally(bed: Bed) -> None:
    m = bed.market
    stranger = m.chain.user("consumer", member="m2", name="stranger")
    star = "SELECT * FROM data"
    for _ in range(3):  # validly signed, but not c1's consumer: any account could
        assert bed.ask(stranger, star) == "not_consumer"
    assert bed.ask(stranger, star, contract="c2") == "not_consumer"
    assert bed.server.refusals("c1") == {} and bed.server.refusals("c2") == {}
    assert bed.ask(m.consumer, star, contract="c2") == "not_clean_room"
    assert bed.server.refusals("c2") == {"not_clean_room": 1}
    # a node that does not serve the contract keeps no tally of it either
    counts = bed.parts["store"].db.prefixed_db(b"qr-m3/")
    other = QueryServer(**{**bed.parts, "node_id": "m3", "counts": counts})
    other.on_request("m2", "compute.req", {"qid": b"q" * 16, "req": _signed(m.consumer, "c2")})
    assert bed.sent.pop()[2]["reason"] == "dataset_unavailable"
    assert other.refusals("c2") == {} and list(counts) == []


def test_made_up_contract_ids_never_fill_the_tracked_contracts(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CONTRACTS_TRACKED_MAX", 5)
    m = bed.market
    stranger = m.chain.user("consumer", member="m2", name="stranger")
    for i in range(10):  # signed frames naming contracts nobody holds
        assert bed.ask(stranger, "SELECT 1", contract=f"made-up-{i}") == "unknown_contract"
    assert list(bed.parts["counts"]) == [], "nothing persisted"
    assert bed.ask(m.consumer, "SELECT 1", contract="c2") == "not_clean_room"
    assert bed.server.refusals("c2") == {"not_clean_room": 1}


def test_no_one_consumer_exhausts_the_tracked_contracts(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CONTRACTS_TRACKED_MAX", 4)
    monkeypatch.setattr(service, "CONTRACTS_TRACKED_PER_CONSUMER_MAX", 2)
    m = bed.market
    ids = [f"o{i}" for i in range(4)]
    period = {"use_start_ms": NOW - DAY_MS, "use_end_ms": NOW + DAY_MS}
    for contract_id in ids:  # a consumer can make as many offers as it likes
        m.offer(contract_id, by=m.consumer, disposal_deadline_ms=NOW + 2 * DAY_MS, **period)
        assert bed.ask(m.consumer, "SELECT 1", contract=contract_id) == "not_active"
    assert [bool(bed.server.refusals(c)) for c in ids] == [True, True, False, False]
    assert bed.ask(m.consumer, "SELECT 1", contract="o0") == "not_active"
    assert bed.server.refusals("o0") == {"not_active": 2}, "a tracked contract still counts"
    other = m.chain.user("consumer", member="m2", name="other")
    body = m.offer_body("p0", disposal_deadline_ms=NOW + 2 * DAY_MS, **period)
    m.chain.ok(m.supplier, "contract.offer", {**body, "consumer": other.account_id})
    assert bed.ask(other, "SELECT 1", contract="p0") == "not_active"
    assert bed.server.refusals("p0") == {"not_active": 1}
    # the bound holds across a restart: the tracked contracts are read back by consumer
    restarted = QueryServer(**bed.parts)
    bed.server = restarted
    assert bed.ask(m.consumer, "SELECT 1", contract="o2") == "not_active"
    assert restarted.refusals("o2") == {}


def test_a_tally_kept_before_these_rules_is_cleaned_on_first_use(bed: Bed) -> None:
    counts = bed.parts["counts"]
    one = (1).to_bytes(8, "big")
    for key in (b"nope\x00unknown_contract", b"c1\x00not_consumer", b"c1\x00busy"):
        counts.put(key, one)
    server = QueryServer(**bed.parts)
    assert server.refusals("c1") == {"busy": 1}
    assert server.refusals("nope") == {}
    assert [k for k, _ in counts] == [b"c1\x00busy"]


def _signed(signer: Any, contract: str) -> bytes:
    return sign_query_request(
        signer,
        chain_id=CHAIN_ID,
        contract_id=contract,
        sql="SELECT 1",
        expires_at_ms=int(time.time() * 1000) + 60_000,
    )
