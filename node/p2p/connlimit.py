"""Admission of inbound connections: a bound on the total and on each remote address.

Checked the moment a TCP connection is accepted, before TLS or any other work, so a flood
costs the node one accept and one close per excess connection and nothing it holds.
"""

from __future__ import annotations

TOO_MANY = "too_many_connections"
TOO_MANY_FROM_ADDRESS = "too_many_from_address"


class ConnectionCounter:
    def __init__(self, max_total: int, max_per_address: int) -> None:
        assert max_total > 0 and max_per_address > 0
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; the refusal reason if it is one too many."""
        if self.open >= self.max_total:
            return TOO_MANY
        held = self._by_address.get(address, 0)
        if held >= self.max_per_address:
            return TOO_MANY_FROM_ADDRESS
        self._by_address[address] = held + 1
        self.open += 1
        return None

    def release(self, address: str) -> None:
        """Forget one admitted connection from ``address`` (exactly once per admission)."""
        held = self._by_address[address] - 1
        if held:
            self._by_address[address] = held
        else:
            del self._by_address[address]  # the table holds only addresses with connections
        self.open -= 1
