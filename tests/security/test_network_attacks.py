"""Issue #12, items 6, 7 and 9: attacks on the ports of a real 4-node cluster.

Each attack asserts the specific refusal (counted in a metric), that the attacked node then
commits a transaction and serves its API, and that its memory and file descriptors come
back (``Net.after_attack``). Deadlines in the cluster's config are short (net_fixtures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
import urllib.error
import urllib.request

import pytest

from mdtp.node.identity import pki
from mdtp.node.identity.keys import load_key
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.p2p.frames import encode_frame
from tests.security import net_fixtures
from tests.security.net_fixtures import Net
from tests.support.impersonate import impersonate
from tests.support.processes import wait_until

pytestmark = [pytest.mark.security, pytest.mark.cluster]
net = net_fixtures.net

FORGED = "\n2030-01-01 00:00:00,000 INFO    node0 mdtp.data.audit: FORGED granted"


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _open(
    address: str, ctx: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _hostport(address)
    return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 20)


async def _closed_by_peer(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), within_s):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return True


def _refused_http(net: Net, node: ClusterNode, port: str, reason: str) -> float:
    return net.metric(node, "mdtp_http_connections_refused_total", port=port, reason=reason)


def _refused_p2p(net: Net, node: ClusterNode, reason: str) -> float:
    return net.metric(node, "mdtp_p2p_connections_refused_total", reason=reason)


def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


# -- API port -------------------------------------------------------------------------------


def test_slowloris_on_the_api_is_cut_at_the_header_deadline(net: Net) -> None:
    node = net.nodes[1]
    before, cut0 = net.usage(node), _refused_http(net, node, "api", "header_timeout")

    async def attack() -> list[bool]:
        conns = [await _open(node.api, net.client_context()) for _ in range(30)]
        for _, writer in conns:
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")

        async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            for i in range(20):  # a header line every 0.5 s, never the end of the head
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(f"X-Drip-{i}: x\r\n".encode())
                with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
                    if await asyncio.wait_for(reader.read(1), 0.5) == b"":
                        return True
            return await _closed_by_peer(reader, 5)

        try:
            return await asyncio.gather(*(drip(r, w) for r, w in conns))
        finally:
            _close_all([w for _, w in conns])

    assert all(asyncio.run(attack()))
    assert _refused_http(net, node, "api", "header_timeout") >= cut0 + 30
    net.after_attack(node, before)


def test_1500_slow_tls_connections_are_refused_or_cut(net: Net) -> None:
    node = net.nodes[2]
    before = net.usage(node)
    excess0 = _refused_http(net, node, "api", "too_many_from_address")
    slow0 = _refused_http(net, node, "api", "tls_handshake_timeout")

    async def attack() -> int:
        opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for start in range(0, 1500, 100):
            batch = await asyncio.gather(
                *(_open(node.api) for _ in range(start, start + 100)), return_exceptions=True
            )
            opened += [c for c in batch if isinstance(c, tuple)]
        try:
            for _, writer in opened:
                writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, no more
            closed = await asyncio.gather(*(_closed_by_peer(r, 10) for r, _ in opened))
            return sum(closed)
        finally:
            _close_all([w for _, w in opened])

    closed = asyncio.run(attack())
    assert closed >= 1400  # every one was refused at once or cut by the deadline
    excess = _refused_http(net, node, "api", "too_many_from_address") - excess0
    slow = _refused_http(net, node, "api", "tls_handshake_timeout") - slow0
    assert excess >= 1500 - 40 - 5, excess  # at most 40 held at once from one address
    assert 1 <= slow <= 40 + 5, slow
    net.after_attack(node, before)


def test_oversized_request_head_is_refused(net: Net) -> None:
    node = net.nodes[1]
    before, big0 = net.usage(node), _refused_http(net, node, "api", "headers_too_large")

    async def attack() -> bool:
        reader, writer = await _open(node.api, net.client_context())
        try:
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            for i in range(40):  # 40 x 400 bytes: over the 8 KiB bound, each header small
                writer.write(f"X-Pad-{i}: {'a' * 390}\r\n".encode())
            return await _closed_by_peer(reader, 10)
        finally:
            writer.transport.abort()

    assert asyncio.run(attack())
    assert _refused_http(net, node, "api", "headers_too_large") == big0 + 1
    net.after_attack(node, before)


def test_slow_body_is_cut_at_the_body_deadline(net: Net) -> None:
    node = net.nodes[1]
    before, slow0 = net.usage(node), _refused_http(net, node, "api", "body_timeout")

    async def attack() -> list[bool]:
        async def one() -> bool:
            reader, writer = await _open(node.api, net.client_context())
            try:
                writer.write(
                    b"POST /v1/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
                    b"\r\nContent-Length: 60000\r\n\r\n"
                )
                for _ in range(10):  # 10 bytes a second
                    writer.write(b"0123456789")
                    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            return True
                return await _closed_by_peer(reader, 5)
            finally:
                writer.transport.abort()

        return await asyncio.gather(*(one() for _ in range(10)))

    assert all(asyncio.run(attack()))
    assert _refused_http(net, node, "api", "body_timeout") >= slow0 + 10
    net.after_attack(node, before)


def test_idle_keepalive_connections_are_closed(net: Net) -> None:
    node = net.nodes[3]
    before, idle0 = net.usage(node), _refused_http(net, node, "api", "idle_timeout")

    async def attack() -> list[bool]:
        async def one() -> bool:
            reader, writer = await _open(node.api, net.client_context())
            try:
                writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1")
                return await _closed_by_peer(reader, 10)  # then hold it, saying nothing
            finally:
                writer.transport.abort()

        return await asyncio.gather(*(one() for _ in range(20)))

    assert all(asyncio.run(attack()))
    assert _refused_http(net, node, "api", "idle_timeout") >= idle0 + 20
    net.after_attack(node, before)


def test_connection_flood_per_address_on_the_api(net: Net) -> None:
    node = net.nodes[3]
    before = net.usage(node)
    excess0 = _refused_http(net, node, "api", "too_many_from_address")

    async def attack() -> tuple[int, int]:
        ctx = net.client_context()
        results = await asyncio.gather(
            *(_open(node.api, ctx) for _ in range(120)), return_exceptions=True
        )
        held = [c for c in results if isinstance(c, tuple)]
        # the excess is aborted at accept: TLS fails for it, or it reads EOF at once
        open_now = [c for c in held if not await _closed_by_peer(c[0], 0.5)]
        _close_all([w for _, w in held])
        return len(results) - len(open_now), len(open_now)

    refused, admitted = asyncio.run(attack())
    assert admitted <= 40 and refused >= 80
    assert _refused_http(net, node, "api", "too_many_from_address") >= excess0 + 80
    net.after_attack(node, before)


# -- metrics port ---------------------------------------------------------------------------


def test_connection_flood_and_slowloris_on_the_metrics_port(net: Net) -> None:
    node = net.nodes[0]
    before = net.usage(node)

    async def attack() -> list[bool]:
        conns = []
        for _ in range(40):
            with contextlib.suppress(OSError):
                conns.append(await _open(node.metrics))
        for _, writer in conns:
            writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
        try:
            return await asyncio.gather(*(_closed_by_peer(r, 10) for r, _ in conns))
        finally:
            _close_all([w for _, w in conns])

    assert all(asyncio.run(attack()))  # refused at once (over 12) or cut by the deadline
    # the metrics port counts its own refusals; read them once it serves again
    wait_until(
        lambda: (
            _refused_http(net, node, "metrics", "too_many_connections") >= 28
            and _refused_http(net, node, "metrics", "header_timeout") >= 1
        ),
        30,
        "metrics-port refusals",
    )
    net.after_attack(node, before)


# -- p2p port -------------------------------------------------------------------------------


def test_p2p_connection_flood_is_refused_at_accept(net: Net) -> None:
    node = net.nodes[2]
    before = net.usage(node)
    excess0 = _refused_p2p(net, node, "too_many_from_address")
    slow0 = _refused_p2p(net, node, "handshake_timeout")

    async def attack() -> list[bool]:
        conns = []
        for _ in range(300):
            with contextlib.suppress(OSError):
                conns.append(await _open(node.p2p))
        try:
            return await asyncio.gather(*(_closed_by_peer(r, 10) for r, _ in conns))
        finally:
            _close_all([w for _, w in conns])

    assert all(asyncio.run(attack()))
    # 3 honest peers hold inbound links from 127.0.0.1 too: at most 17 more were admitted
    assert _refused_p2p(net, node, "too_many_from_address") >= excess0 + 300 - 20
    assert _refused_p2p(net, node, "handshake_timeout") >= slow0 + 1
    wait_until(lambda: net.metric(node, "mdtp_p2p_connections_open") <= 3, 30, "p2p conns back")
    net.after_attack(node, before)


def test_p2p_identity_handshake_stall_by_a_certificate_holder(net: Net) -> None:
    node = net.nodes[3]
    before, slow0 = net.usage(node), _refused_p2p(net, node, "handshake_timeout")
    home = net.dir / "node1"
    ctx = pki.p2p_client_context(
        net.dir / "ca" / "ca.pem", home / "node.pem", home / "node.key.pem"
    )

    async def attack() -> list[bool]:
        # TLS completes with a real member certificate; then no HELLO ever comes
        conns = [await _open(node.p2p, ctx) for _ in range(10)]
        try:
            return await asyncio.gather(*(_closed_by_peer(r, 10) for r, _ in conns))
        finally:
            _close_all([w for _, w in conns])

    assert all(asyncio.run(attack()))
    assert _refused_p2p(net, node, "handshake_timeout") >= slow0 + 10
    net.after_attack(node, before)


# -- logs -----------------------------------------------------------------------------------


def _log_lines(node: ClusterNode) -> list[str]:
    return node.log_file.read_text(errors="replace").splitlines()


def _no_forged_line(node: ClusterNode) -> None:
    """No input started a line of its own: every forged text sits inside a real line."""
    for line in _log_lines(node):
        assert not line.startswith(("2030-01-01", "FORGED", "\x1b")), line


def test_log_forging_through_the_api(net: Net) -> None:
    node = net.nodes[0]
    before = net.usage(node)

    async def attack() -> list[int]:
        ctx = net.client_context()
        statuses = []
        for requester in ("a" + FORGED[:60], "b\r\x1b[2K" + FORGED[:50], "c\u2028FORGED"):
            reader, writer = await _open(node.api, ctx)
            body = net.fetch_request(requester)
            writer.write(
                b"POST /v1/data/fetch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await asyncio.wait_for(reader.readline(), 10)
            statuses.append(int(head.split()[1]))
            writer.transport.abort()
        # a path and a header with encoded line breaks, too
        reader, writer = await _open(node.api, ctx)
        writer.write(b"GET /v1/tx/%0a2030-01-01%20FORGED HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readline(), 10)
        writer.transport.abort()
        return statuses

    statuses = asyncio.run(attack())
    assert all(400 <= s < 500 for s in statuses), statuses  # refused, with a reason code
    wait_until(
        lambda: any("\\n2030-01-01" in line for line in _log_lines(node)),
        10,
        "the refusal with its escaped input in the log",
    )
    _no_forged_line(node)
    assert any("\\x1b[2K" in line for line in _log_lines(node))
    net.after_attack(node, before)


def test_log_forging_through_the_p2p_port_by_a_member(net: Net) -> None:
    node = net.nodes[1]
    before = net.usage(node)
    refusals0 = net.metric(node, "mdtp_data_refusals_total", reason="not_member_account")

    async def attack() -> None:
        # node2's real certificate and key: a malicious member
        _reader, writer, ok = await impersonate(
            net.dir, node, "node2", load_key(net.dir / "node2" / "node_key.json")
        )
        assert ok
        for i in range(3):
            body = {"fid": os.urandom(16), "req": net.fetch_request(f"m{i}" + FORGED[:50])}
            writer.write(encode_frame("data.req", body, 1 << 20))
        await writer.drain()
        await asyncio.sleep(1)
        writer.transport.abort()

    asyncio.run(attack())
    wait_until(
        lambda: any("via node2" in line and "\\n2030-01-01" in line for line in _log_lines(node)),
        10,
        "the supplier's refusal with its escaped input in the log",
    )
    _no_forged_line(node)
    total = sum(
        net.metric(node, "mdtp_data_refusals_total", reason=r)
        for r in ("not_member_account", "unknown_contract", "bad_signature", "malformed")
    )
    assert total > refusals0
    net.after_attack(node, before)


def test_log_flooding_is_rate_limited_per_source(net: Net) -> None:
    node = net.nodes[2]
    before = net.usage(node)
    dropped0 = net.metric(node, "mdtp_log_lines_dropped_total", reason="per_source")
    size0 = node.log_file.stat().st_size

    async def attack() -> None:
        ctx = net.client_context()

        async def garbage(i: int) -> None:
            reader, writer = await _open(node.api, ctx)
            body = net.fetch_request(f"g{i}")
            writer.write(
                b"POST /v1/data/fetch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await asyncio.wait_for(reader.read(), 20)
            writer.transport.abort()

        for start in range(0, 600, 20):  # under the per-address connection bound
            await asyncio.gather(*(garbage(i) for i in range(start, start + 20)))

    asyncio.run(attack())
    grown = node.log_file.stat().st_size - size0
    assert grown < 20 * 400, grown  # at most remote_lines_total lines in the window
    dropped = net.metric(node, "mdtp_log_lines_dropped_total", reason="per_source") - dropped0
    assert dropped >= 600 - 5 - 1, dropped
    net.after_attack(node, before)


def test_log_forging_on_the_metrics_port(net: Net) -> None:
    node = net.nodes[3]
    before = net.usage(node)
    url = f"http://{node.metrics}/metrics%0a2030-01-01%20FORGED?x=%0d%0aFORGED"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 404
    _no_forged_line(node)
    net.after_attack(node, before)


# -- files ----------------------------------------------------------------------------------


def test_everything_a_node_writes_is_owner_only(net: Net) -> None:
    open_to_others = []
    for node in net.nodes:
        for root, dirs, files in os.walk(node.home):
            for name in dirs + files:
                path = os.path.join(root, name)
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    open_to_others.append(f"{path} {mode:04o}")
        mode = stat.S_IMODE(os.stat(node.home).st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            open_to_others.append(f"{node.home} {mode:04o}")
    assert not open_to_others, open_to_others
    assert any(
        p.suffix == ".ldb" or p.name.startswith("MANIFEST") for p in net.nodes[0].home.rglob("*")
    )
