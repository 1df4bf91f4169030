"""The node's log lines cannot be forged and outsiders' lines are rate-limited per source."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from mdtp.node.app import logs
from mdtp.node.p2p.remote import REMOTE

FORGED = "x\n2030-01-01 00:00:00,000 INFO    node0 mdtp.data.audit: granted access\r\x1b[2K\u2028"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def _install(out: io.StringIO, as_json: bool) -> logs.RemoteLineLimiter:
    logs.setup_logging("info", as_json, "node0")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    limiter = handler.filters[0]
    assert isinstance(limiter, logs.RemoteLineLimiter)
    return limiter


def test_escape_leaves_no_control_or_separator_character() -> None:
    escaped = logs.escape(FORGED + "\x00\x7f\x85\u2029\t")
    assert "\n" not in escaped and "\r" not in escaped
    assert all(c.isprintable() for c in escaped), escaped
    assert "\\n2030-01-01" in escaped and "\\x1b" in escaped and "\\u2028" in escaped


@pytest.mark.parametrize("as_json", [False, True])
def test_an_input_with_newlines_stays_on_its_line(captured: io.StringIO, as_json: bool) -> None:
    _install(captured, as_json)
    log = logging.getLogger("mdtp.data.audit")
    log.warning("refused fetch by %s: not_member_account", FORGED)
    try:
        raise ValueError(FORGED)
    except ValueError:
        log.exception("handler failed on %s", FORGED)
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2, lines  # one line per event, the traceback included
    for line in lines:
        assert all(c.isprintable() for c in line), line
        if as_json:
            doc = json.loads(line)
            assert FORGED in doc["message"]  # the reader gets the input back, exactly
        else:
            assert line.startswith(tuple("0123456789")) and "\\n2030-01-01" in line


def test_outsiders_lines_are_limited_per_source_and_in_total(captured: io.StringIO) -> None:
    handler = logging.getLogger().handlers[0] if _install(captured, False) else None
    assert handler is not None
    now = [0.0]
    handler.filters.clear()
    limiter = logs.RemoteLineLimiter(logs.RemoteLineLimits(3, 5, 10), clock=lambda: now[0])
    handler.addFilter(limiter)
    log = logging.getLogger("mdtp.test")
    for source in ("api:10.0.0.1", "api:10.0.0.2"):
        token = REMOTE.set(source)
        try:
            for _ in range(10):
                log.warning("garbage")
        finally:
            REMOTE.reset(token)
    log.warning("the node's own line")  # no source: never limited
    lines = captured.getvalue().splitlines()
    assert sum("[src api:10.0.0.1]" in line for line in lines) == 3
    assert sum("[src api:10.0.0.2]" in line for line in lines) == 2  # the total ran out
    assert lines[-1].endswith("the node's own line")
    assert limiter.dropped == {"per_source": 7, "total": 8}
    now[0] = 10.0  # a new window
    logging.getLogger("mdtp.test").warning("again", extra={"source": "api:10.0.0.1"})
    assert captured.getvalue().splitlines()[-1].endswith("again [src api:10.0.0.1]")


def test_dropped_lines_are_exported(captured: io.StringIO) -> None:
    limiter = _install(captured, True)
    registry = CollectorRegistry()
    logs.limit_remote_lines(logs.RemoteLineLimits(per_source=1, total=10, window_s=60), registry)
    assert limiter.limits.per_source == 1
    for _ in range(4):
        logging.getLogger("mdtp.test").info("x", extra={"source": "p2p:node1"})
    value = registry.get_sample_value("mdtp_log_lines_dropped_total", {"reason": "per_source"})
    assert value == 3.0
    assert json.loads(captured.getvalue().splitlines()[0])["source"] == "p2p:node1"


def test_json_lines_carry_an_iso_utc_time_the_node_and_the_call_sites_fields(
    captured: io.StringIO,
) -> None:
    _install(captured, as_json=True)
    log = logging.getLogger("mdtp.test")
    log.warning(
        "fetch %s refused", "f-1", extra={"contract": "c-9", "chunks": 3, "level": "x", "p": b"\0"}
    )
    doc = json.loads(captured.getvalue().splitlines()[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"]), doc["ts"]
    assert doc["level"] == "warning" and doc["logger"] == "mdtp.test" and doc["node"] == "node0"
    assert doc["message"] == "fetch f-1 refused"
    assert doc["contract"] == "c-9" and doc["chunks"] == 3
    assert doc["extra_level"] == "x"  # a field never overwrites the line's own keys
    assert doc["p"] == str(b"\0")  # not JSON: written as its str()
    assert "args" not in doc and "msg" not in doc and "created" not in doc


def test_text_lines_carry_an_iso_utc_time(captured: io.StringIO) -> None:
    _install(captured, as_json=False)
    logging.getLogger("mdtp.test").warning("hello")
    line = captured.getvalue().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING node0 mdtp.test: hello$", line)
