"""The chain's membership epochs, as the driver runs them.

The ledger records every epoch (``mdtp.node.ledger.governance.membership``): its members with
their node keys, and the height it takes effect, always right after a checkpoint height. This
module turns them into what the consensus core needs: one :class:`ConsensusConfig` per epoch
(members, quorum, signing domain, base block) and the verifier of its members' node keys, and
answers the questions the driver asks at a boundary: where does the current epoch end, which
epoch holds a height, who may talk to us at all (the *roster*: every member of every epoch
recorded, scheduled ones included, so a joining member can fetch blocks before its epoch).

Everything is read from committed state, so every replica derives the same answers; a change
is visible here once the block that scheduled it is executed, at least a window before it
takes effect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import nacl.exceptions
import nacl.signing

from mdtp.consensus.config import ConsensusConfig, EpochBase
from mdtp.consensus.messages import Verifier
from mdtp.consensus.state_transfer import Certifiers
from mdtp.node.identity.genesis import Member, MemberSignatures
from mdtp.node.ledger.governance.membership import Epoch, epoch_at, read_epoch
from mdtp.node.ledger.state import ReadableKV

# The block a later epoch starts from: its height's hash, timestamp and state root.
BaseReader = Callable[[int], EpochBase]


class ChainEpochs:
    """The epochs recorded in committed state, refreshed after each executed block."""

    def __init__(
        self, genesis_config: ConsensusConfig, state: Callable[[], ReadableKV], base: BaseReader
    ) -> None:
        assert genesis_config.epoch == 0
        self._genesis_config = genesis_config
        self._state = state
        self._base = base
        self._epochs: list[Epoch] = []
        self._verifiers: dict[int, MemberSignatures] = {}
        self._any_keys: dict[str, list[nacl.signing.VerifyKey]] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Read the epochs recorded since the last call (epochs are numbered from 0 and a
        recorded one never changes, so one look-up per call when none was added); True if
        any was."""
        state = self._state()
        added: list[Epoch] = []
        while (epoch := read_epoch(state, len(self._epochs) + len(added))) is not None:
            added.append(epoch)
        if not added:
            return False
        self._epochs = self._epochs + added
        for epoch in added:
            for m in epoch.members + epoch.observers:
                keys = self._any_keys.setdefault(m.id, [])
                key = nacl.signing.VerifyKey(bytes.fromhex(m.node_public_key))
                if key not in keys:
                    keys.append(key)
        return True

    @property
    def all(self) -> list[Epoch]:
        return list(self._epochs)

    @property
    def roster(self) -> frozenset[str]:
        """Every node id of every epoch recorded, observers too (scheduled ones included)."""
        return frozenset(self._any_keys)

    def links(self, height: int) -> dict[str, tuple[Member, ...]]:
        """Who a node that executed ``height`` links with: the members and observers of the
        epoch in effect at the next height and of every later epoch recorded, each with the public
        facts those epochs give it (newest last). A removed member is not on it from its
        removal's epoch on; a member being added is, from the block that scheduled it."""
        current = self.at(height + 1).number
        out: dict[str, list[Member]] = {}
        for epoch in self._epochs[current:]:
            for member in epoch.members + epoch.observers:
                facts = out.setdefault(member.id, [])
                if member not in facts:
                    facts.append(member)
        return {node: tuple(facts) for node, facts in out.items()}

    def at(self, height: int) -> Epoch:
        return epoch_at(self._epochs, height)

    def get(self, number: int) -> Epoch | None:
        return self._epochs[number] if number < len(self._epochs) else None

    def last_height(self, number: int) -> int | None:
        """The last height of epoch ``number``, once the chain scheduled the next one."""
        nxt = self.get(number + 1)
        return None if nxt is None else nxt.activation_height - 1

    def config(self, number: int) -> ConsensusConfig:
        """The consensus configuration of epoch ``number`` (its base must be executed)."""
        epoch = self._epochs[number]
        if number == 0:
            return dataclasses.replace(self._genesis_config, members=epoch.member_ids)
        base = self._base(epoch.activation_height - 1)
        return dataclasses.replace(
            self._genesis_config, members=epoch.member_ids, epoch=number, base=base
        )

    def verifier(self, number: int) -> Verifier:
        """Signatures by the node keys of epoch ``number``'s members."""
        verifier = self._verifiers.get(number)
        if verifier is None:
            verifier = self._verifiers[number] = MemberSignatures(self._epochs[number].members)
        return verifier

    def verify_any(self, node_id: str, data: bytes, signature: bytes) -> bool:
        """A signature by any node key ``node_id`` had in any epoch: what authenticates a
        state-transfer request or response, which members of different epochs exchange."""
        if len(signature) != 64:
            return False
        for key in self._any_keys.get(node_id, ()):
            try:
                key.verify(data, signature)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
                continue
            return True
        return False

    def certifiers(self, height: int) -> Certifiers:
        """Who certifies a block at ``height``: the members of the epoch in effect there, in
        its signing domain (needs no base block, so a state-transfer answer can be checked
        before any of its blocks is executed)."""
        self.refresh()  # state transfer executes blocks as it goes: epochs they scheduled
        epoch = self.at(height)
        chain_id = self._genesis_config.chain_id
        domain = ConsensusConfig.domain_of(chain_id, epoch.number)
        return Certifiers(chain_id, epoch.member_ids, domain, self.verifier(epoch.number))
