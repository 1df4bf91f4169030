"""``mdtp`` follows the conventions of the tools operators know: ``version``/``--version``,
``--json`` everywhere, quiet on a closed pipe, ``MDTP_HOME``."""

from __future__ import annotations

import json
import platform
from importlib import metadata

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mdtp.node.app.health import register_process_metrics
from mdtp.node.cli import main


def test_version_comes_from_the_installed_package_metadata(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["version", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "name": "mdtp",
        "version": metadata.version("mdtp"),
        "python": platform.python_version(),
    }
    assert main(["version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"mdtp {metadata.version('mdtp')} (Python {platform.python_version()})"
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == line


def test_a_node_registry_carries_build_info_and_the_process_metrics() -> None:
    registry = CollectorRegistry()
    register_process_metrics(registry)
    text = generate_latest(registry).decode()
    version, python = metadata.version("mdtp"), platform.python_version()
    assert f'mdtp_build_info{{python="{python}",version="{version}"}} 1.0' in text
    assert "process_resident_memory_bytes " in text
    assert "python_info{" in text
