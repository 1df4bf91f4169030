"""A live node answers every request the way its OpenAPI description says.

schemathesis generates requests from the description the node serves (``GET
/v1/openapi.json``): valid ones and, where the description constrains something, invalid
ones. They go to a real 4-node cluster over mutual TLS with a member's client certificate;
the confidential routes are signed by a registered account (a genesis admin), so their
handlers run too. Every answer must be a documented status (never a 5xx) whose content type
and body conform to the description. Seeded (``derandomize``) and bounded per operation.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from mdtp.node.api import auth, spec
from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.trading import bodies
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import cluster
from tests.cluster.conftest import running_cluster

pytestmark = pytest.mark.cluster
__all__ = ["running_cluster"]

EXAMPLES_PER_MODE = 50
OUTSIDER_EXAMPLES_PER_MODE = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class _MemberTls(HTTPAdapter):
    """requests over the project's own TLS client context (the consortium CA pins the node;
    nodes are addressed by IP) with the member's client certificate."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self._ctx, assert_hostname=False)
        super().init_poolmanager(*args, **kwargs)


class Node:
    """One node's API, called as a member's client (or, ``outsider``, with no certificate);
    signed reads by ``reader`` unless a call names another key."""

    def __init__(self, cluster_dir: Path) -> None:
        node = cluster.load_cluster(cluster_dir)[0]
        home = node.home
        self.base_url = f"https://{node.api}"
        self.session = requests.Session()
        ctx = pki.api_client_context(home / "ca.pem", home / "node.pem", home / "node.key.pem")
        self.session.mount("https://", _MemberTls(ctx))
        self.ca = home / "ca.pem"
        self.outsider = requests.Session()
        self.outsider.mount("https://", _MemberTls(pki.api_client_context(self.ca)))
        self.reader: SigningKey = load_key(node.admin_key_file)
        status = self.session.get(f"{self.base_url}/v1/status", timeout=10).json()
        self.chain_id = str(status["chain_id"])

    def send(
        self,
        case: Case[Any],
        signed: bool,
        *,
        reader: SigningKey | None = None,
        outsider: bool = False,
        body: bytes | None = None,
    ) -> requests.Response:
        session = self.outsider if outsider else self.session
        kwargs = case.as_transport_kwargs(base_url=self.base_url)
        prepared = session.prepare_request(
            requests.Request(
                method=kwargs["method"],
                url=kwargs["url"],
                params=kwargs.get("params"),
                headers=kwargs.get("headers"),
                cookies=kwargs.get("cookies"),
                data=kwargs.get("data") if body is None else body,
                json=kwargs.get("json"),
                files=kwargs.get("files"),
            )
        )
        if signed:
            url = urlsplit(str(prepared.url))
            sent = prepared.body or b""
            signed_body = sent.encode() if isinstance(sent, str) else sent
            assert isinstance(signed_body, bytes), type(signed_body)  # never a stream
            prepared.headers.update(
                signed_read.sign_headers(
                    reader or self.reader,
                    self.chain_id,
                    case.method.upper(),
                    url.path,
                    url.query,
                    signed_body,
                )
            )
        if case.method.upper() == "POST" and case.path == "/v1/tx":
            # each submission on its own connection: the refusal budget is per connection, and
            # junk transactions are refused, so one connection would soon wait a second a call
            prepared.headers["Connection"] = "close"
        return session.send(prepared, timeout=30)


@pytest.fixture(scope="module")
def node(running_cluster: Path) -> Iterator[Node]:
    n = Node(running_cluster)
    yield n
    n.session.close()
    n.outsider.close()


def test_the_node_serves_its_description_to_anyone(node: Node) -> None:
    """No client certificate needed; the body is the description in the package."""
    ctx = pki.api_client_context(node.ca)
    with urllib.request.urlopen(f"{node.base_url}{spec.SPEC_ROUTE}", context=ctx) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        assert json.loads(r.read()) == spec.spec()


