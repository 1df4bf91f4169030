"""The explorer and audit page, end to end: a real 4-node cluster, a whole trade (a contract
with versions, signatures, a review and an audit trail), and Debian's Chromium, headless,
presenting the member's client certificate and loading the consumer's key file into the page.

It checks real content (chain head and recent blocks, a block with its verified certificate,
a transaction, a dataset, the contract and every audit entry marked verified *by the page*),
that the page's own codecs pass their unit tests in the browser, that its BLAKE2b agrees with
Python's on random input, and that verification fails where it must: audit entries tampered
in four ways are marked NOT verified with the same reason code the Python verifier gives,
and a genesis with the wrong node keys marks every entry NOT verified."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity import pki
from mdtp.node.identity.genesis import load_genesis, parse_genesis
from mdtp.node.sdk.audit_verify import VerifyError, verify_entry
from tests.cluster.conftest import running_cluster
from tests.explorer.browser import LAUNCH_ARGS, chromium_path, require_playwright, screenshot_dirs
from tests.explorer.market import Market, make_market

pytestmark = pytest.mark.cluster
__all__ = ["running_cluster"]

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def market(running_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Market:
    return asyncio.run(make_market(running_cluster, tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="module")
def browser(market: Market) -> Iterator[Any]:
    """Started after the market is made: Playwright's sync API runs an event loop in this
    thread, and the market's asyncio.run needs none to be running."""
    require_playwright()
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


