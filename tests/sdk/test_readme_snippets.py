"""The README's SDK snippets are quotes of the runnable examples: a code block whose first
line is ``# node/sdk/examples/NAME.py`` must appear in that file line for line (at one
indentation), so the documentation cannot drift from code that a test runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = ROOT / "node" / "sdk" / "examples"
QUOTE = re.compile(r"^# (node/sdk/examples/\w+\.py)$")


def code_blocks(text: str, language: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    fence: str | None = None
    for line in text.splitlines():
        if current is None:
            m = re.match(r"^(\s*)```(\w*)\s*$", line)
            if m:
                current, fence = [], m[2]
        elif line.strip() == "```":
            if fence == language:
                blocks.append(current)
            current = None
        else:
            current.append(line)
    return blocks


def quoted_blocks() -> list[tuple[str, list[str]]]:
    found = []
    for block in code_blocks(README.read_text(), "python"):
        m = QUOTE.match(block[0]) if block else None
        if m:
            found.append((m[1], block[1:]))
    return found


def appears_in(lines: list[str], source: list[str]) -> bool:
    """``lines`` are consecutive lines of ``source``, all with the same added indentation."""
    first = next(line for line in lines if line.strip())
    for start in range(len(source) - len(lines) + 1):
        candidate = source[start]
        if not candidate.endswith(first.lstrip()) or not candidate.strip():
            continue
        indent = candidate[: len(candidate) - len(first)]
        if indent.strip():
            continue
        window = source[start : start + len(lines)]
        if all(
            (w == indent + line) if line.strip() else not w.strip()
            for w, line in zip(window, lines, strict=True)
        ):
            return True
    return False


def test_the_readme_quotes_every_example_and_each_runs_with_the_documented_command() -> None:
    readme = README.read_text()
    quoted = {path for path, _ in quoted_blocks()}
    examples = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_"))
    assert examples == ["batch_gateway", "submit_and_wait", "sync_client", "trade"]
    for name in examples:
        assert f"node/sdk/examples/{name}.py" in quoted, name
        assert f"python -m mdtp.node.sdk.examples.{name} --node" in readme, name


@pytest.mark.parametrize(("path", "lines"), quoted_blocks(), ids=lambda v: str(v)[:40])
def test_each_readme_snippet_is_the_example_files_own_text(path: str, lines: list[str]) -> None:
    source = (ROOT / path).read_text().splitlines()
    assert lines and appears_in(lines, source), f"README snippet drifted from {path}"


def test_a_changed_line_is_noticed() -> None:
    path, lines = quoted_blocks()[0]
    source = (ROOT / path).read_text().splitlines()
    changed = [*lines[:-1], lines[-1] + "  # edited"]
    assert not appears_in(changed, source)


def bodies_table() -> dict[str, str]:
    """The README's "Bodies, by type" table: type -> its fields cell."""
    text = README.read_text()
    section = text[text.index("### Bodies, by type") :]
    section = section[: section.index("\n### ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z_]+\.[a-z_]+)`", cells[0]) if len(cells) == 3 else None
        if m:
            rows[m[1]] = cells[1]
    return rows


def test_the_readme_bodies_table_lists_every_type_with_every_field() -> None:
    from dataclasses import fields

    from mdtp.node.ledger.bodies import BODIES

    table = bodies_table()
    assert set(table) == set(BODIES)
    for tx_type, body in BODIES.items():
        shown = set(re.findall(r"`(\w+)", table[tx_type]))
        missing = {f.name for f in fields(body)} - shown
        assert missing == set(), f"README's {tx_type} row lacks {sorted(missing)}"
