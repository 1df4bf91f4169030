"""Contract terms as ODRL 2.2 policies: parsed by a JSON-LD processor, every term defined by
the ODRL vocabulary, and mapped back to the same terms hash from any JSON-LD form."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyld import jsonld
from rdflib import RDF, URIRef
from rdflib import namespace as ns

from mdtp.node.identity.keys import SigningKey
from mdtp.node.interop import ids, odrl
from mdtp.node.interop.loader import UnknownContext, document_loader
from mdtp.node.ledger.trading.contracts import terms_hash
from mdtp.node.ledger.trading.schema import INT_MAX
from tests.interop.vocab import OPTIONS, literal, to_graph, undefined_terms
from tests.ledger.helpers import CHAIN_ID, terms

SUPPLIER = SigningKey.generate().account_id
CONSUMER = SigningKey.generate().account_id
ARBITER = SigningKey.generate().account_id
CONTRACT = {"id": "c-42", "dataset_id": "ds:1", "supplier": SUPPLIER, "consumer": CONSUMER}
RULE = {
    "aggregations": {"spindle_temp": ["AVG", "MAX"], "vibration": ["STDDEV"]},
    "dimensions": ["machine_model"],
    "never_output": ["operator_id"],
    "scalar_functions": ["ROUND"],
    "identity_column": "machine_id",
    "min_distinct": 5,
    "query_budget": 20,
    "max_result_rows": 500,
    "noise_scale_milli": 250,
}
BILLING = {
    "unit": "download",
    "period_ms": 30 * 86_400_000,
    "payment_due_ms": 14 * 86_400_000,
    "suspend_when_overdue": True,
}


def version(t: dict[str, Any], number: int = 1) -> dict[str, Any]:
    return {"version": number, "terms": t, "terms_hash": terms_hash(t)}


def policy(t: dict[str, Any], *, agreed: bool = True) -> dict[str, Any]:
    return odrl.policy(CHAIN_ID, CONTRACT, version(t, 3), agreed=agreed)


SHAPES = {
    "download": terms(),
    "no redistribution ban": terms(redistribution_banned=False),
    "reviewer": terms(reviewer=ARBITER),
    "clean room": terms(delivery_method="clean_room", analysis_rule=RULE),
    "billing and arbiter": terms(billing=BILLING, arbiter=ARBITER, price_model="pay_per_use"),
    "zero price, far future": terms(
        price_minor=0, use_end_ms=INT_MAX, disposal_deadline_ms=INT_MAX
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_terms_round_trip_to_the_same_terms_hash(name):
    t = SHAPES[name]
    doc = policy(t)
    back = odrl.terms_from_odrl(doc)
    assert back == t
    assert terms_hash(back) == terms_hash(t) == bytes.fromhex(doc["mdtp:termsHash"])


@pytest.mark.parametrize("form", ["expanded", "flattened", "from RDF", "compacted again"])
def test_every_json_ld_form_of_a_policy_maps_back(form):
    t = SHAPES["billing and arbiter"] | {"reviewer": ARBITER}
    doc = policy(t)
    if form == "expanded":
        doc = jsonld.expand(doc, OPTIONS)
    elif form == "flattened":
        doc = jsonld.flatten(doc, None, OPTIONS)
    elif form == "from RDF":
        nquads = jsonld.to_rdf(doc, {**OPTIONS, "format": "application/n-quads"})
        doc = jsonld.from_rdf(nquads, {"format": "application/n-quads"})
    else:
        doc = jsonld.compact(jsonld.expand(doc, OPTIONS), {"@context": odrl.CONTEXT}, OPTIONS)
    assert terms_hash(odrl.terms_from_odrl(doc)) == terms_hash(t)


def test_the_parties_and_target_are_read_back_from_any_form():
    doc = policy(terms())
    expected = {
        "assigner": SUPPLIER,
        "assignee": CONSUMER,
        "target": ids.dataset_iri(CHAIN_ID, "ds:1"),
    }
    assert odrl.parties_from_odrl(doc) == expected
    assert odrl.parties_from_odrl(jsonld.expand(doc, OPTIONS)) == expected


def test_an_unsigned_version_is_an_offer_and_the_signed_one_an_agreement():
    offer, agreement = policy(terms(), agreed=False), policy(terms(), agreed=True)
    for doc, kind in ((offer, ns.ODRL2.Offer), (agreement, ns.ODRL2.Agreement)):
        graph = to_graph(doc)
        uid = URIRef(ids.policy_iri(CHAIN_ID, "c-42", 3))
        assert (uid, RDF.type, kind) in graph
        assert (uid, ns.ODRL2.assigner, URIRef(SUPPLIER)) in graph
        assert (uid, ns.ODRL2.assignee, URIRef(CONSUMER)) in graph
        assert (uid, ns.ODRL2.target, URIRef(ids.dataset_iri(CHAIN_ID, "ds:1"))) in graph


def utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def test_the_policy_carries_purpose_period_count_duties_and_prohibition_as_odrl():
    t = terms(billing=BILLING)
    graph = to_graph(policy(t))
    uid = URIRef(ids.policy_iri(CHAIN_ID, "c-42", 3))
    permission = graph.value(uid, ns.ODRL2.permission)
    assert graph.value(permission, ns.ODRL2.action) == ns.ODRL2.use
    constraints = {
        (str(graph.value(c, ns.ODRL2.leftOperand)), str(graph.value(c, ns.ODRL2.operator))): (
            literal(graph, c, ns.ODRL2.rightOperand).toPython()
        )
        for c in graph.objects(permission, ns.ODRL2.constraint)
    }
    assert constraints == {
        (str(ns.ODRL2.purpose), str(ns.ODRL2.eq)): t["purpose"],
        (str(ns.ODRL2.dateTime), str(ns.ODRL2.gteq)): utc(t["use_start_ms"]),
        (str(ns.ODRL2.dateTime), str(ns.ODRL2.lt)): utc(t["use_end_ms"]),
        (str(ns.ODRL2.count), str(ns.ODRL2.lteq)): t["max_downloads"],
    }
    duty_actions = set()
    for duty in graph.objects(permission, ns.ODRL2.duty):
        action = graph.value(duty, ns.ODRL2.action)
        duty_actions.add(graph.value(action, RDF.value) or action)
    assert duty_actions == {ns.ODRL2.compensate, ns.ODRL2.delete}
    pay = graph.value(None, ns.ODRL2.leftOperand, ns.ODRL2.payAmount)
    assert int(literal(graph, pay, ns.ODRL2.rightOperand)) == t["price_minor"]
    assert graph.value(pay, ns.ODRL2.unit) == URIRef("urn:mdtp:currency:EUR:minor")
    prohibition = graph.value(uid, ns.ODRL2.prohibition)
    assert graph.value(prohibition, ns.ODRL2.action) == ns.ODRL2.distribute


def test_every_odrl_term_used_is_defined_by_the_odrl_2_2_vocabulary():
    for t in SHAPES.values():
        assert undefined_terms(to_graph(policy(t))) == []


def test_expand_to_rdf_and_compact_keep_the_same_graph():
    doc = policy(SHAPES["clean room"])
    graph = to_graph(doc)
    again = jsonld.compact(jsonld.expand(doc, OPTIONS), {"@context": odrl.CONTEXT}, OPTIONS)
    assert to_graph(again).isomorphic(graph)


def test_the_loader_serves_only_the_shipped_contexts():
    assert document_loader(odrl.CONTEXT[0])["document"]["@context"]["odrl"].endswith("/2/")
    with pytest.raises(UnknownContext):
        document_loader("https://example.org/evil.jsonld")
    doc = {**policy(terms()), "@context": ["https://example.org/evil.jsonld"]}
    with pytest.raises(jsonld.JsonLdError):
        jsonld.expand(doc, OPTIONS)


COUNT = {"leftOperand": "count", "operator": "lteq", "rightOperand": 1}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.pop("permission"), "permission"),
        (lambda d: d["permission"][0]["constraint"].pop(0), "purpose eq"),
        (lambda d: d["permission"][0]["duty"].pop(1), "compensate and a delete"),
        (lambda d: d.update({"@type": "Set"}), "Offer or odrl:Agreement"),
        (lambda d: d["prohibition"][0].update({"action": "print"}), "distribute"),
        (lambda d: d["permission"][0]["constraint"].append({**COUNT}), "repeats"),
    ],
)
def test_a_policy_that_does_not_map_back_is_refused_by_name(change, needle):
    doc = policy(terms())
    change(doc)
    with pytest.raises(ValueError, match=needle):
        odrl.terms_from_odrl(doc)


def test_terms_with_an_unknown_field_are_not_exported_half():
    with pytest.raises(ValueError, match="no ODRL mapping"):
        policy({**terms(), "royalty": 5})


# ---- random terms ----------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\x7f"),
    min_size=1,
    max_size=40,
)
_column = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)
_times = st.integers(0, INT_MAX)


@st.composite
def random_terms(draw: st.DrawFn) -> dict[str, Any]:
    start, end, deadline = sorted(draw(st.lists(_times, min_size=3, max_size=3)))
    clean_room = draw(st.booleans())
    t: dict[str, Any] = {
        "delivery_method": "clean_room" if clean_room else "download",
        "purpose": draw(_text),
        "use_start_ms": start,
        "use_end_ms": end,
        "max_downloads": draw(st.integers(1, 1_000_000)),
        "redistribution_banned": draw(st.booleans()),
        "disposal_method": draw(_text),
        "disposal_deadline_ms": deadline,
        "price_minor": draw(st.integers(0, INT_MAX)),
        "currency": draw(st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3)),
        "price_model": draw(st.sampled_from(["one_time", "pay_per_use", "subscription"])),
        "terms_document_hash": draw(st.binary(min_size=32, max_size=32)),
    }
    if draw(st.booleans()):
        t["reviewer"] = ARBITER
    if draw(st.booleans()):
        t["arbiter"] = SUPPLIER
    if draw(st.booleans()):
        t["billing"] = {
            "unit": draw(st.sampled_from(["download", "chunk", "query"])),
            "period_ms": draw(_times),
            "payment_due_ms": draw(_times),
            "suspend_when_overdue": draw(st.booleans()),
        }
    if clean_room:
        t["analysis_rule"] = {
            "aggregations": draw(
                st.dictionaries(
                    _column,
                    st.lists(st.sampled_from(["AVG", "SUM"]), min_size=1, max_size=2, unique=True),
                    min_size=1,
                    max_size=3,
                )
            ),
            "dimensions": draw(st.lists(_column, max_size=3, unique=True)),
            "never_output": [],
            "scalar_functions": [],
            "identity_column": draw(_column),
            "min_distinct": draw(st.integers(2, 1000)),
            "query_budget": draw(st.integers(1, 1000)),
            "max_result_rows": draw(st.integers(1, 10_000)),
        }
    return t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=random_terms(), agreed=st.booleans())
def test_random_terms_round_trip_to_the_same_terms_hash(t, agreed):
    doc = policy(t, agreed=agreed)
    assert terms_hash(odrl.terms_from_odrl(doc)) == terms_hash(t)


@settings(max_examples=200, deadline=None)
@given(ms=_times)
def test_times_round_trip_through_xsd_date_time(ms):
    assert ids.parse_datetime(ids.datetime_literal(ms)) == ms
