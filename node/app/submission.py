"""Client submissions go to the driver only while this node can reach a quorum.

A transaction accepted by a node cut off from the others can only wait: with two of four
members down every submission used to be answered ``pending`` and its ``wait`` ran out 30 s
later. While the node holds links to fewer peers than a quorum needs besides itself, a
submission is refused at once, ``503 no_quorum`` with ``Retry-After``, before any work: the
client can retry later or elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from mdtp.node.chain.driver import Driver
from mdtp.node.errors import MdtpError, Unavailable
from mdtp.node.ledger.tx import Tx


class NoQuorum(Unavailable):
    reason = "no_quorum"


class QuorumGatedSubmitter:
    """The driver's ``submit``/``submit_many``/``wait_committed``, refused while
    ``peers()`` + 1 is below ``quorum()`` (the quorum of the epoch in effect)."""

    def __init__(self, driver: Driver, peers: Callable[[], int], quorum: Callable[[], int]) -> None:
        self._driver = driver
        self._peers = peers
        self._quorum = quorum

    def _check(self) -> None:
        reached, quorum = self._peers() + 1, self._quorum()  # the epoch's quorum
        if reached < quorum:
            raise NoQuorum(
                f"this node reaches {reached} of the {quorum} members a quorum needs; "
                "retry later or through another member's node"
            )

    async def submit(self, raw: bytes) -> Tx:
        self._check()
        return await self._driver.submit(raw)

    async def submit_many(self, raws: Sequence[bytes]) -> list[Tx | MdtpError]:
        self._check()
        return await self._driver.submit_many(raws)

    def wait_committed(self, tx_id: bytes) -> Awaitable[None]:
        return self._driver.wait_committed(tx_id)
