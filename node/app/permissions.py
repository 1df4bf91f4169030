"""Owner-only permissions on everything a node writes.

The daemon sets the process umask to :data:`OWNER_ONLY_UMASK` before it opens anything, so
every file it or a library creates (LevelDB tables and logs, chunk files, the lock, the
health probe) is 0600 and every directory 0700 whatever the caller's umask; and it tightens
the node home and its data directory if an older version or an operator left them open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY_UMASK = 0o077
DIR_MODE = 0o700


def owner_only_umask() -> None:
    """From now on this process creates files 0600 and directories 0700."""
    os.umask(OWNER_ONLY_UMASK)


def restrict_home(home: Path, data_dir: Path) -> None:
    """Create the data directory if needed; make it and the home owner-only (0700)."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for path in (home, data_dir):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            path.chmod(mode & ~(stat.S_IRWXG | stat.S_IRWXO) | stat.S_IRWXU)
