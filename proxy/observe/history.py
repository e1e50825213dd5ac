"""A bounded history of each node and of the proxy itself, fed from health snapshots.

What capacity planning (`proxy.observe.capacity`) and the status page's charts
(`proxy.observe.charts`) read. Nothing here probes: `History.sample` is handed every
topology snapshot the health checker already builds (`NodeState.info` is the last full
INFO) and the process' own counters (`proxy.stats.ProxyStats`).

Memory is fixed whatever the uptime: two tiers of rows per series, each a ring of
`array('d')` allocated once. The fine tier keeps one row per `step_s` (5 x
`[health] info_interval_ms`: 10 s by default, so each row averages ~5 fresh INFOs) for
`FINE_ROWS` rows (an hour); the coarse tier one row per 60 steps (10 min) for
`COARSE_ROWS` rows (30 days). A node costs (360 + 4320) x 8 x 8 B = 300 KB, the proxy
less. A step follows the INFO interval rather than a config field of its own, so a test
with a 200 ms INFO interval fills an hour's worth of rows in a minute.

A row is its samples' mean time and values (memory, keys, ops/s, clients: a mean is
what a fit wants), except the lag, which keeps the bucket's worst. The proxy's rows are
rates over the bucket: ops/s from the total command count, p50/p99 from the difference
of the latency histograms (`LatencyHistogram`'s bucket bounds; a coarse row's percentiles
are the mean of its fine rows'). Sans-IO, and the clock
is injectable, so tests feed samples at any time they like.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from proxy.stats import LatencyHistogram, ProxyStats
from routing.topology import Role, Snapshot

NAN = math.nan
FINE_ROWS = 360
COARSE_ROWS = 4320
COARSE_STEPS = 60  # fine steps per coarse row
MAX_NODES = 64  # series kept; a config reload that swaps nodes cannot grow this forever

# Per node: what INFO gives (total_system_memory is the limit when maxmemory is 0).
NODE_FIELDS = ("used_memory", "maxmemory", "total_system_memory", "keys", "ops_per_sec",
               "clients", "lag_ms")  # fmt: skip
PROXY_FIELDS = ("ops_per_sec", "p50_ms", "p99_ms")
_MAX_FIELDS = frozenset({"lag_ms"})
Row = tuple[float, ...]  # (t, *fields); NaN where a value was not known


class Ring:
    """`capacity` rows of `width` floats in one preallocated array; oldest overwritten."""

    __slots__ = ("_data", "_next", "capacity", "count", "width")

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity, self.width = capacity, width
        self._data = array("d", [NAN]) * (capacity * width)
        self._next = 0
        self.count = 0

    def append(self, row: Sequence[float]) -> None:
        w = self.width
        self._data[self._next * w : self._next * w + w] = array("d", row)
        self._next = (self._next + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    @property
    def nbytes(self) -> int:
        return self._data.itemsize * len(self._data)

    def rows(self) -> list[Row]:
        """Oldest first."""
        start = (self._next - self.count) % self.capacity
        w, d = self.width, self._data
        return [tuple(d[i * w : i * w + w]) for i in
                ((start + k) % self.capacity for k in range(self.count))]  # fmt: skip


class _Bucket:
    """The samples of one step being accumulated: sums and counts per field (NaN
    skipped), the worst value for max fields."""

    __slots__ = ("count", "index", "maxes", "seen", "sums", "t_sum")

    def __init__(self, index: int, width: int) -> None:
        self.index = index
        self.t_sum = 0.0
        self.count = 0
        self.seen = [0] * width
        self.sums = [0.0] * width
        self.maxes = [NAN] * width


class Tier:
    """Rows of one resolution for one series of fields."""

    def __init__(self, step_s: float, capacity: int, fields: Sequence[str]) -> None:
        self.step_s = step_s
        self.fields = tuple(fields)
        self.ring = Ring(capacity, 1 + len(self.fields))
        self._max = [f in _MAX_FIELDS for f in self.fields]
        self._bucket: _Bucket | None = None

    def add(self, t: float, values: Sequence[float]) -> None:
        index = math.floor(t / self.step_s)
        b = self._bucket
        if b is not None and index != b.index:
            self._close(b)
            b = None
        if b is None:
            b = self._bucket = _Bucket(index, len(self.fields))
        b.t_sum += t
        b.count += 1
        for i, v in enumerate(values):
            if math.isnan(v):
                continue
            b.seen[i] += 1
            b.sums[i] += v
            if math.isnan(b.maxes[i]) or v > b.maxes[i]:
                b.maxes[i] = v

    def _close(self, b: _Bucket) -> None:
        row = [b.t_sum / b.count]
        for i, seen in enumerate(b.seen):
            if not seen:
                row.append(NAN)
            else:
                row.append(b.maxes[i] if self._max[i] else b.sums[i] / seen)
        self.ring.append(row)

    def rows(self) -> list[Row]:
        return self.ring.rows()


class Series:
    """One series (a node, or the proxy) at both resolutions, and its latest sample."""

    def __init__(self, step_s: float, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.fine = Tier(step_s, FINE_ROWS, fields)
        self.coarse = Tier(step_s * COARSE_STEPS, COARSE_ROWS, fields)
        self.latest: Row = ()
        self.region = ""
        self.role = ""

    def add(self, t: float, values: Sequence[float]) -> None:
        self.fine.add(t, values)
        self.coarse.add(t, values)
        self.latest = (t, *values)

    def column(self, field: str, coarse: bool = False) -> list[tuple[float, float]]:
        """(t, value) of closed rows, oldest first, rows without the value left out."""
        i = 1 + self.fields.index(field)
        rows = (self.coarse if coarse else self.fine).rows()
        return [(r[0], r[i]) for r in rows if not math.isnan(r[i])]

    def now(self, field: str) -> float:
        """The latest sample's value (NaN before the first)."""
        return self.latest[1 + self.fields.index(field)] if self.latest else NAN


