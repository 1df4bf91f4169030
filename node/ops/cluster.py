"""A local consortium on one machine: N node processes on 127.0.0.1 (the embedded default).

``DIR/cluster.json`` lists the nodes and their homes (``DIR/nodeI``); each home gets its own
``node.log`` and ``node.pid``. The cluster is made the way a consortium is: each node home
makes its own keys and a certificate request, the cluster's CA (``DIR/ca``) signs it, and
genesis is built from the public member files (``DIR/members/nodeI/``). Each member's admin
key stays outside its node home, in ``DIR/admins/nodeI.json`` (the daemon never reads it).

``up`` returns when every node is ready, ``down`` stops exactly the processes whose pids it
recorded (checking that the pid still runs ``mdtp`` on that home before signalling it), or
that hold a home's lock (a node started by hand with ``mdtp start``), and waits for them.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtp.node.errors import ClusterError, MdtpError
from mdtp.node.identity import pki
from mdtp.node.identity.ca import load_ca
from mdtp.node.identity.config import load_config
from mdtp.node.identity.genesis import ConsensusParams, load_genesis
from mdtp.node.identity.home import build_genesis, init_ca, init_home, write_genesis

MANIFEST = "cluster.json"
ADMINS_DIR = "admins"
MEMBERS_DIR = "members"
HOST = "127.0.0.1"
# Environment switches of the test entry point (python -m mdtp.node.testing).
TEST_ENV_PREFIX = "MDTP_TEST_"
# Local clusters take ports from here up to the kernel's ephemeral range (see free_ports).
PORT_MIN = 20000


@dataclass(frozen=True)
class ClusterNode:
    id: str
    home: Path
    p2p: str
    api: str
    metrics: str

    @property
    def pid_file(self) -> Path:
        return self.home / "node.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "node.log"

    @property
    def admin_key_file(self) -> Path:
        """This member's admin account key (outside the node home; see the module doc)."""
        return admin_key_path(self.home.parent, self.id)


def admin_key_path(cluster_dir: Path, node_id: str) -> Path:
    return cluster_dir / ADMINS_DIR / f"{node_id}.json"


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Free ports below the kernel's ephemeral range, so that no outgoing connection's source
    port can take a node's port while the node restarts; all held until all are chosen."""
    high = _ephemeral_low() - 1
    low = min(PORT_MIN, high - 1000)
    rng = random.Random(os.urandom(8))
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count * 200):
            if len(ports) == count:
                break
            port = rng.randint(low, high)
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            stack.enter_context(s)
            ports.append(port)
        if len(ports) < count:
            raise ClusterError(f"no {count} free ports between {low} and {high} on {host}")
        return ports


