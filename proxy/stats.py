"""Plain-Python counters for the hot path, and the read-only view the exporters use.

The hot path only ever does `stats.commands[CLASS_READ] += 1` or
`node_hist(addr).classes[cls].observe(dt)` (the pool keeps its node's): an int add or
a bisect into a short list. Nothing here formats strings or calls prometheus-client per
command; the Prometheus collector
(`proxy.observe.metrics`) reads these objects at scrape time.

Several worker processes each keep their own `ProxyStats`. Each ships `to_dict()` -- a
*cumulative* snapshot of plain ints, floats, lists and strings that pickles and
JSON-encodes -- to one process, say every second. That process keeps the latest
snapshot per worker in a `StatsAggregator` and merges them on demand. Cumulative
snapshots (rather than deltas) make the shipping idempotent: a lost or repeated message
changes nothing, and a worker that exits is folded into a base so counters stay
monotonic.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol

from config.model import Address, Config
from proxy.histogram import (  # re-exported: the hot path's names, from one place
    BUCKETS,
    CLASS_ADMIN,
    CLASS_NAMES,
    CLASS_OTHER,
    CLASS_READ,
    CLASS_WRITE,
    LatencyHistogram,
    NodeLatency,
    StatsDict,
)
from routing.topology import Snapshot

_INT_FIELDS: tuple[str, ...] = (
    "connections_current",
    "connections_total",
    "connections_rejected",
    "protocol_errors",
    "timeouts",
    "unavailable",
    "retries",
    "ryw_redirects",
    "fallbacks_primary",
    "unanswered",
    "output_limit_closed",
    "idle_closed",
    "auth_failures",
    "auth_rate_limited",
    "failovers_planned_ok",
    "failovers_planned_error",
    "failovers_force_ok",
    "failovers_force_error",
    "writes_held",
    "write_holds_expired",
    "write_hold_ms",
    "backups_ok",
    "backups_failed",
    "verifies_ok",
    "verifies_failed",
    "restores_ok",
    "restores_failed",
    "reloads_ok",
    "reloads_failed",
    "cluster_moved",
    "cluster_ask",
    "cluster_retry",
)


class ProxyStats:
    """The counters of one process. Attributes are public and mutated in place."""

    __slots__ = (
        "auth_failures",
        "auth_rate_limited",
        "backup_last",
        "backups_failed",
        "backups_ok",
        "cluster_ask",
        "cluster_moved",
        "cluster_redirect_at",
        "cluster_retry",
        "commands",
        "connections_current",
        "connections_rejected",
        "connections_total",
        "errors",
        "failovers_force_error",
        "failovers_force_ok",
        "failovers_planned_error",
        "failovers_planned_ok",
        "fallbacks_primary",
        "idle_closed",
        "node_latency",
        "output_limit_closed",
        "protocol_errors",
        "reads_by_region",
        "reloads_failed",
        "reloads_ok",
        "restores_failed",
        "restores_ok",
        "retries",
        "ryw_redirects",
        "timeouts",
        "unanswered",
        "unavailable",
        "verifies_failed",
        "verifies_ok",
        "write_hold_ms",
        "write_holds_expired",
        "writes_held",
    )

    def __init__(self) -> None:
        self.connections_current = 0
        self.connections_total = 0
        self.connections_rejected = 0
        self.protocol_errors = 0
        # Commands answered, by class; `errors` counts those answered with an error reply.
        self.commands: list[int] = [0] * len(CLASS_NAMES)
        self.errors: list[int] = [0] * len(CLASS_NAMES)
        self.timeouts = 0
        self.unavailable = 0
        self.retries = 0
        self.ryw_redirects = 0
        self.fallbacks_primary = 0
        # Client connections the watchdog closed: a reply owed past every deadline. A
        # proxy bug when not 0 (every command gets one reply or its connection closed).
        self.unanswered = 0
        # Clients disconnected for passing their output buffer limit.
        self.output_limit_closed = 0
        # Clients closed after [proxy] timeout_s idle.
        self.idle_closed = 0
        # AUTH / HELLO AUTH refused: wrong name or password (or a disabled user), and
        # those refused unchecked because their address failed too often lately.
        self.auth_failures = 0
        self.auth_rate_limited = 0
        # PROXY FAILOVER runs by kind and result; writes held while the primary changed
        # (held, holds that expired, total time writes were held).
        self.failovers_planned_ok = self.failovers_planned_error = 0
        self.failovers_force_ok = self.failovers_force_error = 0
        self.writes_held = self.write_holds_expired = self.write_hold_ms = 0
        # PROXY BACKUP / BACKUP VERIFY / RESTORE runs by result, and the last successful
        # backup as (finished at, Unix s; duration s; sealed bytes): (0, 0, 0) until one.
        self.backups_ok = self.backups_failed = 0
        self.verifies_ok = self.verifies_failed = 0
        self.restores_ok = self.restores_failed = 0
        # Config reloads (SIGHUP, PROXY RELOAD) by result: a refused one changed nothing.
        self.reloads_ok = self.reloads_failed = 0
        self.backup_last: tuple[float, float, int] = (0.0, 0.0, 0)
        # Cluster mode: re-routes followed (`proxy.server.shards`): MOVED, ASK, and
        # those after a back-off (TRYAGAIN, CLUSTERDOWN, LOADING, READONLY).
        self.cluster_moved = self.cluster_ask = self.cluster_retry = 0
        # loop.time() of the last one (this process', never merged): slots are moving.
        self.cluster_redirect_at = -1e9
        # (client region, served region) -> reads.
        self.reads_by_region: dict[tuple[str, str], int] = {}
        # Per node ("host:port", str(Address)): from a command's arrival to its reply
        # being queued for the client, i.e. the latency the client sees, split by the
        # node that served it.
        self.node_latency: dict[str, NodeLatency] = {}

    def node_hist(self, addr: str) -> NodeLatency:
        h = self.node_latency.get(addr)
        if h is None:
            h = self.node_latency[addr] = NodeLatency()
        return h

    @property
    def latency(self) -> LatencyHistogram:
        """As the client sees it, all nodes together: the sum of the per-node histograms
        (the hot path observes each reply once, into its node's histogram only)."""
        total = LatencyHistogram()
        for node in self.node_latency.values():
            for h in node.classes:
                total.merge(h)
        return total

    def count_read(self, client_region: str, served_region: str) -> None:
        key = (client_region, served_region)
        r = self.reads_by_region
        r[key] = r.get(key, 0) + 1

    @property
    def total_commands(self) -> int:
        return sum(self.commands)

    def to_dict(self) -> StatsDict:
        d: StatsDict = {f: getattr(self, f) for f in _INT_FIELDS}
        d["commands"] = list(self.commands)
        d["backup_last"] = list(self.backup_last)
        d["errors"] = list(self.errors)
        # Tuple keys do not survive JSON; ship rows instead.
        d["reads_by_region"] = [[c, s, n] for (c, s), n in self.reads_by_region.items()]
        d["node_latency"] = {a: h.to_dict() for a, h in self.node_latency.items()}
        return d

    def merge_dict(self, d: StatsDict) -> None:
        """Add the counters of `d` (another process' `to_dict()`) to these."""
        for f in _INT_FIELDS:
            setattr(self, f, getattr(self, f) + int(d.get(f, 0)))
        last = d.get("backup_last")
        if last and float(last[0]) > self.backup_last[0]:  # the newest across processes
            self.backup_last = (float(last[0]), float(last[1]), int(last[2]))
        for i, n in enumerate(d.get("commands", ())[: len(self.commands)]):
            self.commands[i] += int(n)
        for i, n in enumerate(d.get("errors", ())[: len(self.errors)]):
            self.errors[i] += int(n)
        r = self.reads_by_region
        for c, s, n in d.get("reads_by_region", ()):
            key = (str(c), str(s))
            r[key] = r.get(key, 0) + int(n)
        for addr, hd in d.get("node_latency", {}).items():
            self.node_hist(str(addr)).merge(NodeLatency.from_dict(hd))

    @classmethod
    def from_dict(cls, d: StatsDict) -> ProxyStats:
        s = cls()
        s.merge_dict(d)
        return s


class StatsAggregator:
    """Latest cumulative snapshot per worker, merged into one `ProxyStats` on demand.

    `update` is called with whatever a worker last sent; `merged()` builds a fresh
    `ProxyStats` (cheap: a few dozen ints and lists). When a worker exits, `retire` keeps
    its counters in a base so totals never go backwards, but drops its current
    connection count, since those connections are gone.
    """

    def __init__(self) -> None:
        self._workers: dict[int, StatsDict] = {}
        self._retired = ProxyStats()

    def update(self, worker: int, d: StatsDict) -> None:
        self._workers[worker] = d

    def retire(self, worker: int) -> None:
        d = self._workers.pop(worker, None)
        if d is not None:
            self._retired.merge_dict({**d, "connections_current": 0})

    def workers(self) -> list[int]:
        return sorted(self._workers)

    def merged(self) -> ProxyStats:
        out = ProxyStats.from_dict(self._retired.to_dict())
        for d in self._workers.values():
            out.merge_dict(d)
        return out


class RateMeter:
    """Events per second over roughly the last `window` seconds, from sampled totals.

    Nothing runs in the background: every `rate()` call is also a sample, so with calls
    at least `window` apart it is the average since the previous call (or since start).
    `sample()` may be called periodically for a smoother figure.
    """

    __slots__ = ("_samples", "window")

    def __init__(self, start: float, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])

    def sample(self, total: int, now: float | None = None) -> None:
        t = time.time() if now is None else now
        s = self._samples
        s.append((t, total))
        # Keep one sample at or before the window start, so the span covers the window.
        while len(s) > 2 and s[1][0] <= t - self.window:
            s.popleft()

    def rate(self, total: int, now: float | None = None) -> float:
        t = time.time() if now is None else now
        self.sample(total, t)
        t0, n0 = self._samples[0]
        span = t - t0
        return (total - n0) / span if span > 0 else 0.0