def keys_in(info: Mapping[str, str]) -> float:
    """Keys of every database from INFO keyspace (`db0:keys=5,expires=0,avg_ttl=0`)."""
    total = 0
    found = False
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            for part in value.split(","):
                k, _, v = part.partition("=")
                if k == "keys" and v.isdigit():
                    total += int(v)
                    found = True
    # An empty keyspace section has no db lines: 0 keys if INFO had the section at all.
    return float(total) if found or "used_memory" in info else NAN


def _num(info: Mapping[str, str], name: str) -> float:
    try:
        return float(info[name])
    except (KeyError, ValueError):
        return NAN


class _Counters:
    """Cumulative counters at one moment, for rates over a bucket."""

    __slots__ = ("commands", "latency", "t")

    def __init__(self, t: float, stats: ProxyStats) -> None:
        self.t = t
        self.commands = stats.total_commands
        self.latency = list(stats.latency.counts)


class History:
    """Every node's series by address (str), and the proxy's own."""

    def __init__(self, step_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.step_s = step_s
        self.clock = clock
        self.nodes: dict[str, Series] = {}
        self.proxy = Series(step_s, PROXY_FIELDS)
        self._last: _Counters | None = None

    @classmethod
    def for_interval(cls, info_interval_ms: float) -> History:
        return cls(step_s=max(0.05, 5 * info_interval_ms / 1000))

    def sample(self, snap: Snapshot, stats: ProxyStats | Callable[[], ProxyStats]) -> None:
        """One snapshot (and the process' counters): a sample of every node that is up."""
        t = self.clock()
        for node in snap.nodes:
            if node.up and node.info:
                self._node(str(node.addr), t).add(t, self._values(node.info, node.lag_ms))
                s = self.nodes[str(node.addr)]
                s.region, s.role = node.region, _role(node.role, snap, node.addr)
        self._sample_proxy(t, stats)

    def _node(self, addr: str, t: float) -> Series:
        s = self.nodes.get(addr)
        if s is None:
            if len(self.nodes) >= MAX_NODES:  # the one not heard of longest goes
                del self.nodes[min(self.nodes, key=lambda a: self.nodes[a].latest[:1])]
            s = self.nodes[addr] = Series(self.step_s, NODE_FIELDS)
        return s

    @staticmethod
    def _values(info: Mapping[str, str], lag_ms: float | None) -> list[float]:
        return [_num(info, "used_memory"), _num(info, "maxmemory"),
                _num(info, "total_system_memory"), keys_in(info),
                _num(info, "instantaneous_ops_per_sec"), _num(info, "connected_clients"),
                NAN if lag_ms is None else float(lag_ms)]  # fmt: skip

    def _sample_proxy(self, t: float, stats: ProxyStats | Callable[[], ProxyStats]) -> None:
        # The counters are read once per step, when a sample opens a new fine bucket:
        # the supervisor's merged stats are rebuilt per read.
        index = math.floor(t / self.step_s)
        last = self._last
        if last is not None and math.floor(last.t / self.step_s) == index:
            return
        now = _Counters(t, stats if isinstance(stats, ProxyStats) else stats())
        self._last = now
        if last is None or now.t <= last.t:
            return
        dt = now.t - last.t
        delta = [max(0, a - b) for a, b in zip(now.latency, last.latency, strict=True)]
        h = LatencyHistogram()
        h.counts, h.count = delta, sum(delta)
        p50, p99 = h.quantile(0.5), h.quantile(0.99)
        ops = max(0, now.commands - last.commands) / dt
        self.proxy.add((last.t + now.t) / 2, [ops, _ms(p50), _ms(p99)])


def _ms(seconds: float | None) -> float:
    return NAN if seconds is None else seconds * 1000.0


def _role(role: Role, snap: Snapshot, addr: object) -> str:
    if snap.primary is not None and snap.primary.addr == addr:
        return "primary"
    return role.value


class Recorded(Protocol):
    """A process that keeps a `History` (App, the Supervisor)."""

    @property
    def history(self) -> History: ...


def history_of(source: object) -> History | None:
    """The source's history, if it keeps one (the exporters' test sources do not)."""
    h = getattr(source, "history", None)
    return h if isinstance(h, History) else None
