"""One small exception hierarchy for the consensus package.

Every error carries a stable ``reason`` string: the node returns it to peers and callers,
and the metrics use it as a label, so reasons are part of the interface and never change
spelling once released.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Base of every error raised by ``consensus``; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(ConsensusError):
    """Untrusted bytes are not a well-formed, canonical, size-bounded message."""


class InvalidCertificate(ConsensusError):
    """A commit, prepared or checkpoint certificate does not prove what it claims."""


class InvalidStateTransfer(ConsensusError):
    """A state-transfer response does not extend our chain with certified blocks."""


class ConfigError(ConsensusError):
    """A ``ConsensusConfig`` violates a structural requirement (e.g. window < 2K)."""
