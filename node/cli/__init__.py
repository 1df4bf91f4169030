"""``mdtp``: the one command line of the project (node, keys, local cluster, demo)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdtp.node.cli.options import add_home_option
from mdtp.node.cli.output import add_json_option, emit, failed, print_json, wants_json
from mdtp.node.errors import MdtpError
from mdtp.node.ops import cluster
from mdtp.node.version import build_info
from mdtp.storage.errors import StorageError

if TYPE_CHECKING:
    from mdtp.node.app.hooks import NodeHooks

log = logging.getLogger("mdtp.cli")


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


# -- node -----------------------------------------------------------------------------------


def version_line() -> str:
    info = build_info()
    return f"mdtp {info['version']} (Python {info['python']})"


def cmd_version(args: argparse.Namespace) -> int:
    return emit(args, {"name": "mdtp", **build_info()}, version_line())


def cmd_start(args: argparse.Namespace) -> int:
    from mdtp.node.app.daemon import serve
    from mdtp.node.app.logs import setup_logging
    from mdtp.node.identity.config import load_config
    from mdtp.node.identity.keys import read_passphrase_file

    cfg = load_config(Path(args.home))
    setup_logging(cfg.get("log", "level"), cfg.get("log", "json"), cfg.node_id)
    run = functools.partial(serve, cfg, read_passphrase_file(args.passphrase_file), args.hooks)
    profile_dir = os.environ.get("MDTP_PROFILE_DIR")
    if not profile_dir:
        return asyncio.run(run())
    # A developer's switch (``mdtp bench --profile``): the CPU time of the event loop's thread
    # under cProfile, written to <dir>/<node id>.prof when the node stops (signature checks
    # and disk writes run in other threads and are not in it).
    import cProfile
    import time

    profiler = cProfile.Profile(time.thread_time)
    try:
        return profiler.runcall(asyncio.run, run())
    finally:
        profiler.dump_stats(Path(profile_dir) / f"{cfg.node_id}.prof")


def cmd_status(args: argparse.Namespace) -> int:
    from mdtp.node.identity.config import load_config
    from mdtp.node.sdk.client import ApiError, NodeClient

    cfg = load_config(Path(args.home))
    host, port = cfg.address("api")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    async def query() -> dict[str, Any]:
        async with NodeClient(
            f"{host}:{port}",
            ca=cfg.path("tls", "ca"),
            cert=cfg.path("tls", "cert"),  # the operator sees the whole status
            key=cfg.path("tls", "key"),
            timeout_s=10,
        ) as c:
            return await c.status()

    try:
        doc = asyncio.run(query())
    except (OSError, ApiError) as e:
        message = f"node {cfg.node_id} does not answer on {host}:{port}: {e}"
        return failed(args, "unreachable", message)
    keys = ("id", "chain_id", "height", "view", "peers", "ready", "reasons", "mempool")
    return emit(args, doc, "\n".join(f"{key:>9}: {doc.get(key)}" for key in keys))


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from mdtp.node.identity.keys import SigningKey, read_passphrase_file, save_key

    key = SigningKey.generate(with_encryption=True)
    save_key(Path(args.out), key, passphrase=read_passphrase_file(args.passphrase_file))
    return emit(args, {"account_id": key.account_id, "out": str(args.out)}, key.account_id)


def cmd_keys_show(args: argparse.Namespace) -> int:
    from mdtp.node.identity.keys import load_key, read_passphrase_file

    key = load_key(Path(args.file), passphrase=read_passphrase_file(args.passphrase_file))
    doc = {
        "account_id": key.account_id,
        "public_key": key.public_key.hex(),
        "encryption_public_key": (key.encryption_public_key or b"").hex() or None,
    }
    return emit(args, doc)  # JSON with or without --json: `--account-key` reads it back


# -- cluster --------------------------------------------------------------------------------


def cmd_cluster_init(args: argparse.Namespace) -> int:
    nodes = cluster.init_cluster(Path(args.dir), args.nodes)
    rows = [{k: str(v) for k, v in n.__dict__.items()} for n in nodes]

    def text() -> None:
        print(f"cluster of {len(nodes)} nodes initialised in {args.dir}")
        _print_table(rows, ["id", "p2p", "api", "metrics"])

    return emit(args, {"dir": str(args.dir), "nodes": rows}, text)


def cmd_cluster_up(args: argparse.Namespace) -> int:
    cluster.up(Path(args.dir), timeout_s=args.timeout)
    nodes = cluster.load_cluster(Path(args.dir))
    doc = {
        "dir": str(args.dir),
        "ready": [n.id for n in nodes],
        "logs": {n.id: str(n.log_file) for n in nodes},
    }
    return emit(args, doc, f"all nodes ready; logs in {args.dir}/node*/node.log")


def cmd_cluster_status(args: argparse.Namespace) -> int:
    rows = cluster.status(Path(args.dir))
    columns = ["id", "pid", "api", "p2p", "metrics", "peers", "height", "ready"]
    return emit(args, rows, lambda: _print_table(rows, columns))


def cmd_cluster_restart(args: argparse.Namespace) -> int:
    pid = cluster.restart(Path(args.dir), args.node, timeout_s=args.timeout)
    doc = {"node": args.node, "pid": pid, "ready": True}
    return emit(args, doc, f"{args.node} restarted (pid {pid}) and ready")


def cmd_cluster_down(args: argparse.Namespace) -> int:
    stopped = cluster.down(Path(args.dir))
    text = f"stopped {len(stopped)} node(s)" + (f": {', '.join(stopped)}" if stopped else "")
    return emit(args, {"stopped": stopped}, text)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.data:
        from mdtp.node.ops.bench_data import run_data_bench

        size = 64 if args.quick else args.size_mib
        data_result = run_data_bench(size_mib=size, progress=False if args.json else None)
        print(json.dumps(data_result, indent=2 if not args.json else None))
        return 0
    if args.attack:
        from mdtp.node.ops import bench_attack

        attack = bench_attack.run_attack_bench(
            quick=args.quick,
            duration_s=args.duration,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        return emit(args, attack, lambda: bench_attack.print_table(attack))
    if args.catch_up:
        from mdtp.node.ops import bench_catchup

        profile = Path(args.profile) if args.profile else None
        txs = args.txs if args.txs is not None else 100_000
        catch_up = bench_catchup.run_catchup_bench(txs=txs, profile_dir=profile)
        return emit(args, catch_up, lambda: bench_catchup.print_summary(catch_up))
    if args.long:
        from mdtp.node.ops import bench_long

        txs = 20_000 if args.quick else (args.txs if args.txs is not None else 1_000_000)
        report = None if args.json else bench_long.print_window
        long = bench_long.run_long_bench(txs=txs, window_s=args.window, report=report)
        emit(args, long, lambda: bench_long.print_summary(long))
        return 0 if long["error"] is None else 1
    from mdtp.node.ops.bench import print_table, run_bench

    results = run_bench(quick=args.quick, profile_dir=Path(args.profile) if args.profile else None)
    return emit(args, results, lambda: print_table(results))


def cmd_demo(args: argparse.Namespace) -> int:
    from mdtp.node.ops.demo import run_demo

    return run_demo(Path(args.dir), args.nodes, keep=not args.stop)


# -- parser ---------------------------------------------------------------------------------


def add_command(
    parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    """Add one subcommand whose handler is ``fn(args) -> exit code``."""
    sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
    sp.set_defaults(fn=fn)
    return sp


def add_group(sub: Any, name: str, help: str) -> Any:
    """A command with subcommands (``mdtp NAME COMMAND ...``)."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdtp", description="Manufacturing Data Trading Platform: consortium ledger node"
    )
    p.add_argument("--version", action="version", version=version_line())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        return add_command(parent, name, fn, help)

    sp = add("version", cmd_version, "print mdtp's version and the Python version running it")
    add_json_option(sp)

    pass_help = "file whose first line is the key passphrase (else MDTP_KEY_PASSPHRASE)"

    # the membership commands: ca init|sign, init, install-cert, genesis build
    importlib.import_module("mdtp.node.cli.ca").register(sub)

    sp = add("start", cmd_start, "run a node in the foreground (SIGTERM/SIGINT stop it)")
    add_home_option(sp)
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)

    sp = add("status", cmd_status, "show a running node's status (from its home)")
    add_home_option(sp)
    add_json_option(sp)

    keys = sub.add_parser("keys", help="account keys").add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    sp = add("generate", cmd_keys_generate, "generate an account key file (mode 0600)", keys)
    sp.add_argument("--out", required=True)
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)
    add_json_option(sp)
    sp = add("show", cmd_keys_show, "show the public part of a key file (JSON)", keys)
    sp.add_argument("file")
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)
    add_json_option(sp)

    cl = sub.add_parser("cluster", help="local consortium on this machine").add_subparsers(
        dest="cluster_command", required=True, metavar="COMMAND"
    )
    sp = add("init", cmd_cluster_init, "create N node homes with free loopback ports", cl)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--nodes", type=int, default=4)
    add_json_option(sp)
    sp = add("up", cmd_cluster_up, "start every node in the background, wait until ready", cl)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready")
    add_json_option(sp)
    sp = add("status", cmd_cluster_status, "show every node's status", cl)
    sp.add_argument("--dir", required=True)
    add_json_option(sp)
    sp = add("restart", cmd_cluster_restart, "stop one node, start it, wait until ready", cl)
    sp.add_argument("node", help="node id, e.g. node2")
    sp.add_argument("--dir", required=True)
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready")
    add_json_option(sp)
    sp = add("down", cmd_cluster_down, "stop every node process of the cluster", cl)
    sp.add_argument("--dir", required=True)
    add_json_option(sp)

    sp = add("demo", cmd_demo, "run a whole trade on a local 4-member consortium")
    sp.add_argument("--dir", default=".mdtp/demo", help="where the demo cluster lives")
    sp.add_argument("--nodes", type=int, default=4)
    sp.add_argument(
        "--stop", action="store_true", help="stop the cluster at the end (default: keep it)"
    )
    sp = add("bench", cmd_bench, "measure a local 4-node cluster: tx/s, latency, ceiling")
    add_json_option(sp)
    sp.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    sp.add_argument(
        "--data", action="store_true", help="off-chain data: chunk fetch rate vs raw mutual TLS"
    )
    sp.add_argument("--size-mib", type=int, default=256, help="dataset size for --data")
    sp.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="write each node's cProfile (event-loop thread) to DIR/<node>.prof",
    )
    sp.add_argument(
        "--attack",
        action="store_true",
        help="16 clients under a slow primary, a flooding replica, flooding clients (Aardvark)",
    )
    sp.add_argument(
        "--long",
        action="store_true",
        help="growth run: batched load until --txs committed, tx/s, CPU and RSS per window",
    )
    sp.add_argument(
        "--catch-up",
        action="store_true",
        help="one member stopped, --txs committed without it, then timed until it caught up",
    )
    sp.add_argument(
        "--txs",
        type=int,
        default=None,
        help="transactions to commit for --long (default 1,000,000) or --catch-up (100,000)",
    )
    sp.add_argument(
        "--window", type=float, default=60.0, help="seconds per measured window for --long"
    )
    sp.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per behaviour for --attack (default 30, 8 with --quick)",
    )
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


# Each concern's client commands live beside it and register themselves here.
_COMMAND_MODULES: tuple[str, ...] = (
    "mdtp.node.cli.trading",
    "mdtp.node.cli.billing",
    "mdtp.node.cli.governance",
    "mdtp.node.cli.data",
    "mdtp.node.cli.compute",
    "mdtp.node.cli.dataspace",
    "mdtp.node.cli.blocks",
    "mdtp.node.cli.snapshot",
    "mdtp.node.cli.completion",
)


def main(argv: Sequence[str] | None = None, hooks: NodeHooks | None = None) -> int:
    """The ``mdtp`` command; ``hooks`` is for test entry points only (``mdtp.node.testing``)."""
    args = build_parser().parse_args(argv)
    args.hooks = hooks
    try:
        code: int = args.fn(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except (MdtpError, StorageError) as e:
        if wants_json(args):
            print_json(
                {"status": "failed", "reason": getattr(e, "reason", "error"), "message": str(e)}
            )
        print(f"mdtp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader of stdout went away (``mdtp ... | head -1``): exit quietly, as a Unix tool
    killed by SIGPIPE would (status 128 + 13), without a traceback at interpreter exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE
