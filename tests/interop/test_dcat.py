"""The catalog as DCAT-AP 3 JSON-LD: conforms to the DCAT-AP 3.0.0 SHACL shapes, uses only
defined terms, and carries the ledger's metadata, quality claims and provenance stamp."""

from __future__ import annotations

from typing import Any

import pytest
from pyld import jsonld
from rdflib import RDF, Literal, URIRef
from rdflib import namespace as ns

from mdtp.node.interop import dcat, ids
from mdtp.node.ledger.trading import queries
from tests.interop.vocab import (
    OPTIONS,
    literal,
    shacl_report,
    shape_terms,
    to_graph,
    undefined_terms,
)
from tests.ledger.helpers import CHAIN_ID, DAY_MS, T0, dataset_body, quality
from tests.ledger.test_provenance import CAPTURE_END, CAPTURE_START, Factory

DQV = "http://www.w3.org/ns/dqv#"
SPDX = "http://spdx.org/rdf/terms#"


@pytest.fixture(scope="module")
def market() -> tuple[Factory, list[dict[str, Any]]]:
    factory = Factory()
    claims = quality(
        completeness_permille=987,
        calibration="ISO 17025 lab, cert K-1182",
        known_gaps=[{"start_ms": T0 - 25 * DAY_MS, "end_ms": T0 - 24 * DAY_MS, "reason": "PLC"}],
    )
    factory.publish("ds1", quality=claims)
    factory.chain.ok(factory.supplier, "dataset.publish", dataset_body("ds2", description=""))
    factory.chain.ok(factory.supplier, "dataset.update", {"dataset_id": "ds2", "title": "New"})
    return factory, queries.search_datasets(factory.chain.kv)


def catalog(market: tuple[Factory, list[dict[str, Any]]]) -> dict[str, Any]:
    factory, records = market
    return dcat.catalog(
        CHAIN_ID, records, {factory.supplier.account_id: "Acme Machining"}, title="mdtp catalog"
    )


def test_the_catalog_conforms_to_the_dcat_ap_3_shapes(market):
    conforms, report = shacl_report(to_graph(catalog(market)))
    assert conforms, report


def test_one_dataset_document_conforms_too(market):
    _, records = market
    conforms, report = shacl_report(to_graph(dcat.document(CHAIN_ID, records[0], "Acme")))
    assert conforms, report


def test_a_dataset_without_its_mandatory_description_fails_the_shapes(market):
    # The shapes are really applied: a dataset missing dct:description is a violation.
    doc = catalog(market)
    del doc["dcat:dataset"][0]["dct:description"]
    conforms, report = shacl_report(to_graph(doc))
    assert not conforms
    assert "description" in report


def test_every_term_is_defined_by_its_vocabulary_or_the_dcat_ap_shapes(market):
    graph = to_graph(catalog(market))
    assert undefined_terms(graph, extra=shape_terms()) == []
    assert str(ns.DCAT) + "version" in shape_terms()  # DCAT 3, newer than rdflib's DCAT


def test_expand_to_rdf_and_compact_keep_the_same_graph(market):
    doc = catalog(market)
    again = jsonld.compact(jsonld.expand(doc, OPTIONS), dcat.CONTEXT, OPTIONS)
    assert to_graph(again).isomorphic(to_graph(doc))


def test_identifiers_are_stable_urns_of_the_chain_and_the_ledger_ids(market):
    doc = catalog(market)
    assert doc["@id"] == f"urn:mdtp:{CHAIN_ID}:catalog"
    assert [d["@id"] for d in doc["dcat:dataset"]] == [
        f"urn:mdtp:{CHAIN_ID}:dataset:ds1",
        f"urn:mdtp:{CHAIN_ID}:dataset:ds2",
    ]
    assert ids.dataset_id_of(CHAIN_ID, ids.dataset_iri(CHAIN_ID, "a:b.c")) == "a:b.c"
    assert catalog(market) == doc  # the same records export to the same document


