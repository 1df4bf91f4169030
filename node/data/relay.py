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

Every field of every frame the supplier's node sends is checked for its type and bounds
before anything uses it (:meth:`FetchSession.deliver`); the events the session hands out are
built from the checked fields only, never from the frame itself. A malformed frame is the
supplier's fault: it ends that fetch (``bad_chunk`` for a chunk frame, else ``interrupted``,
with the field named), counts ``mdtp_data_fetch_failures_total{reason="malformed_frame"}``
and is audit-logged against the supplier. A frame without a fetch id cannot be told apart,
so it ends every fetch that supplier serves this node.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Executor
from typing import Any, TypeGuard

from mdtp.node.data.audit import audit_log, refused
from mdtp.node.data.crypto import sha256, verify_proof
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.link import PeerLink
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.ports import CommittedLedger
from mdtp.node.data.protocol import REFUSALS, FetchRequest, Refused, decode_fetch_request
from mdtp.node.ledger.merkle import PROOF_MAX_LEN
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.contracts import load_contract, load_version

HASH_BYTES = 32  # a Merkle proof step, a receipt's transaction id
MESSAGE_MAX_CHARS = 200  # of a supplier's refusal message passed on to the client
_U63 = 2**63


def _uint(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _U63


class _Malformed(Exception):
    """A frame from the supplier's node that no honest supplier sends; the text says why
    (field names, types and numbers only: nothing of the frame's own text is logged)."""


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
        try:
            self.link.send(session.supplier, "data.req", {"fid": fid, "req": raw})
        except BaseException:
            session.close()  # held by nobody yet: released here
            raise
        return session

    def on_reply(self, peer: str, kind: str, body: Any) -> None:
        fid = body.get("fid") if isinstance(body, dict) else None
        if not isinstance(fid, bytes):
            # no fetch id to tell which fetch it is about: it ends every fetch ``peer`` serves
            # us (an honest supplier always names the fetch; nothing else is hurt by this)
            problem = (
                f"the frame is a {type(body).__name__}, not a map"
                if not isinstance(body, dict)
                else f"fid is a {type(fid).__name__}, not bytes"
            )
            theirs = [s for s in self.fetching.values() if s.supplier == peer]
            if not theirs:
                audit_log.warning(
                    "malformed %s frame from %s (the supplier's fault): %s",
                    kind,
                    peer,
                    problem,
                )
            for ended in theirs:
                ended.malformed(kind.removeprefix("data."), problem)
            return
        session = self.fetching.get(fid)
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
        self.next_index = request.first_chunk  # the next chunk next() hands out
        self.expected = request.first_chunk  # the index the next chunk frame must carry
        self.capacity = relay.limits.window_chunks + 4
        # one place more than the window allows: the failure that ends the fetch always fits
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.capacity + 1)
        self.started = time.monotonic()
        self.bytes = 0
        self.done = False
        self.failure: Refused | None = None

    def deliver(self, kind: str, body: dict[str, Any]) -> None:
        if self.done:
            return
        if self.queue.qsize() >= self.capacity:
            # the supplier ignored the window: a protocol violation, end the fetch
            self.relay.metrics.fetch_failures.labels("window_violation").inc()
            self.fail(
                Refused(
                    "interrupted",
                    f"{self.supplier} sent more than the window of "
                    f"{self.relay.limits.window_chunks} chunks",
                    self.expected,
                )
            )
            return
        try:
            event = self._checked(kind, body)
        except _Malformed as m:
            self.malformed(kind, str(m))
            return
        if kind == "chunk":
            event["digest"] = asyncio.get_running_loop().run_in_executor(
                self.relay.pool, sha256, event["data"]
            )
        self.queue.put_nowait(event)

    def _checked(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """The event of a frame, from its checked fields only; :class:`_Malformed` if any
        field has the wrong type or is out of bounds."""
        first, last = self.request.first_chunk, self.request.last_chunk
        if kind == "chunk":
            index, data, proof = body.get("i"), body.get("data"), body.get("proof")
            if not _uint(index):
                raise _Malformed(f"i is a {type(index).__name__}, not a chunk index")
            if index != self.expected or index > last:
                raise _Malformed(f"chunk {index} where chunk {self.expected} of {first}..{last}")
            if not isinstance(data, bytes):
                raise _Malformed(f"data of chunk {index} is a {type(data).__name__}, not bytes")
            if not isinstance(proof, list) or len(proof) > PROOF_MAX_LEN:
                raise _Malformed(
                    f"the proof of chunk {index} is not a list of at most {PROOF_MAX_LEN} steps"
                )
            if not all(isinstance(step, bytes) and len(step) == HASH_BYTES for step in proof):
                raise _Malformed(f"a step of the proof of chunk {index} is not 32 bytes")
            self.expected += 1
            return {"kind": "chunk", "i": index, "data": data, "proof": proof}
        if kind == "end":
            receipt, chunks, sent = body.get("receipt"), body.get("chunks"), body.get("bytes")
            if receipt is not None and not (
                isinstance(receipt, bytes) and len(receipt) == HASH_BYTES
            ):
                raise _Malformed("the receipt is not a 32-byte transaction id")
            if not _uint(chunks) or chunks > last - first + 1 or not _uint(sent):
                raise _Malformed(f"chunks/bytes are not counts within {first}..{last}")
            if self.expected != last + 1:
                raise _Malformed(f"the fetch ended before chunk {self.expected} of {first}..{last}")
            return {"kind": "end", "receipt": receipt}
        if kind == "refuse":
            reason, message, chunk = body.get("reason"), body.get("message"), body.get("chunk")
            if not isinstance(reason, str) or not isinstance(message, str):
                raise _Malformed("reason and message are not text")
            if chunk is not None and not (_uint(chunk) and first <= chunk <= last):
                raise _Malformed(f"the chunk it names is not one of {first}..{last}")
            text = f"{self.supplier}: {message[:MESSAGE_MAX_CHARS]}"
            if reason not in REFUSALS:  # a reason this node does not know: passed on as text
                reason, text = "interrupted", f"{self.supplier} refused: {reason[:64]!r}"
            return {"kind": "refuse", "refusal": Refused(reason, text, chunk)}
        raise _Malformed("a frame of an unknown kind")

    def malformed(self, kind: str, problem: str) -> None:
        """End the fetch for a frame no honest supplier sends: counted and logged as the
        supplier's fault, and a specific error for the client."""
        if self.done:
            return
        self.relay.metrics.fetch_failures.labels("malformed_frame").inc()
        audit_log.warning(
            "fetch of contract %s: malformed %s frame from %s (the supplier's fault): %s",
            self.request.contract_id,
            kind[:16],
            self.supplier,
            problem,
        )
        message = f"{self.supplier} sent a malformed {kind[:16]} frame: {problem}"
        if kind == "chunk":
            self.fail(Refused("bad_chunk", message, self.expected))
        else:
            self.fail(Refused("interrupted", message, self.expected))

    def fail(self, refusal: Refused) -> None:
        """End the fetch now; :meth:`next` raises ``refusal`` after the events before it."""
        if self.done:
            return
        self.failure = refusal
        self.cancel()
        self.queue.put_nowait({"kind": "failed"})

    async def next(self) -> dict[str, Any]:
        """The next event: ``chunk`` (verified), ``end``; :class:`Refused` on failure."""
        if self.done and self.queue.empty():
            raise self.failure or Refused("interrupted", "the fetch is over")
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
        if kind == "failed":
            assert self.failure is not None
            raise self.failure
        if kind == "refuse":
            self.close()
            refusal: Refused = event["refusal"]
            raise refusal
        if kind == "end":
            self.close()
            return event
        index, data, proof = event["i"], event["data"], event["proof"]
        digest = await event["digest"]
        if index != self.next_index or not verify_proof(
            self.root, self.count, index, digest, proof
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
