from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.runner import FaultCluster


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    """A real 4-node cluster whose 12 directed peer links all pass through test proxies."""
    fc = FaultCluster(Path(tmp_path_factory.mktemp("faults")) / "c")
    fc.create()
    try:
        fc.start_all()
        yield fc
    finally:
        fc.close()
