"""Pure verification of certificates; usable offline by auditors and by state transfer.

Each function raises ``InvalidCertificate`` with a stable reason or returns ``None``.
Signature checks come last: they are the expensive part, and a malformed certificate
should cost as little as possible.
"""

from __future__ import annotations

from collections.abc import Sequence

from mdtp.consensus.block import Block, genesis_hash
from mdtp.consensus.config import ConsensusConfig, quorum_size
from mdtp.consensus.errors import InvalidCertificate
from mdtp.consensus.messages import (
    TAG_CHECKPOINT,
    TAG_COMMIT,
    TAG_PREPARE,
    CheckpointCertificate,
    CommitCertificate,
    PreparedCertificate,
    Signatures,
    Verifier,
    signing_bytes,
)


def _members(config_or_members: ConsensusConfig | Sequence[str]) -> tuple[str, ...]:
    if isinstance(config_or_members, ConsensusConfig):
        return config_or_members.members
    return tuple(config_or_members)


def _check_signers(
    sigs: Signatures, members: tuple[str, ...], needed: int, excluded: str | None = None
) -> None:
    signers = [s for s, _ in sigs]
    if len(set(signers)) != len(signers):
        raise InvalidCertificate("duplicate_signer")
    if any(s not in members or s == excluded for s in signers):
        raise InvalidCertificate("unknown_signer")
    if len(signers) < needed:
        raise InvalidCertificate("too_few_signers", f"{len(signers)} < {needed}")


def verify_commit_certificate(
    config_or_members: ConsensusConfig | Sequence[str],
    chain_id: str,
    block: Block,
    cert: CommitCertificate,
    verify: Verifier,
    domain: str | None = None,
) -> None:
    """Check that ``cert`` proves ``block`` committed: 2f+1 distinct members signed
    COMMIT(view, height, hash) on this chain, and the block's payload matches its header.
    ``members`` and ``domain`` are those of the block's epoch (``domain`` defaults to the
    chain id, the first epoch's; see ``ConsensusConfig.domain``)."""
    members = _members(config_or_members)
    if domain is None:
        domain = (
            config_or_members.domain if isinstance(config_or_members, ConsensusConfig) else chain_id
        )
    if block.header.chain_id != chain_id:
        raise InvalidCertificate("wrong_chain")
    if cert.height != block.height or cert.block_hash != block.hash():
        raise InvalidCertificate("digest_mismatch")
    if not block.payload_matches():
        raise InvalidCertificate("payload_mismatch")
    _check_signers(cert.signatures, members, quorum_size(len(members)))
    fields = [cert.view, cert.height, cert.block_hash]
    for signer, sig in cert.signatures:
        if not verify(signer, signing_bytes(TAG_COMMIT, domain, signer, fields), sig):
            raise InvalidCertificate("bad_signature", signer)


def verify_checkpoint_certificate(
    config: ConsensusConfig, cert: CheckpointCertificate, verify: Verifier
) -> None:
    if cert.height < config.base_height:
        raise InvalidCertificate("stale_epoch")
    if cert.height == config.base_height:
        # An epoch's base needs no signatures: every member derives it, genesis from the
        # config, a later epoch's from its own executed chain (``EpochBase``).
        base = config.base
        if base is None:
            expected = (
                genesis_hash(config.chain_id, config.genesis_state_root),
                (config.genesis_state_root),
            )
        else:
            expected = base.block_hash, base.state_root
        if (cert.block_hash, cert.state_root) != expected or cert.signatures:
            raise InvalidCertificate("bad_base_checkpoint")
        return
    if cert.height % config.checkpoint_interval != 0:
        raise InvalidCertificate("bad_checkpoint_height")
    _check_signers(cert.signatures, config.members, config.quorum)
    fields = [cert.height, cert.block_hash, cert.state_root]
    for signer, sig in cert.signatures:
        if not verify(signer, signing_bytes(TAG_CHECKPOINT, config.domain, signer, fields), sig):
            raise InvalidCertificate("bad_signature", signer)


def verify_block_shape(config: ConsensusConfig, block: Block, height: int) -> str | None:
    """Structural checks every replica can do on any proposed block; a reason or None."""
    header = block.header
    if header.chain_id != config.chain_id:
        return "wrong_chain"
    if header.height != height:
        return "height_mismatch"
    if not block.payload_matches():
        return "digest_mismatch"
    if len(block.payload) > config.block_txs_max:
        return "block_too_large"
    if sum(len(tx) for tx in block.payload) > config.block_bytes_max:
        return "block_too_large"
    return None


def verify_prepared_certificate(
    config: ConsensusConfig, cert: PreparedCertificate, verify: Verifier
) -> None:
    """A pre-prepare signed by the primary of its view plus 2f prepares from distinct
    backups, all for the same (view, height, digest)."""
    pp = cert.pre_prepare
    primary = config.primary(pp.view)
    if pp.sender != primary:
        raise InvalidCertificate("wrong_primary")
    if pp.block.header.proposer != primary and pp.block.header.proposer not in config.members:
        raise InvalidCertificate("bad_block")
    shape = verify_block_shape(config, pp.block, pp.height)
    if shape is not None:
        raise InvalidCertificate(shape)
    _check_signers(cert.prepares, config.members, config.quorum - 1, excluded=primary)
    if not verify(pp.sender, pp.signing_bytes(config.domain), pp.signature):
        raise InvalidCertificate("bad_signature", pp.sender)
    fields = [pp.view, pp.height, pp.digest]
    for signer, sig in cert.prepares:
        if not verify(signer, signing_bytes(TAG_PREPARE, config.domain, signer, fields), sig):
            raise InvalidCertificate("bad_signature", signer)
