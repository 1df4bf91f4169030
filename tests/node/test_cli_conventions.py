"""``mdtp`` follows the conventions of the tools operators know: ``version``/``--version``,
``--json`` everywhere, quiet on a closed pipe, ``MDTP_HOME``."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
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


@pytest.mark.parametrize("argv", [["reasons", "--json"], ["reasons"], ["version"]])
def test_a_closed_pipe_ends_the_command_quietly_like_a_unix_tool(argv: list[str]) -> None:
    """``mdtp ... | head -1``: no traceback, the status of a process killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        r = subprocess.run(
            [sys.executable, "-m", "mdtp.node", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert r.stderr == ""
    assert r.returncode == 128 + signal.SIGPIPE
