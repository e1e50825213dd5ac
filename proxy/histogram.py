"""Latency histograms the hot path observes into: per-bucket counts (not cumulative), a
sum and a count; one per command class per node (`NodeLatency`). Plain Python, cheap to
observe; the Prometheus collector (`proxy.observe.metrics`) reads them at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# Command classes: indexes into ProxyStats.commands / ProxyStats.errors and NodeLatency.
CLASS_READ = 0
CLASS_WRITE = 1
CLASS_ADMIN = 2
CLASS_OTHER = 3
CLASS_NAMES: tuple[str, ...] = ("read", "write", "admin", "other")

# Histogram bucket upper bounds in seconds: a 1-2-5 series from 50 us to 10 s. Redis
# answers in tens of microseconds locally and in ~100-300 ms across oceans, so the
# series is dense where both live. The last slot of `counts` is the +Inf overflow.
BUCKETS: tuple[float, ...] = (
    50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
    100e-3, 200e-3, 500e-3, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip

StatsDict = dict[str, Any]


class LatencyHistogram:
    """Per-bucket (not cumulative) counts, a sum and a count; cheap to observe."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # bisect_left puts a value equal to a bound into that bound's bucket (le=).
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def observe_n(self, seconds: float, n: int) -> None:
        """`n` observations of the same duration (a pipeline answered together)."""
        self.counts[bisect_left(BUCKETS, seconds)] += n
        self.sum += seconds * n
        self.count += n

    def merge(self, other: LatencyHistogram) -> None:
        counts = self.counts
        for i, c in enumerate(other.counts):
            counts[i] += c
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count of observations <= bound), +Inf last, as Prometheus wants."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, c in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += c
            out.append((bound, total))
        return out

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile q; None when empty (for status text)."""
        if self.count == 0:
            return None
        rank = q * self.count
        for bound, total in self.cumulative():
            if total >= rank:
                return bound
        return None  # pragma: no cover - the +Inf bucket always reaches count

    def to_dict(self) -> StatsDict:
        return {"counts": list(self.counts), "sum": self.sum, "count": self.count}

    @classmethod
    def from_dict(cls, d: StatsDict) -> LatencyHistogram:
        h = cls()
        counts = [int(c) for c in d.get("counts", ())]
        if len(counts) != len(h.counts):
            # A worker built with other buckets: keep the totals, lose the shape.
            raise ValueError(f"histogram has {len(counts)} buckets, expected {len(h.counts)}")
        h.counts = counts
        h.sum = float(d.get("sum", 0.0))
        h.count = int(d.get("count", 0))
        return h


class NodeLatency:
    """One node's latency histograms, one per command class (the performance dashboard's
    percentiles by class and node); the hot path observes into its class's only."""

    __slots__ = ("classes",)

    def __init__(self) -> None:
        self.classes = [LatencyHistogram() for _ in CLASS_NAMES]

    def observe(self, seconds: float, cls: int = CLASS_OTHER) -> None:
        self.classes[cls].observe(seconds)

    def observe_n(self, seconds: float, n: int, cls: int = CLASS_OTHER) -> None:
        self.classes[cls].observe_n(seconds, n)

    def total(self) -> LatencyHistogram:
        out = LatencyHistogram()
        for h in self.classes:
            out.merge(h)
        return out

    @property
    def count(self) -> int:
        return sum(h.count for h in self.classes)

    def merge(self, other: NodeLatency) -> None:
        for mine, theirs in zip(self.classes, other.classes, strict=True):
            mine.merge(theirs)

    def to_dict(self) -> StatsDict:
        return {"classes": [h.to_dict() for h in self.classes]}

    @classmethod
    def from_dict(cls, d: StatsDict) -> NodeLatency:
        n = cls()
        n.classes = [LatencyHistogram.from_dict(h) for h in d.get("classes", ())]
        if len(n.classes) != len(CLASS_NAMES):
            raise ValueError(f"{len(n.classes)} command classes, expected {len(CLASS_NAMES)}")
        return n
