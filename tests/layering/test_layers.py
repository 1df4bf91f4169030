"""The package layout is part of the design: dependencies point one way, nothing imports in a
circle, and every package installs under the ``mdtp`` namespace.

The layers themselves are declared once, in ``[tool.importlinter]`` of pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
TOP_PACKAGES = ("node", "consensus", "storage")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_dependency_points_down_the_declared_layers(tmp_path: Path) -> None:
    # in a process of its own: import-linter reconfigures logging for the whole process
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], cache_dir=sys.argv[2], "
            "no_logo=True))",
            str(ROOT / "pyproject.toml"),
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"an import breaks the layering in pyproject.toml:\n{done.stdout}"


def _cycles(graph: grimp.ImportGraph) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    yield sorted(component)


def test_no_module_imports_itself_through_a_circle_type_only_imports_included() -> None:
    graph = grimp.build_graph(
        *(f"mdtp.{p}" for p in TOP_PACKAGES), exclude_type_checking_imports=False, cache_dir=None
    )
    assert list(_cycles(graph)) == []


def test_the_cycle_check_finds_a_planted_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(module)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert list(_cycles(graph)) == [["a.x", "a.y"]]


def test_every_package_folder_installs_under_the_mdtp_namespace() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {
        "mdtp." + str(d.relative_to(ROOT)).replace(os.sep, ".")
        for top in TOP_PACKAGES
        for d in [ROOT / top, *(ROOT / top).rglob("*")]
        if d.is_dir() and (d / "__init__.py").exists()
    }
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {f"mdtp.{p}": p for p in TOP_PACKAGES}


def test_nothing_in_production_imports_the_test_switches() -> None:
    graph = grimp.build_graph("mdtp.node", exclude_type_checking_imports=False, cache_dir=None)
    testing = {m for m in graph.modules if m.startswith("mdtp.node.testing")}
    importers = {
        m
        for t in testing
        for m in graph.find_modules_that_directly_import(t)
        if not m.startswith("mdtp.node.testing")
    }
    assert importers == set()
