from collections.abc import Iterator
from pathlib import Path

import pytest

from mdtp.node.ops import cluster


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real 4-node cluster (separate processes, mutual TLS) for the whole module."""
    cluster_dir = tmp_path_factory.mktemp("cluster")
    cluster.init_cluster(cluster_dir, 4)
    try:
        cluster.up(cluster_dir, timeout_s=90)
        yield cluster_dir
    finally:
        cluster.down(cluster_dir)
