"""The client side of datasets: publish a file, fetch a contract's data, dispose of it.

Used by ``mdtp data ...``, the benchmark and the tests. Everything talks to the member's
*own* node over its HTTPS API; the data never leaves the supplier unencrypted and is
decrypted only here, with the key the consumer's grant seals to the consumer's X25519 key.

Resume: a fetch writes ``OUT.part`` (plaintext of the chunks verified so far) and
``OUT.part.json`` (contract, Merkle root, next chunk, bytes done, receipts), both fsynced
every few chunks; a later fetch of the same contract to the same ``OUT`` truncates the part
file to the recorded length and asks only for the missing chunk range. Plaintext, resume
state and the disposal registry are owner-only (0600 files, 0700 registry folder).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import aiohttp
import msgpack
import nacl.public

from mdtp.node.data.crypto import (
    DEFAULT_CHUNK_BYTES,
    MerkleTree,
    encrypt_chunk,
    new_dataset_key,
    sha256,
)
from mdtp.node.data.owner_only import DIR_MODE, open_owner_only, write_owner_only
from mdtp.node.data.protocol import UPLOAD_TAG, sign_envelope, sign_fetch_request
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.fetchsink import (
    ChunkRejected,
    ChunkSink,
    FetchState,
    save_state,
)
from mdtp.node.sdk.partfile import PartWriter
from mdtp.node.sdk.trading import Committed, TradingClient, TradingError

AUTH_HEADER = "X-Mdtp-Auth"
UPLOADS_IN_FLIGHT = 4
# A publish or a disposal follows minutes of transfer: worth waiting for up to the API's limit.
SUBMIT_WAIT_S = 60.0
OVERDUE_LIMIT = 100
# A contract's receipts and trail in one view; a contract has at most a few hundred of each.
VIEW_LIMIT = 500
_U32 = struct.Struct(">I")
_RECORD_MAX_BYTES = 64 * 1024 * 1024


class DataError(Exception):
    """A data operation failed; ``reason`` is the node's or the client's reason code."""

    def __init__(self, reason: str, message: str, chunk: int | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.chunk = chunk


def now_ms() -> int:
    return int(time.time() * 1000)


class Progress:
    """A one-line progress bar with rate and ETA on stderr, only when stderr is a terminal
    (``enabled=None``, the default) or when forced; never written into a redirected file."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            sys.stderr.write("\r" + self.line(now - self.started))
            sys.stderr.flush()

    def line(self, elapsed_s: float) -> str:
        frac = min(self.done / self.total, 1.0)
        rate = self.done / max(elapsed_s, 1e-6)
        bar = "#" * int(frac * 30)
        if self.done >= self.total:
            eta = f"in {_clock(elapsed_s)}"
        elif self.done:
            eta = f"ETA {_clock((self.total - self.done) / rate)}"
        else:
            eta = "ETA --:--"
        return (
            f"{self.label} [{bar:<30}] {frac * 100:5.1f}% "
            f"{self.done / 2**20:8.1f}/{self.total / 2**20:.1f} MiB {rate / 2**20:7.1f} MiB/s "
            f"{eta}"
        )

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class DataClient(NodeClient):
    """:class:`NodeClient` plus the chunk service's routes; the ledger (queries, signing)
    through :attr:`trading`."""

    async def __aenter__(self) -> DataClient:
        # a read buffer that holds whole chunk records keeps the stream from pausing per 64 KiB
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
            read_bufsize=4 * 2**20,
        )
        return self

    @cached_property
    def trading(self) -> TradingClient:
        """The ledger side: queries, and the one signer of this client's transactions."""
        return TradingClient(self, wait_s=SUBMIT_WAIT_S)

    async def chain_id(self) -> str:
        return await self.trading.chain_id()

    async def contract_view(self, contract_id: str) -> dict[str, Any]:
        """``{"contract", "dataset", "receipts", "audit"}``: what a data party needs to see."""
        contract = await self.trading.contract(contract_id)
        trail = await self.trading.audit("contract", contract_id, proof=False, limit=VIEW_LIMIT)
        return {
            "contract": contract,
            "dataset": await self.trading.dataset(contract["dataset_id"]),
            "receipts": await self.trading.contract_receipts(contract_id, limit=VIEW_LIMIT),
            "audit": trail["entries"],
        }

    async def overdue_disposals(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await self.trading.overdue_disposals(limit=OVERDUE_LIMIT))[
            "overdue"
        ]
        return rows

    async def send(self, key: SigningKey, body: b.Body) -> Committed:
        """Sign, submit and wait for the commit; :class:`DataError` if it was refused."""
        try:
            return await self.trading.send(key, body)
        except TradingError as e:
            raise DataError(e.reason, e.message) from None

    async def submit_signed(
        self,
        signer: SigningKey,
        type_: str,
        body: Mapping[str, Any],
        *,
        chain_id: str | None = None,
    ) -> dict[str, Any]:
        """:meth:`send` for a body given as a map, for a transaction meant for ``chain_id``
        (the node's, by default)."""
        if chain_id is not None and chain_id != await self.chain_id():
            raise DataError("wrong_chain", f"the node is not on chain {chain_id}")
        try:
            committed = await self.trading.submit(signer, type_, body)
        except TradingError as e:
            raise DataError(e.reason, e.message) from None
        return {"status": "committed", **committed.__dict__}

    async def upload(
        self,
        signer: SigningKey,
        chain_id: str,
        method: str,
        path: str,
        action: str,
        dataset_id: str,
        index: int,
        body: bytes,
    ) -> Any:
        auth = sign_envelope(
            signer,
            UPLOAD_TAG,
            [
                chain_id,
                action,
                dataset_id,
                index,
                sha256(body),
                now_ms() + 60_000,
                signer.account_id,
            ],
        )
        return await self._request(
            method,
            path,
            data=body,
            headers={AUTH_HEADER: auth.hex(), "Content-Type": "application/octet-stream"},
        )

    async def post_raw(self, path: str, raw: bytes) -> Any:
        """POST a signed envelope (a clean-room query); the JSON answer, ApiError if refused."""
        return await self._request(
            "POST", path, data=raw, headers={"Content-Type": "application/octet-stream"}
        )

    async def fetch_records(self, raw_request: bytes) -> AsyncIterator[dict[str, Any]]:
        """Records of a fetch stream; :class:`DataError` if refused before any data."""
        assert self._session is not None
        async with self._session.post(
            self.base + "/v1/data/fetch",
            data=raw_request,
            headers={"Content-Type": "application/octet-stream"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        ) as resp:
            if resp.status != 200:
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    doc = {}
                chunk = doc.get("chunk")
                raise DataError(
                    str(doc.get("error", resp.status)),
                    str(doc.get("message", "")),
                    chunk if isinstance(chunk, int) else None,
                )
            while True:
                try:
                    header = await resp.content.readexactly(4)
                except asyncio.IncompleteReadError as e:
                    if not e.partial:
                        return
                    raise
                (length,) = _U32.unpack(header)
                if length > _RECORD_MAX_BYTES:
                    raise DataError("malformed", f"stream record of {length} bytes")
                yield msgpack.unpackb(await resp.content.readexactly(length), raw=False)


# -- publish ------------------------------------------------------------------------------


@dataclass
class Published:
    dataset_id: str
    chunk_count: int
    size_bytes: int
    merkle_root: bytes
    plaintext_digest: bytes
    tx_id: str
    chunk_digests: list[bytes]


@dataclass(frozen=True)
class Capture:
    """A provenance stamp to make while publishing, when the capturing system's key is at
    hand where the data is published (else the capturing system stamps afterwards:
    :meth:`TradingClient.stamp_capture`). ``captured_by``: its account, if its key rotated."""

    capturer: SigningKey
    site: str
    line: str
    start_ms: int
    end_ms: int
    captured_by: str | None = None


def default_quality() -> b.Quality:
    return b.Quality(
        collection_start_ms=0,
        collection_end_ms=now_ms(),
        machine_type="unspecified",
        sampling_rate_millihz=0,
        validation_method="",
    )


async def publish(
    client: DataClient,
    signer: SigningKey,
    path: Path,
    *,
    dataset_id: str,
    title: str,
    description: str = "",
    tags: list[str] | None = None,
    schema: str = "",
    fmt: str = "bin",
    quality: b.Quality | Mapping[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool | None = None,
    capture: Capture | None = None,
) -> Published:
    """Encrypt ``path`` chunk by chunk, upload to the own node, seal, ``dataset.publish``
    (with ``capture``, carrying the capturing system's stamp over the content)."""
    status = await client.status()
    chain_id, supplier_node = str(status["chain_id"]), str(status["id"])
    key = new_dataset_key()
    size = os.stat(path).st_size
    bar = Progress(f"publish {dataset_id}", size, progress)
    digests: dict[int, bytes] = {}
    plain = hashlib.sha256()
    slots = asyncio.Semaphore(UPLOADS_IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    async def send(index: int, stored: bytes, plain_len: int) -> None:
        try:
            await client.upload(
                signer,
                chain_id,
                "PUT",
                f"/v1/data/datasets/{dataset_id}/chunks/{index}",
                "chunk",
                dataset_id,
                index,
                stored,
            )
        finally:
            slots.release()
        digests[index] = sha256(stored)
        bar.update(plain_len)

    try:
        with path.open("rb") as f:
            index = 0
            while True:
                chunk = await asyncio.to_thread(f.read, chunk_bytes)
                if not chunk and index > 0:
                    break
                plain.update(chunk)
                stored = encrypt_chunk(key, dataset_id, index, chunk)
                await slots.acquire()
                tasks.append(asyncio.create_task(send(index, stored, len(chunk))))
                index += 1
                if len(chunk) < chunk_bytes:
                    break
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
    finally:
        bar.finish()
    ordered = [digests[i] for i in range(len(digests))]
    root = MerkleTree(ordered).root
    await client.upload(
        signer, chain_id, "PUT", f"/v1/data/datasets/{dataset_id}/key", "key", dataset_id, 0, key
    )
    seal_body = json.dumps({"chunk_count": len(ordered), "merkle_root": root.hex()}).encode()
    await client.upload(
        signer,
        chain_id,
        "POST",
        f"/v1/data/datasets/{dataset_id}/seal",
        "seal",
        dataset_id,
        0,
        seal_body,
    )
    body = b.DatasetPublish(
        dataset_id=dataset_id,
        title=title,
        description=description,
        tags=tuple(sorted(tags or [])),
        schema=schema,
        format=fmt,
        size_bytes=size,
        chunk_count=len(ordered),
        merkle_root=root,
        plaintext_digest=plain.digest(),
        quality=_quality(quality),
        supplier_node=supplier_node,
        provenance=None
        if capture is None
        else b.Provenance.stamp(
            capture.capturer,
            chain_id=chain_id,
            dataset_id=dataset_id,
            plaintext_digest=plain.digest(),
            merkle_root=root,
            site=capture.site,
            line=capture.line,
            capture_start_ms=capture.start_ms,
            capture_end_ms=capture.end_ms,
            captured_by=capture.captured_by,
        ),
    )
    committed = await client.send(signer, body)
    return Published(dataset_id, len(ordered), size, root, plain.digest(), committed.id, ordered)


def _quality(quality: b.Quality | Mapping[str, Any] | None) -> b.Quality:
    if quality is None:
        return default_quality()
    if isinstance(quality, b.Quality):
        return quality
    try:
        return b.Quality.from_json(quality, "quality.")
    except ValueError as e:
        raise DataError("bad_input", str(e)) from None


# -- fetch --------------------------------------------------------------------------------


@dataclass
class Fetched:
    contract_id: str
    path: Path
    size_bytes: int
    chunks: int
    resumed_from: int
    seconds: float
    receipts: list[str]
    confirmed: list[str]

    @property
    def mib_per_s(self) -> float:
        transferred = self.size_bytes * (self.chunks - self.resumed_from) / max(self.chunks, 1)
        return transferred / 2**20 / max(self.seconds, 1e-9)


UNKNOWN_CONTRACT_WAIT_S = 5.0


def _part_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".part"), out.with_name(out.name + ".part.json")


def _load_state(path: Path, contract_id: str, root: str) -> FetchState | None:
    try:
        doc = json.loads(path.read_text())
        state = FetchState(**doc)
    except (OSError, ValueError, TypeError):
        return None
    if state.contract_id != contract_id or state.merkle_root != root:
        return None
    return state


def evidence_path(out: Path) -> Path:
    """Where a completed fetch keeps its chunks' ciphertext hashes (``OUT.chunks.json``): what
    a dispute's Merkle evidence is built from (:func:`dispute_chunks`)."""
    return out.with_name(out.name + ".chunks.json")


def dispute_chunks(out: Path, indices: Sequence[int]) -> tuple[b.DisputedChunk, ...]:
    """The evidence for ``dispute.open`` about chunks ``indices`` of a fetched copy ``out``:
    each chunk's ciphertext hash and its Merkle proof, rebuilt from the hashes the fetch
    kept and checked against the root the contract pinned. DataError if the copy has no
    evidence file (fetched before it was kept, or never completed) or an index is out of
    range."""
    try:
        doc = json.loads(evidence_path(out).read_text())
        hashes = [bytes.fromhex(h) for h in doc["chunk_hashes"]]
        root = bytes.fromhex(doc["merkle_root"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError("no_evidence", f"no chunk hashes kept for {out}: {e}") from None
    tree = MerkleTree(hashes)
    if tree.root != root:
        raise DataError("bad_chunk", f"{evidence_path(out)} does not match the Merkle root")
    chunks = []
    for index in indices:
        if not 0 <= index < len(hashes):
            raise DataError("bad_chunk_range", f"chunk {index} is outside 0..{len(hashes) - 1}")
        chunks.append(b.DisputedChunk(index, hashes[index], tuple(tree.proof(index))))
    return tuple(chunks)


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file: the ``evidence_hash`` of supporting material kept off the ledger."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * 2**20):
            digest.update(block)
    return digest.digest()


def registry_dir(explicit: Path | None = None) -> Path:
    """Where fetched copies are recorded for disposal (``MDTP_DATA_HOME`` or ~/.mdtp/data)."""
    if explicit is not None:
        return explicit
    env = os.environ.get("MDTP_DATA_HOME")
    return Path(env) if env else Path.home() / ".mdtp" / "data"


def _record_copy(registry: Path, contract_id: str, out: Path) -> None:
    registry.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    entry = registry / f"{contract_id}.json"
    try:
        paths: list[str] = json.loads(entry.read_text())["paths"]
    except (OSError, ValueError, KeyError):
        paths = []
    if str(out.resolve()) not in paths:
        paths.append(str(out.resolve()))
    write_owner_only(entry, json.dumps({"contract_id": contract_id, "paths": paths}).encode())


def dataset_key_from_grant(signer: SigningKey, contract: dict[str, Any]) -> bytes | None:
    assert signer.encryption is not None, "the consumer key file needs its X25519 key"
    mine = bytes(signer.encryption.public_key).hex()
    for grant in reversed(contract.get("access_grants", [])):
        if grant["sealed_to"] == mine:
            key: bytes = nacl.public.SealedBox(signer.encryption).decrypt(
                bytes.fromhex(grant["sealed_key"])
            )
            return key
    return None


async def wait_for_grant(
    client: DataClient, signer: SigningKey, contract_id: str, timeout_s: float
) -> tuple[dict[str, Any], bytes]:
    """The contract once it holds a grant sealed to ``signer``, and the dataset key."""
    deadline = time.monotonic() + timeout_s
    while True:
        contract = await client.trading.contract(contract_id, reader=signer)
        key = dataset_key_from_grant(signer, contract)
        if key is not None:
            return contract, key
        if time.monotonic() > deadline:
            raise DataError("no_grant", f"no access grant for contract {contract_id} yet")
        await asyncio.sleep(0.3)


async def fetch(
    client: DataClient,
    signer: SigningKey,
    contract_id: str,
    out: Path,
    *,
    progress: bool | None = None,
    grant_timeout_s: float = 30.0,
    registry: Path | None = None,
    confirm: bool = True,
    stop_after_chunks: int | None = None,
    request_ttl_ms: int = 60_000,
) -> Fetched:
    """Fetch, verify, decrypt and write a contract's dataset to ``out`` (resuming if possible).

    ``stop_after_chunks`` aborts the transfer after that many chunks (to exercise resume).
    """
    chain_id = await client.chain_id()
    # Our node may be a block or two behind the node the contract was signed through:
    # give it a moment before calling the contract unknown or not yet active.
    deadline = time.monotonic() + UNKNOWN_CONTRACT_WAIT_S
    while True:
        try:
            contract = await client.trading.contract(contract_id, reader=signer)
            if contract["activated"] is not None or time.monotonic() > deadline:
                break
        except ApiError as e:
            if e.status != 404 or time.monotonic() > deadline:
                reason = "unknown_contract" if e.status == 404 else e.reason
                raise DataError(reason, e.message) from None
        await asyncio.sleep(0.2)
    if contract["activated"] is None:
        raise DataError("not_active", f"contract {contract_id} is {contract['status']}")
    contract, key = await wait_for_grant(client, signer, contract_id, grant_timeout_s)
    dataset = await client.trading.dataset(contract["dataset_id"])
    version = contract["versions"][contract["activated"]["version"] - 1]
    root_hex: str = version["dataset_merkle_root"]
    root, count, dataset_id = bytes.fromhex(root_hex), int(dataset["chunk_count"]), dataset["id"]
    part, state_path = _part_paths(out)
    state = _load_state(state_path, contract_id, root_hex) if part.exists() else None
    resumed = state is not None
    if state is None:
        state = FetchState(contract_id, root_hex)
    resumed_from = state.next_chunk
    _record_copy(registry_dir(registry), contract_id, out)  # partial copies are disposed too
    bar = Progress(f"fetch {contract_id}", int(dataset["size_bytes"]), progress)
    bar.update(state.bytes_done)
    plain = hashlib.sha256() if not resumed else None
    started = time.monotonic()
    # plaintext: readable by this user only, from the first byte on (the rename keeps it)
    f: IO[bytes] = os.fdopen(open_owner_only(part, truncate=not resumed), "r+b")
    writer: PartWriter | None = None
    try:
        f.truncate(state.bytes_done)
        writer = PartWriter(part, f.fileno(), state.bytes_done)
        if state.next_chunk < count:
            await _transfer(
                client,
                signer,
                chain_id,
                contract_id,
                dataset_id,
                root,
                count,
                key,
                writer,
                state,
                state_path,
                bar,
                plain,
                stop_after_chunks,
                request_ttl_ms,
            )
        f.flush()
        os.fsync(f.fileno())
    finally:
        if writer is not None:
            writer.close()
        f.close()
        bar.finish()
    seconds = time.monotonic() - started
    if plain is None:
        plain = hashlib.sha256()
        with part.open("rb") as pf:
            while block := pf.read(4 * 2**20):
                plain.update(block)
    if plain.hexdigest() != dataset["plaintext_digest"]:
        raise DataError("digest_mismatch", "the decrypted file does not match plaintext_digest")
    os.replace(part, out)
    if len(state.chunk_hashes) == count:  # a copy resumed from an older state has none
        evidence = {
            "contract_id": contract_id,
            "dataset_id": dataset_id,
            "merkle_root": root_hex,
            "chunk_hashes": state.chunk_hashes,
        }
        write_owner_only(evidence_path(out), json.dumps(evidence).encode())
    state_path.unlink(missing_ok=True)
    confirmed = await confirm_receipts(client, signer, state.receipts) if confirm else []
    return Fetched(
        contract_id,
        out,
        state.bytes_done,
        count,
        resumed_from,
        seconds,
        state.receipts,
        confirmed,
    )


async def _transfer(
    client: DataClient,
    signer: SigningKey,
    chain_id: str,
    contract_id: str,
    dataset_id: str,
    root: bytes,
    count: int,
    key: bytes,
    writer: PartWriter,
    state: FetchState,
    state_path: Path,
    bar: Progress,
    plain: Any,
    stop_after_chunks: int | None,
    request_ttl_ms: int,
) -> None:
    raw = sign_fetch_request(
        signer,
        chain_id=chain_id,
        contract_id=contract_id,
        first_chunk=state.next_chunk,
        last_chunk=count - 1,
        expires_at_ms=now_ms() + request_ttl_ms,
    )
    received = 0
    failure: DataError | None = None
    sink = ChunkSink(
        key=key,
        dataset_id=dataset_id,
        root=root,
        count=count,
        out=writer,
        plain=plain,
        state=state,
        state_path=state_path,
        on_written=bar.update,
    )
    try:
        try:
            async for rec in client.fetch_records(raw):
                kind = rec.get("t")
                if kind == "end":
                    if rec.get("receipt"):
                        state.receipts.append(rec["receipt"])
                    break
                if kind == "error":
                    failure = DataError(rec["reason"], rec["message"], rec.get("chunk"))
                    break
                await sink.put(rec.get("i"), rec.get("data"), rec.get("proof"))
                received += 1
                if stop_after_chunks is not None and received >= stop_after_chunks:
                    failure = DataError(
                        "interrupted", f"stopped after {received} chunks on request"
                    )
                    break
            await sink.drain()
        except ChunkRejected as e:
            failure = DataError("bad_chunk", str(e), e.chunk)
        except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError) as e:
            failure = DataError("interrupted", f"transfer broke at chunk {state.next_chunk}: {e}")
        # whatever stopped the stream, the chunks verified before it are written and recorded
        try:
            await sink.drain()
        except ChunkRejected as e:
            failure = failure or DataError("bad_chunk", str(e), e.chunk)
    finally:
        sink.close()
    writer.sync()
    save_state(state_path, state)
    if failure is not None:
        raise failure
    if state.next_chunk != count:
        raise DataError("interrupted", f"stream ended at chunk {state.next_chunk} of {count}")


async def confirm_receipts(
    client: DataClient,
    signer: SigningKey,
    receipts: list[str],
    timeout_s: float = 60.0,
) -> list[str]:
    """``delivery.confirm`` each receipt once it is committed; returns those confirmed."""
    done = []
    for receipt in receipts:
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.2)):
            if (await client.tx(receipt))["status"] != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        try:
            await client.send(signer, b.DeliveryConfirm(bytes.fromhex(receipt)))
            done.append(receipt)
        except (DataError, ApiError):
            continue
    return done


# -- dispose ------------------------------------------------------------------------------


async def dispose(
    client: DataClient,
    signer: SigningKey,
    contract_id: str,
    *,
    method: str | None = None,
    registry: Path | None = None,
) -> dict[str, Any]:
    """Delete every local copy recorded for the contract, then post ``disposal.attest``."""
    contract = await client.trading.contract(contract_id, reader=signer)
    if method is None:
        version = contract["versions"][(contract["activated"] or {"version": 1})["version"] - 1]
        method = str(version["terms"]["disposal_method"])
    entry = registry_dir(registry) / f"{contract_id}.json"
    try:
        paths = [Path(p) for p in json.loads(entry.read_text())["paths"]]
    except (OSError, ValueError, KeyError):
        paths = []
    deleted = []
    for path in paths:
        for p in (path, *_part_paths(path)):
            if p.exists():
                p.unlink()
                deleted.append(str(p))
    committed = await client.send(signer, b.DisposalAttest(contract_id, method, now_ms()))
    entry.unlink(missing_ok=True)
    return {"contract_id": contract_id, "deleted": deleted, "method": method, "tx": committed.id}
