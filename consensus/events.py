"""Events the driver feeds into a ``Replica``; each carries the driver's ``now_ms``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mdtp.consensus.block import Block
from mdtp.consensus.messages import Message


class TimerKind(StrEnum):
    VIEW_CHANGE = "view_change"  # no progress on pending work: move to the next view
    RETRANSMIT = "retransmit"  # resend own latest votes: the network may drop anything
    STATE_TRANSFER = "state_transfer"  # a requested transfer did not finish: ask again


@dataclass(frozen=True, slots=True)
class MessageReceived:
    now_ms: int
    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    now_ms: int
    kind: TimerKind
    timer_id: int


@dataclass(frozen=True, slots=True)
class TransactionsAvailable:
    """The driver has transactions to order.  On the primary this proposes a block (if
    ``wants_proposal``); on a backup it arms the view-change timer, because a primary
    that never proposes must be replaced."""

    now_ms: int
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BlockExecuted:
    """The driver applied the delivered block at ``height``; ``state_root`` is the root
    after it.  Heights arrive strictly in order."""

    now_ms: int
    height: int
    state_root: bytes


@dataclass(frozen=True, slots=True)
class StateTransferDone:
    """The driver fetched, verified and executed blocks up to ``block.height``.
    ``state_roots`` holds (height, root) for at least the last ``pipeline_depth``
    heights up to and including ``block.height``."""

    now_ms: int
    block: Block
    state_roots: tuple[tuple[int, bytes], ...]


Event = MessageReceived | TimerFired | TransactionsAvailable | BlockExecuted | StateTransferDone
