"""A test peer that speaks the p2p protocol as a member: it presents that member's real
certificate and answers the handshake with a key of the test's choosing (the member's own
node key to play a malicious member, any other key to play a thief)."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

from mdtp.node.identity import pki
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ops import cluster
from mdtp.node.p2p.frames import encode_frame, read_frame
from mdtp.node.p2p.handshake import Hello, auth_bytes


async def impersonate(
    cluster_dir: Path, target: cluster.ClusterNode, as_id: str, node_key: SigningKey
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    """Connect to ``target`` with ``as_id``'s real certificate, answering with ``node_key``."""
    genesis = load_genesis(cluster_dir / "genesis.json")
    home = cluster_dir / as_id
    ctx = pki.p2p_client_context(
        cluster_dir / "ca" / "ca.pem", home / "node.pem", home / "node.key.pem"
    )
    host, _, port = target.p2p.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    challenge = os.urandom(32)
    writer.write(encode_frame("hello", Hello(genesis.chain_id, as_id, challenge).to_body(), 4096))
    _, body, _ = await read_frame(reader, 4096)
    server = Hello.from_body(body)
    me, them = genesis.member(as_id), genesis.member(target.id)
    assert me and them
    signed = auth_bytes(
        chain_id=genesis.chain_id,
        role="client",
        signer_id=as_id,
        verifier_id=target.id,
        verifier_challenge=server.challenge,
        signer_fingerprint=me.tls_fingerprint,
        verifier_fingerprint=them.tls_fingerprint,
    )
    writer.write(encode_frame("auth", {"signature": node_key.sign(signed)}, 4096))
    try:
        kind, _, _ = await asyncio.wait_for(read_frame(reader, 4096), 10)
        return reader, writer, kind == "ready"
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return reader, writer, False
