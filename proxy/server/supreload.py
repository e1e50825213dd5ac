"""Hot reload with `[proxy] workers = N`: the supervisor's part.

docs/architecture.md, "Reload". The supervisor reads and checks the file once, tries
what a worker could fail at (the GeoIP database, the users, a new listen address bound
with SO_REUSEPORT beside the old one), applies its own part (the health checker's nodes
and timings, /metrics), then sends the checked config to every worker ("config"), which
applies it as a single process does. SIGHUP to the supervisor and PROXY RELOAD in any
worker ("reload", answered "reload_done") both come here, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Protocol

from config.model import Address, Config, MetricsConfig
from proxy import tls
from proxy.backend.health import HealthChecker
from proxy.errors import ReloadError
from proxy.logs import log_event
from proxy.server.auth import Users
from proxy.server.reload import (
    Loaded,
    changed,
    consume,
    file_digest,
    in_force,
    read,
    reloaded,
    reopen_http,
    scan_warning,
)
from proxy.stats import ProxyStats, StatusSource
from routing.geo import GeoResolver

if TYPE_CHECKING:
    from proxy.observe.httpserver import HttpServer

log = logging.getLogger("georedis.reload")

# How long a reload waits for every worker to say it applied the new config.
ACK_TIMEOUT_S = 10.0


class SupervisorHost(StatusSource, Protocol):
    """What a reload changes in the supervisor (`proxy.workers.Supervisor`)."""

    http: HttpServer | None
    health: HealthChecker

    def broadcast_config(self, config: Config, digest: str, version: int) -> list[int]:
        """Sets the supervisor's config, sends it to every worker; their indexes."""
        ...

    def reload_tls(self) -> None: ...


class SupervisorReload:
    def __init__(self, sup: SupervisorHost) -> None:
        self.sup = sup
        self.loaded = Loaded(digest=file_digest(sup.config.source))
        self.ok = self.refused = 0  # added to the workers' merged counters
        self._lock = asyncio.Lock()
        # The reload being applied: each worker's answer ("ok" or why not) by index.
        self._acks: dict[int, str] = {}
        self._all_acked = asyncio.Event()
        self._waiting: set[int] = set()

    async def from_file(self) -> dict[str, object]:
        async with self._lock:
            try:
                return await self._apply(*read(self.sup.config.source))
            except Exception as e:
                if not isinstance(e, ReloadError):
                    log.error("config reload failed", exc_info=e)
                    e = ReloadError(f"internal error: {type(e).__name__}: {e}")
                self.refused += 1
                log_event(log, "config_reload_refused", level=logging.ERROR, error=str(e))
                raise e from None

    async def _apply(self, given: Config, digest: str) -> dict[str, object]:
        old = self.sup.config
        diff, restart = changed(old, given)
        new = in_force(old, given)
        _try_worker_parts(old, new)
        try:
            await self.reopen_http(old.metrics, new.metrics, new)
        except OSError as e:
            raise ReloadError(f"metrics listen {new.metrics.listen}: {e.strerror}") from None
        await self.sup.health.reconfigure(new)
        logging.getLogger("georedis").setLevel(new.proxy.log_level.upper())
        loaded = self.loaded
        loaded.version, loaded.digest, loaded.at = loaded.version + 1, digest, time.time()
        workers = await self._to_workers(new, digest, loaded.version)
        asyncio.get_running_loop().create_task(self.sup.health.refresh())
        self.ok += 1
        result = reloaded(loaded.version, digest, diff, restart, scan_warning(old, new))
        result["workers"] = workers
        return result

    async def _to_workers(self, new: Config, digest: str, version: int) -> dict[str, str]:
        """Sent to every worker; each one's answer, or "no answer" after ACK_TIMEOUT_S."""
        self._acks, self._all_acked = {}, asyncio.Event()
        self._waiting = set(self.sup.broadcast_config(new, digest, version))
        if self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_acked.wait(), ACK_TIMEOUT_S)
        answers = {str(i): self._acks.get(i, "no answer") for i in sorted(self._waiting)}
        for i, why in answers.items():
            if why != "ok":
                log_event(log, "config_reload_worker_failed", level=logging.ERROR,
                          worker=i, error=why)  # fmt: skip
        return answers

    def ack(self, index: int, answer: str) -> None:
        """A worker's "config_done": "ok", or why its part failed."""
        if index in self._waiting:
            self._acks[index] = answer
            if self._waiting <= self._acks.keys():
                self._all_acked.set()

    async def reopen_http(
        self, old: MetricsConfig | None, new: MetricsConfig, config: Config | None = None
    ) -> None:
        cfg = config or self.sup.config
        context: ssl.SSLContext | None = tls.server_context(cfg.tls) if new.tls else None
        await reopen_http(self.sup, self.sup, old, new, context)

    def on_sighup(self) -> None:
        self.sup.reload_tls()  # the supervisor's probes, then SIGHUP to each worker
        task = asyncio.get_running_loop().create_task(self.from_file())
        task.add_done_callback(consume)


def _try_worker_parts(old: Config, new: Config) -> None:
    """What a worker's part could fail at, tried here first: a refusal changes nothing."""
    try:
        GeoResolver(new).close()
        Users(new, ProxyStats())
    except (ValueError, KeyError, OSError) as e:
        raise ReloadError(f"the new config is refused, the old one stays: {e}") from None
    if new.proxy.listen != old.proxy.listen:
        _try_bind(new.proxy.listen)


def _try_bind(addr: Address) -> None:
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((addr.host, addr.port))
        except OSError as e:
            raise ReloadError(f"proxy listen {addr}: {e.strerror}") from None
