"""The consumer's node relaying its own member's clients' fetches to the supplier's node.

:meth:`Relay.open_fetch` checks the client's signed request against the committed state
(an account of this member, a contract that became active), sends it to the supplier's node
and returns a :class:`FetchSession`. The session checks each chunk against the Merkle root the
contract pinned before the client sees it, and acknowledges it once the client took it, so
the supplier's window moves only as fast as the client reads.

A chunk's SHA-256 starts on the chunk thread pool the moment its frame arrives (``hashlib``
releases the GIL for large buffers), so the hash of the next chunks runs on the other core
while the event loop writes the current one to the client; :meth:`FetchSession.next` awaits
the hash of the chunk it returns and checks its Merkle proof, in order, before the client sees
a byte of it. The queue of chunks (and their hashes) is bounded by the window.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Executor
from typing import Any

from mdtp.node.data.audit import audit_log, refused
from mdtp.node.data.crypto import sha256, verify_proof
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger
from mdtp.node.data.protocol import REFUSALS, FetchRequest, Refused, decode_fetch_request
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.contracts import load_contract, load_version


class Relay:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        link: PeerLink,
        limits: DataLimits,
        metrics: DataMetrics,
        pool: Executor | None = None,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._ledger = ledger
        self.link = link
        self.limits = limits
        self.metrics = metrics
        self.pool = pool  # where chunk hashes are computed (None: the loop's default executor)
        self.fetching: dict[bytes, FetchSession] = {}

    def open_fetch(self, raw: bytes) -> FetchSession:
        """Start relaying a client's signed request; Refused if this node will not relay it."""
        who, what = "?", "fetch"
        try:
            req = decode_fetch_request(raw, self.chain_id)
            who, what = req.requester, f"fetch of contract {req.contract_id}"
            state = self._ledger.state
            account = load_account(state, req.requester)
            if account is None or account["member"] != self.node_id:
                raise Refused("not_member_account", f"{req.requester} is not an account of ours")
            contract = load_contract(state, req.contract_id)
            if contract is None:
                raise Refused("unknown_contract", f"no contract {req.contract_id}")
            if contract["activated"] is None:
                raise Refused("not_active", f"contract {req.contract_id} never became active")
            if len(self.fetching) >= self.limits.max_fetches:
                raise Refused("busy", "too many fetches in progress on this node")
            version = load_version(state, req.contract_id, contract["activated"]["version"])
            dataset = load_dataset(state, contract["dataset_id"])
            assert dataset is not None, f"active contract {req.contract_id} has no dataset"
        except Refused as r:
            raise refused(self.metrics, r.reason, what, who, r.message) from None
        fid = os.urandom(16)
        session = FetchSession(
            self,
            fid,
            contract["supplier_node"],
            req,
            bytes(version["dataset_merkle_root"]),
            int(dataset["chunk_count"]),
            contract["dataset_id"],
        )
        self.fetching[fid] = session
        self.metrics.active_fetching.inc()
        self.link.send(session.supplier, "data.req", {"fid": fid, "req": raw})
        return session

    def on_reply(self, peer: str, kind: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        session = self.fetching.get(body.get("fid", b""))
        if session is None or session.supplier != peer:
            return  # a late frame of a finished fetch
        session.deliver(kind.removeprefix("data."), body)


class FetchSession:
    """One relayed fetch on the consumer's node; the API drains it with :meth:`next`."""

    def __init__(
        self,
        relay: Relay,
        fid: bytes,
        supplier: str,
        request: FetchRequest,
        root: bytes,
        count: int,
        dataset_id: str,
    ) -> None:
        self.relay = relay
        self.fid = fid
        self.supplier = supplier
        self.request = request
        self.root = root
        self.count = count
        self.dataset_id = dataset_id
        self.next_index = request.first_chunk
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(
            maxsize=relay.limits.window_chunks + 4
        )
        self.started = time.monotonic()
        self.bytes = 0
        self.done = False

    def deliver(self, kind: str, body: dict[str, Any]) -> None:
        if self.queue.full():
            # the supplier ignored the window: a protocol violation, end the fetch
            self.relay.metrics.fetch_failures.labels("window_violation").inc()
            self.cancel()
            return
        event: dict[str, Any] = {"kind": kind, **body}
        data = body.get("data")
        if kind == "chunk" and isinstance(data, bytes):
            event["digest"] = asyncio.get_running_loop().run_in_executor(
                self.relay.pool, sha256, data
            )
        self.queue.put_nowait(event)

    async def next(self) -> dict[str, Any]:
        """The next event: ``chunk`` (verified), ``end``; :class:`Refused` on failure."""
        timeout = self.relay.limits.ack_timeout_ms / 1000
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            self.cancel()
            raise Refused(
                "supplier_unreachable"
                if self.next_index == self.request.first_chunk
                else "interrupted",
                f"no answer from {self.supplier} in {timeout:.0f} s",
            ) from None
        kind = event["kind"]
        if kind == "refuse":
            self.close()
            reason, chunk = event.get("reason"), event.get("chunk")
            message = f"{self.supplier}: {event.get('message', '')}"
            if reason not in REFUSALS:
                reason, message = "interrupted", f"{self.supplier} refused: {reason!r}"
            raise Refused(reason, message, chunk if isinstance(chunk, int) else None)
        if kind == "end":
            self.close()
            return event
        index, data, proof = event.get("i"), event.get("data"), event.get("proof")
        digest = await event["digest"] if "digest" in event else None
        if (
            index != self.next_index
            or not isinstance(data, bytes)
            or not isinstance(digest, bytes)
            or not isinstance(proof, list)
            or not all(isinstance(step, bytes) for step in proof)
            or not verify_proof(self.root, self.count, index, digest, proof)
        ):
            self.relay.metrics.fetch_failures.labels("bad_chunk").inc()
            audit_log.warning(
                "fetch of contract %s: chunk %s from %s does not match the Merkle root",
                self.request.contract_id,
                self.next_index,
                self.supplier,
            )
            self.cancel()
            raise Refused(
                "bad_chunk",
                f"chunk {self.next_index} from {self.supplier} does not match the Merkle root",
                self.next_index,
            )
        self.next_index += 1
        self.bytes += len(data)
        self.relay.metrics.fetched_chunks.inc()
        self.relay.metrics.fetched_bytes.inc(len(data))
        return event

    def ack(self, index: int) -> None:
        self.relay.link.send(self.supplier, "data.ack", {"fid": self.fid, "upto": index})

    def cancel(self) -> None:
        if not self.done:
            self.relay.link.send(self.supplier, "data.cancel", {"fid": self.fid})
            self.relay.metrics.fetch_failures.labels("interrupted").inc()
        self.close()

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.relay.fetching.pop(self.fid, None)
            self.relay.metrics.active_fetching.dec()
            if self.next_index > self.request.last_chunk:
                elapsed = max(time.monotonic() - self.started, 1e-6)
                self.relay.metrics.fetch_throughput.observe(self.bytes / elapsed)
