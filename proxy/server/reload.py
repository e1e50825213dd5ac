"""Hot reload: SIGHUP and PROXY RELOAD read the config file again and apply it in place.

docs/architecture.md, "Reload". The new file is loaded and checked as a whole first (the
loader's and check-config's words); then everything that can fail is prepared beside
what serves now (a new listener bound, the GeoIP database opened, the users compiled,
the metrics server started on a new address); only when all of it worked is it swapped
in, in one loop turn, so a client sees either the old config or the new one, never a
mix, and a broken file changes nothing. No client connection is closed (except those of
a user the new file removes, as Redis does on ACL DELUSER), and replies in flight are
untouched: they belong to slots, not to the config.

What a reload cannot change in a running process (`RESTART_ONLY`) stays as it was,
also in PROXY CONFIG GET, and is listed in the reply and the log (`restart_needed`):
the backends' credentials and TLS (the pools' connections were made with them), the
worker count, the heartbeat's key and on/off, Sentinel mode, backups, client TLS, the
metrics server's TLS, logging's format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from config.errors import ConfigError
from config.loader import load_config
from config.model import Config, Fallback, MetricsConfig
from proxy import tls
from proxy.backend.health_thread import HealthThread
from proxy.backend.pool import Pools
from proxy.errors import ReloadError
from proxy.fdlimit import current_fd_limit, fit_max_clients
from proxy.logs import log_event
from proxy.observe.slowlog import SlowLog
from proxy.server.auth import Users
from proxy.server.client import ClientState
from proxy.server.geowatch import GeoWatch, set_geo
from proxy.server.monitor import Monitors
from proxy.server.writehold import WriteHold
from proxy.stats import ProxyStats, StatusSource
from routing.geo import GeoResolver

if TYPE_CHECKING:
    from proxy.observe.httpserver import HttpServer

log = logging.getLogger("georedis.reload")

# Settings a running process keeps until it restarts (see the module docstring).
RESTART_ONLY = (
    "backend", "proxy.workers", "proxy.log_format", "health.heartbeat",
    "health.heartbeat_prefix", "sentinel", "cluster.seeds", "cluster.present_as",
    "backup", "tls", "metrics.tls",
)  # fmt: skip
# [metrics] fields the HTTP server is built from (the slow log's are not).
_HTTP_FIELDS = ("enabled", "listen", "auth_token_env", "auth_user", "auth_password_env",
                "max_connections")  # fmt: skip


class Served(Protocol):
    """A client connection as a reload sees it."""

    @property
    def state(self) -> ClientState: ...

    def close_now(self, abort: bool = False) -> None: ...


class ReloadHost(Protocol):
    """What a reload changes in the process (`proxy.server.app.App`)."""

    config: Config
    geo: GeoResolver
    users: Users
    default_ranking: tuple[str, ...]
    fallback_primary: bool
    slow_threshold: float
    slowlog: SlowLog
    hold: WriteHold
    monitors: Monitors
    stats: ProxyStats
    own_health: bool
    tls: ssl.SSLContext | None
    http: HttpServer | None
    health: HealthThread
    pools: Pools

    @property
    def sessions(self) -> Mapping[int, Served]: ...

    def set_limits(self, config: Config) -> None: ...

    def use_listener(self, server: asyncio.AbstractServer) -> None: ...

    def retire_nodes(self, config: Config) -> None: ...

    def set_refused(self, refuse: frozenset[str]) -> None: ...

    async def rebind(self, config: Config) -> asyncio.AbstractServer | None: ...

    def set_idle_timeout(self, seconds: int) -> None: ...


@dataclasses.dataclass
class Loaded:
    """The config in force: which load of the process it is, and the file's hash."""

    version: int = 1
    digest: str = ""
    at: float = dataclasses.field(default_factory=time.time)

    def items(self) -> list[tuple[str, str]]:
        """For PROXY CONFIG GET (`loaded.*`)."""
        return [("loaded.version", str(self.version)), ("loaded.hash", self.digest),
                ("loaded.at", str(int(self.at)))]  # fmt: skip


def file_digest(path: str) -> str:
    """The first 16 hex digits of the file's sha256: which file is in force, at a glance."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def read(path: str) -> tuple[Config, str]:
    """The file loaded and checked whole; ReloadError with the loader's words if not."""
    if not path:
        raise ReloadError("this process was started without a config file")
    digest = file_digest(path)
    try:
        return fit_max_clients(load_config(path), current_fd_limit()), digest
    except ConfigError as e:
        raise ReloadError(f"{path}: the new config is refused, the old one stays: {e}") from None
    except OSError as e:
        raise ReloadError(f"{path}: cannot be read ({e.strerror}); the old config stays") from None