class Explorer:
    """One browser context as a member's client (or with no certificate), on node0's page."""

    def __init__(self, browser: Any, market: Market, *, member: bool = True) -> None:
        home, origin = market.node.home, f"https://{market.node.api}"
        cert = {"origin": origin, "certPath": home / "node.pem", "keyPath": home / "node.key.pem"}
        self.context = browser.new_context(
            client_certificates=[cert] if member else [],
            ignore_https_errors=True,
            viewport={"width": 1280, "height": 900},
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.url = f"{origin}/explorer/"
        self.market = market

    def open(self, route: str = "") -> Any:
        """Navigate to ``#/route`` and wait until the view has rendered."""
        page = self.page
        if not page.url.startswith(self.url):
            page.goto(self.url + f"#/{route}")
        else:
            page.evaluate("r => { window.location.hash = '#/' + r; }", route)
        page.wait_for_function(
            "r => { const m = document.getElementById('main'); "
            "return m && m.getAttribute('aria-busy') === 'false' && m.dataset.route === r; }",
            arg=route,
        )
        return page.locator("#main")

    def load_key(self, name: str) -> None:
        """Load ``name``'s key file with the page's file input, as a user would."""
        if not self.page.url.startswith(self.url):
            self.open("")
        self.page.set_input_files("#key-file", str(self.market.key_file(name)))
        account = getattr(self.market, name).account_id
        self.page.wait_for_function(
            "a => document.getElementById('key-status').textContent.includes(a)", arg=account
        )

    def screenshot(self, tmp: Path, name: str, selector: str | None = None) -> None:
        """The whole page, or the element ``selector`` names."""
        for folder in screenshot_dirs(tmp):
            if selector is None:
                self.page.screenshot(path=str(folder / name), full_page=True)
            else:
                self.page.locator(selector).screenshot(path=str(folder / name))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def explorer(browser: Any, market: Market) -> Iterator[Explorer]:
    e = Explorer(browser, market)
    yield e
    e.close()
    assert not e.errors, e.errors


def test_the_page_codecs_pass_their_unit_tests_in_the_browser(explorer: Explorer) -> None:
    main = explorer.open("selftest")
    summary = main.locator("#selftest-summary")
    failed = main.locator("li.fail").all_inner_texts()
    assert summary.get_attribute("data-failed") == "0", failed
    assert int(summary.get_attribute("data-passed") or 0) >= 20
    # and BLAKE2b-256 agrees with Python's on random input of awkward lengths
    for n in (0, 1, 127, 128, 129, 255, 256, 1000, 4097):
        data = os.urandom(n)
        got = explorer.page.evaluate(
            "async h => { const {blake2b} = await import('./blake2b.js'); "
            "const {fromHex, hex} = await import('./verify.js'); "
            "return hex(blake2b(fromHex(h))); }",
            data.hex(),
        )
        assert got == hashlib.blake2b(data, digest_size=32).hexdigest(), n


def test_chain_head_recent_blocks_and_a_verified_block(explorer: Explorer, tmp_path: Path) -> None:
    market = explorer.market
    main = explorer.open("")
    tip = int(main.locator("dd").nth(2).inner_text())
    assert tip >= 8  # 3 accounts, a dataset, offer, counter, 2 signatures, review, grant
    heights = [int(t) for t in main.locator("table tbody tr td:first-child").all_inner_texts()]
    assert heights == list(range(tip, max(0, tip - 20), -1))
    assert market.node.id in main.inner_text()  # the node and proposers are named
    explorer.screenshot(tmp_path, "explorer-chain.png")

    offer = market.trail[0]
    main = explorer.open(f"block/{offer['height']}")
    assert f"Block {offer['height']}" in main.locator("h2").inner_text()
    assert offer["block_hash"] in main.inner_text()
    check = main.locator("h3 .mark")
    assert check.get_attribute("data-verified") == "yes", check.inner_text()
    assert "contract.offer" in main.inner_text()
    signers = main.locator("table").first.locator("tbody tr td:first-child").all_inner_texts()
    assert len(signers) >= 3 and all(s.startswith("node") for s in signers)


def test_a_transaction_and_a_dataset(explorer: Explorer) -> None:
    market = explorer.market
    offer = market.trail[0]
    main = explorer.open(f"tx/{offer['tx_id']}")
    text = main.inner_text()
    assert "committed" in text and "contract.offer" in text and market.contract_id in text
    assert offer["tx_id"] in text
    assert main.locator("h3 .mark").get_attribute("data-verified") == "yes"
    main = explorer.open(f"dataset/{market.dataset_id}")
    assert "Spindle vibration, line 7" in main.inner_text()
    assert "Supplier's track record" in main.inner_text()
    main = explorer.open("datasets")
    assert market.dataset_id in main.inner_text()


def _marks(main: Any) -> list[tuple[str, str, str]]:
    rows = main.locator("table.audit tbody tr")
    out = []
    for i in range(rows.count()):
        row = rows.nth(i)
        mark = row.locator(".mark")
        out.append(
            (
                row.get_attribute("data-tx") or "",
                mark.get_attribute("data-verified") or "",
                mark.get_attribute("data-reason") or "",
            )
        )
    return out


def test_the_contract_with_every_audit_entry_verified_in_the_browser(
    explorer: Explorer, tmp_path: Path
) -> None:
    market = explorer.market
    main = explorer.open(f"contract/{market.contract_id}")
    assert "signature_required" in main.inner_text()  # no account key loaded yet
    explorer.load_key("consumer")
    main = explorer.open(f"contract/{market.contract_id}")
    text = main.inner_text()
    assert f"Contract {market.contract_id}" in text
    assert main.locator("[data-field=effective_status]").inner_text() == "ACTIVE"
    assert main.locator("section.version").count() == 2
    assert "approve" in text.lower() and "purpose fits the policy" in text
    marks = _marks(main)
    assert [tx for tx, _, _ in marks] == [e["tx_id"] for e in market.trail]
    assert all(v == "yes" for _, v, _ in marks), marks
    types = main.locator("table.audit tbody tr td:nth-child(4)").all_inner_texts()
    assert types[:5] == [
        "contract.offer",
        "contract.counter",
        "contract.sign",
        "contract.sign",
        "contract.review",
    ]
    summary = main.locator("p.summary")
    assert summary.get_attribute("data-verified-count") == str(len(market.trail))
    explorer.screenshot(tmp_path, "explorer-contract.png")


def _flip_last(hex_text: str) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[-1] ^= 0x01
    return raw.hex()


def test_tampered_audit_entries_are_not_verified(explorer: Explorer, tmp_path: Path) -> None:
    """The node's answer is replaced by one with four entries tampered; the page must mark
    exactly those NOT verified, each with the reason code the Python verifier gives."""
    market = explorer.market
    trail = [dict(e) for e in market.trail]
    trail[0]["block_bytes"] = _flip_last(trail[0]["block_bytes"])  # a tx byte: payload
    trail[1]["certificate_bytes"] = _flip_last(trail[1]["certificate_bytes"])  # a signature
    trail[2]["tx_id"] = trail[3]["tx_id"]  # another transaction's id
    trail[3]["block_hash"] = "00" * 32
    genesis = load_genesis(market.cluster_dir / "genesis.json")
    expected: list[str] = []
    for e in trail:
        try:
            verify_entry(e, genesis)
            expected.append("")
        except VerifyError as err:
            expected.append(err.reason)
    assert expected[:4] == [
        "bad_certificate",
        "bad_certificate",
        "tx_mismatch",
        "block_hash_mismatch",
    ]
    assert not any(expected[4:])
    body = json.dumps({"as_of_height": trail[-1]["height"], "entries": trail, "next_after": None})
    explorer.page.route(
        re.compile(r"/v1/audit/contract/[^?]*\?.*proof=1"),
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    explorer.load_key("consumer")
    main = explorer.open(f"contract/{market.contract_id}")
    marks = _marks(main)
    assert [v for _, v, _ in marks] == ["no"] * 4 + ["yes"] * (len(trail) - 4), marks
    assert [r for _, _, r in marks] == expected
    assert (
        main.locator(".mark.bad").first.inner_text().startswith("✘ NOT verified: bad_certificate")
    )
    explorer.screenshot(tmp_path, "explorer-tampered.png", "table.audit")


def test_a_genesis_with_other_node_keys_verifies_nothing(
    explorer: Explorer, tmp_path: Path
) -> None:
    market = explorer.market
    doc = json.loads((market.cluster_dir / "genesis.json").read_text())
    keys = [m["node_public_key"] for m in doc["members"]]
    for m, key in zip(doc["members"], keys[1:] + keys[:1], strict=True):
        m["node_public_key"] = key  # every member's key is another member's
    parse_genesis(doc)  # still a valid genesis document
    wrong = tmp_path / "genesis.json"
    wrong.write_text(json.dumps(doc))
    explorer.load_key("consumer")
    explorer.page.set_input_files("#genesis-file", str(wrong))
    explorer.page.wait_for_function(
        "() => document.getElementById('genesis-status').textContent.includes('your file')"
    )
    main = explorer.open(f"contract/{market.contract_id}")
    marks = _marks(main)
    assert marks and all(v == "no" and r == "bad_certificate" for _, v, r in marks), marks
    assert "bad_signature" in main.locator(".mark.bad").first.inner_text()
    main = explorer.open(f"block/{market.trail[0]['height']}")
    assert main.locator("h3 .mark").get_attribute("data-verified") == "no"


def test_the_node_serves_its_genesis_to_members_only(market: Market) -> None:
    """``GET /v1/genesis``: what the page verifies against by default is the genesis file."""
    home, url = market.node.home, f"https://{market.node.api}/v1/genesis"
    member = pki.api_client_context(home / "ca.pem", home / "node.pem", home / "node.key.pem")
    with urllib.request.urlopen(url, context=member, timeout=10) as r:
        served = json.loads(r.read())
    assert served == json.loads((market.cluster_dir / "genesis.json").read_text())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=pki.api_client_context(home / "ca.pem"), timeout=10)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"] == "certificate_required"


def test_without_the_member_certificate_the_page_shows_no_data(
    browser: Any, market: Market
) -> None:
    outsider = Explorer(browser, market, member=False)
    try:
        main = outsider.open("")
        assert "certificate_required" in main.inner_text()
    finally:
        outsider.close()