def init_cluster(
    cluster_dir: Path,
    nodes: int = 4,
    *,
    chain_id: str | None = None,
    params: ConsensusParams | None = None,
    extra_config: dict[str, Any] | None = None,
) -> list[ClusterNode]:
    if nodes < 1 or nodes > 64:
        raise ClusterError(f"--nodes must be between 1 and 64, got {nodes}")
    if (cluster_dir / MANIFEST).exists():
        raise ClusterError(f"{cluster_dir}: a cluster already exists here (remove it first)")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    ca = init_ca(cluster_dir / "ca", "mdtp local consortium")
    ports = free_ports(3 * nodes)
    members = []
    result = []
    for i in range(nodes):
        node_id = f"node{i}"
        p2p, api, metrics = (f"{HOST}:{ports[3 * i + k]}" for k in range(3))
        home = cluster_dir / node_id
        members.append(
            init_home(
                home,
                node_id=node_id,
                name=f"Member {i}",
                ca=ca,
                p2p=p2p,
                api=api,
                metrics=metrics,
                extra_config=extra_config,
                admin_key_file=admin_key_path(cluster_dir, node_id),
                request_dir=cluster_dir / MEMBERS_DIR / node_id,
            )
        )
        result.append(ClusterNode(node_id, home, p2p, api, metrics))
    genesis = build_genesis(chain_id or f"mdtp-local-{secrets.token_hex(4)}", members, params)
    write_genesis(genesis, cluster_dir / "genesis.json")
    for node in result:
        write_genesis(genesis, node.home / "genesis.json")
    manifest = {
        "chain_id": genesis.chain_id,
        "nodes": [
            {"id": n.id, "home": n.home.name, "p2p": n.p2p, "api": n.api, "metrics": n.metrics}
            for n in result
        ],
    }
    (cluster_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def add_node(cluster_dir: Path, name: str | None = None) -> tuple[ClusterNode, Path]:
    """A new member's node home beside the others, made as a joining member makes it: its
    own keys and certificate request (the cluster's CA signs it), the chain's genesis as it
    is (which does not list it) and the addresses of the current members in it. Returns the
    node and its public ``member.json`` (with the signed certificate's fingerprint) for an
    admin to propose with ``mdtp member propose add``. Until an epoch adds it, the node
    follows the chain without voting."""
    nodes = load_cluster(cluster_dir)
    taken = {n.id for n in nodes}
    index = next(i for i in range(len(nodes), 10_000) if f"node{i}" not in taken)
    node_id = f"node{index}"
    manifest = json.loads((cluster_dir / MANIFEST).read_text())
    ca = load_ca(cluster_dir / "ca")
    p2p, api, metrics = (f"{HOST}:{port}" for port in free_ports(3))
    home = cluster_dir / node_id
    request_dir = cluster_dir / MEMBERS_DIR / node_id
    init_home(
        home,
        node_id=node_id,
        name=name or f"Member {index}",
        ca=ca,
        p2p=p2p,
        api=api,
        metrics=metrics,
        admin_key_file=admin_key_path(cluster_dir, node_id),
        request_dir=request_dir,
    )
    write_genesis(load_genesis(cluster_dir / "genesis.json"), home / "genesis.json")
    node = ClusterNode(node_id, home, p2p, api, metrics)
    manifest["nodes"].append(
        {"id": node_id, "home": home.name, "p2p": p2p, "api": api, "metrics": metrics}
    )
    (cluster_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return node, request_dir / "member.json"


def load_cluster(cluster_dir: Path) -> list[ClusterNode]:
    path = cluster_dir / MANIFEST
    try:
        doc = json.loads(path.read_text())
        return [
            ClusterNode(n["id"], cluster_dir / n["home"], n["p2p"], n["api"], n["metrics"])
            for n in doc["nodes"]
        ]
    except FileNotFoundError:
        raise ClusterError(
            f"{cluster_dir}: no cluster here (create one with: mdtp cluster init --dir "
            f"{cluster_dir})"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClusterError(f"{path}: unreadable cluster manifest ({e})") from None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running_pid(node: ClusterNode) -> int | None:
    """The pid of the process running this node: the one ``up`` recorded if it still runs
    ``mdtp`` on this home, else the one holding the home's lock (a node started by hand with
    ``mdtp start --home``, which writes its pid into the lock file)."""
    try:
        pid = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return _lock_holder(node)
    cmd = _cmdline(pid)
    if str(node.home) in cmd and "start" in cmd:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return _lock_holder(node)
        return pid
    return _lock_holder(node)


def _lock_holder(node: ClusterNode) -> int | None:
    """The pid written in ``DATA_DIR/node.lock`` if a process holds that lock now."""
    try:
        data_dir = load_config(node.home).path("node", "data_dir")
    except MdtpError:
        data_dir = node.home / "data"
    try:
        with open(data_dir / "node.lock", "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = int(f.read().strip() or 0)
            else:
                return None  # nobody holds it: no node runs on this home
    except (OSError, ValueError):
        return None
    # a node run inside this very process (a test) is not ours to report or signal
    if pid <= 0 or pid == os.getpid() or "start" not in _cmdline(pid):
        return None
    return pid


def start_node(node: ClusterNode, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start one node process in the background, logging to its home."""
    if (pid := running_pid(node)) is not None:
        raise ClusterError(f"{node.id} is already running (pid {pid})")
    env = {**os.environ, **(env or {})}
    # Test switches take effect only through the test entry point, never in `mdtp start`.
    entry = "mdtp.node.testing" if any(k.startswith(TEST_ENV_PREFIX) for k in env) else "mdtp.node"
    # owner-only, like everything else in the home (the node sets its own umask too late
    # for the files its launcher opens)
    log = os.fdopen(os.open(node.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", entry, "start", "--home", str(node.home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        log.close()
    pid_fd = os.open(node.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(pid_fd, "w") as pid_out:
        pid_out.write(f"{proc.pid}\n")
    return proc


def _get_json(url: str, ctx: ssl.SSLContext | None, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, None


def is_ready(node: ClusterNode, timeout: float = 2.0) -> bool:
    try:
        status, _ = _get_json(f"http://{node.metrics}/readyz", None, timeout)
    except (OSError, ValueError):
        return False
    return status == 200


def log_tail(node: ClusterNode, lines: int = 12) -> str:
    try:
        text = node.log_file.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def up(
    cluster_dir: Path,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    node_env: dict[str, dict[str, str]] | None = None,
) -> None:
    """Start every node not running; ``env`` is added to every node's environment,
    ``node_env[node_id]`` to that node's only (e.g. a test switch on one member)."""
    nodes = load_cluster(cluster_dir)
    procs: dict[str, subprocess.Popen[bytes] | None] = {}
    for node in nodes:
        own = {**(env or {}), **(node_env or {}).get(node.id, {})}
        procs[node.id] = None if running_pid(node) else start_node(node, own)
    deadline = time.monotonic() + timeout_s
    pending = {n.id: n for n in nodes}
    while pending:
        for node_id, node in list(pending.items()):
            proc = procs[node_id]
            if proc is not None and proc.poll() is not None:
                down(cluster_dir)
                raise ClusterError(
                    f"{node_id} exited with code {proc.returncode} while starting; "
                    f"last lines of {node.log_file}:\n{log_tail(node)}"
                )
            if is_ready(node):
                del pending[node_id]
        if not pending:
            break
        if time.monotonic() > deadline:
            down(cluster_dir)
            details = "\n".join(
                f"--- {n.id} ({n.log_file}):\n{log_tail(n)}" for n in pending.values()
            )
            raise ClusterError(
                f"not ready after {timeout_s:.0f} s: {', '.join(pending)}\n{details}"
            )
        time.sleep(0.2)


def status(cluster_dir: Path) -> list[dict[str, Any]]:
    nodes = load_cluster(cluster_dir)
    rows = []
    for node in nodes:
        # the operator asks each node as that member, so the node answers its whole status
        ctx = pki.api_client_context(
            cluster_dir / "ca" / "ca.pem", node.home / "node.pem", node.home / "node.key.pem"
        )
        row: dict[str, Any] = {
            "id": node.id,
            "pid": running_pid(node),
            "api": node.api,
            "p2p": node.p2p,
            "metrics": node.metrics,
            "peers": 0,
            "height": None,
            "ready": False,
        }
        if row["pid"] is not None:
            try:
                code, doc = _get_json(f"https://{node.api}/v1/status", ctx, 3.0)
                if code == 200 and isinstance(doc, dict):
                    row.update(
                        peers=doc.get("peers", 0),
                        height=doc.get("height"),
                        view=doc.get("view"),
                        ready=bool(doc.get("ready")),
                    )
            except (OSError, ValueError) as e:
                row["error"] = str(e)
        rows.append(row)
    return rows


def down(cluster_dir: Path, timeout_s: float = 15.0) -> list[str]:
    """Stop every node process this cluster started; returns the ids that were stopped."""
    nodes = load_cluster(cluster_dir)
    pids = {n.id: p for n in nodes if (p := running_pid(n)) is not None}
    _stop(nodes, pids, timeout_s)
    return list(pids)


def stop(cluster_dir: Path, node_id: str, timeout_s: float = 15.0) -> bool:
    """Stop one node of the cluster; False if it was not running."""
    nodes = load_cluster(cluster_dir)
    node = next((n for n in nodes if n.id == node_id), None)
    if node is None:
        raise ClusterError(f"{node_id}: not in the cluster ({', '.join(n.id for n in nodes)})")
    pid = running_pid(node)
    if pid is None:
        return False
    _stop(nodes, {node.id: pid}, timeout_s)
    return True


def _stop(nodes: list[ClusterNode], pids: dict[str, int], timeout_s: float) -> None:
    """SIGTERM each process, SIGKILL it after ``timeout_s``, wait for it; forget its pid."""
    for pid in pids.values():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for node_id, pid in pids.items():
        while process_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        node = next(n for n in nodes if n.id == node_id)
        node.pid_file.unlink(missing_ok=True)


def restart(cluster_dir: Path, node_id: str, timeout_s: float = 60.0) -> int:
    """Stop one node (if it runs), start it again and wait until it is ready; returns its
    new pid. On failure the error carries its log's last lines (a node that does not get
    ready keeps running, so ``status`` and its log can say why)."""
    nodes = load_cluster(cluster_dir)
    node = next((n for n in nodes if n.id == node_id), None)
    if node is None:
        raise ClusterError(f"{node_id}: not in the cluster ({', '.join(n.id for n in nodes)})")
    pid = running_pid(node)
    _stop(nodes, {node.id: pid} if pid is not None else {}, 15.0)
    proc = start_node(node)
    deadline = time.monotonic() + timeout_s
    while not is_ready(node):
        if proc.poll() is not None:
            raise ClusterError(
                f"{node_id} exited with code {proc.returncode} while starting; "
                f"last lines of {node.log_file}:\n{log_tail(node)}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{node_id} not ready after {timeout_s:.0f} s (still running; a quorum of the "
                f"cluster must run); last lines of {node.log_file}:\n{log_tail(node)}"
            )
        time.sleep(0.2)
    return proc.pid


def process_alive(pid: int) -> bool:
    """True until ``pid`` has ended: a process that was killed runs on until its last thread
    leaves the kernel (one blocked in an fsync holds its files and locks meanwhile), and a
    zombie has ended. Reaps ``pid`` if it is our child and has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the command name (in parentheses) may hold spaces: the state follows its last ")"
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
