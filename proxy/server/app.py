"""The proxy process: owns the listener, sessions, pools, command table and health.

`App` is also the `StatusSource` the exporters read (metrics, status page, PROXY INFO).
The current topology snapshot lives in `App.topo`; the health checker replaces it whole
(`set_snapshot`), and sessions read it per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from config.loader import resolve_password
from config.model import Address, Config, Fallback
from proxy import tls
from proxy.admin import verbs as admin
from proxy.admin.failover import Connect, Failover, Request, Status
from proxy.admin.host import AdminClient
from proxy.backend.connection import DISCARD
from proxy.backend.health_thread import HealthThread
from proxy.backend.pool import NodePool, Pools
from proxy.backup.scheduler import Scheduler
from proxy.backup.service import Backups
from proxy.errors import BackendError
from proxy.logs import log_event
from proxy.observe.slowlog import SlowLog
from proxy.resp.requests import Limits, pack
from proxy.server.auth import Users
from proxy.server.channels import Listeners
from proxy.server.client import ClientState
from proxy.server.host import Client, Flushable
from proxy.server.monitor import Monitors
from proxy.server.session import Session
from proxy.server.slot import Slot
from proxy.server.tracking import Tracking
from proxy.server.watchdog import Watchdog
from proxy.server.writehold import FAILOVER, WriteHold
from proxy.stats import ClientInfo, ProxyStats
from routing.commands import CommandTable
from routing.geo import GeoResolver
from routing.select import NO_REQUIREMENTS
from routing.topology import EMPTY, NodeState, Snapshot

if TYPE_CHECKING:
    from proxy.observe.httpserver import HttpServer

log = logging.getLogger("georedis")


class App:
    def __init__(
        self, config: Config, instance_id: str | None = None, *, own_health: bool = True
    ) -> None:
        # own_health=False: a worker process; the supervisor probes and sends snapshots.
        self.own_health = own_health
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.instance_id = (
            instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        p = config.proxy
        self.limits = Limits(p.max_bulk_len, p.max_multibulk_len, p.max_inline_len,
                             p.client_query_buffer_limit)  # fmt: skip
        self.table = CommandTable(refuse=frozenset(config.policy.refuse))
        self.topo: Snapshot = EMPTY
        self.stats = ProxyStats()
        self.users = Users(config, self.stats)
        self.started_at = time.time()
        self.sessions: dict[int, Session] = {}
        self.dirty: list[Flushable] = []
        self.pools = Pools(
            config.backend, resolve_password(config), self.flush_dirty, self.stats.node_hist
        )
        # The pool of each node of the current snapshot, by id(): the hot path's lookup
        # (an Address hashes in Python, an id in C). Rebuilt with every snapshot.
        self.pool_of: dict[int, NodePool] = {}
        self.geo = GeoResolver(config)
        self.default_ranking = self.geo.locate("").ranking
        self.fallback_primary = config.routing.fallback == Fallback.PRIMARY
        self.slowlog = SlowLog(config.metrics.slowlog_threshold_us, config.metrics.slowlog_max_len)
        # A disabled slow log (threshold < 0, or no room) costs no call per command.
        m = config.metrics
        off = m.slowlog_threshold_us < 0 or m.slowlog_max_len <= 0
        self.slow_threshold = math.inf if off else m.slowlog_threshold_us / 1e6
        self.databases = 16
        self._pp_from = config.proxy.proxy_protocol_from
        self._next_id = 0
        self._scripts: dict[bytes, None] = {}
        # Probes run on a thread of their own, so client load never reads as a node
        # failure (proxy/backend/health_thread.py).
        self.health = HealthThread(
            config,
            self.instance_id,
            self.set_snapshot,
            self.set_commands,
            busy=lambda addr: addr in self.pools.busy,
        )
        # Writes wait here while the primary changes (proxy/server/writehold.py).
        self.hold = WriteHold(self.loop, config.failover, self.request_refresh, self.stats)
        self.listeners = Listeners()
        self.monitors = Monitors(config.proxy.client_output_buffer_limit_pubsub.hard)
        self.tracking = Tracking(self.pools, self.sessions, self.loop.time)
        # A worker asks its supervisor for a probe round (set by proxy.workers).
        self.on_refresh: Callable[[], None] | None = None
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self.failover_status = Status()
        # A worker's PROXY FAILOVER runs in the supervisor (set by proxy.workers).
        self.delegate_failover: Callable[[Request], Awaitable[dict[str, object]]] | None = None
        self.last_primary: NodeState | None = None
        self.backups = Backups(self)  # PROXY BACKUP / RESTORE (proxy/backup/)
        self._scheduled: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        # The key a WAIT's dedicated connection writes first (see Session._blocking).
        self.wait_key = f"{config.health.heartbeat_prefix}wait:{self.instance_id}".encode()
        self._server: asyncio.AbstractServer | None = None
        self._tls_server: asyncio.AbstractServer | None = None
        self._http: HttpServer | None = None
        self.tls = tls.server_context(config.tls)  # None: clients speak plaintext

    # ------------------------------------------------------------------ hot-path helpers

    def next_client_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def admit(self, session: Client) -> bool:
        if len(self.sessions) >= self.config.proxy.max_clients:
            self.stats.connections_rejected += 1
            return False
        self.sessions[session.state.id] = cast(Session, session)
        self.hold.also_pause(session.state.id, self.sessions[session.state.id])
        session.state.watch(bool(self.monitors.watchers))
        self.stats.connections_current += 1
        if session.transport is not None:
            self.users.from_certificate(session.state, session.transport)
        return True

    def leave(self, session: Client) -> None:
        if self.sessions.pop(session.state.id, None) is not None:
            self.monitors.discard(session, (s.state for s in self.sessions.values()))
            self.tracking.disable(session)
            self.stats.connections_current -= 1
            self.users.leave(session.state)

    def mark_dirty(self, session: Flushable) -> None:
        """`session` has output: it is written at the end of this chunk (backend reads
        call `flush_dirty` when done) or, whatever marked it, at the latest on the next
        loop turn. One scheduled call per turn, not one per session."""
        if not self.dirty:
            self.loop.call_soon(self.flush_dirty)
        self.dirty.append(session)

    def flush_dirty(self) -> None:
        """Write out every client that got replies in this chunk: one write per client."""
        dirty = self.dirty
        if dirty:
            self.dirty = []
            for s in dirty:
                s.flush()

    def admin(self, client: ClientState, args: list[bytes]) -> admin.Reply:
        return admin.handle(self, client, args)

    def record_slow(self, client: ClientState, slot: Slot, seconds: float) -> None:
        args = slot.cmds[0] if len(slot.cmds) == 1 else [b"(pipeline)", *slot.cmds[0]]
        self.slowlog.record(args, int(seconds * 1e6), slot.node, client.peer, client.name_text)

    def remember_script(self, body: bytes) -> None:
        # Bounded: clients choose how many scripts they load.
        if body and len(self._scripts) < 10000:
            self._scripts[body] = None

    def proxy_protocol_allowed(self, ip: str) -> bool:
        if not self._pp_from:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(addr in net for net in self._pp_from)

    def redis_version(self) -> str:
        primary = self.topo.primary
        if primary is not None and primary.info.get("redis_version"):
            return primary.info["redis_version"]
        return "7.0.0"

    def read_target(self, client: AdminClient) -> NodeState | None:
        """The node a client's next plain read would go to (PROXY WHEREAMI)."""
        s = self.sessions.get(client.id)
        return s.fwd.read_node(NO_REQUIREMENTS) if s is not None else None

    # ------------------------------------------------------------------ health callbacks

    def request_refresh(self) -> None:
        """Probe every node now (a write came back -READONLY: the primary moved)."""
        if self.on_refresh is not None:
            self.on_refresh()
        elif self.own_health and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = self.loop.create_task(self.health.refresh())

    # ------------------------------------------------------------------ failover's doors

    def failover(self, req: Request) -> Awaitable[dict[str, object]]:
        if self.delegate_failover is not None:
            return self.delegate_failover(req)
        return Failover(self, req).run()

    async def refresh(self) -> Snapshot:
        if self.own_health:
            return await self.health.refresh()
        # A worker: the supervisor probes; wait (bounded) for the snapshot it sends.
        version = self.topo.version
        self.request_refresh()
        deadline = self.loop.time() + 2.0
        while self.topo.version == version and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.topo

    def hold_writes(self) -> None:
        self.hold.begin(FAILOVER, self.topo)

    def release_writes(self) -> None:
        self.hold.release()

    def writes_in_flight(self) -> int:
        # A blocked BLPOP's write waits on its client, not on the node: not waited for.
        return sum(s.state.writes_inflight for s in self.sessions.values() if s.blocked is None)

    @property
    def connect(self) -> Connect:
        return self.health.checker.connect

    def set_snapshot(self, snap: Snapshot) -> None:
        old = self.topo
        if snap.primary is not None:
            self.last_primary = snap.primary
        self.pool_of = {id(n): self.pools[n.addr] for n in snap.nodes}
        self.topo = snap
        for node in snap.nodes:
            before = old.node(node.addr)
            pool = self.pools.get(node.addr)
            if pool is None:
                continue
            # A node found down gets no new requests (routing reads the snapshot), but
            # requests in flight on a live connection keep their own deadline: a node
            # busy with a long script is slow, not gone, and a write it executes must be
            # answered, not failed (the client would retry it).
            if node.up and (before is None or not before.up):
                pool.mark_up()
                if before is not None:
                    self._load_scripts(pool)
        self.hold.on_snapshot(snap)  # last: the new primary's pool is marked up

    def _load_scripts(self, pool: NodePool) -> None:
        """A node back from down (a restart empties its script cache) gets the scripts
        clients loaded through the proxy, so EVALSHA_RO keeps working wherever it lands."""
        for body in self._scripts:
            try:
                pool.shared(0, 2, 0).send(pack([b"SCRIPT", b"LOAD", body]), DISCARD)
            except BackendError:
                return

    def set_commands(self, reply: list[object]) -> None:
        try:
            table = CommandTable.from_command_reply(reply, self.table.refuse)
        except (IndexError, ValueError, TypeError) as e:
            log.warning("could not parse the COMMAND reply: %s", e)
            return
        self.table = table
        log_event(log, "command_table", commands=len(table))

    # ------------------------------------------------------------------ StatusSource

    def snapshot(self) -> Snapshot:
        return self.topo

    def outstanding(self, addr: Address) -> int:
        return self.pools.outstanding(addr)

    def pool_connections(self, addr: Address) -> int:
        pool = self.pools.get(addr)
        return len(pool.connections()) if pool is not None else 0

    def clients(self) -> list[ClientInfo]:
        now = self.loop.time()
        return [
            ClientInfo(
                id=c.id,
                addr=c.peer,
                name=c.name_text,
                db=c.db,
                protocol=c.proto,
                region=c.region,
                location_source=c.location.source if c.location else "default",
                age_s=now - c.created,
                idle_s=now - c.last_cmd,
                commands=c.commands,
                flags=("x" if s.in_multi else "") + ("P" if s.subscribed else ""),
                user=c.user,
                qbuf=s.parser.pending_bytes,
                omem=s.transport.get_write_buffer_size() if s.transport is not None else 0,
            )
            for s in list(self.sessions.values())
            for c in (s.state,)
        ]

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sock: socket.socket | None = None) -> None:
        p = self.config.proxy
        if self.own_health:
            await self.health.start()
        self.pools.start()
        watchdog = Watchdog(self.config.backend, self.stats, self.config.proxy.timeout_s)
        self._watchdog = self.loop.create_task(watchdog.run(self.loop, self.sessions.values))
        t = self.config.tls
        # With [tls] and no [tls] listen, the main address speaks TLS; with one, TLS is
        # served there and plaintext stays on [proxy] listen.
        main_tls = self.tls if t.listen is None else None
        if sock is not None:
            self._server = await self.loop.create_server(
                lambda: Session(self), sock=sock, backlog=4096, ssl=main_tls
            )
        else:
            self._server = await self.loop.create_server(
                lambda: Session(self), p.listen.host, p.listen.port, backlog=4096,
                reuse_port=p.workers != 1, ssl=main_tls,
            )  # fmt: skip
        if t.listen is not None and self.tls is not None:
            self._tls_server = await self.loop.create_server(
                lambda: Session(self), t.listen.host, t.listen.port, backlog=4096,
                reuse_port=p.workers != 1, ssl=self.tls,
            )  # fmt: skip
        m = self.config.metrics
        if m.enabled and self.own_health:  # workers: the supervisor serves /metrics
            from proxy.observe.httpserver import HttpAuth, start_http

            self._http = await start_http(
                self, m.listen.host, m.listen.port, auth=HttpAuth.from_config(m),
                tls=self.tls if m.tls else None, max_connections=m.max_connections,
            )  # fmt: skip
        schedule = self.config.backup.schedule
        if schedule is not None:  # in every worker too: one lock per slot decides
            backups = Scheduler(self.backups, schedule, self.instance_id)
            self._scheduled = self.loop.create_task(backups.run())
        log_event(log, "started", listen=str(p.listen), region=p.region, instance=self.instance_id)

    def reload_tls(self) -> None:
        """SIGHUP: certificates and keys read again. A new context is built first, so a
        bad file leaves the working one as it was; connections up keep theirs."""
        try:
            if self.tls is not None:
                tls.server_context(self.config.tls)  # raises on a bad file
                tls.load_server(self.tls, self.config.tls)
            checker = self.health.checker.tls if self.own_health else None
            for backend in (self.pools.tls, checker):
                if backend is not None:
                    tls.backend_context(self.config.backend)
                    tls.load_backend(backend.context, self.config.backend)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            log_event(log, "tls_reload_failed", level=logging.ERROR, error=str(e))
            return
        log_event(log, "tls_reloaded")

    @property
    def port(self) -> int:
        assert isinstance(self._server, asyncio.Server)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Drain: stop accepting, let in-flight replies finish (bounded), close all."""
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        deadline = self.loop.time() + self.config.proxy.drain_timeout_ms / 1000
        while self.loop.time() < deadline and any(s.queue for s in self.sessions.values()):
            await asyncio.sleep(0.01)
        for s in list(self.sessions.values()):
            s.flush()
            s.close_now()
        for task in (self._watchdog, self._scheduled):
            if task is not None:
                task.cancel()
        await self.backups.close()
        if self._http is not None:
            await self._http.wait_closed()
        if self.own_health:
            await self.health.stop()
        self.pools.close()
        self.geo.close()
        log_event(log, "stopped", clients=len(self.sessions))


async def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then drain."""
    app = App(config)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, app.reload_tls)
    await stop.wait()
    await app.stop()
