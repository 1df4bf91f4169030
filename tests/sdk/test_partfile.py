"""The part file writer: whole aligned blocks direct where the file system allows it, the rest
buffered, the same bytes at the same offsets either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdtp.node.data.owner_only import open_owner_only
from mdtp.node.sdk import partfile
from mdtp.node.sdk.partfile import DIRECT_ALIGN, PartWriter

PIECES = [DIRECT_ALIGN * 256, DIRECT_ALIGN * 256, 4097, DIRECT_ALIGN, 1000]


def _write(path: Path, start: bytes, pieces: list[bytes], *, direct: bool) -> PartWriter:
    fd = open_owner_only(path, truncate=True)
    try:
        os.write(fd, start)
        writer = PartWriter(path, fd, len(start), direct=direct)
        try:
            for piece in pieces:
                writer.write(piece)
            writer.sync()
        finally:
            writer.close()
    finally:
        os.close(fd)
    return writer


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("start", [0, DIRECT_ALIGN * 2, 10])
def test_every_piece_lands_at_its_offset(tmp_path: Path, direct: bool, start: int) -> None:
    head = os.urandom(start)
    pieces = [os.urandom(n) for n in PIECES]
    writer = _write(tmp_path / "p", head, pieces, direct=direct)
    assert (tmp_path / "p").read_bytes() == head + b"".join(pieces)
    assert writer.offset == start + sum(PIECES)
    if not direct or start % DIRECT_ALIGN:
        assert writer.direct_bytes == 0  # unaligned from the start: never direct
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o600


def test_aligned_blocks_go_direct_where_the_file_system_allows_it(tmp_path: Path) -> None:
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this system")
    try:
        os.close(os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        pytest.skip("this file system refuses O_DIRECT (tmpfs)")
    writer = _write(tmp_path / "p", b"", [os.urandom(n) for n in PIECES], direct=True)
    assert writer.direct_bytes == 2 * DIRECT_ALIGN * 256  # the 4097 breaks the alignment


def test_a_failing_direct_write_falls_back_to_buffered_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    calls: list[int] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(22, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(partfile, "_open_direct", lambda path: os.open(path, os.O_WRONLY))
    pieces = [os.urandom(DIRECT_ALIGN * 4) for _ in range(3)]
    writer = _write(tmp_path / "p", b"", pieces, direct=True)
    assert (tmp_path / "p").read_bytes() == b"".join(pieces)
    assert writer.direct_bytes == 0 and len(set(calls[1:])) == 1