def test_the_dataset_carries_metadata_distribution_and_checksum(market):
    factory, records = market
    graph = to_graph(catalog(market))
    ds = URIRef(ids.dataset_iri(CHAIN_ID, "ds1"))
    assert graph.value(ds, ns.DCTERMS.identifier) == Literal("ds1")
    assert graph.value(ds, ns.DCTERMS.title) == Literal(records[0]["title"])
    assert {str(k) for k in graph.objects(ds, ns.DCAT.keyword)} == {"cnc", "vibration"}
    publisher = graph.value(ds, ns.DCTERMS.publisher)
    assert publisher == URIRef(factory.supplier.account_id)
    assert graph.value(publisher, ns.FOAF.name) == Literal("Acme Machining")
    distribution = graph.value(ds, ns.DCAT.distribution)
    size = literal(graph, distribution, ns.DCAT.byteSize)
    assert (int(size), size.datatype) == (records[0]["size_bytes"], ns.XSD.nonNegativeInteger)
    checksum = graph.value(distribution, URIRef(SPDX + "checksum"))
    value = graph.value(checksum, URIRef(SPDX + "checksumValue"))
    assert str(value).lower() == records[0]["plaintext_digest"]
    algorithm = graph.value(checksum, URIRef(SPDX + "algorithm"))
    assert algorithm == URIRef(SPDX + "checksumAlgorithm_sha256")


def test_the_provenance_stamp_is_prov_and_the_temporal_coverage_is_the_capture(market):
    factory, _ = market
    graph = to_graph(catalog(market))
    ds = URIRef(ids.dataset_iri(CHAIN_ID, "ds1"))
    camera = URIRef(factory.camera.account_id)
    assert graph.value(ds, ns.PROV.wasAttributedTo) == camera
    activity = graph.value(ds, ns.PROV.wasGeneratedBy)
    assert (activity, RDF.type, ns.PROV.Activity) in graph
    assert graph.value(activity, ns.PROV.wasAssociatedWith) == camera
    site = URIRef(ids.site_iri(CHAIN_ID, "plant-augsburg"))
    assert graph.value(activity, ns.PROV.atLocation) == site
    assert graph.value(ds, ns.DCTERMS.spatial) == site
    started = graph.value(activity, ns.PROV.startedAtTime)
    assert str(started) == ids.datetime_literal(CAPTURE_START).replace(".000Z", "+00:00")
    temporal = graph.value(ds, ns.DCTERMS.temporal)
    end = graph.value(temporal, ns.DCAT.endDate)
    assert str(end) == ids.datetime_literal(CAPTURE_END).replace(".000Z", "+00:00")


def test_quality_claims_are_dqv_measurements_with_exact_decimals(market):
    graph = to_graph(catalog(market))
    ds = URIRef(ids.dataset_iri(CHAIN_ID, "ds1"))
    measured = {
        str(graph.value(m, URIRef(DQV + "isMeasurementOf"))): literal(
            graph, m, URIRef(DQV + "value")
        )
        for m in graph.objects(ds, URIRef(DQV + "hasQualityMeasurement"))
    }
    completeness = measured[dcat.COMPLETENESS_METRIC]
    assert (str(completeness), completeness.datatype) == ("0.987", ns.XSD.decimal)
    assert int(measured[dcat.SAMPLING_RATE_METRIC]) == quality()["sampling_rate_millihz"]


def test_an_unstamped_dataset_has_the_collection_period_and_no_prov(market):
    graph = to_graph(catalog(market))
    ds = URIRef(ids.dataset_iri(CHAIN_ID, "ds2"))
    assert graph.value(ds, ns.PROV.wasGeneratedBy) is None
    temporal = graph.value(ds, ns.DCTERMS.temporal)
    start = graph.value(temporal, ns.DCAT.startDate)
    assert str(start).startswith(ids.datetime_literal(quality()["collection_start_ms"])[:19])
    assert graph.value(ds, ns.DCTERMS.modified) is not None
