"""The state layout of the trading rules: every key prefix, and how values are encoded.

Values are canonical msgpack maps (``node.tx.canonical``). Ids never contain ``/`` (the
body schema forbids it), so ``<prefix><id>/`` scans exactly one subject. Numbers inside keys
are fixed-width hex so that byte order is numeric order.

================================  ==============================================
``acct/<account id>``              account record (genesis admins, nodes, users)
``acctkey/<public key hex>``       account id a signing key is or was bound to
``member/<member id>``             member record with its node account id
``ds/<dataset id>``                dataset record (current metadata + status)
``dsidx/tag/<tag>/<dataset id>``   tag index (empty value)
``dsidx/sup/<account>/<ds id>``    supplier index (empty value)
``ct/<contract id>``               contract record (status, parties, counters)
``ctv/<contract id>/<ver:08x>``    one version: terms, hash, signatures, review
``ctg/<contract id>/<n:08x>``      access grants of a contract
``ctr/<contract id>/<n:08x>``      receipt ids of a contract, in order
``ctidx/acct/<account>/<ct id>``   contracts of an account (empty value)
``ctidx/ds/<ds id>/<ct id>``       contracts of a dataset (empty value)
``rcpt/<receipt id hex>``          delivery receipt (id = id of its transaction)
``rcptreq/<ct id>/<request hex>``  receipt id recorded for a fetch request (one per request)
``cq/<ct id>/<n:08x>``             compute receipt ids of a contract, in order
``cqn/<ct id>``                    number of compute receipts of a contract (u64)
``cqu/<ct id>``                    query budget used by a contract (u64)
``cqreq/<ct id>/<request hex>``    compute receipt id recorded for a query (one per query)
``crcpt/<receipt id hex>``         compute receipt (id = id of its transaction)
``due/<deadline:016x>/<ct id>``    disposal deadline of every contract that became active
``bill/<ct id>``                   billing record: line count, refunds, its ``billdue/`` key
``bline/<ct id>/<per:08x>/<n:08x>`` invoice line ``n`` (usage or refund) in period ``per``
``btot/<ct id>/<per:08x>``         totals of a period's lines (usage, refunds, count)
``bpay/<ct id>/<per:08x>/<n:02x>`` payment ``n`` of a period's invoice (confirm, acknowledge)
``billdue/<due:016x>/<ct id>``     earliest due time of a contract's unpaid invoices
``dsp/<dispute id>``               dispute record (evidence, answer, resolution)
``ctdsp/<ct id>/<n:08x>``          dispute ids of a contract, in order
``dspn/<ct id>``                   dispute counts of a contract (all, open)
``rec/<supplier account>``         a supplier's track record counters
``audit/<kind>/<id>/<seq:08x>``    audit entry ``seq`` of a subject
``auditn/<kind>/<id>``             number of audit entries of a subject
================================  ==============================================
"""

from __future__ import annotations

from typing import Any

import msgpack

from mdtp.node.ledger.state import ReadableKV

ACCOUNT = b"acct/"
ACCOUNT_KEY = b"acctkey/"
MEMBER = b"member/"
DATASET = b"ds/"
DATASET_TAG = b"dsidx/tag/"
DATASET_SUPPLIER = b"dsidx/sup/"
CONTRACT = b"ct/"
CONTRACT_VERSION = b"ctv/"
CONTRACT_GRANT = b"ctg/"
CONTRACT_RECEIPT = b"ctr/"
CONTRACT_BY_ACCOUNT = b"ctidx/acct/"
CONTRACT_BY_DATASET = b"ctidx/ds/"
RECEIPT = b"rcpt/"
RECEIPT_REQUEST = b"rcptreq/"
CONTRACT_COMPUTE = b"cq/"
COMPUTE_COUNT = b"cqn/"
COMPUTE_USED = b"cqu/"
COMPUTE_REQUEST = b"cqreq/"
COMPUTE_RECEIPT = b"crcpt/"
DISPOSAL_DUE = b"due/"
BILLING = b"bill/"
BILL_LINE = b"bline/"
BILL_TOTAL = b"btot/"
BILL_PAYMENT = b"bpay/"
BILL_DUE = b"billdue/"
DISPUTE = b"dsp/"
CONTRACT_DISPUTE = b"ctdsp/"
DISPUTE_COUNT = b"dspn/"
TRACK_RECORD = b"rec/"
AUDIT = b"audit/"
AUDIT_COUNT = b"auditn/"

EMPTY = b""


def account_key(account_id: str) -> bytes:
    return ACCOUNT + account_id.encode()


def account_key_index(public_key: bytes) -> bytes:
    return ACCOUNT_KEY + public_key.hex().encode()


def member_key(member_id: str) -> bytes:
    return MEMBER + member_id.encode()


def dataset_key(dataset_id: str) -> bytes:
    return DATASET + dataset_id.encode()


