"""The node daemon: loads a node home, runs the peer links and the HTTP ports until told to
stop, then shuts everything down in order (ports closed, links closed, stores flushed)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import functools
import logging
import os
import signal
import ssl
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from mdtp.node.api import ApiMetrics, api_app, explorer
from mdtp.node.api import chain as chain_routes
from mdtp.node.api import compute as compute_routes
from mdtp.node.api import data as data_routes
from mdtp.node.api import governance as governance_routes
from mdtp.node.api import trading as trading_routes
from mdtp.node.app.health import (
    LoopLagProbe,
    health_app,
    liveness_checks,
    register_process_metrics,
)
from mdtp.node.app.hooks import NodeHooks
from mdtp.node.app.http_connections import (
    HttpConnectionMetrics,
    HttpLimits,
    HttpPort,
    serve_http,
)
from mdtp.node.app.logs import RemoteLineLimits, limit_remote_lines
from mdtp.node.app.permissions import owner_only_umask, restrict_home
from mdtp.node.app.submission import QuorumGatedSubmitter
from mdtp.node.chain.driver import Driver, DriverLimits
from mdtp.node.chain.metrics import DriverMetrics
from mdtp.node.chain.reads import ChainReads
from mdtp.node.compute.clean_room import ComputeService
from mdtp.node.compute.engine import EngineLimits
from mdtp.node.compute.metrics import ComputeMetrics
from mdtp.node.compute.service import ComputeLimits
from mdtp.node.data.limits import DataLimits
from mdtp.node.data.metrics import DataMetrics
from mdtp.node.data.service import DataService
from mdtp.node.errors import ConfigError, KeyFileError, MdtpError
from mdtp.node.identity import pki
from mdtp.node.identity.config import NodeConfig
from mdtp.node.identity.genesis import Genesis, load_genesis
from mdtp.node.identity.home import NEXT_NODE_KEY_FILE
from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.machine import account_nonce
from mdtp.node.ledger.setup import build_ledger, open_store
from mdtp.node.ledger.state import Overlay
from mdtp.node.p2p.metrics import P2PMetrics
from mdtp.node.p2p.transport import FrameHandler, Transport, TransportLimits, genesis_roster
from mdtp.node.supervisor import Supervisor
from mdtp.node.txpool.mempool import Mempool, MempoolLimits, MempoolMetrics
from mdtp.node.txpool.sigverify import BatchVerifier
from mdtp.storage.blockstore import BlockStore

log = logging.getLogger("mdtp.node")

# processes that check state transfer's signatures (``node/txpool/sigworkers.py``), as many as
# the verifier's threads
SIGNATURE_WORKERS = 2


def _load_cert_der(path: Path) -> bytes:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: TLS certificate not found", reason="key_missing") from None
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a PEM certificate ({e})") from None
    return cert.public_bytes(serialization.Encoding.DER)


class Node:
    """One member's node, built from its home; :meth:`run` serves until ``stop`` is set."""

    def __init__(
        self, cfg: NodeConfig, passphrase: bytes | None = None, hooks: NodeHooks | None = None
    ) -> None:
        self.cfg = cfg
        self.hooks = hooks or NodeHooks()
        self.genesis: Genesis = load_genesis(cfg.path("node", "genesis"))
        self.node_id = cfg.node_id
        self.node_key: SigningKey = load_key(cfg.path("node", "node_key"), passphrase=passphrase)
        # a node key rotation under way (`mdtp keys rotate-node`): the chain says from which
        # epoch the new key signs
        next_path = cfg.path("node", "node_key").with_name(NEXT_NODE_KEY_FILE)
        self.next_node_key: SigningKey | None = (
            load_key(next_path, passphrase=passphrase) if next_path.exists() else None
        )
        keys = [self.node_key] + ([self.next_node_key] if self.next_node_key else [])
        ca, cert, key = cfg.path("tls", "ca"), cfg.path("tls", "cert"), cfg.path("tls", "key")
        self.cert_der = _load_cert_der(cert)
        self.server_ctx = pki.p2p_server_context(ca, cert, key)
        self.client_ctx = pki.p2p_client_context(ca, cert, key)
        self.api_ctx = pki.api_server_context(ca, cert, key)
        self.data_dir = cfg.path("node", "data_dir")
        self.registry = CollectorRegistry()
        register_process_metrics(self.registry)
        self.http_metrics = HttpConnectionMetrics(self.registry)
        limit_remote_lines(RemoteLineLimits.from_config(cfg), self.registry)
        # Set when a task the node cannot run without dies: run() stops, serve() exits 1.
        self.task_failed = asyncio.Event()
        self.supervisor = Supervisor(self.registry, on_failure=lambda _name: self.task_failed.set())
        self.p2p_metrics = P2PMetrics(self.registry)
        self.lag = LoopLagProbe(self.registry)
        self.started = False
        # Peer frame kinds of the concerns beside consensus (the chunk service's data.*).
        self.frame_handlers: dict[str, FrameHandler] = {}
        self.driver_metrics = DriverMetrics(self.registry)
        self.mempool_metrics = MempoolMetrics(self.registry)
        self.api_metrics = ApiMetrics(self.registry)
        self.chain_ledger = build_ledger(self.genesis)
        self.ledger = self.chain_ledger.ledger
        self.genesis_root = self.chain_ledger.genesis_root
        self.data_metrics = DataMetrics(self.registry)
        self.compute_metrics = ComputeMetrics(self.registry)
        self.transport = Transport(
            genesis=self.genesis,
            roster=genesis_roster(self.genesis),
            node_id=self.node_id,
            node_key=self.node_key,
            node_keys=keys,
            server_ctx=self.server_ctx,
            client_ctx=self.client_ctx,
            own_cert_der=self.cert_der,
            listen=cfg.address("p2p"),
            metrics=self.p2p_metrics,
            limits=TransportLimits.from_config(cfg),
            handler=self._on_frame,
            dial_overrides=cfg.dial_overrides(),
            on_link_up=self._on_link_up,
        )
        # The parts that hold the home's files: built last, once the home is ours.
        self._lock_file = self._lock_home()
        try:
            self.store = self._open_store()
            try:
                self.driver = self._build_driver(self.store)
                self._check_identity()
                self._roster = self.driver.epochs.links(self.driver.height)
                self.transport.set_roster(self._roster)
                self.driver.commit_listeners.append(self._on_commit_roster)
                self.data = self._build_data_service(self.store, self.driver)
                self.compute = self._build_compute_service(self.data, self.store, self.driver)
            except BaseException:
                self.store.close()
                raise
        except BaseException:
            self._lock_file.close()
            raise

    def _check_identity(self) -> None:
        """The node key and certificate must be ones the chain lists for this node (in the
        epoch in effect or a scheduled one: a rotation is installed before it takes effect).
        A node the chain does not list yet starts all the same: it follows the chain until
        an epoch adds it (its peers accept its links from the block that scheduled that)."""
        facts = self.driver.epochs.links(self.driver.height).get(self.node_id, ())
        cfg = self.cfg
        if not facts:
            if self.genesis.member(self.node_id) is not None:
                raise ConfigError(
                    f"{cfg.source}: [node] id {self.node_id!r} was removed from the consortium",
                    reason="not_member",
                )
            log.warning(
                "node %s is not a member of the consortium (yet): it follows the chain and "
                "votes once an epoch adds it",
                self.node_id,
            )
            return
        ours = {self.node_key.public_key.hex()}
        if self.next_node_key is not None:
            ours.add(self.next_node_key.public_key.hex())
        if not ours & {m.node_public_key for m in facts}:
            raise KeyFileError(
                f"{cfg.path('node', 'node_key')}: this node key is not one the chain lists "
                f"for {self.node_id!r}",
                reason="key_mismatch",
            )
        if pki.fingerprint_der(self.cert_der) not in {m.tls_fingerprint for m in facts}:
            raise KeyFileError(
                f"{cfg.path('tls', 'cert')}: TLS certificate fingerprint differs from the ones "
                f"the chain pins for {self.node_id!r}",
                reason="key_mismatch",
            )

    def _on_commit_roster(self, height: int, _results: object) -> None:
        """After each block: the chain may have scheduled a member or made one take effect."""
        roster = self.driver.epochs.links(height)
        if roster != self._roster:
            self._roster = roster
            self.transport.set_roster(roster)

    # -- state ------------------------------------------------------------------------------

    def _on_link_up(self, peer_id: str) -> None:
        self.driver.sync.greet(peer_id)

    def _on_frame(self, peer_id: str, kind: str, body: Any) -> float | None:
        driver = self.driver
        if kind in ("consensus", "blocks"):  # "blocks": state transfer, a p2p channel apart
            return driver.on_consensus_frame(peer_id, body)
        if kind == "txs":
            return driver.on_gossip_frame(peer_id, body)
        if kind == "status":
            driver.on_status_frame(peer_id, body)
        elif kind in self.frame_handlers:
            return self.frame_handlers[kind](peer_id, kind, body)
        else:
            self.p2p_metrics.frames_dropped.labels("unknown_kind").inc()
        return None

    @property
    def height(self) -> int:
        return self.driver.height

    @property
    def view(self) -> int:
        return self.driver.replica.view

    def readiness(self) -> dict[str, Any]:
        peers = len(self.transport.outbound_connected)
        reasons = []
        if not self.started:
            reasons.append("starting")
        config = self.driver.config
        if config.voting and peers + 1 < config.quorum:
            reasons.append(f"connected to {peers} peers, a quorum needs {config.quorum - 1}")
        elif not config.voting and peers == 0:
            reasons.append("following the chain without voting, but connected to no peer")
        if self.driver.halted_reason:
            reasons.append("halted: " + self.driver.halted_reason)
        if self.driver.lagging:
            reasons.append(
                f"catching up: at {self.driver.height}, chain at {self.driver.highest_seen}"
            )
        if not self.driver.sync.heard_chain:
            reasons.append("waiting for the peers' heights (status beacons)")
        return {"ready": not reasons, "reasons": reasons, "peers": peers, "height": self.height}

    def status(self) -> dict[str, Any]:
        ready = self.readiness()
        return {
            "id": self.node_id,
            "chain_id": self.genesis.chain_id,
            "pid": os.getpid(),
            "height": self.height,
            "view": self.view,
            "epoch": self.driver.config.epoch,
            "voting": self.driver.config.voting,
            "peers": ready["peers"],
            "lagging": self.driver.lagging,
            "halted": self.driver.halted_reason,
            "mempool": len(self.driver.mempool),
            "outbound": self.transport.outbound_connected,
            "inbound": self.transport.inbound_connected,
            "ready": ready["ready"],
            "reasons": ready["reasons"],
            "p2p": self.cfg.get("p2p", "listen"),
            "api": self.cfg.get("api", "listen"),
            "metrics": self.cfg.get("metrics", "listen"),
        }

    # -- lifecycle --------------------------------------------------------------------------

    def _lock_home(self) -> IO[bytes]:
        """Lock ``DATA_DIR/node.lock`` for as long as the node runs and write this process's
        pid into it, so tools find the process that holds a home however it was started
        (``mdtp cluster status/down`` on a node run with ``mdtp start``)."""
        restrict_home(self.cfg.home, self.data_dir)
        path = self.data_dir / "node.lock"
        f = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ConfigError(
                f"{path}: another mdtp process is already running on this node home",
                reason="home_locked",
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        return f

    async def _serve_http(
        self, app: web.Application, section: str, ctx: ssl.SSLContext | None
    ) -> HttpPort:
        limits = HttpLimits.from_config(self.cfg, section)
        try:
            return await serve_http(
                app, section, self.cfg.address(section), ctx, limits, self.http_metrics
            )
        except OSError as e:
            raise _bind_error(self.cfg, section, e) from None

    def _open_store(self) -> BlockStore:
        return open_store(self.data_dir / "ledger", self.genesis, self.chain_ledger)

    def _build_driver(self, store: BlockStore) -> Driver:
        cfg = self.cfg
        limits = DriverLimits(
            block_txs_max=cfg.get("consensus", "block_txs_max"),
            block_bytes_max=cfg.get("consensus", "block_bytes_max"),
            proposal_wait_ms=cfg.get("consensus", "proposal_wait_ms"),
        )
        if self.hooks.driver_limits is not None:
            limits = self.hooks.driver_limits(limits, self.genesis.consensus.view_timeout_ms)
        verifier = BatchVerifier(
            self.genesis.chain_id,
            cfg.get("mempool", "max_tx_bytes"),
            workers=SIGNATURE_WORKERS,
            registry=self.registry,
        )
        mempool = Mempool(
            MempoolLimits(
                max_txs=cfg.get("mempool", "max_txs"),
                max_bytes=cfg.get("mempool", "max_bytes"),
                nonce_window=cfg.get("mempool", "nonce_window"),
            ),
            lambda account: account_nonce(Overlay(store.state), account),
            self.mempool_metrics,
        )
        driver = Driver(
            genesis=self.genesis,
            genesis_root=self.genesis_root,
            node_id=self.node_id,
            node_key=self.node_key,
            store=store,
            ledger=self.ledger,
            mempool=mempool,
            verifier=verifier,
            send=self.transport.send,
            broadcast=self.transport.broadcast,
            metrics=self.driver_metrics,
            limits=limits,
            supervisor=self.supervisor,
            outbox=self.hooks.consensus_outbox,
            proposal_filter=self.hooks.proposal_filter,
            disk=self.hooks.disk() if self.hooks.disk is not None else None,
            state_server=self.hooks.state_server,
            next_node_key=self.next_node_key,
        )
        return driver

    def _build_data_service(self, store: BlockStore, driver: Driver) -> DataService:
        cfg = self.cfg
        data = DataService(
            chunks_dir=self.data_dir / "chunks",
            node_id=self.node_id,
            node_key=self.node_key,
            chain_id=self.genesis.chain_id,
            ledger=store,
            submitter=driver,
            mempool=driver.mempool,
            send=self.transport.send,
            limits=DataLimits(
                window_chunks=cfg.get("data", "window_chunks"),
                max_fetches=cfg.get("data", "max_fetches"),
                max_fetches_per_peer=cfg.get("data", "max_fetches_per_peer"),
                nonce_cache_max=cfg.get("data", "nonce_cache_max"),
                request_ttl_ms_max=cfg.get("data", "request_ttl_ms_max"),
                ack_timeout_ms=cfg.get("data", "ack_timeout_ms"),
            ),
            metrics=self.data_metrics,
            chunk_hook=self.hooks.chunk,
        )
        self.frame_handlers.update(data.frame_handlers)
        driver.commit_listeners.append(data.on_commit)
        return data

    def _build_compute_service(
        self, data: DataService, store: BlockStore, driver: Driver
    ) -> ComputeService:
        compute = ComputeService(
            data=data,
            chunks_dir=self.data_dir / "chunks",
            node_id=self.node_id,
            chain_id=self.genesis.chain_id,
            ledger=store,
            submitter=driver,
            metrics=self.compute_metrics,
            limits=ComputeLimits(
                max_queries=self.cfg.get("compute", "max_queries"),
                request_ttl_ms_max=self.cfg.get("data", "request_ttl_ms_max"),
                nonce_cache_max=self.cfg.get("data", "nonce_cache_max"),
            ),
            engine_limits=EngineLimits(
                timeout_s=self.cfg.get("compute", "timeout_ms") / 1000,
                memory_limit_mb=self.cfg.get("compute", "memory_limit_mb"),
                result_bytes_max=self.cfg.get("compute", "result_bytes_max"),
                dataset_bytes_max=self.cfg.get("compute", "dataset_bytes_max"),
            ),
        )
        data.frame_handlers.update(compute.frame_handlers)  # frames to this node itself
        self.frame_handlers.update(compute.frame_handlers)
        return compute

    def _api_app(self) -> web.Application:
        store, driver, data = self.store, self.driver, self.data
        max_body_bytes = self.cfg.get("api", "max_body_bytes")
        return api_app(
            [
                functools.partial(
                    chain_routes.add_routes,
                    reader=ChainReads(store, driver),
                    submitter=QuorumGatedSubmitter(
                        driver,
                        lambda: len(self.transport.outbound_connected),
                        lambda: self.driver.config.quorum,
                    ),
                    status=self.status,
                    max_body_bytes=max_body_bytes,
                    genesis=dataclasses.asdict(self.genesis),
                ),
                explorer.add_routes,
                functools.partial(data_routes.add_routes, uploads=data.uploads, relay=data.relay),
                functools.partial(
                    compute_routes.add_routes, relay=self.compute.relay, server=self.compute.server
                ),
                functools.partial(
                    trading_routes.add_routes,
                    store=store,
                    genesis_time_ms=self.genesis.genesis_time_ms,
                    wire_limits=driver.wire_limits,
                    chain_id=self.genesis.chain_id,
                ),
                functools.partial(
                    governance_routes.add_routes,
                    store=store,
                    genesis_time_ms=self.genesis.genesis_time_ms,
                ),
            ],
            max_body_bytes,
            self.api_metrics,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or a task dies, then shut down in order and release the
        home (the node cannot be run again)."""
        ports: list[HttpPort] = []
        self.supervisor.spawn("loop-lag", self.lag.run(), long_lived=True)
        try:
            self.driver.verifier.start(self.supervisor)
            ports.append(
                await self._serve_http(
                    health_app(
                        self.registry,
                        lambda: liveness_checks(
                            self.data_dir, self.lag, failed_tasks=self.supervisor.failed
                        ),
                        self.readiness,
                        peers=lambda: (
                            len(self.transport.outbound_connected)
                            + len(self.transport.inbound_connected)
                        ),
                    ),
                    "metrics",
                    None,
                )
            )
            try:
                await self.transport.start()
            except OSError as e:
                raise _bind_error(self.cfg, "p2p", e) from None
            await self.driver.start()
            await self.data.start()
            ports.append(await self._serve_http(self._api_app(), "api", self.api_ctx))
            self.started = True
            log.info(
                "node %s up: p2p %s, api %s, metrics %s",
                self.node_id,
                self.cfg.get("p2p", "listen"),
                self.cfg.get("api", "listen"),
                self.cfg.get("metrics", "listen"),
            )
            await _first(stop.wait(), self.task_failed.wait())
            if self.task_failed.is_set():
                log.error("stopping: a task died (%s)", ", ".join(self.supervisor.failed))
            else:
                log.info("stopping")
        finally:
            self.started = False
            for port in reversed(ports):
                await port.close()
            self.compute.close()
            await self.data.close()
            await self.driver.close()
            await self.driver.verifier.close()
            await self.transport.close()
            await self.supervisor.close()
            self.store.close()
            self._lock_file.close()
            log.info("stopped")


def _bind_error(cfg: NodeConfig, section: str, e: OSError) -> MdtpError:
    addr = cfg.get(section, "listen")
    if e.errno == errno.EADDRINUSE:
        return ConfigError(
            f"{addr} ([{section}] listen in {cfg.source}) is already in use by another process",
            reason="port_in_use",
        )
    return ConfigError(f"cannot listen on {addr} ([{section}] listen): {e.strerror}")


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def serve(cfg: NodeConfig, passphrase: bytes | None, hooks: NodeHooks | None = None) -> int:
    """Run a node until SIGTERM or SIGINT; the exit status (1 when a task died)."""
    owner_only_umask()  # before the node opens or creates any file
    node = Node(cfg, passphrase, hooks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await node.run(stop)
    log.debug("ran for %.1f s", time.monotonic() - started)
    return 1 if node.task_failed.is_set() else 0
