"""Typed bodies of every transaction type a chain runs (:func:`.setup.build_ledger`).

The trading types are in :mod:`.trading.bodies`, the governance types in
:mod:`.governance.bodies`; the ledger's own ``note.set``
(:mod:`.notes`) is here, in the same style: a frozen dataclass named after its type whose
fields are the body's fields, and :meth:`Body.to_body` the map the transaction carries.

:data:`BODIES` maps every type a node's ledger registers to its builder (a test holds it to
the ledger's handlers, so a new type cannot go without one).
"""

from __future__ import annotations

from dataclasses import dataclass

from mdtp.node.ledger.governance.bodies import BODIES as GOVERNANCE_BODIES
from mdtp.node.ledger.trading.bodies import BODIES as TRADING_BODIES
from mdtp.node.ledger.trading.bodies import Body

__all__ = ["BODIES", "Body", "NoteSet"]


@dataclass(frozen=True)
class NoteSet(Body):
    """Store ``value`` (at most 1,024 bytes) under ``key`` (1..64 characters) in the sender's
    own notes; any registered account may send it."""

    TYPE = "note.set"
    key: str
    value: bytes


BODIES: dict[str, type[Body]] = {**TRADING_BODIES, **GOVERNANCE_BODIES, NoteSet.TYPE: NoteSet}
