"""`[proxy] workers = N`: N worker processes on one port, one supervisor.

Python runs one core per process, so the proxy scales out the way nginx does: every
worker binds the listen address with SO_REUSEPORT and the kernel spreads connections
across them; each worker has its own pools.

What must not be multiplied by N stays in the supervisor: the health checker (one set
of probes and one heartbeat key, whatever N is) and the metrics endpoint. The supervisor
sends each new topology snapshot and command table down a pipe to every worker; workers
send their cumulative counters (and per-node outstanding requests) up the same pipe every
second, merged into one coherent /metrics (`proxy.stats.StatsAggregator`).

PROXY FAILOVER runs in the supervisor too, where the probes are: the worker that got it
sends it up ("failover"), the supervisor holds every worker's writes ("hold"), runs it
and releases them ("release"), and sends the result back ("failover_done"). A worker that
meets -READONLY asks for a probe round at once ("refresh").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from config.model import Address, Config
from proxy import tls
from proxy.admin.clusterfailover import run_failover
from proxy.admin.failover import Connect, Request
from proxy.backend.clusterhealth import health_checker
from proxy.errors import FailoverError, ReloadError
from proxy.logs import log_event, setup_logging
from proxy.observe.history import History
from proxy.server.reload import reload_tls
from proxy.server.supreload import SupervisorReload
from proxy.stats import ClientInfo, ProxyStats, StatsAggregator
from proxy.workerlink import Asking, Link
from routing.topology import EMPTY, NodeState, Snapshot

if TYPE_CHECKING:
    from proxy.observe.httpserver import HttpServer

log = logging.getLogger("georedis.workers")

STATS_PERIOD_S = 1.0


def worker_count(config: Config) -> int:
    return config.proxy.workers or os.cpu_count() or 1


def run_workers(config: Config, config_path: str) -> int:
    import uvloop

    uvloop.run(_supervise(config, config_path, worker_count(config)))
    return 0


class _Worker:
    __slots__ = ("busy", "index", "link", "listeners", "outstanding", "pool_conns", "proc",
                 "task")  # fmt: skip

    def __init__(self, index: int, proc: multiprocessing.process.BaseProcess, link: Link):
        self.index = index
        self.proc = proc
        self.link = link
        self.outstanding: dict[str, int] = {}
        self.pool_conns: dict[str, int] = {}
        # Nodes running a script this worker sent (names), sent the moment it changes.
        self.busy: frozenset[str] = frozenset()
        self.task: asyncio.Task[None] | None = None
        self.listeners: object = None  # its subscribers through replicas (PUBLISH's count)


class Supervisor:
    """The StatusSource of a multi-worker proxy: merged stats, the one snapshot."""

    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self.started_at = time.time()
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.aggregator = StatsAggregator()
        self.history = History.for_interval(config.health.info_interval_ms)  # charts, capacity
        self.workers: dict[int, _Worker] = {}
        self._snapshot: Snapshot = EMPTY
        self._commands: list[object] | None = None
        self.last_primary: NodeState | None = None
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self._failing_over = False
        self.health = health_checker(
            config, self.instance_id, self._on_snapshot, self._on_commands, busy=self._busy
        )
        self.http: HttpServer | None = None
        self.reloader = SupervisorReload(self)  # SIGHUP, and PROXY RELOAD from a worker

    def broadcast_config(self, config: Config, digest: str, version: int) -> list[int]:
        self.config = config
        self._broadcast(("config", (config, digest, version)))
        return list(self.workers)

    def reload_tls(self) -> None:
        """SIGHUP to the supervisor: its probes' certificates, then each worker's."""
        if self.health.tls is not None:
            try:
                tls.backend_context(self.config.backend)
                tls.load_backend(self.health.tls.context, self.config.backend)
            except (OSError, ValueError) as e:
                log_event(log, "tls_reload_failed", level=logging.ERROR, error=str(e))
        for w in self.workers.values():
            if w.proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGHUP)

    # StatusSource
    @property
    def stats(self) -> ProxyStats:
        merged = self.aggregator.merged()
        merged.reloads_ok, merged.reloads_failed = self.reloader.ok, self.reloader.refused
        return merged

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def outstanding(self, addr: Address) -> int:
        return sum(w.outstanding.get(str(addr), 0) for w in self.workers.values())

    def pool_connections(self, addr: Address) -> int:
        return sum(w.pool_conns.get(str(addr), 0) for w in self.workers.values())

    def clients(self) -> list[ClientInfo]:
        return []  # client lists stay in the workers (PROXY CLIENTS answers per worker)

    def _busy(self, addr: Address) -> bool:
        """A worker has a script running on `addr`: its silence is expected."""
        name = str(addr)
        return any(name in w.busy for w in self.workers.values())

    # PROXY FAILOVER's doors (proxy.admin.failover.FailoverHost)
    @property
    def topo(self) -> Snapshot:
        return self._snapshot

    async def refresh(self) -> Snapshot:
        return await self.health.refresh()

    def hold_writes(self) -> None:
        self._broadcast(("hold", None))

    def release_writes(self) -> None:
        self._broadcast(("release", None))

    def writes_in_flight(self) -> int:
        return 0  # the workers' own: their writes paused at the old primary come back

    @property
    def connect(self) -> Connect:
        return self.health.connect

    async def _failover(self, w: _Worker, req_id: int, req: Request) -> None:
        # One at a time across all workers (each worker only knows its own).
        result: dict[str, object] | str = "a PROXY FAILOVER is already running"
        if not self._failing_over:
            self._failing_over = True
            try:
                result = await run_failover(self, req)
            except FailoverError as e:
                result = e.why
            except Exception as e:  # a bug: the worker's client still gets its reply
                log.exception("PROXY FAILOVER failed")
                result = f"internal error: {type(e).__name__}: {e}"
            finally:
                self._failing_over = False
        w.link.send(("failover_done", (req_id, result)))

    async def _reload(self, w: _Worker, req_id: int) -> None:
        try:
            result: dict[str, object] | str = await self.reloader.from_file()
        except ReloadError as e:  # from_file turns any failure into one
            result = str(e)
        w.link.send(("reload_done", (req_id, result)))

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self.health.refresh())

    # health -> workers
    def _on_snapshot(self, snap: Snapshot) -> None:
        self._snapshot = snap
        self.history.sample(snap, self.aggregator.merged)
        if snap.primary is not None:
            self.last_primary = snap.primary
        self._broadcast(("snapshot", snap))

    def _on_commands(self, reply: list[object]) -> None:
        self._commands = reply
        self._broadcast(("commands", reply))

    def _broadcast(self, msg: tuple[str, Any]) -> None:
        for w in list(self.workers.values()):
            w.link.send(msg)

    async def start_worker(self, index: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = socket.socketpair()
        spawned = self.config
        proc = ctx.Process(
            target=worker_main, args=(spawned, index, theirs), name=f"georedis-worker-{index}"
        )
        proc.start()
        theirs.close()
        w = _Worker(index, proc, await Link.open(mine))
        self.workers[index] = w
        # The worker serves only once it has a topology: send what is known now.
        w.link.send(("snapshot", self._snapshot))
        if self._commands is not None:
            w.link.send(("commands", self._commands))
        loaded = self.reloader.loaded
        if loaded.version > 1 or self.config is not spawned:  # numbered as the others
            w.link.send(("config", (self.config, loaded.digest, loaded.version)))
        w.task = asyncio.get_running_loop().create_task(self._receive(w))

    async def _receive(self, w: _Worker) -> None:
        try:
            while True:
                kind, payload = await w.link.recv()
                if kind == "stats":
                    self.aggregator.update(w.index, payload["stats"])
                    w.outstanding = payload["outstanding"]
                    w.pool_conns = payload["pool_conns"]
                    if payload.get("listeners") != w.listeners:
                        # Each worker's PUBLISH counts every worker's subscribers.
                        w.listeners = payload.get("listeners")
                        shared = {x.index: x.listeners for x in self.workers.values()}
                        self._broadcast(("listeners", shared))
                elif kind == "busy":
                    w.busy = frozenset(payload)
                elif kind == "refresh":
                    # A -READONLY or a MOVED in a worker: cluster mode reads the map too.
                    self.health.request_map_refresh()
                    self._refresh_soon()
                elif kind == "failover":
                    asyncio.get_running_loop().create_task(self._failover(w, *payload))
                elif kind == "reload":
                    asyncio.get_running_loop().create_task(self._reload(w, payload[0]))
                elif kind == "config_done":
                    self.reloader.ack(w.index, payload)
        except (asyncio.IncompleteReadError, OSError):
            pass  # the worker is gone; _restart_dead replaces it
        finally:
            w.link.close()


async def _supervise(config: Config, config_path: str, n: int) -> None:
    sup = Supervisor(config, config_path)
    await sup.health.start()
    for i in range(n):
        await sup.start_worker(i)
    await sup.reloader.reopen_http(None, config.metrics)
    log_event(log, "started", listen=str(config.proxy.listen), workers=n)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, sup.reloader.on_sighup)
    watch = loop.create_task(_restart_dead(sup, stop))
    await stop.wait()
    watch.cancel()
    for w in sup.workers.values():
        if w.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + config.proxy.drain_timeout_ms / 1000 + 2
    for w in sup.workers.values():
        w.proc.join(max(0.0, deadline - time.monotonic()))
        if w.proc.is_alive():
            w.proc.kill()
    if sup.http is not None:
        await sup.http.wait_closed()
    await sup.health.stop()
    log_event(log, "stopped", workers=n)


async def _restart_dead(sup: Supervisor, stop: asyncio.Event) -> None:
    """A worker that dies is replaced; its clients reconnect to the others meanwhile."""
    while not stop.is_set():
        await asyncio.sleep(1)
        for i, w in list(sup.workers.items()):
            if not w.proc.is_alive() and not stop.is_set():
                log_event(log, "worker_died", worker=i, exitcode=w.proc.exitcode)
                if w.task is not None:
                    w.task.cancel()
                w.link.close()
                sup.aggregator.retire(i)
                await sup.start_worker(i)


# ---------------------------------------------------------------------- worker side


def worker_main(config: Config, index: int, sock: socket.socket) -> None:
    # A SIGHUP forwarded before the loop's handler is in would kill the worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(config.proxy.log_format.value, config.proxy.log_level)
    import uvloop

    uvloop.run(_work(config, index, sock))


async def _work(config: Config, index: int, sock: socket.socket) -> None:
    from proxy.server.app import App

    app = App(config, own_health=False)
    loop = asyncio.get_running_loop()
    link = await Link.open(sock)
    first = asyncio.Event()
    stop = asyncio.Event()

    pending: set[asyncio.Task[None]] = set()  # reloads being applied (kept referenced)

    async def receive() -> None:
        try:
            while True:
                kind, payload = await link.recv()
                if kind == "snapshot":
                    app.set_snapshot(payload)
                    first.set()
                elif kind == "commands":
                    app.set_commands(payload)
                elif kind == "hold":
                    app.hold_writes()
                elif kind == "release":
                    app.release_writes()
                elif kind in ("failover_done", "reload_done"):
                    asking.answer(*payload)
                elif kind == "config":  # the supervisor's reload, checked there
                    applying = loop.create_task(_apply_config(app, link, *payload))
                    pending.add(applying)
                    applying.add_done_callback(pending.discard)
                elif kind == "listeners":
                    app.listeners.others = [v for i, v in payload.items() if i != index and v]
        except (asyncio.IncompleteReadError, OSError):  # the supervisor is gone
            log_event(log, "supervisor_gone", level=logging.WARNING, worker=index)
        stop.set()
        first.set()

    asking = Asking(link)
    app.delegate_failover = asking.failover
    app.delegate_reload = asking.reload
    app.on_refresh = lambda: _ask_refresh(link)
    receiver = loop.create_task(receive())
    await first.wait()
    if not stop.is_set():
        await app.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Certificates only: the config comes reloaded from the supervisor ("config").
        loop.add_signal_handler(signal.SIGHUP, reload_tls, app)
        reporter = loop.create_task(_report(app, link))
        app.pools.on_busy = lambda nodes: _tell_busy(link, nodes)
        await stop.wait()
        reporter.cancel()
        await app.stop()
    receiver.cancel()
    link.close()


async def _apply_config(app: Any, link: Link, config: Config, digest: str, version: int) -> None:
    """A worker's part of a reload its supervisor checked; the answer goes back up."""
    try:
        await app.reloader.apply(config, digest, version)
        answer = "ok"
    except Exception as e:  # a listener that would not bind, or a bug: the reply says so
        log_event(log, "config_reload_failed", level=logging.ERROR, error=str(e))
        answer = f"{type(e).__name__}: {e}"
    link.send(("config_done", answer))


def _ask_refresh(link: Link) -> None:
    link.send(("refresh", None))


def _tell_busy(link: Link, nodes: frozenset[Address]) -> None:
    # At once, not with the next report: a probe times out in half a second.
    link.send(("busy", [str(a) for a in nodes]))


async def _report(app: Any, link: Link) -> None:
    while True:
        await asyncio.sleep(STATS_PERIOD_S)
        pools = app.pools.values()
        payload = {
            "stats": app.stats.to_dict(),
            "outstanding": {p.name: p.outstanding() for p in pools},
            "pool_conns": {p.name: len(p.connections()) for p in pools},
            "listeners": app.listeners.own(),
        }
        link.send(("stats", payload))
