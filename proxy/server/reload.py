"""Hot reload: SIGHUP and PROXY RELOAD read the config file again and apply it in place.

docs/architecture.md, "Reload". The new file is loaded and checked as a whole first (the
loader's and check-config's words); then everything that can fail is prepared beside
what serves now (a new listener bound, the GeoIP database opened, the users compiled,
the metrics server started on a new address); only when all of it worked is it swapped
in, in one loop turn, so a client sees either the old config or the new one, never a
mix, and a broken file changes nothing. No client connection is closed (except those of
a user the new file removes or turns off, as Redis does on ACL DELUSER), and replies in
flight are untouched: they belong to slots, not to the config.

What a reload cannot change in a running process is listed in the reply and the log
(`restart_needed`): the backends' credentials and TLS (the pools' connections were
made with them), the worker count, the heartbeat's key and on/off, Sentinel mode,
backups, client TLS settings other than the certificate files, logging's format.

`GeoWatch` re-opens the GeoIP database when its file changes on disk (geoipupdate
replaces it by a rename, twice a week), with the same prepare-then-swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
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
from proxy.server.writehold import WriteHold
from proxy.stats import ProxyStats, StatusSource
from routing.geo import SOURCE_OVERRIDE, GeoResolver

if TYPE_CHECKING:
    from proxy.observe.httpserver import HttpServer

log = logging.getLogger("georedis.reload")

# Settings a running process keeps until it restarts (see the module docstring).
RESTART_ONLY = (
    "backend", "proxy.workers", "proxy.log_format", "health.heartbeat",
    "health.heartbeat_prefix", "sentinel", "backup", "tls.listen", "tls.client_auth",
    "tls.min_version", "tls.user_from_cn",
)  # fmt: skip
# How often GeoWatch looks at the database file.
GEOIP_CHECK_S = 5.0


class Served(Protocol):
    """A client connection as a reload sees it."""

    @property
    def state(self) -> ClientState: ...

    def close_now(self, abort: bool = False) -> None: ...


class Closable(Protocol):
    def close(self) -> None: ...


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
    stats: ProxyStats
    own_health: bool
    tls: ssl.SSLContext | None
    http: HttpServer | None
    health: HealthThread
    pools: Pools

    @property
    def sessions(self) -> Mapping[int, Served]: ...

    def set_limits(self, config: Config) -> None: ...

    def set_refused(self, refuse: frozenset[str]) -> None: ...

    async def rebind(self, config: Config) -> Closable | None: ...

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


async def apply(
    app: ReloadHost, source: StatusSource, new: Config, loaded: Loaded, digest: str
) -> dict[str, object]:
    """Prepare everything that can fail, then swap; ReloadError leaves `app` as it was."""
    old = app.config
    diff, restart = changed(old, new)
    try:
        geo = GeoResolver(new)
        users = Users(new, app.stats)
    except (ValueError, KeyError, OSError) as e:
        raise ReloadError(f"the new config is refused, the old one stays: {e}") from None
    listener = await _bind(app, new)
    try:
        if app.own_health:  # a worker's: the supervisor serves them
            await reopen_http(app, source, old.metrics, new.metrics, app.tls)
    except OSError as e:
        if listener is not None:
            listener.close()
        raise ReloadError(f"metrics listen {new.metrics.listen}: {e.strerror}") from None
    _swap(app, new, geo, users)
    if app.own_health:
        await app.health.reconfigure(new)
    loaded.version, loaded.digest, loaded.at = loaded.version + 1, digest, time.time()
    return reloaded(loaded.version, digest, diff, restart)


def reloaded(version: int, digest: str, diff: list[str], restart: list[str]) -> dict[str, object]:
    """PROXY RELOAD's reply, and the log line that says the same."""
    log_event(log, "config_reloaded", version=version, hash=digest,
              changed=",".join(diff) or "-", restart_needed=",".join(restart) or "-")  # fmt: skip
    return {"result": "ok", "version": version, "hash": digest, "changed": diff,
            "restart_needed": restart}  # fmt: skip


