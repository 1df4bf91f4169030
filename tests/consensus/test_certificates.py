"""Commit certificates verify offline; state-transfer responses verify before use."""

from __future__ import annotations

import dataclasses

import pytest

from mdtp.consensus.certificates import verify_commit_certificate
from mdtp.consensus.errors import InvalidCertificate, InvalidStateTransfer
from mdtp.consensus.messages import CommitCertificate, StateTransferResponse
from mdtp.consensus.state_transfer import (
    build_request,
    serve_request,
    single_epoch,
    verify_response,
)
from tests.consensus.helpers import KEYS, MEMBERS, commit, config, pre_prepare


def _cert(signers=("n0", "n1", "n2")):
    pp = pre_prepare()
    sigs = tuple((s, commit(pp, s).signature) for s in sorted(signers))
    return pp.block, CommitCertificate(0, 1, pp.digest, sigs)


def test_commit_certificate_with_quorum_of_valid_signers_verifies():
    blk, cert = _cert()
    verify_commit_certificate(MEMBERS, "test", blk, cert, KEYS.verify)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b, c: (b, dataclasses.replace(c, signatures=c.signatures[:2])), "too_few_signers"),
        (
            lambda b, c: (
                b,
                dataclasses.replace(c, signatures=(*c.signatures[:2], c.signatures[0])),
            ),
            "duplicate_signer",
        ),
        (
            lambda b, c: (
                b,
                dataclasses.replace(
                    c, signatures=((*c.signatures[:2], ("zz", c.signatures[2][1])))
                ),
            ),
            "unknown_signer",
        ),
        (lambda b, c: (b, dataclasses.replace(c, view=1)), "bad_signature"),
        (lambda b, c: (b, dataclasses.replace(c, block_hash=b"\x00" * 32)), "digest_mismatch"),
    ],
)
def test_commit_certificate_refused_with_reason(mutate, reason):
    blk, cert = mutate(*_cert())
    with pytest.raises(InvalidCertificate) as err:
        verify_commit_certificate(MEMBERS, "test", blk, cert, KEYS.verify)
    assert err.value.reason == reason


def test_state_transfer_serves_bounded_ranges_and_verifies_the_chain():
    blk, cert = _cert()
    cfg = config("n2")
    request = build_request(config("n3"), KEYS.signer("n3"), 1, 500)
    assert request.to_height - request.from_height + 1 == cfg.state_transfer_blocks_max
    response = serve_request(
        cfg, KEYS.signer("n2"), KEYS.verify, request, lambda h: (blk, cert) if h == 1 else None
    )
    assert response is not None and len(response.entries) == 1
    entries = verify_response(single_epoch(cfg, KEYS.verify), response, 1, blk.header.prev_hash)
    assert entries == [(blk, cert)]
    with pytest.raises(InvalidStateTransfer):
        verify_response(single_epoch(cfg, KEYS.verify), response, 1, b"\x00" * 32)
    forged = StateTransferResponse(((blk, dataclasses.replace(cert, view=5)),), "n2")
    with pytest.raises(InvalidStateTransfer):
        verify_response(single_epoch(cfg, KEYS.verify), forged, 1, blk.header.prev_hash)
