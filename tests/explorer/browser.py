"""Headless Chromium for the explorer test: Debian's ``chromium`` driven by Playwright (its
own browser downloads are never used). Outside CI a machine without either skips the test;
in CI (``CI=true``) that is a failure, since ``tests/run.sh`` installs Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
# flags that work on a container without a display, sandbox or network
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (tests/run.sh installs it in CI)")
    pytest.skip(what)


def chromium_path() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    _missing("no chromium on PATH (Debian package `chromium`)")
    raise AssertionError("unreachable")


def require_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")


def screenshot_dirs(tmp: Path) -> list[Path]:
    """Where screenshots go: the test's temporary folder, and ``MDTP_SCREENSHOTS`` if set
    (how the README's screenshots in deploy/screenshots/ are made)."""
    dirs = [tmp]
    extra = os.environ.get("MDTP_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        dirs.append(Path(extra))
    return dirs
