"""The consumer's node relaying its own member's clients' queries to the supplier's node.

:meth:`QueryRelay.query` checks the client's signed request against the committed state (an
account of this member, a contract that became active), sends it to the supplier's node and
waits for the answer. A result is passed on only if it hashes to the ``result_hash`` of the
receipt it came with, so the node never hands its client a table the supplier's node did not
record; the client checks again against the committed receipt (``node/sdk/compute.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

from mdtp.node.compute.metrics import ComputeMetrics
from mdtp.node.compute.protocol import decode_query_request
from mdtp.node.compute.reasons import REFUSALS, QueryRefused
from mdtp.node.compute.result import RESULT_TAG
from mdtp.node.data.link import PeerLink
from mdtp.node.data.ports import CommittedLedger
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.contracts import load_contract

# the supplier's node answers once the receipt committed: the run's time limit, a block or
# two, and the receipt's own wait
ANSWER_TIMEOUT_S = 90.0
MAX_RELAYED = 32
_CELL_TYPES = (bool, int, float, str)  # what a canonical result holds (node.compute.result)


class QueryRelay:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        link: PeerLink,
        metrics: ComputeMetrics,
        result_bytes_max: int,
    ) -> None:
        self.node_id = node_id
        self.result_bytes_max = result_bytes_max
        self.chain_id = chain_id
        self._ledger = ledger
        self._link = link
        self._metrics = metrics
        self._pending: dict[bytes, tuple[str, asyncio.Future[tuple[str, dict[str, Any]]]]] = {}

    async def query(self, raw: bytes) -> dict[str, Any]:
        """``{"columns", "rows", "receipt"}`` of a client's signed query; QueryRefused."""
        try:
            return await self._query(raw)
        except QueryRefused as r:
            self._metrics.refused.labels(r.reason).inc()
            raise

    async def _query(self, raw: bytes) -> dict[str, Any]:
        req = decode_query_request(raw, self.chain_id)
        state = self._ledger.state
        account = load_account(state, req.requester)
        if account is None or account["member"] != self.node_id:
            raise QueryRefused("not_member_account", f"{req.requester} is not an account of ours")
        contract = load_contract(state, req.contract_id)
        if contract is None:
            raise QueryRefused("unknown_contract", f"no contract {req.contract_id}")
        if contract["activated"] is None:
            raise QueryRefused("not_active", f"contract {req.contract_id} never became active")
        if len(self._pending) >= MAX_RELAYED:
            raise QueryRefused("busy", "too many queries in progress on this node")
        supplier: str = contract["supplier_node"]
        qid = os.urandom(16)
        answer: asyncio.Future[tuple[str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[qid] = (supplier, answer)
        try:
            if not self._link.send(supplier, "compute.req", {"qid": qid, "req": raw}):
                raise QueryRefused("supplier_unreachable", f"no link to {supplier}")
            try:
                kind, body = await asyncio.wait_for(answer, ANSWER_TIMEOUT_S)
            except TimeoutError:
                raise QueryRefused(
                    "supplier_unreachable", f"no answer from {supplier} in {ANSWER_TIMEOUT_S} s"
                ) from None
        finally:
            self._pending.pop(qid, None)
        if kind == "compute.refuse":
            reason, message = body.get("reason"), body.get("message")
            if reason not in REFUSALS:
                raise QueryRefused("supplier_unreachable", f"{supplier} refused: {reason!r}")
            raise QueryRefused(str(reason), f"{supplier}: {message}")
        return _checked_result(body, supplier, self.result_bytes_max)

    def on_reply(self, peer: str, kind: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        pending = self._pending.get(body.get("qid", b""))
        if pending is None or pending[0] != peer or pending[1].done():
            return  # late, foreign or repeated
        pending[1].set_result((kind, body))


def _checked_result(body: dict[str, Any], supplier: str, bytes_max: int) -> dict[str, Any]:
    """The result a supplier's ``compute.result`` carries: its canonical JSON (the bytes the
    receipt's hash names) is checked against the receipt before it is parsed, and parsed only
    up to this node's own result bound (JSON arrays cost ~20 bytes of memory per byte)."""
    result, receipt = body.get("result"), body.get("receipt")
    if not isinstance(result, bytes) or not isinstance(receipt, dict):
        raise QueryRefused("bad_result", f"{supplier} sent a malformed result")
    if len(result) > bytes_max:
        raise QueryRefused(
            "result_too_large", f"{supplier} sent {len(result)} bytes, above {bytes_max}"
        )
    if hashlib.sha256(RESULT_TAG + result).hexdigest() != receipt.get("result_hash"):
        raise QueryRefused("bad_result", f"the result from {supplier} does not match its receipt")
    try:
        doc = json.loads(result)
    except (ValueError, RecursionError):
        raise QueryRefused("bad_result", f"{supplier} sent a result that is not JSON") from None
    columns, rows = (doc.get("columns"), doc.get("rows")) if isinstance(doc, dict) else (0, 0)
    if (
        not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or not isinstance(rows, list)
        or not all(isinstance(r, list) and len(r) == len(columns) for r in rows)
        or not all(v is None or isinstance(v, _CELL_TYPES) for r in rows for v in r)
    ):
        raise QueryRefused("bad_result", f"{supplier} sent a malformed result")
    return {"columns": columns, "rows": rows, "receipt": receipt}
