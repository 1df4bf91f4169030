"""``mdtp demo``: bring up a local consortium and show what it does.

For now it shows the consortium forming its authenticated links; the trade steps join as the
ledger, catalog and chunk service land.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from node import cluster


def run_demo(cluster_dir: Path, nodes: int, *, keep: bool) -> int:
    if (cluster_dir / cluster.MANIFEST).exists():
        cluster.down(cluster_dir)
        shutil.rmtree(cluster_dir)
    print(f"== 1. a consortium of {nodes} members: CA, node keys, TLS certificates, genesis")
    for n in cluster.init_cluster(cluster_dir, nodes):
        print(f"   {n.id}: p2p {n.p2p}  api {n.api}  metrics {n.metrics}")
    print("== 2. starting the node processes (mutual TLS between every pair)")
    cluster.up(cluster_dir)
    rows = cluster.status(cluster_dir)
    for r in rows:
        print(f"   {r['id']}: pid {r['pid']}, {r['peers']} authenticated peers, ready={r['ready']}")
    links = sum(r["peers"] for r in rows)
    print(f"== {links} directed mutual-TLS links, each bound to a member's node key")
    print(f"   cluster: {cluster_dir}   logs: {cluster_dir}/node*/node.log")
    print(f"   metrics: http://{rows[0]['metrics']}/metrics")
    if keep:
        print(f"   stop it with: mdtp cluster down --dir {cluster_dir}")
    else:
        cluster.down(cluster_dir)
        print("   cluster stopped (use --keep to leave it running)")
    return 0
