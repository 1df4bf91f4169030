"""State transfer helpers for the driver: building requests, serving them from the
block store, and verifying responses before anything is executed.

The core only decides *that* it must catch up (``RequestStateTransfer``) and learns
*where* the driver got to (``StateTransferDone``); fetching, serving and applying
blocks belong to the driver, which owns the block store.  Serving is bounded by count
and bytes; verification checks every commit certificate and the hash chain, so a
Byzantine peer can waste a round trip but never make us execute a wrong block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mdtp.consensus.block import Block
from mdtp.consensus.certificates import verify_commit_certificate
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import InvalidCertificate, InvalidStateTransfer
from mdtp.consensus.messages import (
    CommitCertificate,
    Signer,
    StateTransferRequest,
    StateTransferResponse,
    Verifier,
    sign_message,
    verify_message,
)

BlockSource = Callable[[int], tuple[Block, CommitCertificate] | None]


@dataclass(frozen=True, slots=True)
class Certifiers:
    """Who certifies a height of chain ``chain_id``: the members of its epoch, the epoch's
    signing domain and the verifier of their keys."""

    chain_id: str
    members: Sequence[str]
    domain: str
    verify: Verifier


CertifierFn = Callable[[int], Certifiers]


def single_epoch(config: ConsensusConfig, verify: Verifier) -> CertifierFn:
    """Every height certified by ``config``'s members: a chain that never reconfigures."""
    certifiers = Certifiers(config.chain_id, config.members, config.domain, verify)
    return lambda _height: certifiers


def build_request(
    config: ConsensusConfig, sign: Signer, from_height: int, to_height: int
) -> StateTransferRequest:
    to_height = min(to_height, from_height + config.state_transfer_blocks_max - 1)
    request = StateTransferRequest(from_height, to_height, config.my_id)
    return sign_message(request, config.chain_id, sign)


def serve_request(
    config: ConsensusConfig,
    sign: Signer,
    verify: Verifier,
    request: StateTransferRequest,
    source: BlockSource,
    bytes_max: int | None = None,
) -> StateTransferResponse | None:
    """Answer a verified peer's request with the longest available prefix of the
    range that fits the count and byte bounds; None if the request is not acceptable.
    ``verify`` knows the keys of whoever may ask (the caller decides who that is: members of
    any epoch, and nodes that follow the chain)."""
    if request.sender == config.my_id:
        return None
    if not verify_message(request, config.chain_id, verify):
        return None
    budget = config.block_bytes_max * 2 if bytes_max is None else bytes_max
    entries: list[tuple[Block, CommitCertificate]] = []
    used = 0
    last = min(request.to_height, request.from_height + config.state_transfer_blocks_max - 1)
    for height in range(request.from_height, last + 1):
        entry = source(height)
        if entry is None:
            break
        size = sum(len(tx) for tx in entry[0].payload) + 512
        if entries and used + size > budget:
            break
        entries.append(entry)
        used += size
    response = StateTransferResponse(tuple(entries), config.my_id)
    return sign_message(response, config.chain_id, sign)


def verify_entry(
    certifiers: CertifierFn,
    block: Block,
    cert: CommitCertificate,
    height: int,
    prev_hash: bytes,
) -> None:
    """Check that ``block`` is certified at ``height`` by the members of its epoch
    (``certifiers``) and extends the block whose hash is ``prev_hash``. Raises
    ``InvalidStateTransfer``. A catching-up node checks and executes the entries of a
    response one by one: a block may schedule a change of membership that certifies later
    blocks of the same response (a response can hold more blocks than the window)."""
    if block.height != height or block.header.prev_hash != prev_hash:
        raise InvalidStateTransfer("bad_chain", f"at height {block.height}")
    who = certifiers(block.height)
    try:
        verify_commit_certificate(who.members, who.chain_id, block, cert, who.verify, who.domain)
    except InvalidCertificate as exc:
        raise InvalidStateTransfer(exc.reason, f"at height {block.height}") from None


def verify_response(
    certifiers: CertifierFn,
    response: StateTransferResponse,
    from_height: int,
    prev_hash: bytes,
) -> list[tuple[Block, CommitCertificate]]:
    """The certified blocks of ``response`` that extend our chain at ``from_height``
    (whose predecessor hashes to ``prev_hash``), in order, each checked by
    :func:`verify_entry` against the epochs ``certifiers`` knows now (so: only for a chain
    that does not reconfigure within the response, e.g. in tests and tools). Raises
    ``InvalidStateTransfer`` on the first block that does not verify."""
    out: list[tuple[Block, CommitCertificate]] = []
    for block, cert in response.entries:
        verify_entry(certifiers, block, cert, from_height + len(out), prev_hash)
        out.append((block, cert))
        prev_hash = block.hash()
    return out
