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
from schemathesis import Case, GenerationMode
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
from mdtp.node.ops import cluster
from tests.cluster.conftest import running_cluster

pytestmark = pytest.mark.cluster
__all__ = ["running_cluster"]

EXAMPLES_PER_MODE = 50
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
    """One node's API, called as a member's client; signed reads by ``reader``."""

    def __init__(self, cluster_dir: Path) -> None:
        node = cluster.load_cluster(cluster_dir)[0]
        home = node.home
        self.base_url = f"https://{node.api}"
        self.session = requests.Session()
        ctx = pki.api_client_context(home / "ca.pem", home / "node.pem", home / "node.key.pem")
        self.session.mount("https://", _MemberTls(ctx))
        self.ca = home / "ca.pem"
        self.reader: SigningKey = load_key(home / "admin_key.json")
        status = self.session.get(f"{self.base_url}/v1/status", timeout=10).json()
        self.chain_id = str(status["chain_id"])

    def send(self, case: Case[Any], signed: bool) -> requests.Response:
        kwargs = case.as_transport_kwargs(base_url=self.base_url)
        prepared = self.session.prepare_request(
            requests.Request(
                method=kwargs["method"],
                url=kwargs["url"],
                params=kwargs.get("params"),
                headers=kwargs.get("headers"),
                cookies=kwargs.get("cookies"),
                data=kwargs.get("data"),
                json=kwargs.get("json"),
                files=kwargs.get("files"),
            )
        )
        if signed:
            url = urlsplit(str(prepared.url))
            raw = prepared.body or b""
            body = raw.encode() if isinstance(raw, str) else raw
            assert isinstance(body, bytes), type(body)  # a generated body, never a stream
            prepared.headers.update(
                signed_read.sign_headers(
                    self.reader, self.chain_id, case.method.upper(), url.path, url.query, body
                )
            )
        if case.method.upper() == "POST" and case.path == "/v1/tx":
            # each submission on its own connection: the refusal budget is per connection, and
            # junk transactions are refused, so one connection would soon wait a second a call
            prepared.headers["Connection"] = "close"
        return self.session.send(prepared, timeout=30)


@pytest.fixture(scope="module")
def node(running_cluster: Path) -> Iterator[Node]:
    n = Node(running_cluster)
    yield n
    n.session.close()


def test_the_node_serves_its_description_to_anyone(node: Node) -> None:
    """No client certificate needed; the body is the description in the package."""
    ctx = pki.api_client_context(node.ca)
    with urllib.request.urlopen(f"{node.base_url}{spec.SPEC_ROUTE}", context=ctx) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        assert json.loads(r.read()) == spec.spec()


def test_unknown_routes_answer_json_404(node: Node) -> None:
    r = node.session.get(f"{node.base_url}/v1/no/such/route", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = node.session.put(f"{node.base_url}/v1/status", timeout=10)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def operations() -> list[tuple[str, str]]:
    doc = spec.spec()
    return sorted((m.upper(), path) for path, item in doc["paths"].items() for m in item)


@pytest.mark.parametrize(("method", "path"), operations(), ids=lambda v: str(v))
def test_every_operation_answers_as_described(node: Node, method: str, path: str) -> None:
    served = node.session.get(f"{node.base_url}{spec.SPEC_ROUTE}", timeout=10).json()
    schema = schemathesis.openapi.from_dict(served)
    [operation] = [
        r.ok()
        for r in schema.get_all_operations()
        if isinstance(r, Ok) and r.ok().method.upper() == method and r.ok().path == path
    ]
    signed = auth.POLICY[(method, path)].tier is auth.Tier.PARTY

    strategies = [operation.as_strategy(mode) for mode in GenerationMode]

    @settings(
        max_examples=EXAMPLES_PER_MODE * len(strategies),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: Case[Any]) -> None:
        case.validate_response(node.send(case, signed), checks=CHECKS)

    run()
