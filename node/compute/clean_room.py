"""The clean room of one node: the query server (supplier side) and the query relay
(consumer side), sharing the chunk service's store, keys, peer link, tasks and the node
account's signer. The daemon builds it after the chunk service and installs
:attr:`ComputeService.frame_handlers` on both the transport and the chunk service (whose
peer link hands frames addressed to this node itself to its own handlers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mdtp.node.compute.engine import Engine, EngineLimits
from mdtp.node.compute.metrics import ComputeMetrics
from mdtp.node.compute.relay import QueryRelay
from mdtp.node.compute.service import ComputeLimits, QueryServer
from mdtp.node.data.owner_only import make_owner_only
from mdtp.node.data.ports import CommittedLedger, FrameHandler, TxSubmitter, now_ms
from mdtp.node.data.replay import ReplayGuard
from mdtp.node.data.service import DataService

# key spaces of the chunk index beside the chunk service's own
QUERY_NONCES, REFUSAL_COUNTS = b"q/", b"qr/"
WORKDIR = "compute"


class ComputeService:
    def __init__(
        self,
        *,
        data: DataService,
        chunks_dir: Path,
        node_id: str,
        chain_id: str,
        ledger: CommittedLedger,
        submitter: TxSubmitter,
        metrics: ComputeMetrics,
        limits: ComputeLimits | None = None,
        engine_limits: EngineLimits | None = None,
    ) -> None:
        limits = limits or ComputeLimits()
        workdir = chunks_dir / WORKDIR
        workdir.mkdir(mode=0o700, exist_ok=True)
        make_owner_only(workdir)
        for leftover in workdir.iterdir():  # plaintext of a load a crash interrupted
            leftover.unlink()
        # one worker: the engine is not thread-safe, and a query never delays chunk reads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="compute")
        engine_limits = engine_limits or EngineLimits()
        self.engine = Engine(workdir, engine_limits)
        self.server = QueryServer(
            node_id=node_id,
            chain_id=chain_id,
            ledger=ledger,
            submitter=submitter,
            store=data.store,
            keys=data.keys,
            signer=data.signer,
            link=data.link,
            replay=ReplayGuard(
                data.store.db.prefixed_db(QUERY_NONCES), limits.nonce_cache_max, now_ms()
            ),
            engine=self.engine,
            pool=self._pool,
            tasks=data.tasks,
            limits=limits,
            metrics=metrics,
            counts=data.store.db.prefixed_db(REFUSAL_COUNTS),
        )
        self.relay = QueryRelay(
            node_id=node_id,
            chain_id=chain_id,
            ledger=ledger,
            link=data.link,
            metrics=metrics,
            result_bytes_max=engine_limits.result_bytes_max,
        )
        self.frame_handlers: dict[str, FrameHandler] = {
            "compute.req": self.server.on_request,
            "compute.result": self.relay.on_reply,
            "compute.refuse": self.relay.on_reply,
        }

    def close(self) -> None:
        """After the chunk service cancelled the shared tasks."""
        self._pool.shutdown(wait=True)
        self.engine.close()