# One ops/s meter per status source, created on first use. Weak keys so a source (and
# its meter) can go away in tests; sources that cannot be weakly referenced use their id.
_meters: weakref.WeakKeyDictionary[object, RateMeter] = weakref.WeakKeyDictionary()
_meters_by_id: dict[int, RateMeter] = {}


def ops_per_sec(source: StatusSource, now: float | None = None) -> float:
    """Commands per second over the last few seconds (or since the previous call)."""
    try:
        meter = _meters.get(source)
        if meter is None:
            meter = _meters[source] = RateMeter(source.started_at)
    except TypeError:
        meter = _meters_by_id.setdefault(id(source), RateMeter(source.started_at))
    return meter.rate(source.stats.total_commands, now)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One client connection, for `PROXY CLIENTS` and the status page."""

    id: int
    addr: str  # the address seen (after PROXY protocol, if any)
    name: str
    db: int
    protocol: int  # 2 or 3
    region: str  # the first region in the client's ranking
    location_source: str  # how the region was found: proxy-protocol, cidr, geoip, default...
    age_s: float
    idle_s: float
    commands: int
    flags: str
    user: str = "default"
    qbuf: int = 0  # bytes of a command not complete yet (Redis' qbuf)
    omem: int = 0  # replies waiting in the send buffer (Redis' omem)


class StatusSource(Protocol):
    """What the exporters (metrics, status page, PROXY INFO) read; the proxy implements it.

    Read-only properties, so plain attributes and frozen dataclasses both satisfy it.
    """

    @property
    def config(self) -> Config: ...

    @property
    def started_at(self) -> float:  # time.time() at start
        ...

    @property
    def stats(self) -> ProxyStats: ...

    def snapshot(self) -> Snapshot: ...

    def outstanding(self, addr: Address) -> int: ...

    def pool_connections(self, addr: Address) -> int: ...

    def clients(self) -> list[ClientInfo]: ...


@functools.cache
def proxy_version() -> str:
    """The installed distribution's version, or a dev marker when run from a checkout."""

    try:
        return metadata.version("georedis")
    except metadata.PackageNotFoundError:
        return "0.0.0+dev"


__all__ = [
    "BUCKETS", "CLASS_ADMIN", "CLASS_NAMES", "CLASS_OTHER", "CLASS_READ", "CLASS_WRITE",
    "LatencyHistogram", "NodeLatency", "StatsDict",
]  # fmt: skip
