"""Who is on the other end of the connection a task serves, for per-source log limits.

The p2p accept loop and the HTTP connection gate set :data:`REMOTE` when they take a
connection; every task started from there (request handlers, frame handlers, the tasks
they spawn) inherits it through its context, so the log handler can rate-limit the lines
that outsiders cause per source without any call site passing it along.
"""

from __future__ import annotations

from contextvars import ContextVar

REMOTE: ContextVar[str | None] = ContextVar("mdtp_remote", default=None)
"""``"<port>:<address>"`` (``"api:10.0.0.7"``) or ``"p2p:<member id>"`` once a peer proved it."""


def peer_host(peername: object) -> str:
    """The address part of a transport's ``peername`` ("?" when the socket has none)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "?"
