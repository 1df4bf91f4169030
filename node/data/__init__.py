"""Off-chain encrypted datasets: chunk crypto, the node's chunk service, the client side."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdtp.node.app.daemon import Node
    from mdtp.node.data.service import DataService


def install(node: Node) -> DataService:
    """Register the chunk service with ``node`` (started after the driver)."""
    from mdtp.node.data.service import install as _install

    return _install(node)
