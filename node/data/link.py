"""Data frames to other members' nodes, and to this node itself.

A fetch whose consumer and supplier are accounts of the same member runs through this node
twice (relay and supplier); those frames never touch the transport but are handed to this
node's own handler on the next turn of the event loop, exactly as if they had arrived.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mdtp.node.data.ports import FrameHandler, PeerSend


class PeerLink:
    def __init__(self, node_id: str, send: PeerSend, deliver_here: FrameHandler) -> None:
        self.node_id = node_id
        self._send = send
        self._deliver_here = deliver_here

    def send(self, peer: str, kind: str, body: dict[str, Any]) -> bool:
        """Queue a frame for ``peer``; False if its link cannot take it now."""
        if peer == self.node_id:
            asyncio.get_running_loop().call_soon(self._deliver_here, peer, kind, body)
            return True
        return self._send(peer, kind, body)
