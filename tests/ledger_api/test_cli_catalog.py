"""The catalog's CLI commands end to end: ``mdtp dataset publish/update/search/show``,
``mdtp provenance sign``, ``mdtp catalog export --dcat`` and ``mdtp contract odrl [--check]``
run as a person runs them, against the real API routes served over HTTP from a thread, over a
one-process chain whose blocks the real ledger executes; and ``mdtp data publish``'s stamp
made in the same transaction (the SDK's publish over a stand-in chunk service)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mdtp.node.api import trading as trading_routes
from mdtp.node.cli import main
from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.interop import ids
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.data import Capture, DataClient, publish
from mdtp.node.sdk.trading import Committed
from tests.ledger.helpers import CHAIN_ID, DAY_MS, T0, Chain, dataset_body, terms
from tests.ledger.test_provenance import CAPTURE_END, CAPTURE_START
from tests.ledger_api.test_catalog_exports import Store


class HttpNode(NodeClient):
    """The CLI's node client, over plain HTTP to the routes; transactions run as blocks."""

    ledger: Chain

    def __init__(self, address: str, **kw: Any) -> None:  # no TLS: the routes only
        self.address, self.base = address, f"http://{address}"
        self.reader = kw.get("reader")
        self._chain_id: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpNode:
        self._session = aiohttp.ClientSession()
        return self

    async def status(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "id": "m1"}

    async def get(self, path: str, **params: str) -> Any:
        assert self._session is not None
        async with self._session.get(self.base + path, params=params) as response:
            doc = await response.json(content_type=None)
            if response.status != 200:
                raise ApiError(response.status, doc["error"], doc["message"])
            return doc

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


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Chain]:
    """A chain whose routes listen on 127.0.0.1, and the CLI pointed at them."""
    chain = Chain()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    trading_routes.add_routes(app, Store(chain), T0, None, chain_id=CHAIN_ID)  # type: ignore[arg-type]
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    HttpNode.ledger = chain
    monkeypatch.setattr("mdtp.node.cli.trading.NodeClient", HttpNode)
    monkeypatch.setenv("MDTP_NODE", f"127.0.0.1:{port}")
    monkeypatch.setenv("MDTP_CA", str(tmp_path / "unused-ca.pem"))
    for var in ("MDTP_CERT", "MDTP_CERT_KEY", "MDTP_CLUSTER", "MDTP_KEY_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield chain
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def key_file(tmp_path: Path, name: str, key: SigningKey) -> str:
    path = tmp_path / f"{name}.json"
    save_key(path, key)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    capsys.readouterr()
    assert main(list(argv)) == code, capsys.readouterr()
    return capsys.readouterr().out


def hexed(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in doc.items()}


def test_a_capturing_system_stamps_and_the_catalog_filters_shows_and_exports_it(
    chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supplier = key_file(tmp_path, "supplier", chain.user("supplier", name="Acme Machining"))
    camera = key_file(tmp_path, "camera", chain.user("capture", name="Line 3 gateway"))
    metadata = tmp_path / "meta.json"
    body = dataset_body("ds1")
    del body["dataset_id"], body["supplier_node"]
    metadata.write_text(json.dumps({**hexed(body), "quality": body["quality"]}))
    run(capsys, "dataset", "publish", "--key", supplier, "--id", "ds1", "--metadata",
        str(metadata), "--completeness-permille", "950",
        "--calibration", "cert K-1182")  # fmt: skip
    stamp = tmp_path / "stamp.json"
    run(capsys, "provenance", "sign", "--key", camera, "--dataset", "ds1", "--site", "plant-a",
        "--line", "line-3", "--capture-start", str(CAPTURE_START), "--capture-end",
        str(CAPTURE_END), "--out", str(stamp))  # fmt: skip
    run(capsys, "dataset", "update", "ds1", "--key", supplier, "--provenance", str(stamp))
    record = layout.read(chain.kv, layout.dataset_key("ds1"))
    assert record["provenance"]["line"] == "line-3"
    assert record["quality"]["completeness_permille"] == 950

    def search(*flags: str) -> list[str]:
        doc = json.loads(run(capsys, "dataset", "search", *flags, "--json"))
        return [d["id"] for d in doc["datasets"]]

    assert search("--site", "plant-a", "--min-completeness", "900") == ["ds1"]
    assert search("--site", "plant-b") == []
    assert search("--captured-after", str(CAPTURE_END + 1)) == []
    assert search("--captured-before", "2023-11-01") == ["ds1"]  # T0 is 2023-11-14
    shown = run(capsys, "dataset", "show", "ds1")
    assert "site plant-a, line line-3" in shown and "verified" in shown
    assert "95.0% (claimed)" in shown and "0 as supplier" in shown

    out = tmp_path / "catalog.jsonld"
    run(capsys, "catalog", "export", "--dcat", "--site", "plant-a", "--out", str(out))
    catalog = json.loads(out.read_text())
    assert catalog["@type"] == "dcat:Catalog"
    assert [d["@id"] for d in catalog["dcat:dataset"]] == [ids.dataset_iri(CHAIN_ID, "ds1")]
    one = json.loads(run(capsys, "catalog", "export", "--dcat", "--dataset", "ds1"))
    assert one["prov:wasGeneratedBy"]["prov:atLocation"] == {
        "@id": ids.site_iri(CHAIN_ID, "plant-a")
    }
    run(capsys, "catalog", "export", code=2)  # the format must be named


def test_a_contract_exports_as_odrl_and_a_policy_is_checked_against_the_ledger(
    chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supplier_key = chain.user("supplier")
    consumer_key = chain.user("consumer", member="m2")
    chain.ok(supplier_key, "dataset.publish", dataset_body("ds1"))
    supplier = key_file(tmp_path, "supplier", supplier_key)
    terms_file = tmp_path / "terms.json"
    terms_file.write_text(json.dumps(hexed(terms())))
    run(capsys, "contract", "offer", "--key", supplier, "--id", "c1", "--dataset", "ds1",
        "--consumer", consumer_key.account_id, "--terms", str(terms_file))  # fmt: skip
    policy = tmp_path / "c1.jsonld"
    run(capsys, "contract", "odrl", "c1", "--key", supplier, "--out", str(policy))
    doc = json.loads(policy.read_text())
    assert doc["@type"] == "Offer" and doc["mdtp:termsHash"] == terms_hash(terms()).hex()
    checked = json.loads(
        run(capsys, "contract", "odrl", "c1", "--key", supplier, "--check", str(policy), "--json")
    )
    assert checked["matches"] is True and checked["version"] == 1
    assert "carries the terms of c1 version 1" in run(
        capsys, "contract", "odrl", "c1", "--check", str(policy)
    )
    doc["permission"][0]["duty"][0]["action"][0]["refinement"][0]["rightOperand"] = 1
    policy.write_text(json.dumps(doc))
    run(capsys, "contract", "odrl", "c1", "--check", str(policy), code=1)
    del doc["permission"]
    policy.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["contract", "odrl", "c1", "--check", str(policy)]) == 1
    assert "policy: needs exactly one permission" in capsys.readouterr().err


class StandInChunkService(DataClient):
    """``publish``'s node: uploads are accepted as they are, transactions run as blocks."""

    def __init__(self, chain: Chain) -> None:  # no TLS, no chunk store: the ledger side only
        self.ledger = chain

    async def status(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "id": "m1"}

    async def upload(self, *args: Any) -> None:
        return None

    async def send(self, key: SigningKey, body: b.Body) -> Committed:
        result = self.ledger.ok(key, body.TYPE, body.to_body())
        return Committed("", body.TYPE, key.account_id, self.ledger.height, result.index)


async def test_data_publish_carries_the_stamp_the_capturing_systems_key_made(
    tmp_path: Path,
) -> None:
    chain = Chain()
    supplier, camera = chain.user("supplier"), chain.user("capture")
    data = tmp_path / "trace.csv"
    data.write_bytes(b"time_ms,x\n1,2\n" * 1000)
    capture = Capture(camera, "plant-a", "line-3", CAPTURE_START, CAPTURE_END)
    quality = {
        "collection_start_ms": T0 - 30 * DAY_MS,
        "collection_end_ms": T0 - DAY_MS,
        "machine_type": "CNC",
        "sampling_rate_millihz": 1000,
        "validation_method": "",
    }
    published = await publish(
        StandInChunkService(chain),
        supplier,
        data,
        dataset_id="ds1",
        title="Trace",
        quality=quality,
        capture=capture,
        progress=False,
    )
    record = layout.read(chain.kv, layout.dataset_key("ds1"))
    assert record["provenance"]["captured_by"] == camera.account_id
    assert record["merkle_root"] == published.merkle_root
