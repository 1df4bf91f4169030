"""The membership history of a chain, as the ledger records it: pure reads of the state.

An *epoch* is one membership: its members (node keys, TLS fingerprints, endpoints), their
admin accounts, the governance policy, the height from which it is in effect and the
proposal that made it. Epoch 0 is the genesis membership, in effect from height 0. A
proposal that passes in block ``H`` appends the next epoch, in effect from its activation
height (:func:`activation_height`), so every replica derives the same history from the
chain. This module is what the consensus driver reads to reconfigure at an epoch boundary:

- :func:`history` — every epoch, in order (scheduled ones included);
- :func:`membership_at` — the epoch in effect at a height, with ``n``, ``f`` and the quorum.

Both take any :class:`ReadableKV` (an overlay while executing, the committed store when
serving reads) and never look at a clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mdtp.node.identity.genesis import Admin, Genesis, Member
from mdtp.node.ledger.governance import layout
from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading.layout import decode, read

# The consortium's size is bounded so that every epoch record, every proposal's vote map and
# every threshold computation stays small (a PBFT group of 64 is already far past what the
# all-to-all vote pattern serves well).
MAX_MEMBERS = 64
# A member has a handful of administrators, not a department.
MAX_ADMINS_PER_MEMBER = 8


@dataclass(frozen=True)
class Policy:
    """A proposal passes when approvals by distinct current members exceed
    ``threshold_num / threshold_den`` of the current members (strictly more than).

    ``min_members``: no removal may leave fewer members. The default is 4 = 3f+1 for f=1,
    the smallest group that tolerates one faulty member; below it f is 0 and any single
    faulty member can stall or fork the chain.
    """

    threshold_num: int = 2
    threshold_den: int = 3
    min_members: int = 4

    def passes(self, approvals: int, n: int) -> bool:
        return approvals * self.threshold_den > self.threshold_num * n

    def needed(self, n: int) -> int:
        """The fewest approvals that pass among ``n`` members."""
        return self.threshold_num * n // self.threshold_den + 1

    def to_record(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Policy:
        return cls(int(doc["threshold_num"]), int(doc["threshold_den"]), int(doc["min_members"]))


@dataclass(frozen=True)
class Epoch:
    number: int
    activation_height: int
    members: tuple[Member, ...]  # sorted by id
    admins: tuple[Admin, ...]  # sorted by (member, account id)
    policy: Policy
    proposal_id: str | None  # None for epoch 0 (genesis)
    # nodes that follow and serve reads, never vote (sorted by id)
    observers: tuple[Member, ...] = ()

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    def observer(self, observer_id: str) -> Member | None:
        return next((o for o in self.observers if o.id == observer_id), None)

    def admin_member(self, account_id: str) -> str | None:
        """The member whose admin ``account_id`` is in this epoch, or None."""
        return next((a.member for a in self.admins if a.account_id == account_id), None)

    def to_record(self) -> dict[str, Any]:
        return {
            "epoch": self.number,
            "activation_height": self.activation_height,
            "members": [asdict(m) for m in self.members],
            "admins": [asdict(a) for a in self.admins],
            "policy": self.policy.to_record(),
            "proposal_id": self.proposal_id,
            # only once there are any: the genesis state (and its root) stays as it was
            **({"observers": [asdict(o) for o in self.observers]} if self.observers else {}),
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Epoch:
        return cls(
            number=int(doc["epoch"]),
            activation_height=int(doc["activation_height"]),
            members=tuple(Member(**m) for m in doc["members"]),
            admins=tuple(Admin(**a) for a in doc["admins"]),
            policy=Policy.from_record(doc["policy"]),
            proposal_id=doc["proposal_id"],
            observers=tuple(Member(**o) for o in doc.get("observers", [])),
        )


@dataclass(frozen=True)
class Membership:
    """The membership in effect at a height: its epoch, and the PBFT sizes it implies."""

    epoch: Epoch
    n: int
    f: int
    quorum: int

    @property
    def members(self) -> tuple[Member, ...]:
        return self.epoch.members


def fault_tolerance(n: int) -> int:
    """f = floor((n - 1) / 3): the most faulty members n replicas tolerate."""
    return (n - 1) // 3 if n > 0 else 0


def quorum_size(n: int) -> int:
    """ceil((n + f + 1) / 2): any two quorums share a correct member (2f+1 when n = 3f+1)."""
    return (n + fault_tolerance(n) + 2) // 2


def membership_of(epoch: Epoch) -> Membership:
    n = len(epoch.members)
    return Membership(epoch, n, fault_tolerance(n), quorum_size(n))


def activation_height(
    passed_height: int, checkpoint_interval: int, window: int, previous_activation: int
) -> int:
    """Where a change that passed in block ``passed_height`` takes effect: the height right
    after a checkpoint boundary ``C``, the first multiple of ``checkpoint_interval`` with
    ``C + 1 >= passed_height + window``, strictly after the previous epoch's activation.

    Why there: a replica works on a height only inside its window, at most ``window`` above
    what it has executed, so no replica touches the new epoch's first height before it has
    executed the block that scheduled it; and the old members certify the state at ``C`` with
    a stable checkpoint, from which the new membership starts (``consensus/replica.py``,
    "Epochs"). At most one change takes effect at a boundary: a change that passes while
    another is scheduled takes the next boundary after it.
    """
    assert checkpoint_interval > 0 and window >= 0 and passed_height >= 0
    target = passed_height + window - 1
    boundary = -(-target // checkpoint_interval) * checkpoint_interval
    if boundary + 1 <= previous_activation:
        boundary = ((previous_activation - 1) // checkpoint_interval + 1) * checkpoint_interval
    return boundary + 1


def genesis_epoch(genesis: Genesis) -> Epoch:
    members, admins = _sorted(list(genesis.members), list(genesis.admins))
    return Epoch(0, 0, members, admins, Policy(), None)


def _sorted(members: list[Member], admins: list[Admin]) -> tuple[Any, Any]:
    return tuple(sorted(members, key=lambda m: m.id)), tuple(
        sorted(admins, key=lambda a: (a.member, a.account_id))
    )


def history(state: ReadableKV) -> list[Epoch]:
    """Every epoch the chain recorded, epoch 0 first (scheduled ones included)."""
    epochs = [Epoch.from_record(decode(raw)) for _, raw in state.scan(layout.EPOCH)]
    assert [e.number for e in epochs] == list(range(len(epochs))), "epochs are numbered 0.."
    return epochs


def latest_epoch(state: ReadableKV) -> Epoch:
    """The last epoch recorded (possibly scheduled for a later height)."""
    epochs = history(state)
    assert epochs, "no epoch 0: the state was not made from a genesis with governance"
    return epochs[-1]


def epoch_at(epochs: list[Epoch], height: int) -> Epoch:
    in_effect = [e for e in epochs if e.activation_height <= height]
    assert in_effect, "epoch 0 is in effect from height 0"
    return in_effect[-1]


def membership_at(state: ReadableKV, height: int) -> Membership:
    """The membership in effect at ``height`` (epoch 0 before the first activation)."""
    return membership_of(epoch_at(history(state), height))


def current_epoch(state: ReadableKV) -> Epoch:
    """The epoch in effect at the committed height: the last one whose activation the
    ledger applied (no height needed)."""
    raw = state.get(layout.APPLIED)
    number = int.from_bytes(raw, "big") if raw else 0
    epoch = read_epoch(state, number)
    assert epoch is not None, f"epoch {number} was applied but is not recorded"
    return epoch


def scheduled(state: ReadableKV, height: int) -> list[Epoch]:
    """Epochs recorded but not yet in effect at ``height``."""
    return [e for e in history(state) if e.activation_height > height]


def read_epoch(state: ReadableKV, number: int) -> Epoch | None:
    doc = read(state, layout.epoch_key(number))
    return None if doc is None else Epoch.from_record(doc)
