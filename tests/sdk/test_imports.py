"""The SDK's newer modules (retries, the blocking clients, the examples) stay client code:
importing them loads no server module."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = (
    "mdtp.node.sdk.retry",
    "mdtp.node.sdk.sync",
    "mdtp.node.sdk.examples.submit_and_wait",
    "mdtp.node.sdk.examples.sync_client",
    "mdtp.node.sdk.examples.batch_gateway",
    "mdtp.node.sdk.examples.trade",
    "mdtp.node.ledger.bodies",
)
SERVER = (
    "mdtp.node.api",
    "mdtp.node.app",
    "mdtp.node.chain",
    "mdtp.node.txpool",
    "mdtp.node.p2p",
    "mdtp.node.data.service",
    "mdtp.node.ops",
    "mdtp.node.cli",
    "mdtp.node.testing",
)


def test_importing_the_new_sdk_modules_loads_no_server_module() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert set(MODULES) <= set(loaded)
    server = [m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVER)]
    assert server == []
