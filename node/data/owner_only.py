"""Owner-only files: what the chunk service (and the data client) writes is readable by the
node's (or user's) own account only — dataset keys, ciphertext, nonces, fetched plaintext."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_owner_only(root: Path) -> None:
    """Create ``root`` (0700) or make it and everything under it 0700 dirs / 0600 files.

    Files created later under ``root`` (LevelDB tables, chunk folders) may carry the process
    umask, but a 0700 ``root`` keeps every other account out of all of them."""
    root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(root, DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(folder, d), DIR_MODE, follow_symlinks=False)
        for f in files:
            path = os.path.join(folder, f)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def open_owner_only(path: Path, *, truncate: bool) -> int:
    """A file descriptor for reading and writing ``path``, created 0600 (and made 0600)."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_owner_only(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename), 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = open_owner_only(tmp, truncate=True)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
