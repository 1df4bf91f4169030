"""The catalog as a DCAT-AP 3 JSON-LD document, from the ledger's dataset records.

:func:`catalog` is a ``dcat:Catalog`` of ``dcat:Dataset`` nodes (:func:`dataset`), each with

- ``dct:identifier`` (the ledger id), ``dct:title``, ``dct:description``, ``dcat:keyword``
  (the tags), ``dct:publisher`` (the supplier's account, a ``foaf:Agent`` with its display
  name), ``dct:issued``/``dct:modified`` (block times), ``dcat:version``;
- ``dct:temporal``: the capture period of the provenance stamp, else the collection period;
  ``dct:spatial``: the stamped site;
- one ``dcat:Distribution``: format, ``dcat:byteSize``, ``spdx:checksum`` (SHA-256 of the
  plaintext, the ledger's ``plaintext_digest``), and mdtp's Merkle root and chunk count;
- the provenance stamp as ``prov:wasGeneratedBy`` (a ``prov:Activity`` at the site and line,
  associated with the capturing system, with its signature and key version) and
  ``prov:wasAttributedTo`` (the capturing system);
- the quality claims as ``dqv:hasQualityMeasurement`` (completeness as a decimal fraction,
  sampling rate in millihertz) and mdtp terms (machine type, validation method, calibration,
  known gaps as ``dct:PeriodOfTime`` nodes).

The context is inline (prefixes only), so the document needs no remote context at all.
Identifiers are those of :mod:`.ids`. Numbers stay integers: the completeness fraction is
written from the permille with integer arithmetic, never a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from mdtp.node.interop import ids

CONTEXT: dict[str, str] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "prov": "http://www.w3.org/ns/prov#",
    "dqv": "http://www.w3.org/ns/dqv#",
    "spdx": "http://spdx.org/rdf/terms#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "mdtp": ids.MDTP_NS,
}
COMPLETENESS_METRIC = f"{ids.MDTP_NS}completeness"
SAMPLING_RATE_METRIC = f"{ids.MDTP_NS}samplingRateMillihertz"


def _when(ms: int) -> dict[str, str]:
    return {"@value": ids.datetime_literal(ms), "@type": "xsd:dateTime"}


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _period(start_ms: int, end_ms: int) -> dict[str, Any]:
    return {
        "@type": "dct:PeriodOfTime",
        "dcat:startDate": _when(start_ms),
        "dcat:endDate": _when(end_ms),
    }


def _fraction(permille: int) -> dict[str, str]:
    return {"@value": f"{permille // 1000}.{permille % 1000:03d}", "@type": "xsd:decimal"}


def _quality(iri: str, quality: Mapping[str, Any]) -> dict[str, Any]:
    measurements: list[dict[str, Any]] = [
        {
            "@id": f"{iri}:quality:sampling-rate",
            "@type": "dqv:QualityMeasurement",
            "dqv:isMeasurementOf": {"@id": SAMPLING_RATE_METRIC},
            "dqv:value": quality["sampling_rate_millihz"],
        }
    ]
    if "completeness_permille" in quality:
        measurements.append(
            {
                "@id": f"{iri}:quality:completeness",
                "@type": "dqv:QualityMeasurement",
                "dqv:isMeasurementOf": {"@id": COMPLETENESS_METRIC},
                "dqv:value": _fraction(quality["completeness_permille"]),
            }
        )
    node: dict[str, Any] = {
        "dqv:hasQualityMeasurement": measurements,
        "mdtp:machineType": quality["machine_type"],
        "mdtp:validationMethod": quality["validation_method"],
        "mdtp:collectionPeriod": _period(
            quality["collection_start_ms"], quality["collection_end_ms"]
        ),
    }
    if "calibration" in quality:
        node["mdtp:calibration"] = quality["calibration"]
    if quality.get("known_gaps"):
        node["mdtp:knownGap"] = [
            {**_period(g["start_ms"], g["end_ms"]), "rdfs:comment": g["reason"]}
            for g in quality["known_gaps"]
        ]
    return node


def _provenance(chain_id: str, iri: str, stamp: Mapping[str, Any]) -> dict[str, Any]:
    site = ids.site_iri(chain_id, stamp["site"])
    return {
        "dct:spatial": {"@id": site, "@type": "dct:Location", "rdfs:label": stamp["site"]},
        "prov:wasAttributedTo": {"@id": stamp["captured_by"]},
        "prov:wasGeneratedBy": {
            "@id": f"{iri}:capture",
            "@type": "prov:Activity",
            "prov:startedAtTime": _when(stamp["capture_start_ms"]),
            "prov:endedAtTime": _when(stamp["capture_end_ms"]),
            "prov:wasAssociatedWith": {"@id": stamp["captured_by"]},
            "prov:atLocation": {"@id": site},
            "mdtp:line": {
                "@id": ids.line_iri(chain_id, stamp["site"], stamp["line"]),
                "rdfs:label": stamp["line"],
            },
            "mdtp:captureSignature": _hex(stamp["capture_signature"]),
            "mdtp:keyVersion": stamp["key_version"],
        },
    }


def dataset(chain_id: str, record: Mapping[str, Any], publisher_name: str) -> dict[str, Any]:
    """One dataset record (as stored or as the queries return it) as a ``dcat:Dataset``
    node, without a context (:func:`document` adds it)."""
    iri = ids.dataset_iri(chain_id, record["id"])
    quality = record["quality"]
    stamp = record.get("provenance")
    period = (
        (stamp["capture_start_ms"], stamp["capture_end_ms"])
        if stamp is not None
        else (quality["collection_start_ms"], quality["collection_end_ms"])
    )
    node: dict[str, Any] = {
        "@id": iri,
        "@type": "dcat:Dataset",
        "dct:identifier": record["id"],
        "dct:title": record["title"],
        "dct:description": record["description"],
        "dcat:keyword": list(record["tags"]),
        "dct:publisher": {
            "@id": record["supplier"],
            "@type": "foaf:Agent",
            "foaf:name": publisher_name,
        },
        "dct:issued": _when(record["published"]["time_ms"]),
        "dcat:version": str(record["version"]),
        "dct:temporal": _period(*period),
        "dcat:distribution": {
            "@id": f"{iri}:distribution",
            "@type": "dcat:Distribution",
            # Access is a contract on the ledger, then a fetch from the supplier's node: the
            # access "URL" is that service, named by the dataset (typed for the shapes,
            # which check classes without an ontology).
            "dcat:accessURL": {
                "@id": f"{iri}:access",
                "@type": "rdfs:Resource",
                "rdfs:comment": "sign a contract on the mdtp ledger, then fetch from the "
                f"supplier's node {record['supplier_node']}",
            },
            "dct:format": {
                "@id": f"{ids.MDTP_NS}format:{quote(record['format'], safe='')}",
                "@type": "dct:MediaTypeOrExtent",
                "rdfs:label": record["format"],
            },
            "dcat:byteSize": {
                "@value": str(record["size_bytes"]),
                "@type": "xsd:nonNegativeInteger",
            },
            "spdx:checksum": {
                "@type": "spdx:Checksum",
                "spdx:algorithm": {
                    "@id": "spdx:checksumAlgorithm_sha256",
                    "@type": "spdx:ChecksumAlgorithm",
                },
                "spdx:checksumValue": {
                    "@value": _hex(record["plaintext_digest"]),
                    "@type": "xsd:hexBinary",
                },
            },
            "mdtp:merkleRoot": _hex(record["merkle_root"]),
            "mdtp:chunkCount": record["chunk_count"],
        },
        "mdtp:supplierNode": record["supplier_node"],
        "mdtp:status": record["status"],
        **_quality(iri, quality),
    }
    if record.get("updated") is not None:
        node["dct:modified"] = _when(record["updated"]["time_ms"])
    if stamp is not None:
        node.update(_provenance(chain_id, iri, stamp))
    return node


def catalog(
    chain_id: str,
    records: Iterable[Mapping[str, Any]],
    publisher_names: Mapping[str, str],
    *,
    title: str,
) -> dict[str, Any]:
    """A ``dcat:Catalog`` document of ``records``; ``publisher_names`` maps each supplier
    account to its display name."""
    return {
        "@context": CONTEXT,
        "@id": ids.catalog_iri(chain_id),
        "@type": "dcat:Catalog",
        "dct:title": title,
        "dct:description": f"Datasets offered on the mdtp consortium ledger {chain_id}.",
        "dct:publisher": {
            "@id": ids.consortium_iri(chain_id),
            "@type": "foaf:Agent",
            "foaf:name": f"mdtp consortium {chain_id}",
        },
        "dcat:dataset": [
            dataset(chain_id, r, publisher_names.get(r["supplier"], r["supplier"])) for r in records
        ],
    }


def document(chain_id: str, record: Mapping[str, Any], publisher_name: str) -> dict[str, Any]:
    """One dataset as a JSON-LD document of its own."""
    return {"@context": CONTEXT, **dataset(chain_id, record, publisher_name)}
