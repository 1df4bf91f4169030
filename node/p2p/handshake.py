"""The identity handshake that runs inside a fresh mutual-TLS connection.

TLS proves the peer holds a certificate issued by the consortium CA; this proves it also
holds the member's Ed25519 node key, so a stolen certificate alone is useless. Each side
signs the other side's fresh 32-byte challenge together with the chain id, both node ids
and both certificate fingerprints (binding the signature to this TLS session's identities):

    client -> server  HELLO  {chain_id, node_id, challenge_c}
    server -> client  HELLO  {chain_id, node_id, challenge_s, sig_s(challenge_c)}
    client -> server  AUTH   {sig_c(challenge_s)}
    server -> client  READY  {}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdtp.node.errors import HandshakeRefused

DOMAIN_TAG = b"mdtp/v1/p2p-auth"
CHALLENGE_BYTES = 32


@dataclass(frozen=True)
class Hello:
    chain_id: str
    node_id: str
    challenge: bytes
    signature: bytes | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "chain_id": self.chain_id,
            "node_id": self.node_id,
            "challenge": self.challenge,
        }
        if self.signature is not None:
            body["signature"] = self.signature
        return body

    @classmethod
    def from_body(cls, body: Any) -> Hello:
        if not isinstance(body, dict):
            raise HandshakeRefused("HELLO is not a map", reason="bad_hello")
        chain_id, node_id = body.get("chain_id"), body.get("node_id")
        challenge, signature = body.get("challenge"), body.get("signature")
        if not isinstance(chain_id, str) or not isinstance(node_id, str):
            raise HandshakeRefused("HELLO lacks chain_id or node_id", reason="bad_hello")
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_BYTES:
            raise HandshakeRefused("HELLO challenge must be 32 bytes", reason="bad_hello")
        if signature is not None and (not isinstance(signature, bytes) or len(signature) != 64):
            raise HandshakeRefused("HELLO signature must be 64 bytes", reason="bad_hello")
        return cls(chain_id, node_id, challenge, signature)


def auth_bytes(
    *,
    chain_id: str,
    role: str,
    signer_id: str,
    verifier_id: str,
    verifier_challenge: bytes,
    signer_fingerprint: str,
    verifier_fingerprint: str,
) -> bytes:
    """The exact bytes a side signs to answer the other side's challenge."""
    parts = [
        DOMAIN_TAG,
        chain_id.encode(),
        role.encode(),
        signer_id.encode(),
        verifier_id.encode(),
        verifier_challenge,
        bytes.fromhex(signer_fingerprint),
        bytes.fromhex(verifier_fingerprint),
    ]
    return b"\x00".join(len(p).to_bytes(2, "big") + p for p in parts)
