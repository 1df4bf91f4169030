"""Coverage-guided fuzzing of the p2p frame decoder with atheris, for a bounded time.

    python -m tests.faults.fuzz_frames_atheris --seconds 60

Feeds each input both to ``decode_payload`` and, as a byte stream, to ``read_frame``: the
only acceptable outcomes are a decoded frame, ``FrameError`` or end of stream. Any other
exception is a crash that atheris reports with the input that caused it (and exit 1).
Requires ``atheris`` (``pip install atheris``, in the ``test`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

MAX_FRAME = 4096


FrameError: Any = None
decode_payload: Any = None
read_frame: Any = None


async def _read_stream(data: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    for _ in range(len(data) // 4 + 1):
        try:
            await read_frame(reader, MAX_FRAME)
        except FrameError as e:
            if e.reason == "oversized_fatal":
                return
        except asyncio.IncompleteReadError:
            return


def one_input(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_payload(data)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(_read_stream(data), 5))
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="how long to fuzz")
    parser.add_argument("--runs", type=int, default=0, help="stop after N inputs (0: no limit)")
    args, rest = parser.parse_known_args(argv)
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    global FrameError, decode_payload, read_frame
    with atheris.instrument_imports():  # only the decoder and msgpack's Python fallback
        from mdtp.node.errors import FrameError
        from mdtp.node.p2p.frames import decode_payload, read_frame
    libfuzzer = [sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=4096", *rest]
    if args.runs:
        libfuzzer.append(f"-runs={args.runs}")
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
