"""The per-connection budget of refused submissions (``mdtp.node.api.throttle``)."""

from __future__ import annotations

from mdtp.node.api.throttle import RefusalBudget


class Conn:
    """Stands for a connection's transport (weakly referenced by the budget)."""


def test_a_burst_then_the_rate_and_connections_apart() -> None:
    now = [0.0]
    budget = RefusalBudget(per_s=10, penalty_s=1.0, monotonic=lambda: now[0])
    flood, honest = Conn(), Conn()
    for _ in range(10):
        assert not budget.exhausted(flood)
        budget.refused(flood)
    assert budget.exhausted(flood)
    assert not budget.exhausted(honest)  # budgeted apart
    now[0] += 0.1  # one refusal's worth refills
    assert not budget.exhausted(flood)
    budget.refused(flood)
    assert budget.exhausted(flood)


def test_a_closed_connection_leaves_nothing_behind() -> None:
    budget = RefusalBudget()
    conn = Conn()
    budget.refused(conn)
    del conn
    assert len(budget._buckets) == 0
