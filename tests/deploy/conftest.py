"""Tools the deployment tests need: Debian's ``prometheus`` (``promtool``) and the
validators installed with the ``test`` extra. A missing tool is installed when we can
(root with apt-get); it skips the test only outside CI, where a missing tool is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.31.0"  # the Kubernetes API version the manifests are validated against
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI must have it)")
    pytest.skip(message)


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def prometheus_bins() -> tuple[str, str]:
    """(prometheus, promtool), installing Debian's ``prometheus`` package if needed."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        _apt_install("prometheus")
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        unavailable("prometheus/promtool not installed and not installable (need root + apt-get)")
    assert prometheus is not None and promtool is not None
    return prometheus, promtool


@pytest.fixture(scope="session")
def promtool(prometheus_bins: tuple[str, str]) -> str:
    return prometheus_bins[1]


def venv_tool(name: str) -> str:
    """A console script of the test extra, beside the running interpreter."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        unavailable(f"{name} not installed (pip install -e '.[test]')")
    assert found is not None
    return found


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, check=False)
