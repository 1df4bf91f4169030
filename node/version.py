"""The version of this build: the installed package's metadata, and the Python running it."""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTION = "mdtp"


def version() -> str:
    """The installed ``mdtp`` distribution's version (``unknown`` when not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_info() -> dict[str, str]:
    """What ``mdtp version --json`` prints and ``mdtp_build_info`` labels."""
    return {"version": version(), "python": platform.python_version()}
