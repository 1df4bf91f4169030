"""Actions a ``Replica`` returns; the driver executes them strictly in list order.

Ordering is part of the contract: a ``Persist`` always precedes the ``Send``/``Broadcast``
of any vote it protects, so executing the list in order makes the vote durable before it
leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdtp.consensus.block import Block
from mdtp.consensus.events import TimerKind
from mdtp.consensus.messages import CommitCertificate, Message
from mdtp.consensus.state import PersistedState


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every member except this replica."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)arm the single timer of ``kind``; deliver ``TimerFired(kind, timer_id)`` at
    ``at_ms``.  A later SetTimer or CancelTimer of the same kind replaces it."""

    kind: TimerKind
    timer_id: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    kind: TimerKind


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably store ``state`` (replacing the previous one) before the next action."""

    state: PersistedState


@dataclass(frozen=True, slots=True)
class Deliver:
    """Execute ``block`` (then report ``BlockExecuted``).  Strictly in height order,
    exactly once per height after ``last_executed_height`` given at restore."""

    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class RequestStateTransfer:
    """Fetch blocks ``from_height..to_height`` with commit certificates from ``peers``
    (best first), verify them (``state_transfer.verify_response``), execute them and
    report ``StateTransferDone``.  ``to_block_hash`` is the certified hash at
    ``to_height`` when known."""

    from_height: int
    to_height: int
    to_block_hash: bytes | None
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two validly signed, conflicting messages of one replica for one slot."""

    offender: str
    kind: str
    first: Message
    second: Message


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class ProposalWanted:
    """This replica is primary and has room for the block at ``height``: feed it a
    ``TransactionsAvailable`` batch when the driver has transactions."""

    height: int


@dataclass(frozen=True, slots=True)
class StateDiverged:
    """Our state root at ``height`` differs from the one 2f+1 replicas certified.  The
    replica halts (returns no further actions); the operator must investigate."""

    height: int
    ours: bytes
    certified: bytes


Action = (
    Send
    | Broadcast
    | SetTimer
    | CancelTimer
    | Persist
    | Deliver
    | RequestStateTransfer
    | ReportEvidence
    | ProposalWanted
    | StateDiverged
)