async def _bind(app: ReloadHost, new: Config) -> Closable | None:
    try:
        return await app.rebind(new)
    except OSError as e:
        raise ReloadError(f"proxy listen {new.proxy.listen}: {e.strerror}") from None


def _swap(app: ReloadHost, new: Config, geo: GeoResolver, users: Users) -> None:
    """One loop turn: every piece of the new config in force together."""
    old_geo = app.geo
    users.carry(app.users)
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
    logging.getLogger("georedis").setLevel(new.proxy.log_level.upper())
    set_geo(app, geo)
    old_geo.close()
    for s in list(app.sessions.values()):
        if not users.keep(s.state):
            s.close_now()


def set_geo(app: ReloadHost, geo: GeoResolver) -> None:
    """`geo` in force: every client located again by it (a region may be new, or gone)."""
    app.geo = geo
    app.default_ranking = geo.locate("").ranking
    for s in list(app.sessions.values()):
        relocate(s.state, geo)


def relocate(st: ClientState, geo: GeoResolver) -> None:
    loc = st.location
    if loc is None:
        st.ranking = geo.locate("").ranking
        return
    if loc.source == SOURCE_OVERRIDE and loc.ranking:
        with contextlib.suppress(KeyError):  # its region is gone: located as others are
            st.set_location(geo.override(loc.ranking[0], loc.address))
            return
    st.set_location(geo.locate(loc.address))


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
                return await self.apply(new, digest)
            except ReloadError as e:
                self.app.stats.reloads_failed += 1
                log_event(log, "config_reload_refused", level=logging.ERROR, error=str(e))
                raise

    async def apply(self, new: Config, digest: str, count: bool = True) -> dict[str, object]:
        """`count`: False in a worker, whose supervisor counts the reload once."""
        result = await apply(self.app, self.source, new, self.loaded, digest)
        self.app.stats.reloads_ok += count
        return result

    def on_sighup(self) -> None:
        """SIGHUP: the certificates read again (as before reloads existed), then the file."""
        reload_tls(self.app)
        task = asyncio.get_running_loop().create_task(self.from_file())
        task.add_done_callback(_consume)

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
    if old == new:
        return
    from proxy.observe.httpserver import HttpAuth, start_http

    closing = holder.http
    if closing is not None and (old is None or old.listen == new.listen):
        await closing.wait_closed()
        closing = None
    holder.http = None
    if new.enabled:
        holder.http = await start_http(
            source, new.listen.host, new.listen.port, auth=HttpAuth.from_config(new),
            tls=tls_context if new.tls else None, max_connections=new.max_connections,
        )  # fmt: skip
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


def _consume(task: asyncio.Task[dict[str, object]]) -> None:
    # A refused reload was logged where it was refused; nothing else to tell SIGHUP.
    if not task.cancelled():
        task.exception()


class GeoWatch:
    """Re-opens the GeoIP database when its file is replaced (a new inode, size or mtime)."""

    def __init__(self, app: ReloadHost) -> None:
        self.app = app
        self._seen: tuple[str, tuple[int, int, int]] | None = None
        self.check()  # the file open now is the one to compare with

    async def run(self) -> None:
        while True:
            await asyncio.sleep(GEOIP_CHECK_S)
            self.check()

    def check(self) -> None:
        path = self.app.config.geoip.database
        if not path:
            self._seen = None
            return
        sig = _signature(path)
        if sig is None:
            return  # mid-replacement, or removed: keep the open one
        if self._seen is None or self._seen[0] != path:
            self._seen = (path, sig)  # the first look, or a reload named another file
            return
        if sig == self._seen[1]:
            return
        try:
            geo = GeoResolver(self.app.config)
        except (ValueError, OSError) as e:  # a half-written file: tried again next time
            log_event(log, "geoip_reopen_failed", level=logging.WARNING, error=str(e))
            return
        self._seen = (path, sig)
        old = self.app.geo
        set_geo(self.app, geo)
        old.close()
        log_event(log, "geoip_reopened", path=path)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
