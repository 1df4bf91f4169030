"""What a node process and the ``mdtp`` command load before doing anything: the heavy
libraries that only some paths use (DuckDB and sqlglot for clean-room queries, the RDF stack
for the dataspace exports) are imported where they are used, never at start.

Behaviour, not timing: each check runs in a fresh interpreter and looks at ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# imported on first use only (node/compute/engine.py, check.py, anonymise.py, node/interop)
LAZY = ("duckdb", "sqlglot", "rdflib", "pyld", "pyshacl")


def _loaded_after(code: str) -> list[str]:
    report = f"print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    probe = f"import json, sys\n{code}\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "code",
    [
        # what `python -m mdtp.node start` imports before serving
        "import mdtp.node.cli, mdtp.node.app.daemon",
        # what every `mdtp ...` command (`mdtp version`, `mdtp --help`) loads: the whole parser
        "import mdtp.node.cli\nmdtp.node.cli.build_parser()",
    ],
    ids=["node-start", "cli-parser"],
)
def test_start_and_the_cli_parser_import_no_heavy_library(code: str) -> None:
    assert _loaded_after(code) == []


def test_the_probe_sees_a_heavy_library_once_it_is_used() -> None:
    # the check above would pass vacuously if the probe could not see an import
    assert _loaded_after("import mdtp.node.compute.check") == ["sqlglot"]
