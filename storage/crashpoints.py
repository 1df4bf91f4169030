"""Test-only crash points: ``MDTP_CRASH_AT=N`` makes the process die at its Nth crash point.

Crash points sit on either side of every durable write (consensus-state persist, block
commit batch, chunk write). They live in ``storage`` so that the store itself can use them;
the node's driver imports them from here. Dying is ``os._exit`` — no cleanup, no flush —
the closest a process gets to ``kill -9`` at an exact place. Fault tests loop N = 1, 2, 3,
... restarting the node each time and checking the invariants. Unset (the default), a crash
point costs one integer comparison.
"""

from __future__ import annotations

import logging
import os
import sys

EXIT_CODE = 86
_target = int(os.environ.get("MDTP_CRASH_AT", "0") or 0)  # read once, at import
_count = 0


def crash_point(name: str) -> None:
    global _count
    if not _target:
        return
    _count += 1
    if _count == _target:
        logging.getLogger("mdtp.crash").error("crash point %d reached: %s", _count, name)
        sys.stderr.flush()
        os._exit(EXIT_CODE)
