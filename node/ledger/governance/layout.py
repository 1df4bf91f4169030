"""The state layout of the governance rules (every key under ``gov/``).

Values are canonical msgpack maps (``node.tx.canonical``), read back with
:func:`mdtp.node.ledger.trading.layout.read`. Numbers inside keys are fixed-width hex.

================================  ==============================================
``gov/epoch/<n:08x>``              epoch ``n``: activation height, members, admins, policy
``gov/applied``                    number of the last epoch whose state effects ran (8 bytes)
``gov/prop/<proposal id>``         proposal: change, proposer, votes by member, status
``gov/open/<proposal id>``         open proposals (empty value); at most ``MAX_OPEN``
``gov/lock/<subject>``             proposal id holding the pending change of a member id
                                   (or ``~policy``) until it is rejected, expires or activates
``gov/tls/<fingerprint hex>``      member id a TLS fingerprint is or was claimed by
================================  ==============================================

Node and admin keys of proposed members are claimed in the accounts' own key index
(``acctkey/``), so no account can be registered with a key a pending member will use.
"""

from __future__ import annotations

EPOCH = b"gov/epoch/"
APPLIED = b"gov/applied"
PROPOSAL = b"gov/prop/"
OPEN = b"gov/open/"
LOCK = b"gov/lock/"
TLS = b"gov/tls/"

POLICY_SUBJECT = "~policy"  # lock subject of a policy change; never a member id (NODE_ID_RE)


def epoch_key(number: int) -> bytes:
    return EPOCH + f"{number:08x}".encode()


def proposal_key(proposal_id: str) -> bytes:
    return PROPOSAL + proposal_id.encode()


def open_key(proposal_id: str) -> bytes:
    return OPEN + proposal_id.encode()


def lock_key(subject: str) -> bytes:
    return LOCK + subject.encode()


def tls_key(fingerprint_hex: str) -> bytes:
    return TLS + fingerprint_hex.encode()
