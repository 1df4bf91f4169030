"""The node's error hierarchy.

Every error carries a stable ``reason`` code: the API returns it, metrics label by it, the CLI
prints the message. Messages name the thing that is wrong (file, key, peer) and, where there
is one, what to do about it.
"""

from __future__ import annotations


class MdtpError(Exception):
    """Base of every error the node raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class Unavailable(MdtpError):
    """The node cannot take this request now (the API answers 503 with Retry-After)."""

    reason = "unavailable"


class ConfigError(MdtpError):
    reason = "bad_config"


class KeyFileError(MdtpError):
    reason = "bad_key_file"


class GenesisError(MdtpError):
    reason = "bad_genesis"


class TransportError(MdtpError):
    reason = "transport"


class HandshakeRefused(TransportError):
    """A peer connection was refused; ``reason`` says why (it labels the refusal metric)."""

    reason = "handshake_failed"


class FrameError(TransportError):
    reason = "bad_frame"


class ClusterError(MdtpError):
    reason = "cluster"
