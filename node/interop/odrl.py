"""A contract version's terms as an ODRL 2.2 policy, and back.

:func:`policy` maps one version to an ``odrl:Offer`` (not yet signed by both parties) or an
``odrl:Agreement`` (the version every party signed), with the supplier as assigner, the
consumer as assignee and the dataset's IRI as target:

- permission ``use`` with constraints ``purpose eq <purpose>``, ``dateTime gteq <use
  start>``, ``dateTime lt <use end>`` and ``count lteq <max downloads>``; its duties
- ``compensate``: refinement ``payAmount eq <price in minor units>`` with ``unit``
  ``urn:mdtp:currency:<ISO 4217>:minor``, and ``mdtp:priceModel``, ``mdtp:billing`` (the
  terms' billing map, when present) on the duty;
- ``delete``: constraint ``dateTime lteq <disposal deadline>`` and ``mdtp:disposalMethod``;
- prohibition ``distribute`` when ``redistribution_banned``;
- policy-level mdtp terms: ``deliveryMethod``, ``termsDocumentHash``, ``reviewer``,
  ``arbiter``, ``analysisRule`` (the clean-room rule as a JSON literal) and ``termsHash``.

:func:`terms_from_odrl` is the inverse: it compacts any JSON-LD form of such a policy with
the same context (through the offline loader) and rebuilds the terms map, so a policy that
went through a dataspace connector, even expanded, gives back the same ``terms_hash``.
Anything it cannot map back is a ``ValueError`` naming it: a policy is never half-read.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mdtp.node.interop import ids
from mdtp.node.interop.loader import ODRL_CONTEXT_URL, document_loader

MDTP_CONTEXT: dict[str, Any] = {
    "mdtp": ids.MDTP_NS,
    "mdtp:reviewer": {"@type": "@id"},
    "mdtp:arbiter": {"@type": "@id"},
    "mdtp:analysisRule": {"@type": "@json"},
    "mdtp:billing": {"@type": "@json"},
}
CONTEXT: list[Any] = [ODRL_CONTEXT_URL, MDTP_CONTEXT]

# The billing map's fields (from the billing branch) this export knows how to carry.
BILLING_FIELDS = ("unit", "period_ms", "payment_due_ms", "suspend_when_overdue")
_TERMS_FIELDS = frozenset(
    {
        "delivery_method",
        "purpose",
        "use_start_ms",
        "use_end_ms",
        "max_downloads",
        "redistribution_banned",
        "disposal_method",
        "disposal_deadline_ms",
        "price_minor",
        "currency",
        "price_model",
        "terms_document_hash",
        "reviewer",
        "analysis_rule",
        "billing",
        "arbiter",
    }
)


def _when(ms: int) -> dict[str, str]:
    return {"@value": ids.datetime_literal(ms), "@type": "xsd:dateTime"}


def _constraint(left: str, operator: str, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def policy(
    chain_id: str,
    contract: Mapping[str, Any],
    version: Mapping[str, Any],
    *,
    agreed: bool,
) -> dict[str, Any]:
    """The ODRL policy of ``version`` of ``contract`` (ledger records, as stored or as the
    queries return them: hashes as bytes or hex). ``agreed``: every party signed it."""
    terms = dict(version["terms"])
    unknown = sorted(set(terms) - _TERMS_FIELDS)
    if unknown:
        raise ValueError(f"terms field {unknown[0]!r} has no ODRL mapping")
    target = ids.dataset_iri(chain_id, contract["dataset_id"])
    supplier, consumer = contract["supplier"], contract["consumer"]
    compensate: dict[str, Any] = {
        "action": [
            {
                "rdf:value": {"@id": "odrl:compensate"},
                "refinement": [
                    {
                        **_constraint("payAmount", "eq", terms["price_minor"]),
                        "unit": {"@id": ids.currency_unit(terms["currency"])},
                    }
                ],
            }
        ],
        "mdtp:priceModel": terms["price_model"],
    }
    if "billing" in terms:
        billing = dict(terms["billing"])
        extra = sorted(set(billing) - set(BILLING_FIELDS))
        if extra:
            raise ValueError(f"terms.billing field {extra[0]!r} has no ODRL mapping")
        compensate["mdtp:billing"] = billing
    delete = {
        "action": "delete",
        "constraint": [_constraint("dateTime", "lteq", _when(terms["disposal_deadline_ms"]))],
        "mdtp:disposalMethod": terms["disposal_method"],
    }
    permission = {
        "target": target,
        "assigner": supplier,
        "assignee": consumer,
        "action": "use",
        "constraint": [
            _constraint("purpose", "eq", terms["purpose"]),
            _constraint("dateTime", "gteq", _when(terms["use_start_ms"])),
            _constraint("dateTime", "lt", _when(terms["use_end_ms"])),
            _constraint("count", "lteq", terms["max_downloads"]),
        ],
        "duty": [compensate, delete],
    }
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "Agreement" if agreed else "Offer",
        "uid": ids.policy_iri(chain_id, contract["id"], version["version"]),
        "assigner": supplier,
        "assignee": consumer,
        "target": target,
        "permission": [permission],
        "mdtp:deliveryMethod": terms["delivery_method"],
        "mdtp:termsDocumentHash": _hex(terms["terms_document_hash"]),
        "mdtp:termsHash": _hex(version["terms_hash"]),
    }
    if terms["redistribution_banned"]:
        doc["prohibition"] = [
            {"target": target, "assigner": supplier, "assignee": consumer, "action": "distribute"}
        ]
    if "reviewer" in terms:
        doc["mdtp:reviewer"] = terms["reviewer"]
    if "arbiter" in terms:
        doc["mdtp:arbiter"] = terms["arbiter"]
    if "analysis_rule" in terms:
        doc["mdtp:analysisRule"] = _jsonable(terms["analysis_rule"])
    return doc


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---- the inverse -------------------------------------------------------------------------


def compact(doc: Mapping[str, Any] | list[Any]) -> dict[str, Any]:
    """The one policy in ``doc`` (any JSON-LD form: compacted, expanded, flattened, or read
    back from RDF) framed and compacted with :data:`CONTEXT`, offline. Framing nests the
    rules under the policy again, whatever shape the document came in."""
    # Imported here: the node only writes policies (plain maps); reading one back is a
    # client's job (SDK, CLI), and the processor pulls in requests and lxml (~0.2 s).
    from pyld import jsonld

    options = {"documentLoader": document_loader, "embed": "@always"}
    frame = {"@context": CONTEXT, "@type": ["Offer", "Agreement"]}
    framed: dict[str, Any] = jsonld.frame(copy.deepcopy(doc), frame, options)
    if "@graph" in framed:  # zero or several policies
        raise ValueError(f"policy: the document holds {len(framed['@graph'])} policies, not one")
    return framed


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _one(node: Mapping[str, Any], key: str, where: str) -> Any:
    values = _many(node.get(key))
    if len(values) != 1:
        raise ValueError(f"{where}: needs exactly one {key}, has {len(values)}")
    return values[0]


def _iri(value: Any, where: str) -> str:
    if isinstance(value, Mapping):
        value = value.get("uid", value.get("@id"))  # the ODRL context aliases @id as uid
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be an IRI")
    return value


def _value(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        if "@value" not in value:
            raise ValueError(f"{where}: must be a literal")
        return value["@value"]
    return value


def _int(value: Any, where: str) -> int:
    value = _value(value, where)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be an integer")
    return value


def _text(value: Any, where: str) -> str:
    value = _value(value, where)
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string")
    return value


def _time(value: Any, where: str) -> int:
    return ids.parse_datetime(_text(value, where))


def _action(rule: Mapping[str, Any], where: str) -> tuple[str, list[Any]]:
    """A rule's action name and its refinements (the action may be refined, as compensate)."""
    # A refined action is a node, which compaction cannot put under the @vocab-typed term.
    key = "action" if "action" in rule else "odrl:action"
    action = _one(rule, key, where)
    if isinstance(action, str):
        return action, []
    if isinstance(action, Mapping):
        name = _iri(action.get("rdf:value"), f"{where}.action")
        return name.removeprefix("odrl:"), _many(action.get("refinement"))
    raise ValueError(f"{where}: action must be a name or a refined action")


