"""Invariant checker: fed by the simulated drivers, judged at the end of a run.

- agreement: no two honest replicas commit different blocks at one height;
- certificates: every delivered block carries 2f+1 valid, distinct commit signatures;
- contiguity: each replica's chain grows by exactly one linked block at a time;
- persistence: no vote leaves a replica before the state that protects it is persisted;
- honesty: no honest replica holds evidence that another honest one equivocated;
- liveness: after faults heal, within a bounded time, every honest replica progresses,
  commits every transaction submitted before the heal, and is back in a view (none left
  in a view change, alone or not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mdtp.consensus.block import Block
from mdtp.consensus.certificates import verify_commit_certificate
from mdtp.consensus.errors import InvalidCertificate
from mdtp.consensus.messages import CommitCertificate
from mdtp.consensus.state_transfer import Certifiers

VIOLATIONS_MAX = 20


@dataclass
class Checker:
    # who certifies a height, by the membership history a replica (instance) executed
    certifiers: Callable[[str, int], Certifiers]
    honest: frozenset[str]
    committed: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def violation(self, text: str) -> None:
        if len(self.violations) < VIOLATIONS_MAX:
            self.violations.append(text)

    def on_append(
        self,
        node: str,
        instance: str,
        chain_tip: tuple[int, bytes],
        block: Block,
        cert: CommitCertificate,
    ) -> None:
        height, tip_hash = chain_tip
        if block.height != height + 1 or block.header.prev_hash != tip_hash:
            self.violation(f"{instance}: non-contiguous commit at height {block.height}")
        try:
            who = self.certifiers(instance, block.height)
            verify_commit_certificate(
                who.members, who.chain_id, block, cert, who.verify, who.domain
            )
        except InvalidCertificate as exc:
            self.violation(f"{instance}: invalid commit certificate at {block.height}: {exc}")
        if node not in self.honest:
            return
        first = self.committed.setdefault(block.height, (block.hash(), instance))
        if first[0] != block.hash():
            self.violation(
                f"agreement: {first[1]} and {instance} committed different blocks "
                f"at height {block.height}"
            )

    def check_liveness(self, heights: dict[str, int], target: int, bound_ms: int) -> None:
        for instance, height in sorted(heights.items()):
            if height < target:
                self.violation(
                    f"liveness: {instance} at height {height} < {target} "
                    f"{bound_ms} ms after faults healed"
                )

    def check_transactions(self, instance: str, missing: int, client: int, bound_ms: int) -> None:
        self.violation(
            f"liveness: {instance} has not committed {missing} transactions submitted "
            f"before the heal (oldest from client {client}) {bound_ms} ms after faults healed"
        )

    def check_view_changes(self, states: dict[str, tuple[bool, int]], bound_ms: int) -> None:
        """``states``: instance -> (in a view change, view) of every honest replica."""
        working = sorted(i for i, (in_vc, _) in states.items() if not in_vc)
        for instance, (in_vc, view) in sorted(states.items()):
            if in_vc:
                company = f"while {', '.join(working)} work" if working else "with all others"
                self.violation(
                    f"liveness: {instance} still in a view change to view {view} "
                    f"{bound_ms} ms after faults healed, {company}"
                )
