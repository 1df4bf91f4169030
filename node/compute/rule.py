"""The analysis rule of a contract's terms (``node.ledger.trading.analysis``), as the
checker and the engine read it: a frozen view with lower-case column names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    aggregations: Mapping[str, frozenset[str]]
    dimensions: frozenset[str]
    never_output: frozenset[str]
    scalar_functions: frozenset[str]
    identity_column: str
    min_distinct: int
    query_budget: int
    max_result_rows: int
    noise_scale: float  # Laplace scale b added to every aggregate output; 0: none

    @classmethod
    def from_terms(cls, rule: Mapping[str, Any]) -> Rule:
        """From the stored ``analysis_rule`` map (validated by the ledger)."""
        return cls(
            aggregations={
                str(c).lower(): frozenset(str(f).upper() for f in fs)
                for c, fs in rule["aggregations"].items()
            },
            dimensions=frozenset(str(c).lower() for c in rule["dimensions"]),
            never_output=frozenset(str(c).lower() for c in rule["never_output"]),
            scalar_functions=frozenset(str(f).upper() for f in rule["scalar_functions"]),
            identity_column=str(rule["identity_column"]).lower(),
            min_distinct=int(rule["min_distinct"]),
            query_budget=int(rule["query_budget"]),
            max_result_rows=int(rule["max_result_rows"]),
            noise_scale=int(rule.get("noise_scale_milli", 0)) / 1000,
        )
