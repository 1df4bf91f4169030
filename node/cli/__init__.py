"""``mdtp``: the one command line of the project (node, keys, local cluster, demo)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdtp.node.errors import MdtpError
from mdtp.node.ops import cluster
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


def cmd_ca_init(args: argparse.Namespace) -> int:
    from mdtp.node.identity.home import init_ca

    init_ca(Path(args.dir), args.name)
    print(f"consortium CA written to {args.dir}/ca.pem (keep {args.dir}/ca.key.pem offline)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from mdtp.node.identity.home import init_home, load_ca
    from mdtp.node.identity.keys import read_passphrase_file

    member = init_home(
        Path(args.home),
        node_id=args.id,
        name=args.name or args.id,
        ca=load_ca(Path(args.ca_dir)),
        p2p=args.p2p,
        api=args.api,
        metrics=args.metrics,
        passphrase=read_passphrase_file(args.passphrase_file),
    )
    print(
        f"node home {args.home} created for {args.id}; public member facts in "
        f"{args.home}/member.json (node key {member['node_public_key'][:16]}...)"
    )
    print(
        "next: collect every member.json, run `mdtp genesis build`, copy genesis.json into "
        "each home, then `mdtp start --home DIR`"
    )
    return 0


def cmd_genesis_build(args: argparse.Namespace) -> int:
    from mdtp.node.errors import GenesisError
    from mdtp.node.identity.home import build_genesis, write_genesis

    members = []
    for path in args.members:
        try:
            members.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise GenesisError(f"{path}: cannot read member file ({e})") from None
    genesis = build_genesis(args.chain_id, members)
    write_genesis(genesis, Path(args.out))
    print(f"genesis for chain {genesis.chain_id} with {len(members)} members written to {args.out}")
    return 0


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
        print(
            f"mdtp: error: node {cfg.node_id} does not answer on {host}:{port}: {e}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for key in ("id", "chain_id", "height", "view", "peers", "ready", "reasons", "mempool"):
            print(f"{key:>9}: {doc.get(key)}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from mdtp.node.identity.keys import SigningKey, read_passphrase_file, save_key

    key = SigningKey.generate(with_encryption=True)
    save_key(Path(args.out), key, passphrase=read_passphrase_file(args.passphrase_file))
    print(key.account_id)
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    from mdtp.node.identity.keys import load_key, read_passphrase_file

    key = load_key(Path(args.file), passphrase=read_passphrase_file(args.passphrase_file))
    doc = {
        "account_id": key.account_id,
        "public_key": key.public_key.hex(),
        "encryption_public_key": (key.encryption_public_key or b"").hex() or None,
    }
    print(json.dumps(doc, indent=2))
    return 0


# -- cluster --------------------------------------------------------------------------------


def cmd_cluster_init(args: argparse.Namespace) -> int:
    nodes = cluster.init_cluster(Path(args.dir), args.nodes)
    print(f"cluster of {len(nodes)} nodes initialised in {args.dir}")
    _print_table([n.__dict__ for n in nodes], ["id", "p2p", "api", "metrics"])
    return 0


def cmd_cluster_up(args: argparse.Namespace) -> int:
    cluster.up(Path(args.dir), timeout_s=args.timeout)
    print(f"all nodes ready; logs in {args.dir}/node*/node.log")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    rows = cluster.status(Path(args.dir))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["id", "pid", "api", "p2p", "metrics", "peers", "height", "ready"])
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    stopped = cluster.down(Path(args.dir))
    print(f"stopped {len(stopped)} node(s)" + (f": {', '.join(stopped)}" if stopped else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.data:
        from mdtp.node.ops.bench_data import run_data_bench

        size = 64 if args.quick else args.size_mib
        data_result = run_data_bench(size_mib=size, progress=not args.json)
        print(json.dumps(data_result, indent=2 if not args.json else None))
        return 0
    if args.attack:
        from mdtp.node.ops import bench_attack

        attack = bench_attack.run_attack_bench(
            quick=args.quick,
            duration_s=args.duration,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        if args.json:
            print(json.dumps(attack, indent=2))
        else:
            bench_attack.print_table(attack)
        return 0
    from mdtp.node.ops.bench import print_table, run_bench

    results = run_bench(quick=args.quick, profile_dir=Path(args.profile) if args.profile else None)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


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
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        return add_command(parent, name, fn, help)

    pass_help = "file whose first line is the key passphrase (else MDTP_KEY_PASSPHRASE)"

    ca = sub.add_parser("ca", help="consortium certificate authority").add_subparsers(
        dest="ca_command", required=True, metavar="COMMAND"
    )
    sp = add("init", cmd_ca_init, "create a consortium CA", ca)
    sp.add_argument("--dir", required=True, help="directory for ca.pem and ca.key.pem")
    sp.add_argument("--name", default="mdtp", help="consortium name in the CA certificate")

    sp = add("init", cmd_init, "create a node home (keys, certificate, config.toml)")
    sp.add_argument("--home", required=True)
    sp.add_argument("--id", required=True, help="member/node id, e.g. acme-works")
    sp.add_argument("--name", help="member display name")
    sp.add_argument("--ca-dir", required=True, help="the consortium CA directory")
    sp.add_argument("--p2p", default="127.0.0.1:26600", help="peer host:port")
    sp.add_argument("--api", default="127.0.0.1:26601", help="API host:port")
    sp.add_argument("--metrics", default="127.0.0.1:26602", help="metrics host:port")
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)

    genesis = sub.add_parser("genesis", help="genesis file").add_subparsers(
        dest="genesis_command", required=True, metavar="COMMAND"
    )
    sp = add("build", cmd_genesis_build, "build genesis.json from members' member.json", genesis)
    sp.add_argument("--chain-id", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("members", nargs="+", help="member.json files, in membership order")

    sp = add("start", cmd_start, "run a node in the foreground (SIGTERM/SIGINT stop it)")
    sp.add_argument("--home", required=True)
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)

    sp = add("status", cmd_status, "show a running node's status (from its home)")
    sp.add_argument("--home", required=True)
    sp.add_argument("--json", action="store_true")

    keys = sub.add_parser("keys", help="account keys").add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    sp = add("generate", cmd_keys_generate, "generate an account key file (mode 0600)", keys)
    sp.add_argument("--out", required=True)
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)
    sp = add("show", cmd_keys_show, "show the public part of a key file", keys)
    sp.add_argument("file")
    sp.add_argument("--passphrase-file", type=Path, help=pass_help)

    cl = sub.add_parser("cluster", help="local consortium on this machine").add_subparsers(
        dest="cluster_command", required=True, metavar="COMMAND"
    )
    sp = add("init", cmd_cluster_init, "create N node homes with free loopback ports", cl)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--nodes", type=int, default=4)
    sp = add("up", cmd_cluster_up, "start every node in the background, wait until ready", cl)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready")
    sp = add("status", cmd_cluster_status, "show every node's status", cl)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--json", action="store_true")
    sp = add("down", cmd_cluster_down, "stop every node process of the cluster", cl)
    sp.add_argument("--dir", required=True)

    sp = add("demo", cmd_demo, "run a whole trade on a local 4-member consortium")
    sp.add_argument("--dir", default=".mdtp/demo", help="where the demo cluster lives")
    sp.add_argument("--nodes", type=int, default=4)
    sp.add_argument(
        "--stop", action="store_true", help="stop the cluster at the end (default: keep it)"
    )
    sp = add("bench", cmd_bench, "measure a local 4-node cluster: tx/s, latency, ceiling")
    sp.add_argument("--json", action="store_true", help="one JSON object")
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
        "--duration",
        type=float,
        default=None,
        help="seconds per behaviour for --attack (default 30, 8 with --quick)",
    )
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


# Each concern's client commands live beside it and register themselves here.
_COMMAND_MODULES: tuple[str, ...] = ("mdtp.node.cli.trading", "mdtp.node.cli.data")


def main(argv: Sequence[str] | None = None, hooks: NodeHooks | None = None) -> int:
    """The ``mdtp`` command; ``hooks`` is for test entry points only (``mdtp.node.testing``)."""
    args = build_parser().parse_args(argv)
    args.hooks = hooks
    try:
        code: int = args.fn(args)
        return code
    except (MdtpError, StorageError) as e:
        print(f"mdtp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
