"""The catalog's provenance filters, the supplier record and the dataspace exports, end to end:
the SDK calls the real API routes (``node.api.trading``, served by aiohttp) over a one-process
chain whose blocks the real ledger executes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mdtp.node.api import trading as trading_routes
from mdtp.node.identity.keys import SigningKey
from mdtp.node.interop import ids, odrl
from mdtp.node.ledger.trading import queries
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.trading import TradingClient
from tests.ledger.helpers import CHAIN_ID, DAY_MS, T0, Chain, dataset_body, quality, terms
from tests.ledger.test_provenance import CAPTURE_END, CAPTURE_START


class Store:
    """What the routes read of a block store, from the one-process chain."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.state = chain.kv

    def tip(self) -> tuple[int, bytes]:
        return self.chain.height, b""

    def record(self, height: int) -> Any:
        return SimpleNamespace(timestamp_ms=self.chain.time_ms)


class RoutesNode(NodeClient):
    """A node client whose reads go to the real routes and whose transactions run as blocks
    (the authorisation middleware is not installed: ``tests/api_contract`` covers it)."""

    def __init__(self, chain: Chain, http: TestClient[Any, Any]) -> None:  # no HTTPS session
        self.ledger = chain
        self.http = http
        self._chain_id: str | None = None
        self.reader: SigningKey | None = None

    async def status(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "id": "m1"}

    async def get(self, path: str, **params: str) -> Any:
        response = await self.http.get(path, params=params)
        doc = await response.json(content_type=None)
        if response.status != 200:
            raise ApiError(response.status, doc["error"], doc["message"])
        return {**doc, "_content_type": response.content_type}

    async def get_signed(
        self, /, path: str, reader: SigningKey | None = None, **params: str
    ) -> Any:
        return await self.get(path, **params)

    async def submit(
        self, raw_tx: bytes, *, wait: bool = False, timeout_s: float = 30
    ) -> dict[str, Any]:
        [result] = self.ledger.run(raw_tx)
        doc = {"status": "committed" if result.ok else "failed", "height": self.ledger.height}
        return {**doc, "index": result.index, "reason": result.reason or None}


class World:
    def __init__(self, chain: Chain, t: TradingClient) -> None:
        self.chain, self.t = chain, t
        self.supplier = chain.user("supplier", name="Acme Machining")
        self.consumer = chain.user("consumer", member="m2", name="Beta Analytics")
        self.camera = chain.user("capture", name="Line 3 gateway")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    chain = Chain()
    app = web.Application()
    trading_routes.add_routes(app, Store(chain), T0, None, chain_id=CHAIN_ID)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as http:
        yield World(chain, TradingClient(RoutesNode(chain, http)))


async def publish_stamped(
    w: World, dataset_id: str, *, site: str, line: str, completeness: int | None = None
) -> None:
    """The supplier publishes, the capturing system stamps what was published, the supplier
    adds the stamp: the flow for a capturing system apart from the publisher."""
    claims = quality() if completeness is None else quality(completeness_permille=completeness)
    metadata = {k: v for k, v in dataset_body(dataset_id, quality=claims).items()}
    metadata.pop("dataset_id")
    await w.t.publish_dataset(w.supplier, dataset_id, metadata)
    stamp = await w.t.stamp_capture(
        w.camera,
        dataset_id,
        site=site,
        line=line,
        capture_start_ms=CAPTURE_START,
        capture_end_ms=CAPTURE_END,
    )
    await w.t.add_provenance(w.supplier, dataset_id, stamp)


def found(doc: dict[str, Any]) -> list[str]:
    return [d["id"] for d in doc["datasets"]]


async def test_a_capturing_system_stamps_what_the_supplier_published(world):
    await publish_stamped(world, "ds1", site="plant-a", line="line-3")
    stamp = (await world.t.dataset("ds1"))["provenance"]
    assert (stamp["site"], stamp["captured_by"]) == ("plant-a", world.camera.account_id)


async def test_search_filters_by_site_line_capturer_window_and_completeness(world):
    w = world
    await publish_stamped(w, "ds1", site="plant-a", line="line-3", completeness=990)
    await publish_stamped(w, "ds2", site="plant-b", line="line-3", completeness=700)
    meta = dataset_body("ds3")
    meta.pop("dataset_id")
    await w.t.publish_dataset(w.supplier, "ds3", meta)  # unstamped, no completeness claim
    search = w.t.search_datasets
    assert found(await search(site="plant-a")) == ["ds1"]
    assert found(await search(line="line-3")) == ["ds1", "ds2"]
    assert found(await search(captured_by=w.camera.account_id)) == ["ds1", "ds2"]
    assert found(await search(captured_by=w.supplier.account_id)) == []
    assert found(await search(captured_after_ms=CAPTURE_END)) == ["ds1", "ds2"]
    assert found(await search(captured_after_ms=CAPTURE_END + 1)) == []
    assert found(await search(captured_before_ms=CAPTURE_START)) == ["ds1", "ds2"]
    assert found(await search(captured_before_ms=CAPTURE_START - 1)) == []
    window = {"captured_after_ms": T0 - 10 * DAY_MS, "captured_before_ms": T0 - 9 * DAY_MS}
    assert found(await search(**window)) == ["ds1", "ds2"]
    assert found(await search(min_completeness_permille=900)) == ["ds1"]
    assert found(await search(min_completeness_permille=0)) == ["ds1", "ds2"]
    assert found(await search(site="plant-b", min_completeness_permille=900)) == []
    assert found(await search()) == ["ds1", "ds2", "ds3"]
    page = await search(line="line-3", limit=1)
    assert (found(page), page["next_after"]) == (["ds1"], "ds1")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"min_completeness": "1001"}, "min_completeness"),
        ({"captured_after": "-1"}, "captured_after"),
        ({"captured_before": "soon"}, "captured_before"),
        ({"colour": "red"}, "unknown parameter"),
    ],
)
async def test_bad_filters_are_refused_by_name(world, params, needle):
    with pytest.raises(ApiError) as e:
        await world.t.node.get("/v1/datasets", **params)
    assert e.value.status == 400 and needle in e.value.message


async def test_the_catalog_entry_shows_the_suppliers_contract_record(world):
    w = world
    await publish_stamped(w, "ds1", site="plant-a", line="line-3")
    await w.t.offer(
        w.supplier,
        contract_id="c1",
        dataset_id="ds1",
        consumer=w.consumer.account_id,
        terms=terms(),
    )
    await w.t.offer(
        w.supplier,
        contract_id="c2",
        dataset_id="ds1",
        consumer=w.consumer.account_id,
        terms=terms(),
    )
    await w.t.sign_contract(w.supplier, "c2")
    await w.t.sign_contract(w.consumer, "c2")
    record = (await w.t.catalog_entry("ds1"))["supplier_record"]
    assert record["account"] == w.supplier.account_id
    assert record["contracts"] == 1  # the track record counts contracts made (activated)
    assert record["contracts_by_status"]["ACTIVE"] == 1
    assert record["contracts_by_status"]["OFFERED"] == 1
    assert record["contracts_by_status_complete"] is True
    assert record["disputes_opened"] == 0


async def test_dcat_routes_answer_json_ld_with_stable_identifiers(world):
    w = world
    await publish_stamped(w, "ds1", site="plant-a", line="line-3")
    doc = await w.t.catalog_dcat(site="plant-a")
    assert doc.pop("_content_type") == "application/ld+json"
    assert doc["@id"] == ids.catalog_iri(CHAIN_ID)
    [dataset] = doc["dcat:dataset"]
    assert dataset["@id"] == ids.dataset_iri(CHAIN_ID, "ds1")
    assert dataset["dct:publisher"]["foaf:name"] == "Acme Machining"
    assert doc["mdtp:asOfHeight"] == w.chain.height
    assert (await w.t.catalog_dcat(site="nowhere"))["dcat:dataset"] == []
    one = await w.t.dataset_dcat("ds1")
    assert one["@id"] == dataset["@id"] and one["prov:wasAttributedTo"] == {
        "@id": w.camera.account_id
    }
    with pytest.raises(ApiError) as e:
        await w.t.dataset_dcat("nope")
    assert e.value.status == 404


async def test_odrl_route_gives_an_offer_then_the_agreement_and_check_matches(world):
    w = world
    await publish_stamped(w, "ds1", site="plant-a", line="line-3")
    await w.t.offer(
        w.supplier,
        contract_id="c1",
        dataset_id="ds1",
        consumer=w.consumer.account_id,
        terms=terms(),
    )
    offer = await w.t.contract_odrl("c1")
    assert offer["@type"] == "Offer"
    await w.t.counter(w.consumer, "c1", terms=terms(price_minor=120_000))
    await w.t.sign_contract(w.supplier, "c1")
    await w.t.sign_contract(w.consumer, "c1")
    agreement = await w.t.contract_odrl("c1")
    assert agreement["@type"] == "Agreement"
    assert agreement["uid"] == ids.policy_iri(CHAIN_ID, "c1", 2)
    assert (await w.t.contract_odrl("c1", version=1))["@type"] == "Offer"
    agreed_terms = odrl.terms_from_odrl(agreement)
    assert terms_hash(agreed_terms) == terms_hash(terms(price_minor=120_000))
    check = await w.t.check_odrl(agreement, "c1")
    assert (check["version"], check["matches"]) == (2, True)
    check = await w.t.check_odrl(offer, "c1")
    assert (check["version"], check["matches"]) == (1, True)
    check = await w.t.check_odrl(offer, "c1", version=2)  # version 1's terms, not 2's
    assert (check["terms_match"], check["matches"]) == (False, False)
    swapped = {**agreement, "assignee": w.supplier.account_id}
    check = await w.t.check_odrl(swapped, "c1")
    assert (check["terms_match"], check["parties_match"], check["matches"]) == (True, False, False)
    with pytest.raises(ApiError) as e:
        await w.t.contract_odrl("c1", version=3)
    assert e.value.status == 404


async def test_a_supplier_record_past_its_scan_bound_says_it_is_incomplete(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    await publish_stamped(w, "ds1", site="plant-a", line="line-3")
    for contract_id in ("c1", "c2", "c3"):
        await w.t.offer(
            w.supplier,
            contract_id=contract_id,
            dataset_id="ds1",
            consumer=w.consumer.account_id,
            terms=terms(),
        )
    monkeypatch.setattr(queries, "SUPPLIER_RECORD_SCAN_MAX", 2)
    record = (await w.t.catalog_entry("ds1"))["supplier_record"]
    counted = sum(record["contracts_by_status"].values())
    assert (counted, record["contracts_by_status_complete"]) == (2, False)
