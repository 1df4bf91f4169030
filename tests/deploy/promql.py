"""Just enough PromQL lexing to list the metric names an expression reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Identifiers in ``expr`` that are series selectors (not functions, labels or keywords)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call is None and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def exported_series(metrics_text: str) -> set[str]:
    """Every series name a ``/metrics`` page can carry, from its ``# TYPE`` lines (labelled
    metrics with no child yet have no samples, but they do have a TYPE line)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
    }
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + s for s in suffixes.get(kind, ()))
    return names


def dashboard_exprs(path: Path) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every query of a Grafana dashboard."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            yield from walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield panel.get("title", "?"), target["expr"]

    yield from walk(json.loads(path.read_text())["panels"])


def rule_exprs(path: Path) -> Iterator[tuple[str, str]]:
    """(alert or record name, expr) for every rule of a Prometheus rules file."""
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record"), rule["expr"]


def as_promql(grafana_expr: str) -> str:
    """Grafana's interval variables replaced so that promtool can parse the expression."""
    text = re.sub(r"\$__(rate_)?interval|\$__range", "5m", grafana_expr)
    return text.replace("$instance", ".*")