def changed(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(sections or fields that differ, those of them that need a restart)."""
    diff: list[str] = []
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if dataclasses.is_dataclass(a) and not isinstance(a, type):
            diff += [f"{f.name}.{g.name}" for g in dataclasses.fields(a)
                     if getattr(a, g.name) != getattr(b, g.name)]  # fmt: skip
        else:
            diff.append(f.name)
    restart = [d for d in diff if d in RESTART_ONLY or d.split(".")[0] in RESTART_ONLY]
    return diff, restart


def in_force(old: Config, new: Config) -> Config:
    """`new` with what only a restart changes kept as `old` has it (`RESTART_ONLY`)."""
    sections: dict[str, object] = {}
    for name in RESTART_ONLY:
        section, _, field = name.partition(".")
        if not field:
            sections[section] = getattr(old, section)
            continue
        current = sections.get(section, getattr(new, section))
        kept = getattr(getattr(old, section), field)
        sections[section] = dataclasses.replace(current, **{field: kept})  # type: ignore[type-var]
    return dataclasses.replace(new, **sections)  # type: ignore[arg-type]


def scan_warning(old: Config, new: Config) -> list[str]:
    """SCAN cursors name a node by its place in [[regions]]: one that moved breaks them."""
    before, after = [a for _, a in old.all_nodes()], [a for _, a in new.all_nodes()]
    if after[: len(before)] == before:
        return []
    return ["nodes were reordered or removed in [[regions]]: SCAN cursors handed out "
            "before this reload may continue on another node; restart such scans at 0"]  # fmt: skip


async def apply(
    app: ReloadHost, source: StatusSource, given: Config, loaded: Loaded, digest: str
) -> dict[str, object]:
    """Prepare everything that can fail, then swap; ReloadError leaves `app` as it was."""
    old = app.config
    diff, restart = changed(old, given)
    new = in_force(old, given)
    try:
        geo = GeoResolver(new)
        users = Users(new, app.stats)
    except (ValueError, KeyError, OSError) as e:
        raise ReloadError(f"the new config is refused, the old one stays: {e}") from None
    try:
        listener = await _bind(app, new)
        try:
            if app.own_health:  # a worker's: the supervisor serves them
                await reopen_http(app, source, old.metrics, new.metrics, app.tls)
        except OSError as e:
            if listener is not None:
                listener.close()
            raise ReloadError(f"metrics listen {new.metrics.listen}: {e.strerror}") from None
    except ReloadError:
        geo.close()
        raise
    if listener is not None:
        app.use_listener(listener)  # the old one closes now, its clients stay connected
    _swap(app, new, geo, users)
    if app.own_health:
        await app.health.reconfigure(new)
        app.retire_nodes(new)
    loaded.version, loaded.digest, loaded.at = loaded.version + 1, digest, time.time()
    return reloaded(loaded.version, digest, diff, restart, scan_warning(old, new))


def reloaded(version: int, digest: str, diff: list[str], restart: list[str],
             warnings: list[str]) -> dict[str, object]:  # fmt: skip
    """PROXY RELOAD's reply, and the log line that says the same."""
    log_event(log, "config_reloaded", version=version, hash=digest,
              changed=",".join(diff) or "-", restart_needed=",".join(restart) or "-",
              warnings=" ".join(warnings) or "-")  # fmt: skip
    return {"result": "ok", "version": version, "hash": digest, "changed": diff,
            "restart_needed": restart, "warnings": warnings}  # fmt: skip


async def _bind(app: ReloadHost, new: Config) -> asyncio.AbstractServer | None:
    try:
        return await app.rebind(new)
    except OSError as e:
        raise ReloadError(f"proxy listen {new.proxy.listen}: {e.strerror}") from None


def _swap(app: ReloadHost, new: Config, geo: GeoResolver, users: Users) -> None:
    """One loop turn: every piece of the new config in force together."""
    old_geo, old_users, old_config = app.geo, app.users, app.config
    users.carry(old_users)
    app.config = new
    app.set_limits(new)
    app.set_refused(frozenset(new.policy.refuse))
    app.users = users
    app.fallback_primary = new.routing.fallback == Fallback.PRIMARY
    m = new.metrics
    app.slowlog.configure(m.slowlog_threshold_us, m.slowlog_max_len)
    off = m.slowlog_threshold_us < 0 or m.slowlog_max_len <= 0
    app.slow_threshold = float("inf") if off else m.slowlog_threshold_us / 1e6
    app.hold.configure(new.failover)
    app.set_idle_timeout(new.proxy.timeout_s)
    app.monitors.limit = new.proxy.client_output_buffer_limit_pubsub.hard
    logging.getLogger("georedis").setLevel(new.proxy.log_level.upper())
    set_geo(app, geo)
    old_geo.close()
    ryw = new.routing.read_your_writes
    for s in list(app.sessions.values()):
        s.state.default_ryw = ryw  # what RESET goes back to; the mode now stays
        if not users.keep(s.state, old_users, old_config.users):
            s.close_now()


class Reloader:
    """One per process: reloads one at a time, and what is in force (`loaded`)."""

    def __init__(self, app: ReloadHost, source: StatusSource) -> None:
        self.app, self.source = app, source
        self.loaded = Loaded(digest=file_digest(app.config.source))
        self._lock = asyncio.Lock()
        self._geo_watch: asyncio.Task[None] | None = None

    async def from_file(self) -> dict[str, object]:
        """PROXY RELOAD and SIGHUP: the file read again and applied; ReloadError if not."""
        async with self._lock:
            try:
                new, digest = read(self.app.config.source)
                result = await apply(self.app, self.source, new, self.loaded, digest)
            except ReloadError as e:
                self.app.stats.reloads_failed += 1
                log_event(log, "config_reload_refused", level=logging.ERROR, error=str(e))
                raise
            self.app.stats.reloads_ok += 1
            return result

    async def apply(self, new: Config, digest: str, version: int) -> dict[str, object]:
        """A worker's part of its supervisor's reload (checked there, counted there once):
        as `from_file` without reading, and numbered as the supervisor numbered it."""
        async with self._lock:
            result = await apply(self.app, self.source, new, self.loaded, digest)
            self.loaded.version = version
            return result

    def on_sighup(self) -> None:
        """SIGHUP: the certificates read again (as before reloads existed), then the file."""
        reload_tls(self.app)
        task = asyncio.get_running_loop().create_task(self.from_file())
        task.add_done_callback(consume)

    def start(self) -> None:
        self._geo_watch = asyncio.get_running_loop().create_task(GeoWatch(self.app).run())

    def stop(self) -> None:
        if self._geo_watch is not None:
            self._geo_watch.cancel()


class HttpHolder(Protocol):
    http: HttpServer | None


async def reopen_http(
    holder: HttpHolder, source: StatusSource, old: MetricsConfig | None, new: MetricsConfig,
    tls_context: ssl.SSLContext | None,
) -> None:  # fmt: skip
    """/metrics and the status page on `new` (with workers, the supervisor serves them).
    A new address is bound before the old server closes; the same one is reopened."""
    if old is not None and _http_part(old) == _http_part(new):
        return  # the slow log's settings are not the server's
    from proxy.observe.httpserver import HttpAuth, start_http

    async def serve(m: MetricsConfig) -> HttpServer | None:
        if not m.enabled:
            return None
        return await start_http(
            source, m.listen.host, m.listen.port, auth=HttpAuth.from_config(m),
            tls=tls_context if m.tls else None, max_connections=m.max_connections,
        )  # fmt: skip

    closing = holder.http
    same = closing is not None and (old is None or old.listen == new.listen)
    if same and closing is not None:  # the port must be free to bind it again
        await closing.wait_closed()
        closing = None
    try:
        holder.http = await serve(new)
    except OSError:
        holder.http = await serve(old) if same and old is not None else closing
        raise  # the reload is refused; the old server serves as before
    if closing is not None:
        await closing.wait_closed()


def reload_tls(app: ReloadHost) -> None:
    """SIGHUP: certificates and keys read again. A new context is built first, so a
    bad file leaves the working one as it was; connections up keep theirs."""
    config = app.config
    try:
        if app.tls is not None:
            tls.server_context(config.tls)  # raises on a bad file
            tls.load_server(app.tls, config.tls)
        checker = app.health.checker.tls if app.own_health else None
        for backend in (app.pools.tls, checker):
            if backend is not None:
                tls.backend_context(config.backend)
                tls.load_backend(backend.context, config.backend)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        log_event(log, "tls_reload_failed", level=logging.ERROR, error=str(e))
        return
    log_event(log, "tls_reloaded")


def _http_part(m: MetricsConfig) -> tuple[object, ...]:
    return tuple(getattr(m, f) for f in _HTTP_FIELDS)


def consume(task: asyncio.Task[dict[str, object]]) -> None:
    """A SIGHUP reload's end: a refusal was logged where it was refused; a bug is logged
    here (nobody else would see it)."""
    if task.cancelled():
        return
    e = task.exception()
    if e is not None and not isinstance(e, ReloadError):
        log.error("config reload failed", exc_info=e)