def dataset_tag_key(tag: str, dataset_id: str) -> bytes:
    return DATASET_TAG + tag.encode() + b"/" + dataset_id.encode()


def dataset_supplier_key(account_id: str, dataset_id: str) -> bytes:
    return DATASET_SUPPLIER + account_id.encode() + b"/" + dataset_id.encode()


def contract_key(contract_id: str) -> bytes:
    return CONTRACT + contract_id.encode()


def version_key(contract_id: str, version: int) -> bytes:
    return CONTRACT_VERSION + contract_id.encode() + b"/" + f"{version:08x}".encode()


def grant_key(contract_id: str, n: int) -> bytes:
    return CONTRACT_GRANT + contract_id.encode() + b"/" + f"{n:08x}".encode()


def contract_receipt_key(contract_id: str, n: int) -> bytes:
    return CONTRACT_RECEIPT + contract_id.encode() + b"/" + f"{n:08x}".encode()


def contract_by_account_key(account_id: str, contract_id: str) -> bytes:
    return CONTRACT_BY_ACCOUNT + account_id.encode() + b"/" + contract_id.encode()


def contract_by_dataset_key(dataset_id: str, contract_id: str) -> bytes:
    return CONTRACT_BY_DATASET + dataset_id.encode() + b"/" + contract_id.encode()


def receipt_key(receipt_id: bytes) -> bytes:
    return RECEIPT + receipt_id.hex().encode()


def receipt_request_key(contract_id: str, request_id: bytes) -> bytes:
    return RECEIPT_REQUEST + contract_id.encode() + b"/" + request_id.hex().encode()


def contract_compute_key(contract_id: str, n: int) -> bytes:
    return CONTRACT_COMPUTE + contract_id.encode() + b"/" + f"{n:08x}".encode()


def compute_count_key(contract_id: str) -> bytes:
    return COMPUTE_COUNT + contract_id.encode()


def compute_used_key(contract_id: str) -> bytes:
    return COMPUTE_USED + contract_id.encode()


def compute_request_key(contract_id: str, request_id: bytes) -> bytes:
    return COMPUTE_REQUEST + contract_id.encode() + b"/" + request_id.hex().encode()


def compute_receipt_key(receipt_id: bytes) -> bytes:
    return COMPUTE_RECEIPT + receipt_id.hex().encode()


def disposal_due_key(deadline_ms: int, contract_id: str) -> bytes:
    return DISPOSAL_DUE + f"{deadline_ms:016x}".encode() + b"/" + contract_id.encode()


def billing_key(contract_id: str) -> bytes:
    return BILLING + contract_id.encode()


def _period(contract_id: str, period: int) -> bytes:
    return contract_id.encode() + b"/" + f"{period:08x}".encode()


def bill_line_key(contract_id: str, period: int, n: int) -> bytes:
    return BILL_LINE + _period(contract_id, period) + b"/" + f"{n:08x}".encode()


def bill_lines_prefix(contract_id: str, period: int) -> bytes:
    return BILL_LINE + _period(contract_id, period) + b"/"


def bill_total_key(contract_id: str, period: int) -> bytes:
    return BILL_TOTAL + _period(contract_id, period)


def bill_payment_key(contract_id: str, period: int, n: int) -> bytes:
    return BILL_PAYMENT + _period(contract_id, period) + b"/" + f"{n:02x}".encode()


def bill_due_key(due_ms: int, contract_id: str) -> bytes:
    return BILL_DUE + f"{due_ms:016x}".encode() + b"/" + contract_id.encode()


def dispute_key(dispute_id: str) -> bytes:
    return DISPUTE + dispute_id.encode()


def contract_dispute_key(contract_id: str, n: int) -> bytes:
    return CONTRACT_DISPUTE + contract_id.encode() + b"/" + f"{n:08x}".encode()


def dispute_count_key(contract_id: str) -> bytes:
    return DISPUTE_COUNT + contract_id.encode()


def track_record_key(account_id: str) -> bytes:
    return TRACK_RECORD + account_id.encode()


def audit_key(kind: str, subject: str, seq: int) -> bytes:
    return AUDIT + kind.encode() + b"/" + subject.encode() + b"/" + f"{seq:08x}".encode()


def audit_prefix(kind: str, subject: str) -> bytes:
    return AUDIT + kind.encode() + b"/" + subject.encode() + b"/"


def audit_count_key(kind: str, subject: str) -> bytes:
    return AUDIT_COUNT + kind.encode() + b"/" + subject.encode()


def decode(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def read(kv: ReadableKV, key: bytes) -> Any:
    """The decoded value at ``key``, or None; works on an overlay and on a committed store."""
    raw = kv.get(key)
    return None if raw is None else decode(raw)


def last_segment(key: bytes) -> str:
    return key.rsplit(b"/", 1)[1].decode()
