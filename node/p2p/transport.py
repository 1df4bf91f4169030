"""The peer link manager: one outbound mutual-TLS link to every other node on the roster.

The *roster* is who this node links with: the members of the epoch in effect and of every
epoch the chain scheduled (so a member being added can catch up before it votes), each with
the node keys and certificate fingerprints those epochs give it (so a rotation works with
either until it takes effect). The daemon replaces it as the chain changes
(:meth:`Transport.set_roster`): a node that leaves it — a removed member, from its epoch on —
loses its links and is refused like a stranger.

Each node dials every other member and keeps that link up (capped exponential backoff with
jitter), so n nodes have n*(n-1) directed links. A node *sends* only on its outbound links
and *receives* only on inbound ones; replies travel on the replier's own outbound link. This
keeps every link one-way, so a slow reader never blocks a writer it also depends on.

Accepting is done in two steps, plain TCP then ``start_tls``, so that every refusal — no
client certificate, a certificate from another CA, a node not on the roster, a fingerprint
the roster does not pin, a node key that cannot answer the challenge — is classified and counted
instead of vanishing inside the TLS server. Before TLS, a connection must be admitted
(``max_connections`` in all, ``max_connections_per_address``): an excess one is aborted at
once, and an admitted one has ``handshake_timeout`` to finish TLS and then the identity
handshake, so neither a flood nor a stalled handshake holds the node's resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mdtp.node.errors import FrameError, HandshakeRefused
from mdtp.node.identity.config import NodeConfig
from mdtp.node.identity.genesis import Genesis, Member
from mdtp.node.identity.keys import SigningKey, verify_signature
from mdtp.node.identity.pki import fingerprint_der, node_id_of_der
from mdtp.node.p2p.channels import CHANNELS, Channel, kinds_of
from mdtp.node.p2p.connlimit import ConnectionCounter
from mdtp.node.p2p.frames import encode_frame, read_frame
from mdtp.node.p2p.handshake import CHALLENGE_BYTES, Hello, auth_bytes
from mdtp.node.p2p.metrics import P2PMetrics
from mdtp.node.p2p.remote import REMOTE, peer_host
from mdtp.node.p2p.sendqueue import SendQueues
from mdtp.node.supervisor import cancel_and_wait

log = logging.getLogger("mdtp.p2p")

FrameHandler = Callable[[str, str, Any], float | None]
"""Called as ``handler(peer_id, kind, body)`` for every well-formed frame from a peer; a
number of seconds asks the link to stop reading that long (backpressure: the peer sends
faster than it is served, so its frames wait in its own TCP buffers, not in ours)."""

IDLE_TIMER_SLACK_S = 1.0  # a link's idle timer is moved on when this much behind

_CONTROL_KINDS = frozenset({"hello", "auth", "ready", "ping"})

# node id -> the public facts it may present: one per epoch that lists it (current and
# scheduled), the newest last (whose ``p2p`` address is dialled)
Roster = dict[str, tuple[Member, ...]]


def genesis_roster(genesis: Genesis) -> Roster:
    return {m.id: (m,) for m in genesis.members}


@dataclass(frozen=True)
class TransportLimits:
    max_frame_bytes: int = 16 * 1024 * 1024
    channels: tuple[Channel, ...] = CHANNELS
    max_bad_frames: int = 16
    handshake_timeout_s: float = 5.0
    backoff_s_min: float = 0.1
    backoff_s_max: float = 5.0
    idle_timeout_s: float = 15.0
    write_batch_max_bytes: int = 1024 * 1024
    max_connections: int = 128
    max_connections_per_address: int = 32

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> TransportLimits:
        return cls(
            max_frame_bytes=cfg.get("p2p", "max_frame_bytes"),
            channels=tuple(
                dataclasses.replace(
                    c,
                    queue_max_frames=cfg.get("p2p", f"{c.name}_queue_max_frames"),
                    queue_max_bytes=cfg.get("p2p", f"{c.name}_queue_max_bytes"),
                )
                for c in CHANNELS
            ),
            max_bad_frames=cfg.get("p2p", "max_bad_frames"),
            handshake_timeout_s=cfg.get("p2p", "handshake_timeout_ms") / 1000,
            backoff_s_min=cfg.get("p2p", "reconnect_backoff_ms_min") / 1000,
            backoff_s_max=cfg.get("p2p", "reconnect_backoff_ms_max") / 1000,
            idle_timeout_s=cfg.get("p2p", "idle_timeout_ms") / 1000,
            max_connections=cfg.get("p2p", "max_connections"),
            max_connections_per_address=cfg.get("p2p", "max_connections_per_address"),
        )


def classify_tls_error(exc: BaseException) -> str:
    """Map a TLS handshake failure to a stable refusal reason."""
    if isinstance(exc, TimeoutError):
        return "handshake_timeout"
    reason = getattr(exc, "reason", None) or ""
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no_client_certificate"
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE" in reason:
        return "bad_certificate"
    if "VERSION" in reason or "PROTOCOL" in reason:
        return "tls_version"
    if isinstance(exc, ssl.SSLError):
        return "tls_error"
    return "connection_error"


# Frame kinds not queued for a peer whose link is down. Gossip is offered again every few
# seconds while a transaction waits (``Admission.regossip``), so a peer that comes back gets
# what is still waiting; what was queued while it was down would reach it stale -- committed
# meanwhile, yet each transaction verified again -- ahead of the state-transfer answers it
# needs (measured: a node down while 100,000 transactions committed got ~20,000-90,000 of
# them as gossip on its return, delaying its catch-up by seconds).
UNQUEUED_WHILE_DOWN = frozenset({"txs"})

# Frame kinds of which only the newest few wait for a peer whose link is down. Consensus
# frames queued for the whole time a member was down reached it stale on its return (votes and
# proposals for heights it can only get by state transfer), each decoded and
# signature-checked ahead of the state-transfer answer behind them on the same link
# (measured: a node down while 100,000 transactions committed got ~1,200 of them, and its
# first answer came 1.5 s after it asked). The protocol tolerates their loss: every replica
# resends its latest votes each ``retransmit_interval_ms``, and a peer more than the window
# behind catches up by state transfer. The newest ones still bridge a short outage.
NEWEST_WHILE_DOWN = {"consensus": 128, "status": 2}


class _OutboundLink:
    def __init__(self, peer_id: str, limits: TransportLimits, metrics: P2PMetrics) -> None:
        self.peer_id = peer_id
        # Kept across reconnects: frames queued while the link is down go out when it is up
        # (except gossip, see UNQUEUED_WHILE_DOWN).
        self.queues = SendQueues(limits.channels, metrics)
        self.connected = False
        self.task: asyncio.Task[None] | None = None
        # set when the peer dials us while our link to it is down: it is back, so our dial
        # loop stops backing off and dials it now
        self.peer_is_back = asyncio.Event()


class Transport:
    def __init__(
        self,
        *,
        genesis: Genesis,
        roster: Roster,
        node_id: str,
        node_key: SigningKey,
        server_ctx: ssl.SSLContext,
        client_ctx: ssl.SSLContext,
        own_cert_der: bytes,
        listen: tuple[str, int],
        metrics: P2PMetrics,
        limits: TransportLimits,
        handler: FrameHandler,
        dial_overrides: dict[str, str] | None = None,
        node_keys: list[SigningKey] | None = None,
        on_link_up: Callable[[str], None] | None = None,
    ) -> None:
        self.genesis = genesis
        # told the peer's id each time our link to it comes up (the node greets it)
        self.on_link_up = on_link_up
        # every node key this node holds (a rotation under way: both); it proves the one its
        # own roster entry lists, the newest first
        self._node_keys = node_keys or [node_key]
        self._own: tuple[Member, ...] = roster.get(node_id, ())
        self._roster = {p: facts for p, facts in roster.items() if facts and p != node_id}
        self.node_id = node_id
        self.node_key = node_key
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.own_fingerprint = fingerprint_der(own_cert_der)
        self.listen = listen
        self.metrics = metrics
        self.limits = limits
        self.handler = handler
        self.dial_overrides = dict(dial_overrides or {})
        self._kinds = frozenset(kinds_of(limits.channels))
        # the labelled counters per kind, looked up once: a kind off the channel table never
        # gets a series (a peer naming a new kind per frame would grow the registry)
        self._sent = {k: metrics.frames_sent.labels(k) for k in self._kinds}
        self._received = {k: metrics.frames_received.labels(k) for k in self._kinds}
        self._outbound = {p: _OutboundLink(p, limits, metrics) for p in sorted(self._roster)}
        self._inbound: dict[str, asyncio.StreamWriter] = {}
        self._admitted = ConnectionCounter(
            limits.max_connections, limits.max_connections_per_address
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._started = False

    # -- public ---------------------------------------------------------------------------

    async def start(self) -> None:
        host, port = self.listen
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=2**16, backlog=max(128, self.limits.max_connections)
        )
        self._started = True
        for link in self._outbound.values():
            self._dial(link)

    def _dial(self, link: _OutboundLink) -> None:
        link.task = asyncio.create_task(self._dial_forever(link), name=f"dial-{link.peer_id}")

    @property
    def peers(self) -> list[str]:
        return sorted(self._roster)

    def set_roster(self, roster: Roster) -> None:
        """The chain changed who links with us: dial the newcomers, drop those gone (their
        links close now and any new one is refused ``not_member``), and close the links of
        a node whose certificate or key is no longer one it may present."""
        self._own = roster.get(self.node_id, ())
        new = {p: facts for p, facts in roster.items() if facts and p != self.node_id}
        for peer in sorted(set(self._roster) - set(new)):
            log.info("%s left the roster: its links close", peer)
            self._drop(peer)
        for peer, facts in sorted(new.items()):
            old = self._roster.get(peer)
            if old is not None and not set(_pins(old)) <= set(_pins(facts)):
                log.info("%s presents other keys or certificates now: its links reconnect", peer)
                self._drop(peer)
            self._roster[peer] = facts
            if peer not in self._outbound:
                link = self._outbound[peer] = _OutboundLink(peer, self.limits, self.metrics)
                if self._started and not self._closing:
                    self._dial(link)
        for peer in sorted(set(self._roster) - set(new)):
            del self._roster[peer]

    def _drop(self, peer: str) -> None:
        link = self._outbound.pop(peer, None)
        if link is not None and link.task is not None:
            link.task.cancel()
        writer = self._inbound.pop(peer, None)
        if writer is not None:
            writer.transport.abort()

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        pending = {link.task for link in self._outbound.values() if link.task} | self._tasks
        for writer in list(self._inbound.values()):
            writer.close()
        await cancel_and_wait(pending)  # again for any that lost its first cancel
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def send(self, peer_id: str, kind: str, body: Any) -> bool:
        """Queue a frame for ``peer_id``; False (and counted) if its channel's queue is full."""
        return self._enqueue(peer_id, kind, self._encode(kind, body))

    def broadcast(self, kind: str, body: Any) -> None:
        frame = self._encode(kind, body)
        for peer_id in list(self._outbound):
            self._enqueue(peer_id, kind, frame)

    @property
    def outbound_connected(self) -> list[str]:
        return [p for p, link in self._outbound.items() if link.connected]

    @property
    def inbound_connected(self) -> list[str]:
        return sorted(self._inbound)

    # -- sending ----------------------------------------------------------------------------

    def _encode(self, kind: str, body: Any) -> bytes:
        # Checked here too, so a kind missing from the channel table fails on a lone node.
        if kind not in self._kinds:
            raise ValueError(f"frame kind {kind!r} is on no p2p channel (see p2p/channels.py)")
        return encode_frame(kind, body, self.limits.max_frame_bytes)

    def _enqueue(self, peer_id: str, kind: str, frame: bytes) -> bool:
        link = self._outbound.get(peer_id)
        if link is None:
            # not (or no longer) on the roster: a reply to a node the chain just removed
            self.metrics.frames_dropped.labels("not_a_peer").inc()
            return False
        if kind in UNQUEUED_WHILE_DOWN and not link.connected:
            self.metrics.frames_dropped.labels("peer_down").inc()
            return False
        newest = None if link.connected else NEWEST_WHILE_DOWN.get(kind)
        if not link.queues.put(kind, frame, newest=newest):
            self.metrics.frames_dropped.labels("queue_full").inc()
            return False
        self._sent[kind].inc()
        return True

    async def _dial_forever(self, link: _OutboundLink) -> None:
        member = self._roster[link.peer_id][-1]
        host, _, port = self.dial_overrides.get(link.peer_id, member.p2p).rpartition(":")
        backoff = self.limits.backoff_s_min
        REMOTE.set(f"p2p:{link.peer_id}")  # this task's own context: its lines are limited
        while not self._closing:
            self.metrics.reconnects.inc()
            link.peer_is_back.clear()  # a return announced from here on cuts the next wait
            writer: asyncio.StreamWriter | None = None
            try:
                reader, conn = await asyncio.wait_for(
                    asyncio.open_connection(host.strip("[]"), int(port), ssl=self.client_ctx),
                    self.limits.handshake_timeout_s,
                )
                writer = conn
                await asyncio.wait_for(
                    self._client_handshake(link.peer_id, reader, conn),
                    self.limits.handshake_timeout_s,
                )
                link.connected = True
                self.metrics.peers_connected.labels("outbound").inc()
                log.info("outbound link to %s up", link.peer_id)
                if self.on_link_up is not None:
                    self.on_link_up(link.peer_id)
                backoff = self.limits.backoff_s_min
                try:
                    await self._pump(link, reader, conn)
                finally:
                    link.connected = False
                    self.metrics.peers_connected.labels("outbound").dec()
                    log.info("outbound link to %s down", link.peer_id)
            except asyncio.CancelledError:
                if writer is not None:
                    writer.close()
                raise
            except HandshakeRefused as e:
                self.metrics.connections_refused.labels(e.reason).inc()
                log.warning("refused outbound link to %s: %s", link.peer_id, e)
            except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as e:
                if isinstance(e, ssl.SSLError | TimeoutError):
                    self.metrics.connections_refused.labels(classify_tls_error(e)).inc()
                log.debug("dial %s failed: %s", link.peer_id, e)
            except FrameError as e:
                self.metrics.frames_dropped.labels(e.reason).inc()
            if writer is not None:
                writer.close()
            delay = random.uniform(backoff / 2, backoff)
            backoff = min(backoff * 2, self.limits.backoff_s_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.peer_is_back.wait(), delay)
            if link.peer_is_back.is_set():
                backoff = self.limits.backoff_s_min

    async def _pump(
        self, link: _OutboundLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write queued frames in batches, in channel schedule order, until the link dies.

        The receiver never writes after READY, so a read returning means the link is gone:
        a watcher task then cancels this pump. Keepalives are queued by a ticker when the
        link has been quiet, so the hot path waits for frames with no timers.
        """
        pump = asyncio.current_task()
        assert pump is not None
        ping = encode_frame("ping", None, self.limits.max_frame_bytes)
        interval = self.limits.idle_timeout_s / 3
        last_write = asyncio.get_running_loop().time()

        async def watch_eof() -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                await reader.read(1)
            pump.cancel()

        async def keepalive() -> None:
            while True:
                await asyncio.sleep(interval)
                if asyncio.get_running_loop().time() - last_write >= interval:
                    link.queues.put("ping", ping)

        helpers = [asyncio.create_task(watch_eof()), asyncio.create_task(keepalive())]
        try:
            while True:
                batch = await link.queues.next_batch(self.limits.write_batch_max_bytes)
                size = sum(map(len, batch))
                writer.write(b"".join(batch) if len(batch) > 1 else batch[0])
                self.metrics.bytes_sent.inc(size)
                last_write = asyncio.get_running_loop().time()
                if writer.transport.get_write_buffer_size() > self.limits.write_batch_max_bytes:
                    await asyncio.wait_for(writer.drain(), self.limits.idle_timeout_s)
        except asyncio.CancelledError:
            if helpers[0].done() and not self._closing:
                return  # the link died (EOF); the dial loop reconnects
            raise
        finally:
            for task in helpers:
                task.cancel()
            writer.close()

    # -- handshakes -------------------------------------------------------------------------

    def _check_peer_certificate(
        self, writer: asyncio.StreamWriter, expected: str | None
    ) -> tuple[str, str]:
        """The peer's node id and certificate fingerprint, if the roster lets it in."""
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der:
            raise HandshakeRefused("peer presented no certificate", reason="no_client_certificate")
        peer_id = node_id_of_der(der)
        if peer_id is None:
            raise HandshakeRefused("certificate names no mdtp node", reason="not_member")
        facts = self._roster.get(peer_id)
        if not facts or peer_id == self.node_id:
            raise HandshakeRefused(f"{peer_id!r} is not a current member", reason="not_member")
        if expected is not None and peer_id != expected:
            raise HandshakeRefused(
                f"dialled {expected!r} but certificate names {peer_id!r}", reason="wrong_peer"
            )
        fingerprint = fingerprint_der(der)
        if fingerprint not in {m.tls_fingerprint for m in facts}:
            raise HandshakeRefused(
                f"certificate of {peer_id!r} is not one the chain pins for it",
                reason="fingerprint_mismatch",
            )
        return peer_id, fingerprint

    def _verify_auth(
        self, peer_id: str, fingerprint: str, role: str, challenge: bytes, signature: bytes
    ) -> None:
        signed = auth_bytes(
            chain_id=self.genesis.chain_id,
            role=role,
            signer_id=peer_id,
            verifier_id=self.node_id,
            verifier_challenge=challenge,
            signer_fingerprint=fingerprint,
            verifier_fingerprint=self.own_fingerprint,
        )
        keys = {m.node_public_key for m in self._roster.get(peer_id, ())}
        if not any(verify_signature(bytes.fromhex(k), signed, signature) for k in sorted(keys)):
            raise HandshakeRefused(
                f"{peer_id!r} did not prove possession of its node key", reason="bad_node_key"
            )

    def _proving_key(self) -> SigningKey:
        listed = {m.node_public_key for m in self._own}
        for key in reversed(self._node_keys):
            if key.public_key.hex() in listed:
                return key
        return self.node_key

    def _sign_auth(self, peer_id: str, fingerprint: str, role: str, challenge: bytes) -> bytes:
        return self._proving_key().sign(
            auth_bytes(
                chain_id=self.genesis.chain_id,
                role=role,
                signer_id=self.node_id,
                verifier_id=peer_id,
                verifier_challenge=challenge,
                signer_fingerprint=self.own_fingerprint,
                verifier_fingerprint=fingerprint,
            )
        )

    async def _expect(self, reader: asyncio.StreamReader, kind: str) -> Any:
        got, body, _ = await read_frame(reader, 4096)
        if got != kind:
            raise HandshakeRefused(f"expected {kind.upper()}, got {got!r}", reason="bad_hello")
        return body

    def _write(self, writer: asyncio.StreamWriter, kind: str, body: Any) -> None:
        writer.write(encode_frame(kind, body, 4096))

    async def _client_handshake(
        self, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        _, fingerprint = self._check_peer_certificate(writer, peer_id)
        challenge = os.urandom(CHALLENGE_BYTES)
        self._write(
            writer, "hello", Hello(self.genesis.chain_id, self.node_id, challenge).to_body()
        )
        server_hello = Hello.from_body(await self._expect(reader, "hello"))
        if server_hello.chain_id != self.genesis.chain_id or server_hello.node_id != peer_id:
            raise HandshakeRefused("peer HELLO names another chain or node", reason="bad_hello")
        if server_hello.signature is None:
            raise HandshakeRefused("server HELLO is not signed", reason="bad_hello")
        self._verify_auth(peer_id, fingerprint, "server", challenge, server_hello.signature)
        self._write(
            writer,
            "auth",
            {"signature": self._sign_auth(peer_id, fingerprint, "client", server_hello.challenge)},
        )
        await self._expect(reader, "ready")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted as the server closed: its task came after close()
            writer.transport.abort()
            return
        address = peer_host(writer.get_extra_info("peername"))
        # Each accepted connection runs in its own task, so this is its source alone.
        REMOTE.set(f"p2p:{address}")
        refusal = self._admitted.admit(address)
        if refusal is not None:
            self.metrics.connections_refused.labels(refusal).inc()
            log.info("refused inbound connection: %s", refusal)
            writer.transport.abort()
            return
        self.metrics.connections_open.inc()
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer_id: str | None = None
        try:
            try:
                # asyncio.timeout, not wait_for: the TLS protocol must take over the socket
                # in this step, before the ClientHello can land in the stream's buffer.
                async with asyncio.timeout(self.limits.handshake_timeout_s):
                    await writer.start_tls(
                        self.server_ctx, ssl_handshake_timeout=self.limits.handshake_timeout_s + 1
                    )
            except (ssl.SSLError, TimeoutError, OSError) as e:
                reason = classify_tls_error(e)
                self.metrics.connections_refused.labels(reason).inc()
                log.warning("refused inbound connection: %s (%s)", reason, e)
                return
            try:
                peer_id = await asyncio.wait_for(
                    self._server_handshake(reader, writer), self.limits.handshake_timeout_s
                )
            except HandshakeRefused as e:
                self.metrics.connections_refused.labels(e.reason).inc()
                log.warning("refused inbound connection: %s", e)
                return
            except TimeoutError:
                self.metrics.connections_refused.labels("handshake_timeout").inc()
                return
            except FrameError as e:
                self.metrics.connections_refused.labels("bad_hello").inc()
                log.warning("refused inbound connection: %s", e)
                return
            REMOTE.set(f"p2p:{peer_id}")
            old = self._inbound.pop(peer_id, None)
            if old is not None:
                old.close()  # a reconnecting peer replaces its stale link
            self._inbound[peer_id] = writer
            self.metrics.peers_connected.labels("inbound").inc()
            ours = self._outbound.get(peer_id)
            if ours is not None and not ours.connected:
                ours.peer_is_back.set()
            try:
                await self._receive(peer_id, reader)
            finally:
                self.metrics.peers_connected.labels("inbound").dec()
                if self._inbound.get(peer_id) is writer:
                    del self._inbound[peer_id]
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # Shutdown. Not re-raised: asyncio's stream server calls task.exception() on
            # this task, which would log a spurious traceback for a cancelled one.
            pass
        finally:
            writer.transport.abort()  # nothing is owed to a closing link: free it now
            self._tasks.discard(task)
            self._admitted.release(address)
            self.metrics.connections_open.dec()

    async def _server_handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        peer_id, fingerprint = self._check_peer_certificate(writer, None)
        hello = Hello.from_body(await self._expect(reader, "hello"))
        if hello.chain_id != self.genesis.chain_id:
            raise HandshakeRefused(f"peer is on chain {hello.chain_id!r}", reason="wrong_chain")
        if hello.node_id != peer_id:
            raise HandshakeRefused("HELLO node id differs from the certificate", reason="bad_hello")
        challenge = os.urandom(CHALLENGE_BYTES)
        signature = self._sign_auth(peer_id, fingerprint, "server", hello.challenge)
        self._write(
            writer,
            "hello",
            Hello(self.genesis.chain_id, self.node_id, challenge, signature).to_body(),
        )
        auth = await self._expect(reader, "auth")
        sig = auth.get("signature") if isinstance(auth, dict) else None
        if not isinstance(sig, bytes):
            raise HandshakeRefused("AUTH carries no signature", reason="bad_hello")
        self._verify_auth(peer_id, fingerprint, "client", challenge, sig)
        self._write(writer, "ready", None)
        await writer.drain()
        return peer_id

    async def _receive(self, peer_id: str, reader: asyncio.StreamReader) -> None:
        """Read ``peer_id``'s frames until the link dies, sends too many bad frames, or is
        silent for ``idle_timeout_s`` (a link's keepalives come three times in that). One
        timer per link, moved on at most once a second by the frames that come (a
        ``wait_for`` around every read cost a task per frame)."""
        idle_s = self.limits.idle_timeout_s
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(idle_s) as idle:

                def heard() -> None:
                    deadline = loop.time() + idle_s
                    if deadline - (idle.when() or deadline) >= IDLE_TIMER_SLACK_S:
                        idle.reschedule(deadline)

                await self._read_frames(peer_id, reader, heard)
        except TimeoutError:
            log.info("link from %s idle, closing", peer_id)

    async def _read_frames(
        self, peer_id: str, reader: asyncio.StreamReader, heard: Callable[[], None]
    ) -> None:
        bad = 0
        max_frame = self.limits.max_frame_bytes
        while True:
            try:
                kind, body, size = await read_frame(reader, max_frame)
            except FrameError as e:
                self.metrics.frames_dropped.labels(e.reason).inc()
                bad += 1
                if e.reason == "oversized_fatal" or bad >= self.limits.max_bad_frames:
                    log.warning("closing link from %s after bad frames: %s", peer_id, e)
                    return
                continue
            heard()
            self.metrics.bytes_received.inc(size)
            if kind in _CONTROL_KINDS:
                continue
            received = self._received.get(kind)
            if received is None:  # a newer peer's kind, or junk: dropped, the link kept
                self.metrics.frames_dropped.labels("unknown_kind").inc()
                continue
            received.inc()
            try:
                pause = self.handler(peer_id, kind, body)
            except Exception:  # a handler bug must not kill the link; it is logged loudly
                log.exception("frame handler failed on %s frame from %s", kind, peer_id)
                pause = None
            if pause:
                self.metrics.reads_paused.inc()
                await asyncio.sleep(pause)
                heard()  # a pause of ours is not the peer's silence


def _pins(facts: tuple[Member, ...]) -> list[tuple[str, str]]:
    return [(m.node_public_key, m.tls_fingerprint) for m in facts]
