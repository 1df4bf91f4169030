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
    REQUEST = "request"  # a transaction we hold waited too long: suspect the primary


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A peer's message. ``verified_in`` names the signing domain in which the driver has
    already checked the message's own signature (its ingress does, before queueing it): the
    core skips that one check when it is the domain of its own epoch, so each signature is
    verified once per node. Signatures carried inside the message (a certificate's votes, a
    NEW-VIEW's VIEW-CHANGEs) are always checked by the core."""

    now_ms: int
    message: Message
    verified_in: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    now_ms: int
    kind: TimerKind
    timer_id: int


@dataclass(frozen=True, slots=True)
class TransactionsAvailable:
    """The driver has transactions to order (oldest first).  On the primary this proposes
    a block (if ``wants_proposal``); on a backup it arms the view-change timer, because a
    primary that never proposes must be replaced.  On every replica it starts the request
    timer of each transaction not already tracked (``codec.transaction_id``), so the
    driver should offer only transactions a primary could propose now (e.g. no nonce gap):
    the core holds the primary responsible for each of them."""

    now_ms: int
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TransactionsRemoved:
    """These transactions (ids, ``codec.transaction_id``) left the driver's pool in a way
    the core cannot see: expired, evicted, or committed in blocks that arrived by state
    transfer.  Their request timers stop.  Transactions of blocks the core delivers stop
    by themselves."""

    now_ms: int
    tx_ids: tuple[bytes, ...]


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


@dataclass(frozen=True, slots=True)
class EpochEnds:
    """The chain scheduled a membership change: this epoch's last height is
    ``last_height`` (a checkpoint height).  The driver reports it right after executing the
    block that scheduled it, before any other event."""

    now_ms: int
    last_height: int


Event = (
    MessageReceived
    | TimerFired
    | TransactionsAvailable
    | TransactionsRemoved
    | BlockExecuted
    | StateTransferDone
    | EpochEnds
)