def test_a_request_the_http_parser_refuses_answers_json(node: Node) -> None:
    """A request line above 8190 bytes never reaches the app; it is still answered JSON."""
    r = node.session.get(f"{node.base_url}/v1/status?pad={'x' * 9000}", timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_unknown_routes_answer_json_404(node: Node) -> None:
    r = node.session.get(f"{node.base_url}/v1/no/such/route", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = node.session.put(f"{node.base_url}/v1/status", timeout=10)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def operations() -> list[tuple[str, str]]:
    doc = spec.spec()
    return sorted((m.upper(), path) for path, item in doc["paths"].items() for m in item)


def operation_of(node: Node, method: str, path: str) -> APIOperation[Any, Any, Any, Any]:
    """The operation in the description the node serves (not the one in the package)."""
    served = node.session.get(f"{node.base_url}{spec.SPEC_ROUTE}", timeout=10).json()
    schema = schemathesis.openapi.from_dict(served)
    found = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    [operation] = [o for o in found if o.method.upper() == method and o.path == path]
    return operation


@pytest.mark.parametrize("caller", ["member", "outsider"])
@pytest.mark.parametrize(("method", "path"), operations(), ids=lambda v: str(v))
def test_every_operation_answers_as_described(
    node: Node, method: str, path: str, caller: str
) -> None:
    """Generated requests, valid and invalid, by a member's client (signed where the route
    asks for it) and by an outsider without a certificate."""
    operation = operation_of(node, method, path)
    signed = auth.POLICY[(method, path)].tier is auth.Tier.PARTY
    outsider = caller == "outsider"
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    examples = (OUTSIDER_EXAMPLES_PER_MODE if outsider else EXAMPLES_PER_MODE) * len(strategies)

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: Case[Any]) -> None:
        case.validate_response(node.send(case, signed, outsider=outsider), checks=CHECKS)

    run()


def test_real_answers_conform(node: Node) -> None:
    """What random requests rarely reach: answers about things that exist. A genesis admin
    registers an account (the transaction, its block, the chain, the account, its nonce and
    audit trail with proofs), each answer checked against the description."""
    fresh = SigningKey.generate(with_encryption=True)
    admin = node.reader

    def call(
        method: str,
        path: str,
        status: int,
        *,
        reader: SigningKey | None = None,
        **parts: Any,
    ) -> requests.Response:
        case = operation_of(node, method, path).Case(**parts)
        signed = auth.POLICY[(method, path)].tier is auth.Tier.PARTY
        response = node.send(case, signed, reader=reader)
        assert response.status_code == status, (method, path, response.text[:500])
        case.validate_response(response, checks=CHECKS)
        return response

    nonce = call(
        "GET",
        "/v1/accounts/{account_id}/nonce",
        200,
        path_parameters={"account_id": admin.account_id},
    ).json()["nonce"]
    body = bodies.AccountRegister.for_key(
        fresh.public_key, fresh.encryption_public_key or b"", ["consumer"], "API contract"
    )
    raw = sign_tx(
        admin,
        chain_id=node.chain_id,
        type_=body.TYPE,
        sender=admin.account_id,
        nonce=nonce + 1,
        expires_at_ms=int(time.time() * 1000) + 60_000,
        body=body.to_body(),
    )
    tx = call(
        "POST",
        "/v1/tx",
        200,
        query={"wait": "1", "timeout": 30},
        body=raw,
        media_type="application/octet-stream",
    ).json()
    assert tx["status"] == "committed", tx
    duplicate = call(
        "POST", "/v1/tx", 400, body={"tx": raw.hex()}, media_type="application/json"
    ).json()
    assert duplicate["error"] == "duplicate", duplicate
    call("GET", "/v1/tx/{tx_id}", 200, path_parameters={"tx_id": tx["id"]})
    call("GET", "/v1/tx/{tx_id}", 404, path_parameters={"tx_id": "00" * 32})
    block = call("GET", "/v1/blocks/{height}", 200, path_parameters={"height": tx["height"]})
    assert tx["id"] in block.json()["transactions"]
    rows = call("GET", "/v1/chain", 200, query={"from": 1}).json()
    assert [tx["height"], block.json()["hash"]] == rows[tx["height"] - 1][:2]
    for account in (fresh.account_id, admin.account_id):
        call("GET", "/v1/accounts/{account_id}", 200, path_parameters={"account_id": account})
    for path in ("/v1/audit/{kind}/{subject_id}", "/v1/audit/{kind}/{subject_id}/export"):
        trail = call(
            "GET",
            path,
            200,
            reader=fresh,
            path_parameters={"kind": "account", "subject_id": fresh.account_id},
        )
        assert tx["id"] in trail.text
    call("GET", "/v1/contracts", 200, reader=fresh, query={"account": fresh.account_id})
    call("GET", "/v1/datasets", 200, query={"limit": 5})
    for path in ("/v1/status", "/v1/evidence", "/v1/reasons", "/v1/disposals/overdue"):
        call("GET", path, 200, reader=fresh)
    # a signed read's body is read (its hash is signed): one above the limit is 413 oversized
    big = b"x" * (4 * 1024 * 1024 + 1)
    response = node.send(
        operation_of(node, "GET", "/v1/disposals/overdue").Case(), True, reader=fresh, body=big
    )
    assert response.status_code == 413 and response.json()["error"] == "oversized"
