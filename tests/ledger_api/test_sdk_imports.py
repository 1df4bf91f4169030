"""The client SDK stands on the ledger's and the wire formats' modules only: it imports no
server module (API, daemon, driver, mempool, transport, chunk service), not even inside a
function, and importing it loads none."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import mdtp.node.sdk

SDK = (
    "client",
    "trading",
    "data",
    "audit_verify",
    "retry",
    "sync",
    "governance",
    "examples.submit_and_wait",
    "examples.sync_client",
    "examples.batch_gateway",
    "examples.trade",
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


def test_importing_the_sdk_loads_no_server_module() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import mdtp.node.sdk.{m}\n" for m in SDK)
        + "import mdtp.node.ledger.bodies\n"
        + "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert all(f"mdtp.node.sdk.{m}" in loaded for m in SDK)
    assert [m for m in loaded if _is_server(m)] == []


def _is_server(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SERVER)


def test_no_sdk_module_imports_a_server_module_anywhere_in_its_source() -> None:
    sdk_dir = Path(mdtp.node.sdk.__file__).parent
    found = []
    for path in sorted(sdk_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [f"{path.name}: {name}" for name in names if _is_server(name)]
    assert found == []
