"""mdtp consensus: a sans-I/O PBFT core over a chain of blocks.

No sockets, disk, clock or global randomness: the driver feeds events (each with its
``now_ms``) and executes the returned actions strictly in order.  See ``replica.py``
for the theory of operation.

Driver interface
----------------
Construct::

    config = ConsensusConfig(chain_id, members, my_id, genesis_state_root=..., ...)
    replica = Replica(config, sign, verify, validate_payload)          # fresh chain
    replica = Replica.restore(config, decode_state(head, slots), last_executed_height,
                              last_block_header, recent_state_roots,
                              sign, verify, validate_payload)          # after a crash
    actions = replica.start(now_ms)                                    # exactly once

``sign(data) -> bytes`` (64 bytes, Ed25519 in the node), ``verify(node_id, data, sig)
-> bool``, ``validate_payload(block) -> reason | None`` (the application's verdict on
a proposed block's transactions).

Events (``replica.handle(event) -> list[Action]``):
``MessageReceived(now_ms, decode_message(frame))``, ``TimerFired(now_ms, kind, id)``,
``TransactionsAvailable(now_ms, txs)`` (oldest first, only transactions a primary could
propose now: each starts a request timer), ``TransactionsRemoved(now_ms, tx_ids)``
(``codec.transaction_id`` of transactions that left the pool unseen by the core:
expired, evicted, committed by state transfer; ``replica.tracked_request_ids`` lists
the ones to check), ``BlockExecuted(now_ms, height, state_root)``
(after every ``Deliver``, in order, before anything else), ``StateTransferDone(now_ms,
last_block, recent_state_roots)``.

Actions: ``Persist(state)`` (always first when present: store
its records durably before executing the rest: ``StateWriter.changes(state)``, only
what changed since the last write, or ``encode_state(state)``, all of it), ``Send(to, msg)``,
``Broadcast(msg)`` (to every other member), ``SetTimer(kind, id, at_ms)`` /
``CancelTimer(kind)`` (one timer per kind), ``Deliver(block, certificate)`` (strict
height order, once per height above ``last_executed_height``), ``ProposalWanted(height)``
(we are primary and have room: send a ``TransactionsAvailable`` batch; also see
``replica.wants_proposal``), ``RequestStateTransfer(from, to, to_block_hash, peers)``,
``ReportEvidence(evidence)``, ``StateDiverged(height, ours, certified)`` (the replica
halts).

Proposals: the driver batches (max txs/bytes/wait are its policy) and passes the batch
in ``TransactionsAvailable``; if this replica is the primary with room in the window it
proposes a prefix of the batch that fits ``block_txs_max``/``block_bytes_max`` (the
proposal is visible as a ``Broadcast(PrePrepare)``).  Backups use the same event as a
hint that work is pending, which arms the view-change timer.  Transactions are opaque
and need not be unique.

State transfer is served and consumed by the driver with ``state_transfer``:
``build_request`` -> send to ``peers[0]``; peers answer with ``serve_request`` from
their block store; the requester checks ``verify_entry`` (commit certificates and
hash links), executes the blocks, then feeds ``StateTransferDone``.  The core retries
on its ``STATE_TRANSFER`` timer with rotated peers.  State-transfer messages are never
fed to the replica.

Offline checks: ``verify_commit_certificate(config_or_members, chain_id, block, cert,
verify)`` raises ``InvalidCertificate`` or returns None.  Untrusted frames go through
``decode_message`` which raises only ``DecodeError``.  ``replica.rejections`` counts every
refused message by reason; ``replica.evidence`` keeps conflicting signed messages;
``replica.suspicions`` counts by cause ("progress", "request") the times this replica
suspected a primary; ``replica.requests_tracked`` is the number of request timers.
"""

from mdtp.consensus.actions import (
    Action,
    Broadcast,
    CancelTimer,
    Deliver,
    Evidence,
    Persist,
    ProposalWanted,
    ReportEvidence,
    RequestStateTransfer,
    Send,
    SetTimer,
    StateDiverged,
)
from mdtp.consensus.block import Block, BlockHeader, genesis_hash
from mdtp.consensus.certificates import verify_checkpoint_certificate, verify_commit_certificate
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import (
    ConfigError,
    ConsensusError,
    DecodeError,
    InvalidCertificate,
    InvalidStateTransfer,
)
from mdtp.consensus.events import (
    BlockExecuted,
    Event,
    MessageReceived,
    StateTransferDone,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
    TransactionsRemoved,
)
from mdtp.consensus.messages import (
    Checkpoint,
    CheckpointCertificate,
    Commit,
    CommitCertificate,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    StateTransferRequest,
    StateTransferResponse,
    Suspect,
    ViewChange,
    WireLimits,
    decode_message,
    encode_message,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.state import (
    PersistedState,
    StateRecords,
    StateWriter,
    decode_state,
    encode_state,
)

__all__ = [
    "Action",
    "Block",
    "BlockExecuted",
    "BlockHeader",
    "Broadcast",
    "CancelTimer",
    "Checkpoint",
    "CheckpointCertificate",
    "Commit",
    "CommitCertificate",
    "ConfigError",
    "ConsensusConfig",
    "ConsensusError",
    "DecodeError",
    "Deliver",
    "Event",
    "Evidence",
    "InvalidCertificate",
    "InvalidStateTransfer",
    "Message",
    "MessageReceived",
    "NewView",
    "Persist",
    "PersistedState",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "ProposalWanted",
    "Replica",
    "ReportEvidence",
    "RequestStateTransfer",
    "Send",
    "SetTimer",
    "StateDiverged",
    "StateRecords",
    "StateTransferDone",
    "StateTransferRequest",
    "StateTransferResponse",
    "StateWriter",
    "Suspect",
    "TimerFired",
    "TimerKind",
    "TransactionsAvailable",
    "TransactionsRemoved",
    "ViewChange",
    "WireLimits",
    "decode_message",
    "decode_state",
    "encode_message",
    "encode_state",
    "genesis_hash",
    "verify_checkpoint_certificate",
    "verify_commit_certificate",
]
