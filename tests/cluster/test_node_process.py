"""The ``mdtp`` process itself: clean shutdown on signals, and clear errors on bad input."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mdtp.node.identity.home import init_ca, init_home
from mdtp.node.ops import cluster
from tests.support.processes import wait_until

pytestmark = pytest.mark.cluster


def mdtp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdtp.node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def one_node(tmp_path: Path) -> cluster.ClusterNode:
    return cluster.init_cluster(tmp_path / "c", 1)[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_node_cleanly_with_exit_0(one_node: cluster.ClusterNode, sig: int) -> None:
    proc = cluster.start_node(one_node)
    wait_until(lambda: cluster.is_ready(one_node), 60, "node ready")
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    log = one_node.log_file.read_text()
    assert "stopped" in log
    assert "Traceback" not in log


def test_status_reports_a_running_node_and_a_clear_error_when_it_is_down(
    one_node: cluster.ClusterNode,
) -> None:
    r = mdtp("status", "--home", str(one_node.home))
    assert r.returncode == 1 and "does not answer" in r.stderr
    proc = cluster.start_node(one_node)
    try:
        wait_until(lambda: cluster.is_ready(one_node), 60, "node ready")
        r = mdtp("status", "--home", str(one_node.home), "--json")
        assert r.returncode == 0, r.stderr
        assert '"id": "node0"' in r.stdout and '"ready": true' in r.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_missing_home_is_a_clear_error(tmp_path: Path) -> None:
    r = mdtp("start", "--home", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "node home not found" in r.stderr and "mdtp init" in r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_names_the_port_and_the_key(one_node: cluster.ClusterNode) -> None:
    host, _, port = one_node.p2p.rpartition(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen()
        r = mdtp("start", "--home", str(one_node.home))
    assert r.returncode == 2
    assert f"{one_node.p2p} ([p2p] listen" in r.stderr and "already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_broken_config_names_file_and_key(one_node: cluster.ClusterNode) -> None:
    cfg = one_node.home / "config.toml"
    cfg.write_text(cfg.read_text().replace("[p2p]\n", "[p2p]\nmax_bad_frames = -3\n"))
    r = mdtp("start", "--home", str(one_node.home))
    assert r.returncode == 2
    assert "config.toml" in r.stderr
    assert "[p2p] max_bad_frames: must be at least 1, got -3" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_key_file_is_named(one_node: cluster.ClusterNode) -> None:
    (one_node.home / "node_key.json").unlink()
    r = mdtp("start", "--home", str(one_node.home))
    assert r.returncode == 2
    assert "node_key.json: key file not found" in r.stderr


def test_wrong_passphrase_is_refused_without_traceback(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    init_home(
        tmp_path / "h",
        node_id="solo",
        name="Solo",
        ca=ca,
        p2p="127.0.0.1:1",
        api="127.0.0.1:2",
        metrics="127.0.0.1:3",
        passphrase=b"right",
    )
    (tmp_path / "pass").write_text("wrong\n")
    import json

    from mdtp.node.identity.home import build_genesis, write_genesis

    member = json.loads((tmp_path / "h-request" / "member.json").read_text())
    write_genesis(build_genesis("c1", [member]), tmp_path / "h" / "genesis.json")
    r = mdtp("start", "--home", str(tmp_path / "h"), "--passphrase-file", str(tmp_path / "pass"))
    assert r.returncode == 2
    assert "wrong passphrase" in r.stderr
    assert "Traceback" not in r.stderr


def test_second_process_on_the_same_home_is_refused(one_node: cluster.ClusterNode) -> None:
    proc = cluster.start_node(one_node)
    try:
        wait_until(lambda: cluster.is_ready(one_node), 60, "node ready")
        r = mdtp("start", "--home", str(one_node.home))
        assert r.returncode == 2
        assert "already" in r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_init_genesis_and_start_a_consortium_by_hand(tmp_path: Path) -> None:
    assert mdtp("ca", "init", "--dir", str(tmp_path / "ca")).returncode == 0
    ports = cluster.free_ports(6)
    homes = []
    for i in range(2):
        home = tmp_path / f"m{i}"
        r = mdtp(
            "init",
            "--home",
            str(home),
            "--id",
            f"m{i}",
            "--ca-dir",
            str(tmp_path / "ca"),
            "--p2p",
            f"127.0.0.1:{ports[3 * i]}",
            "--api",
            f"127.0.0.1:{ports[3 * i + 1]}",
            "--metrics",
            f"127.0.0.1:{ports[3 * i + 2]}",
        )
        assert r.returncode == 0, r.stderr
        homes.append(home)
    r = mdtp(
        "genesis",
        "build",
        "--chain-id",
        "hand-made",
        "--out",
        str(tmp_path / "g.json"),
        *(str(h.parent / f"{h.name}-request" / "member.json") for h in homes),
    )
    assert r.returncode == 0, r.stderr
    for h in homes:
        (h / "genesis.json").write_bytes((tmp_path / "g.json").read_bytes())
    r = mdtp("init", "--home", str(homes[0]), "--id", "m0", "--ca-dir", str(tmp_path / "ca"))
    assert r.returncode == 2 and "already a node home" in r.stderr
