"""A real 4-node consortium: authenticated links, refusals by reason, reconnection."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from mdtp.node.identity import pki
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ops import cluster
from mdtp.node.p2p.frames import encode_frame
from tests.support.impersonate import impersonate
from tests.support.processes import (
    all_links_up,
    api_status,
    metric_value,
    metrics_text,
    signal_node,
    wait_until,
)

pytestmark = pytest.mark.cluster


def refused(node: cluster.ClusterNode, reason: str) -> float:
    return metric_value(node, "mdtp_p2p_connections_refused_total", {"reason": reason})


def test_four_nodes_form_twelve_authenticated_directed_links(running_cluster: Path) -> None:
    wait_until(lambda: all_links_up(running_cluster), 60, "all links")
    rows = cluster.status(running_cluster)
    assert [r["peers"] for r in rows] == [3, 3, 3, 3]
    assert all(r["ready"] for r in rows)
    for r in rows:
        for key in ("id", "pid", "api", "p2p", "metrics", "height"):
            assert r[key] is not None
    nodes = cluster.load_cluster(running_cluster)
    directed = set()
    for node in nodes:
        doc = api_status(running_cluster, node)
        directed |= {(node.id, peer) for peer in doc["outbound"]}
        assert sorted(doc["inbound"]) == sorted(n.id for n in nodes if n.id != node.id)
    assert len(directed) == 12


def _tls_connect(node: cluster.ClusterNode, ctx: ssl.SSLContext) -> None:
    """Open a TLS connection and read until the server hangs up."""
    import socket

    host, _, port = node.p2p.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.settimeout(10)
                tls.sendall(b"\x00\x00\x00\x05hello")
                while tls.recv(1024):
                    pass
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass


def _client_ctx(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _foreign_identity(tmp_path: Path, node_id: str) -> tuple[Path, Path]:
    other_ca = pki.create_ca("intruder")
    issued = pki.issue_node_certificate(other_ca, node_id, ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(issued.cert_pem)
    (tmp_path / "k.pem").write_bytes(issued.key_pem)
    return tmp_path / "c.pem", tmp_path / "k.pem"


def test_python_clients_without_valid_identity_are_refused_by_reason(
    running_cluster: Path, tmp_path: Path
) -> None:
    node0 = cluster.load_cluster(running_cluster)[0]
    before = {r: refused(node0, r) for r in ("no_client_certificate", "bad_certificate")}
    _tls_connect(node0, _client_ctx())
    wait_until(
        lambda: refused(node0, "no_client_certificate") > before["no_client_certificate"],
        20,
        "no-certificate refusal",
    )
    _tls_connect(node0, _client_ctx(*_foreign_identity(tmp_path, "node1")))
    wait_until(
        lambda: refused(node0, "bad_certificate") > before["bad_certificate"],
        20,
        "foreign-CA refusal",
    )
    # a certificate the consortium CA really issued, but to a non-member
    ca = pki.Issued(
        (running_cluster / "ca" / "ca.pem").read_bytes(),
        (running_cluster / "ca" / "ca.key.pem").read_bytes(),
    )
    rogue = pki.issue_node_certificate(ca, "mallory", ["127.0.0.1"])
    (tmp_path / "m.pem").write_bytes(rogue.cert_pem)
    (tmp_path / "mk.pem").write_bytes(rogue.key_pem)
    n = refused(node0, "not_member")
    _tls_connect(node0, _client_ctx(tmp_path / "m.pem", tmp_path / "mk.pem"))
    wait_until(lambda: refused(node0, "not_member") > n, 20, "non-member refusal")
    assert all_links_up(running_cluster)


def _s_client(node: cluster.ClusterNode, *extra: str) -> None:
    subprocess.run(
        ["openssl", "s_client", "-connect", node.p2p, "-tls1_3", "-quiet", *extra],
        input=b"garbage\n",
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_openssl_s_client_without_valid_identity_is_refused(
    running_cluster: Path, tmp_path: Path
) -> None:
    node1 = cluster.load_cluster(running_cluster)[1]
    n = refused(node1, "no_client_certificate")
    _s_client(node1)
    wait_until(lambda: refused(node1, "no_client_certificate") > n, 20, "s_client without cert")
    cert, key = _foreign_identity(tmp_path, "node2")
    n = refused(node1, "bad_certificate")
    _s_client(node1, "-cert", str(cert), "-key", str(key))
    wait_until(lambda: refused(node1, "bad_certificate") > n, 20, "s_client foreign CA")
    # node2's real certificate and TLS key, stolen, but no node key: the handshake fails
    home2 = running_cluster / "node2"
    n = refused(node1, "bad_hello")
    _s_client(node1, "-cert", str(home2 / "node.pem"), "-key", str(home2 / "node.key.pem"))
    wait_until(lambda: refused(node1, "bad_hello") > n, 20, "s_client with a stolen cert")


async def test_stolen_certificate_without_the_node_key_is_refused(running_cluster: Path) -> None:
    node0 = cluster.load_cluster(running_cluster)[0]
    n = refused(node0, "bad_node_key")
    _, writer, accepted = await impersonate(running_cluster, node0, "node3", SigningKey.generate())
    writer.close()
    assert not accepted
    assert refused(node0, "bad_node_key") == n + 1


async def test_bad_frames_from_an_authenticated_peer_are_dropped_counted_then_cut(
    running_cluster: Path,
) -> None:
    nodes = cluster.load_cluster(running_cluster)
    node0 = nodes[0]
    key = load_key(running_cluster / "node3" / "node_key.json")
    reader, writer, accepted = await impersonate(running_cluster, node0, "node3", key)
    assert accepted
    before = metric_value(node0, "mdtp_p2p_frames_dropped_total", {"reason": "undecodable"})
    for _ in range(20):
        writer.write(b"\x00\x00\x00\x03\xc1\xc1\xc1")
    with contextlib.suppress(ConnectionError):  # the node may cut the link mid-write
        await writer.drain()
    closed = await asyncio.wait_for(reader.read(), 20)
    assert closed == b""
    after = metric_value(node0, "mdtp_p2p_frames_dropped_total", {"reason": "undecodable"})
    assert after - before == 16  # max_bad_frames, then the link is closed
    writer.close()
    # the real node3 reconnects its own link and the cluster heals
    wait_until(lambda: all_links_up(running_cluster), 60, "links after the bad peer")


async def test_frames_of_unknown_kinds_are_dropped_without_a_metric_series_each(
    running_cluster: Path,
) -> None:
    """A member naming a new kind in every frame must not grow the node's metric registry
    (one series per label value, kept for the process's life): the frames are counted as
    ``unknown_kind`` and dropped, and the link stays, as a newer peer's would."""
    nodes = cluster.load_cluster(running_cluster)
    node0 = nodes[0]
    key = load_key(running_cluster / "node3" / "node_key.json")
    reader, writer, accepted = await impersonate(running_cluster, node0, "node3", key)
    assert accepted
    before = metric_value(node0, "mdtp_p2p_frames_dropped_total", {"reason": "unknown_kind"})
    kinds = [f"k{i:05d}" for i in range(500)]
    for kind in kinds:
        writer.write(encode_frame(kind, None, 4096))
    writer.write(encode_frame("ping", None, 4096))
    await writer.drain()
    wait_until(
        lambda: (
            metric_value(node0, "mdtp_p2p_frames_dropped_total", {"reason": "unknown_kind"})
            >= before + len(kinds)
        ),
        30,
        "the unknown kinds to be counted",
    )
    exposition = await asyncio.to_thread(metrics_text, node0)
    assert not [k for k in kinds if f'"{k}"' in exposition]
    assert not reader.at_eof()  # not cut: a newer peer's kind is no attack
    writer.close()
    wait_until(lambda: all_links_up(running_cluster), 60, "links after the test peer")


def test_killed_node_is_reconnected_when_it_comes_back(running_cluster: Path) -> None:
    nodes = cluster.load_cluster(running_cluster)
    victim = nodes[3]
    signal_node(victim, signal.SIGKILL)
    wait_until(
        lambda: all(api_status(running_cluster, n)["peers"] == 2 for n in nodes[:3]),
        60,
        "peers to notice node3 is gone",
    )
    cluster.start_node(victim)
    wait_until(lambda: all_links_up(running_cluster), 90, "node3 to rejoin")
    for node in nodes[:3]:
        assert "node3" in api_status(running_cluster, node)["inbound"]


def test_cluster_down_leaves_no_process_behind(tmp_path: Path) -> None:
    cluster.init_cluster(tmp_path, 4)
    cluster.up(tmp_path, timeout_s=90)
    pids = [cluster.running_pid(n) for n in cluster.load_cluster(tmp_path)]
    assert all(pids)
    stopped = cluster.down(tmp_path)
    assert len(stopped) == 4
    time.sleep(0.2)
    for pid in pids:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert all(r["pid"] is None for r in cluster.status(tmp_path))