def _constraints(constraints: list[Any], where: str) -> dict[tuple[str, str], Any]:
    """Constraints by (left operand, operator): each pair once (their order is no term)."""
    found: dict[tuple[str, str], Any] = {}
    for i, c in enumerate(constraints):
        at = f"{where}[{i}]"
        pair = (_text(c.get("leftOperand"), at), _text(c.get("operator"), at))
        if pair in found:
            raise ValueError(f"{at}: repeats {pair[0]} {pair[1]}")
        found[pair] = c
    return found


def _take(found: dict[tuple[str, str], Any], left: str, op: str, where: str) -> Any:
    if (left, op) not in found:
        raise ValueError(f"{where}: no constraint {left} {op}")
    return found.pop((left, op))


def _nothing_left(found: Mapping[Any, Any], where: str) -> None:
    if found:
        raise ValueError(f"{where}: unexpected {sorted(found)[0]}")


def terms_from_odrl(doc: Mapping[str, Any] | list[Any]) -> dict[str, Any]:
    """The terms map a policy made by :func:`policy` carries (its ``terms_hash`` is the
    version's); ``ValueError`` naming what does not map back."""
    p = compact(doc)
    if p.get("type") not in ("Offer", "Agreement"):  # the ODRL context aliases @type as type
        raise ValueError("policy: must be an odrl:Offer or odrl:Agreement")
    permission = _one(p, "permission", "policy")
    if _action(permission, "permission") != ("use", []):
        raise ValueError("permission: action must be use")
    found = _constraints(_many(permission.get("constraint")), "permission.constraint")
    terms: dict[str, Any] = {
        "delivery_method": _text(p.get("mdtp:deliveryMethod"), "mdtp:deliveryMethod"),
        "purpose": _text(_take(found, "purpose", "eq", "permission")["rightOperand"], "purpose"),
        "use_start_ms": _time(
            _take(found, "dateTime", "gteq", "permission")["rightOperand"], "use start"
        ),
        "use_end_ms": _time(_take(found, "dateTime", "lt", "permission")["rightOperand"], "end"),
        "max_downloads": _int(_take(found, "count", "lteq", "permission")["rightOperand"], "count"),
    }
    _nothing_left(found, "permission.constraint")
    duties: dict[str, tuple[Mapping[str, Any], list[Any]]] = {}
    for i, duty in enumerate(_many(permission.get("duty"))):
        name, refinements = _action(duty, f"permission.duty[{i}]")
        if name in duties or name not in ("compensate", "delete"):
            raise ValueError(f"permission.duty[{i}]: unexpected duty {name}")
        duties[name] = (duty, refinements)
    if set(duties) != {"compensate", "delete"}:
        raise ValueError("permission: needs a compensate and a delete duty")
    delete, _ = duties["delete"]
    found = _constraints(_many(delete.get("constraint")), "delete duty")
    deadline = _take(found, "dateTime", "lteq", "delete duty")["rightOperand"]
    _nothing_left(found, "delete duty")
    terms["redistribution_banned"] = _prohibits_distribution(p)
    terms["disposal_method"] = _text(delete.get("mdtp:disposalMethod"), "mdtp:disposalMethod")
    terms["disposal_deadline_ms"] = _time(deadline, "disposal deadline")
    compensate, refinements = duties["compensate"]
    found = _constraints(refinements, "compensate duty refinement")
    pay = _take(found, "payAmount", "eq", "compensate duty")
    _nothing_left(found, "compensate duty")
    terms["price_minor"] = _int(pay["rightOperand"], "payAmount")
    terms["currency"] = ids.currency_of(_iri(pay.get("unit"), "payAmount unit"))
    terms["price_model"] = _text(compensate.get("mdtp:priceModel"), "mdtp:priceModel")
    terms["terms_document_hash"] = bytes.fromhex(
        _text(p.get("mdtp:termsDocumentHash"), "mdtp:termsDocumentHash")
    )
    if "mdtp:reviewer" in p:
        terms["reviewer"] = _iri(p["mdtp:reviewer"], "mdtp:reviewer")
    if "mdtp:analysisRule" in p:
        terms["analysis_rule"] = _json(p["mdtp:analysisRule"], "mdtp:analysisRule")
    if "mdtp:billing" in compensate:
        terms["billing"] = _json(compensate["mdtp:billing"], "mdtp:billing")
    if "mdtp:arbiter" in p:
        terms["arbiter"] = _iri(p["mdtp:arbiter"], "mdtp:arbiter")
    return terms


def parties_from_odrl(doc: Mapping[str, Any] | list[Any]) -> dict[str, str]:
    """``{"assigner", "assignee", "target"}`` of a policy (any JSON-LD form): whom and what
    it binds, which the terms map does not carry."""
    p = compact(doc)
    return {
        name: _iri(_one(p, name, "policy"), f"policy.{name}")
        for name in ("assigner", "assignee", "target")
    }


def _prohibits_distribution(p: Mapping[str, Any]) -> bool:
    prohibitions = _many(p.get("prohibition"))
    for i, rule in enumerate(prohibitions):
        if _action(rule, f"prohibition[{i}]") != ("distribute", []):
            raise ValueError(f"prohibition[{i}]: only distribute maps to the terms")
    if len(prohibitions) > 1:
        raise ValueError("policy: at most one prohibition")
    return bool(prohibitions)


def _json(value: Any, where: str) -> Any:
    # Compacted with the @json term the map is the value itself; otherwise a @value literal.
    if isinstance(value, Mapping) and "@value" in value:
        value = value["@value"]
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a JSON map")
    return value
