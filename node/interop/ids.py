"""Stable identifiers and time literals of the exported documents.

IRIs are URNs under ``urn:mdtp:<chain id>:``, each segment percent-encoded (ids may hold
``:``), so they are stable across nodes and exports and never collide between chains:

=============================================  ==========================================
``urn:mdtp:<chain>:catalog``                    the catalog
``urn:mdtp:<chain>:dataset:<id>``               a dataset (``dct:identifier`` is ``<id>``)
``urn:mdtp:<chain>:dataset:<id>:distribution``  its one distribution (encrypted chunks)
``urn:mdtp:<chain>:dataset:<id>:capture``       the capture activity of its provenance
``urn:mdtp:<chain>:site:<site>``                a site; ``...:line:<line>`` a line
``urn:mdtp:<chain>:contract:<id>:version:<n>``  a contract version's ODRL policy
``urn:mdtp:<chain>:consortium``                 the catalog's publisher
``urn:mdtp:currency:<ISO 4217>:minor``          the minor unit of a currency (cents of EUR)
``urn:mdtp:ns:<term>``                          mdtp's own terms (prefix ``mdtp:``)
=============================================  ==========================================

Accounts are named by their ``did:key`` ids, which are IRIs already.

Times are ``xsd:dateTime`` in UTC with milliseconds, computed with integer arithmetic on the
proleptic Gregorian calendar (years past 9999 get more digits, as XML Schema allows), so
every ledger time in 0..2^53-1 ms round-trips exactly.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MDTP_NS = "urn:mdtp:ns:"
DAY_MS = 86_400_000
_DATETIME_RE = re.compile(r"^(\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
_CURRENCY_RE = re.compile(r"^urn:mdtp:currency:([A-Z]{3}):minor$")


def _seg(value: str) -> str:
    return quote(value, safe="")


def chain_iri(chain_id: str) -> str:
    return f"urn:mdtp:{_seg(chain_id)}"


def catalog_iri(chain_id: str) -> str:
    return f"{chain_iri(chain_id)}:catalog"


def consortium_iri(chain_id: str) -> str:
    return f"{chain_iri(chain_id)}:consortium"


def dataset_iri(chain_id: str, dataset_id: str) -> str:
    return f"{chain_iri(chain_id)}:dataset:{_seg(dataset_id)}"


def dataset_id_of(chain_id: str, iri: str) -> str:
    """The dataset id named by :func:`dataset_iri`; ValueError for another IRI."""
    prefix = f"{chain_iri(chain_id)}:dataset:"
    if not iri.startswith(prefix) or ":" in iri[len(prefix) :]:
        raise ValueError(f"{iri!r} is not a dataset of chain {chain_id}")
    return unquote(iri[len(prefix) :])


def site_iri(chain_id: str, site: str) -> str:
    return f"{chain_iri(chain_id)}:site:{_seg(site)}"


def line_iri(chain_id: str, site: str, line: str) -> str:
    return f"{site_iri(chain_id, site)}:line:{_seg(line)}"


def policy_iri(chain_id: str, contract_id: str, version: int) -> str:
    return f"{chain_iri(chain_id)}:contract:{_seg(contract_id)}:version:{version}"


def currency_unit(currency: str) -> str:
    return f"urn:mdtp:currency:{currency}:minor"


def currency_of(unit: str) -> str:
    match = _CURRENCY_RE.match(unit)
    if match is None:
        raise ValueError(f"{unit!r} is not a currency unit urn:mdtp:currency:<ISO 4217>:minor")
    return match.group(1)


# ---- time --------------------------------------------------------------------------------


def _civil_from_days(days: int) -> tuple[int, int, int]:
    # H. Hinnant's algorithm: days since 1970-01-01 to (year, month, day), integers only.
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= 1 if month <= 2 else 0
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def datetime_literal(ms: int) -> str:
    """``ms`` since the epoch (>= 0) as an xsd:dateTime in UTC with milliseconds."""
    if ms < 0:
        raise ValueError("times before 1970 are not ledger times")
    days, rest = divmod(ms, DAY_MS)
    year, month, day = _civil_from_days(days)
    seconds, millis = divmod(rest, 1000)
    return (
        f"{year:04d}-{month:02d}-{day:02d}T"
        f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{millis:03d}Z"
    )


def parse_datetime(literal: str) -> int:
    """The inverse of :func:`datetime_literal` (only that form); ValueError otherwise."""
    match = _DATETIME_RE.match(literal)
    if match is None:
        raise ValueError(f"{literal!r} is not a UTC xsd:dateTime with milliseconds")
    year, month, day, hour, minute, second, millis = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise ValueError(f"{literal!r} is out of range")
    days = _days_from_civil(year, month, day)
    if _civil_from_days(days) != (year, month, day):
        raise ValueError(f"{literal!r} names no such day")
    return days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis
