"""The client side of the clean room: ask a contract's dataset a question, get only the answer.

:func:`query` signs a SQL query with the consumer's account key and posts it to the
consumer's *own* node, which relays it to the supplier's node; the answer is the result
table and its ``compute.receipt``. Before returning, the client checks that the table hashes
to the receipt's ``result_hash``, that the receipt names this query and this request, and
(``verify=True``) that the receipt is committed on its own node's ledger with the same
fields. :func:`verify_offline` checks the same with nothing but the genesis file and the
receipt's exported audit entry (block bytes and commit certificate): the receipt is in a
block that 2f+1 members signed, it was posted by a member's node account, and it names this
result.

:func:`query_refusals` is the supplier's view: what its node refused of a contract's queries.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from mdtp.consensus.block import Block
from mdtp.consensus.codec import unpack_canonical
from mdtp.consensus.messages import DEFAULT_LIMITS
from mdtp.node.compute.anonymise import Anonymisation, Prepared, PrepareError, prepare_table
from mdtp.node.compute.protocol import query_hash, sign_query_request
from mdtp.node.compute.result import result_hash
from mdtp.node.data.owner_only import write_owner_only
from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.identity.genesis import Genesis
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.tx import decode_tx
from mdtp.node.sdk.audit_verify import VerifyError, parse_entry, verify_entry
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.data import DataClient, DataError, Published, now_ms, publish

RECEIPT_VISIBLE_WAIT_S = 15.0
RECEIPTS_PAGE = 500
_RECEIPT_FIELDS = (
    "contract_id",
    "request_id",
    "query_hash",
    "rule_hash",
    "result_hash",
    "rows_scanned",
    "rows_returned",
    "rows_suppressed",
    "budget_used",
)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    receipt: dict[str, Any]  # the compute.receipt fields (hex hashes), tx_id and height
    sql: str

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "receipt": self.receipt}


async def query(
    client: DataClient,
    signer: SigningKey,
    contract_id: str,
    sql: str,
    *,
    ttl_ms: int = 60_000,
    verify: bool = True,
    nonce: bytes | None = None,
) -> QueryResult:
    """Run ``sql`` under ``contract_id``; :class:`DataError` with the node's reason if the
    clean room refuses it, or ``receipt_mismatch`` if the answer is not what was recorded."""
    raw = sign_query_request(
        signer,
        chain_id=await client.chain_id(),
        contract_id=contract_id,
        sql=sql,
        expires_at_ms=now_ms() + ttl_ms,
        nonce=nonce,
    )
    try:
        doc = await client.post_raw("/v1/compute/query", raw)
    except ApiError as e:
        raise DataError(e.reason, e.message) from None
    result = QueryResult(list(doc["columns"]), list(doc["rows"]), dict(doc["receipt"]), sql)
    request_id = hashlib.sha256(_unsigned(raw)).hexdigest()
    check_receipt(result, request_id)
    if verify:
        await _committed(client, signer, result)
    return result


def _unsigned(raw: bytes) -> bytes:
    unsigned: bytes = msgpack.unpackb(raw, raw=False)[0]
    return unsigned


def check_receipt(result: QueryResult, request_id: str | None = None) -> None:
    """The result hashes to the receipt's result hash, and the receipt names the query."""
    r = result.receipt
    if result_hash(result.columns, result.rows).hex() != r.get("result_hash"):
        raise DataError("receipt_mismatch", "the result does not hash to the receipt's hash")
    if query_hash(result.sql).hex() != r.get("query_hash"):
        raise DataError("receipt_mismatch", "the receipt names another query")
    if request_id is not None and request_id != r.get("request_id"):
        raise DataError("receipt_mismatch", "the receipt names another request")
    if r.get("rows_returned") != len(result.rows):
        raise DataError("receipt_mismatch", "the receipt counts another number of rows")


async def _committed(client: DataClient, signer: SigningKey, result: QueryResult) -> None:
    """The receipt as the consumer's own node holds it committed equals the one received."""
    contract_id = str(result.receipt["contract_id"])
    deadline = time.monotonic() + RECEIPT_VISIBLE_WAIT_S
    while True:
        found = await _find_receipt(client, signer, contract_id, str(result.receipt["tx_id"]))
        if found is not None:
            committed = found
            for name in _RECEIPT_FIELDS:
                if committed[name] != result.receipt[name]:
                    raise DataError("receipt_mismatch", f"the committed receipt's {name} differs")
            return
        if time.monotonic() > deadline:
            raise DataError("receipt_missing", "the receipt is not committed on this node")
        await asyncio.sleep(0.2)


