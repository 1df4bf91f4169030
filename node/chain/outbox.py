"""Where the driver's consensus messages go: one seam between the replica's Send/Broadcast
actions and the peer links. The daemon uses :class:`WireOutbox`; a test entry point may install
another one (``mdtp.node.testing``) through :class:`mdtp.node.app.hooks.NodeHooks`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mdtp.consensus.messages import Message, encode_message

SendFn = Callable[[str, str, Any], bool]
BroadcastFn = Callable[[str, Any], None]


class ConsensusOutbox(Protocol):
    def start(self) -> None: ...

    async def close(self) -> None: ...

    def unicast(self, peer: str, msg: Message) -> None: ...

    def broadcast(self, msg: Message) -> None: ...


@dataclass(frozen=True)
class OutboxContext:
    """What an outbox may use: who we are, the peers, our signing key, the links."""

    node_id: str
    peers: list[str]
    chain_id: str
    sign: Callable[[bytes], bytes]
    send: SendFn
    broadcast: BroadcastFn


OutboxFactory = Callable[[OutboxContext], ConsensusOutbox]


class WireOutbox:
    """Encodes each message once and hands it to the peer links."""

    def __init__(self, ctx: OutboxContext) -> None:
        self._send = ctx.send
        self._broadcast = ctx.broadcast

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def unicast(self, peer: str, msg: Message) -> None:
        self._send(peer, "consensus", encode_message(msg))

    def broadcast(self, msg: Message) -> None:
        self._broadcast("consensus", encode_message(msg))
