"""The proxy process: owns the listener, sessions, pools, command table and health.

`App` is also the `StatusSource` the exporters read (metrics, status page, PROXY INFO).
The current topology snapshot lives in `App.topo`; the health checker replaces it whole
(`set_snapshot`), and sessions read it per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import TYPE_CHECKING, cast

from config.model import Address, Config, Fallback
from proxy import tls
from proxy.admin import verbs as admin
from proxy.admin.clusterfailover import Connect, Request, Status, run_failover
from proxy.admin.host import AdminClient
from proxy.backend.health_thread import HealthThread
from proxy.backend.pool import NodePool, Pools
from proxy.backup.scheduler import Scheduler
from proxy.backup.service import Backups
from proxy.logs import log_event
from proxy.observe.history import History
from proxy.observe.slowlog import SlowLog
from proxy.resp.requests import Limits
from proxy.server.auth import Users
from proxy.server.channels import Listeners
from proxy.server.client import ClientState
from proxy.server.clientcmd import client_infos
from proxy.server.host import Client, Flushable
from proxy.server.monitor import Monitors
from proxy.server.movedslots import MovedSlots
from proxy.server.reload import Loaded, Reloader, reopen_http
from proxy.server.scripts import load_scripts
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
        self.limits = limits_of(config)
        self.table = CommandTable(refuse=frozenset(config.policy.refuse))
        self.command_reply: list[object] = []  # the last COMMAND reply, for a reload
        self.topo: Snapshot = EMPTY
        self.moved = MovedSlots()  # cluster: owners learned from MOVED since the last map
        self.stats = ProxyStats()
        self.users = Users(config, self.stats)
        self.started_at = time.time()
        self.sessions: dict[int, Session] = {}
        self.dirty: list[Flushable] = []
        self.pools = Pools.of(config, self.flush_dirty, self.stats.node_hist)
        # The pool of each node of the current snapshot, by id(): the hot path's lookup
        # (an Address hashes in Python, an id in C). Rebuilt with every snapshot.
        self.pool_of: dict[int, NodePool] = {}
        self.geo = GeoResolver(config)
        self.default_ranking = self.geo.locate("").ranking
        self.fallback_primary = config.routing.fallback == Fallback.PRIMARY
        self.history = History.for_interval(config.health.info_interval_ms)  # charts, capacity
        self.slowlog = SlowLog(config.metrics.slowlog_threshold_us, config.metrics.slowlog_max_len)
        # A disabled slow log (threshold < 0, or no room) costs no call per command.
        m = config.metrics
        off = m.slowlog_threshold_us < 0 or m.slowlog_max_len <= 0
        self.slow_threshold = math.inf if off else m.slowlog_threshold_us / 1e6
        self.databases, self._next_id = 16, 0
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
        self.on_refresh: Callable[[], None] | None = None  # a worker's ask to its supervisor
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self.failover_status = Status()
        # A worker's PROXY FAILOVER runs in the supervisor (set by proxy.workers).
        self.delegate_failover: Callable[[Request], Awaitable[dict[str, object]]] | None = None
        self.delegate_reload: Callable[[], Awaitable[dict[str, object]]] | None = None
        self.last_primary: NodeState | None = None
        self.backups = Backups(self)  # PROXY BACKUP / RESTORE (proxy/backup/)
        self._scheduled: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.watchdog = Watchdog(config.backend, self.stats, config.proxy.timeout_s)
        # The key a WAIT's dedicated connection writes first (see Session._blocking).
        self.wait_key = f"{config.health.heartbeat_prefix}wait:{self.instance_id}".encode()
        self._server: asyncio.AbstractServer | None = None
        self._tls_server: asyncio.AbstractServer | None = None
        self.http: HttpServer | None = None
        self.tls = tls.server_context(config.tls)  # None: clients speak plaintext
        self.reloader = Reloader(self, self)  # SIGHUP and PROXY RELOAD (proxy/server/reload.py)

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

    def redis_version(self) -> str:
        primary = self.topo.primary
        if primary is not None and primary.info.get("redis_version"):
            return primary.info["redis_version"]
        return "7.0.0"

    def refresh_cluster_map(self) -> None:
        # A worker's checker is not started: its supervisor's reads the map.
        if self.on_refresh is not None:
            self.on_refresh()
        else:
            self.health.request_map_refresh()

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
        return run_failover(self, req)  # the cluster's own, or the standalone one

    @property
    def loaded(self) -> Loaded:
        return self.reloader.loaded

    def reload(self) -> Awaitable[dict[str, object]]:
        """PROXY RELOAD: here, or (a worker) in the supervisor, for every worker."""
        if self.delegate_reload is not None:
            return self.delegate_reload()
        return self.reloader.from_file()

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
        self.topo = snap = self.moved.apply(snap)
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
                    load_scripts(pool, self._scripts)  # a restart emptied its cache
        self.history.sample(snap, self.stats)
        self.hold.on_snapshot(snap)  # last: the new primary's pool is marked up

    def set_commands(self, reply: list[object], refuse: frozenset[str] | None = None) -> None:
        try:
            table = CommandTable.from_command_reply(
                reply, self.table.refuse if refuse is None else refuse
            )
        except (IndexError, ValueError, TypeError) as e:
            log.warning("could not parse the COMMAND reply: %s", e)
            return
        self.table, self.command_reply = table, reply
        log_event(log, "command_table", commands=len(table))

    # ------------------------------------------------------------------ reload's doors

    def set_limits(self, config: Config) -> None:
        """In place: each connection's parser holds this object, and a reload's new
        limits apply to connected clients too."""
        self.limits.update(limits_of(config))

    def retire_nodes(self, config: Config) -> None:
        self.pools.retire({a for _, a in config.all_nodes()} | {n.addr for n in self.topo.nodes})

    def set_refused(self, refuse: frozenset[str]) -> None:
        if self.command_reply:
            self.set_commands(self.command_reply, refuse)
        else:
            self.table = CommandTable(refuse=refuse)

    def set_idle_timeout(self, seconds: int) -> None:
        self.watchdog.idle_s = seconds

    async def reconfigure_health(self, config: Config) -> None:
        await self.health.reconfigure(config)

    # ------------------------------------------------------------------ StatusSource

    def snapshot(self) -> Snapshot:
        return self.topo

    def outstanding(self, addr: Address) -> int:
        return self.pools.outstanding(addr)

    def pool_connections(self, addr: Address) -> int:
        pool = self.pools.get(addr)
        return len(pool.connections()) if pool is not None else 0

    def clients(self) -> list[ClientInfo]:
        return client_infos(list(self.sessions.values()), self.loop.time())

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sock: socket.socket | None = None) -> None:
        p = self.config.proxy
        if self.own_health:
            await self.health.start()
        self.pools.start()
        self._watchdog = self.loop.create_task(self.watchdog.run(self.loop, self.sessions.values))
        # With [tls] and no [tls] listen, the main address speaks TLS; with one, TLS is
        # served there and plaintext stays on [proxy] listen.
        t = self.config.tls
        self._server = await self._serve_on(p.listen, self.tls if t.listen is None else None, sock)
        if t.listen is not None and self.tls is not None:
            self._tls_server = await self._serve_on(t.listen, self.tls)
        if self.own_health:  # workers: the supervisor serves /metrics
            await reopen_http(self, self, None, self.config.metrics, self.tls)
        self.reloader.start()
        schedule = self.config.backup.schedule
        if schedule is not None:  # in every worker too: one lock per slot decides
            backups = Scheduler(self.backups, schedule, self.instance_id)
            self._scheduled = self.loop.create_task(backups.run())
        log_event(log, "started", listen=str(p.listen), region=p.region, instance=self.instance_id)

    async def _serve_on(
        self, addr: Address, ssl: SSLContext | None, sock: socket.socket | None = None
    ) -> asyncio.AbstractServer:
        if sock is not None:
            return await self.loop.create_server(
                lambda: Session(self), sock=sock, backlog=4096, ssl=ssl
            )
        return await self.loop.create_server(
            lambda: Session(self), addr.host, addr.port, backlog=4096, ssl=ssl,
            reuse_port=self.config.proxy.workers != 1,
        )  # fmt: skip

    async def rebind(self, config: Config) -> asyncio.AbstractServer | None:
        """A reload's new [proxy] listen, bound and serving beside the old one (which
        `use_listener` closes once the reload is sure); None when it did not change."""
        if config.proxy.listen == self.config.proxy.listen:
            return None
        main_tls = self.tls if config.tls.listen is None else None
        return await self._serve_on(config.proxy.listen, main_tls)

    def use_listener(self, server: asyncio.AbstractServer) -> None:
        old, self._server = self._server, server
        if old is not None:
            old.close()  # stops accepting; its clients stay connected

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
        self.reloader.stop()
        await self.backups.close()
        if self.http is not None:
            await self.http.wait_closed()
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
        loop.add_signal_handler(signal.SIGHUP, app.reloader.on_sighup)
    await stop.wait()
    await app.stop()


def limits_of(config: Config) -> Limits:
    p = config.proxy
    return Limits(p.max_bulk_len, p.max_multibulk_len, p.max_inline_len,
                  p.client_query_buffer_limit)  # fmt: skip