async def _find_receipt(
    client: DataClient, signer: SigningKey, contract_id: str, tx_id: str
) -> dict[str, Any] | None:
    after = 0
    while True:
        page = await client.trading.contract_compute(
            contract_id, after=after, limit=RECEIPTS_PAGE, reader=signer
        )
        for receipt in page["receipts"]:
            if receipt["tx_id"] == tx_id:
                return dict(receipt)
        if len(page["receipts"]) < RECEIPTS_PAGE:
            return None
        after = int(page["receipts"][-1]["n"])


def verify_offline(entry_line: str | bytes, genesis: Genesis, result: QueryResult) -> str:
    """Offline proof that ``result`` is what a committed ``compute.receipt`` recorded: the
    receipt's audit entry (``mdtp audit export``) checked against its block, its commit
    certificate and the genesis members; returns the receipt's tx id. VerifyError if not."""
    entry = parse_entry(entry_line)
    proven = verify_entry(entry, genesis)
    if proven.type != "compute.receipt":
        raise VerifyError("tx_mismatch", f"the entry is a {proven.type}, not a compute.receipt")
    node_accounts = {
        account_id_from_public_key(bytes.fromhex(m.node_public_key)) for m in genesis.members
    }
    if proven.sender not in node_accounts:
        raise VerifyError("tx_mismatch", "the receipt was not posted by a member's node account")
    block = Block.from_wire(
        unpack_canonical(bytes.fromhex(entry["block_bytes"]), DEFAULT_LIMITS.message_bytes_max),
        DEFAULT_LIMITS.block_txs_max,
        DEFAULT_LIMITS.tx_bytes_max,
    )
    raw_tx = block.payload[proven.index]
    body = decode_tx(raw_tx, chain_id=genesis.chain_id, max_bytes=len(raw_tx)).body
    if body["result_hash"] != result_hash(result.columns, result.rows):
        raise VerifyError("result_mismatch", "the committed receipt names another result")
    if body["query_hash"] != query_hash(result.sql):
        raise VerifyError("result_mismatch", "the committed receipt names another query")
    return proven.tx_id


async def receipt_entry(
    client: DataClient, signer: SigningKey, tx_id: str, contract_id: str
) -> str:
    """The exported audit line (with block and certificate) of the receipt ``tx_id``."""
    for line in await client.trading.audit_export("contract", contract_id, reader=signer):
        if parse_entry(line)["tx_id"] == tx_id:
            return line
    raise DataError("receipt_missing", f"no audit entry for {tx_id} in contract {contract_id}")


async def query_refusals(
    client: DataClient, signer: SigningKey, contract_id: str
) -> dict[str, Any]:
    """What the (supplier's) node refused of ``contract_id``'s queries, by reason."""
    try:
        doc: dict[str, Any] = await client.get_signed(
            f"/v1/compute/contracts/{contract_id}/refusals", signer
        )
    except ApiError as e:
        raise DataError(e.reason, e.message) from None
    return doc


async def publish_for_analysis(
    client: DataClient,
    signer: SigningKey,
    source: Path,
    *,
    dataset_id: str,
    title: str,
    source_format: str | None = None,
    out_format: str = "csv",
    anonymisation: Anonymisation | None = None,
    pseudonym_key: bytes | None = None,
    description: str = "",
    tags: list[str] | None = None,
    quality: b.Quality | Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> tuple[Published, Prepared]:
    """Prepare ``source`` (CSV or Parquet) for clean-room use — anonymised as asked, its
    schema and the anonymisation in the dataset's ``schema`` metadata — and publish it."""
    fmt = source_format or source.suffix.lstrip(".").lower()
    try:
        prepared = await asyncio.to_thread(
            prepare_table,
            source,
            source_format=fmt,
            out_format=out_format,
            anonymisation=anonymisation,
            key=pseudonym_key,
        )
    except PrepareError as e:
        raise DataError("bad_input", str(e)) from None
    with tempfile.TemporaryDirectory(prefix="mdtp-analysis-") as tmp:
        table = Path(tmp) / f"{dataset_id}.{prepared.fmt}"
        write_owner_only(table, prepared.data)
        published = await publish(
            client,
            signer,
            table,
            dataset_id=dataset_id,
            title=title,
            description=description,
            tags=sorted({*(tags or []), "clean-room"}),
            schema=prepared.schema_document(),
            fmt=prepared.fmt,
            quality=quality,
            progress=progress,
        )
    return published, prepared
