"""What `georedis health` concludes from a running proxy's state: pure, no I/O.

The state is read from `PROXY INFO` (INFO-style text: `key:value` lines, node and region
lines `node0:addr=...,region=...`) and `PROXY BACKUPS` (rows of fields); `parse_info`
turns the text into `ProxyState`, and `findings` turns that into one `Finding` per
problem, each with the level a cron job or an orchestrator acts on (the exit status is
the worst level). The levels follow the seed's health check: no primary is critical (no
write succeeds); a region without an eligible replica, lag over the budget, memory past
80% of maxmemory and a backup older than its schedule allows are warnings (reads still
flow, somewhere); memory past 95% is critical (writes start failing or evicting).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from config.schedule import Schedule


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    text: str

    def line(self) -> str:
        return f"{self.level.name}: {self.text}"


@dataclass(frozen=True, slots=True)
class NodeView:
    addr: str
    region: str
    role: str
    up: bool
    eligible: bool
    reason: str
    lag_ms: float | None
    used_memory: int | None
    maxmemory: int | None

    @property
    def name(self) -> str:
        return f"{self.addr} ({self.region})"


@dataclass(frozen=True, slots=True)
class ProxyState:
    primary: str | None
    primary_error: str
    nodes: tuple[NodeView, ...]
    eligible_by_region: Mapping[str, int]
    # PROXY BACKUPS' rows; None when not asked (no schedule) or when it failed (`error`).
    backups: Sequence[Mapping[str, object]] | None = None
    backups_error: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_lag_ms: float
    memory_warning: float = 0.80  # fractions of maxmemory
    memory_critical: float = 0.95
    schedule: Schedule | None = None  # [backup] schedule: backups are expected
    backup_max_age_s: float | None = None  # None: from the schedule (`backup_age_limit`)


@dataclass(frozen=True, slots=True)
class _Fields:
    """One INFO-style line's `a=1,b=2` value as a mapping with typed getters."""

    raw: Mapping[str, str] = field(default_factory=dict)

    def text(self, key: str) -> str:
        return self.raw.get(key, "")

    def number(self, key: str) -> float | None:
        try:
            v = float(self.raw[key])
        except (KeyError, ValueError):
            return None
        return None if v < 0 else v  # INFO's -1: not known


def _fields(value: str) -> _Fields:
    pairs = (item.partition("=") for item in value.split(","))
    return _Fields({k: v for k, _, v in pairs})


def _node(f: _Fields) -> NodeView:
    used, limit = f.number("used_memory"), f.number("maxmemory")
    return NodeView(
        addr=f.text("addr"),
        region=f.text("region"),
        role=f.text("role"),
        up=f.text("up") == "1",
        eligible=f.text("eligible") == "1",
        reason=f.text("reason"),
        lag_ms=f.number("lag_ms"),
        used_memory=None if used is None else int(used),
        maxmemory=None if limit is None else int(limit),
    )


def parse_info(text: str) -> ProxyState:
    """`PROXY INFO`'s text as a `ProxyState` (node and region lines in order)."""
    values: dict[str, str] = {}
    nodes: list[NodeView] = []
    eligible: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or line.startswith("#"):
            continue
        if key.startswith("node") and key[4:].isdigit():
            nodes.append(_node(_fields(value)))
        elif key.startswith("region") and key[6:].isdigit():
            f = _fields(value)
            eligible[f.text("name")] = int(f.number("eligible_replicas") or 0)
        else:
            values[key] = value
    return ProxyState(
        primary=values.get("primary") or None,
        primary_error=values.get("primary_error", ""),
        nodes=tuple(nodes),
        eligible_by_region=eligible,
    )


def backup_age_limit(schedule: Schedule, now: float) -> float:
    """How old the newest good backup may be: one interval of the schedule plus a grace
    of one more interval, at most an hour (a backup takes time to finish). Hourly: 2 h;
    daily: 25 h; weekly: 7 d 1 h. A cron schedule's interval is its latest gap."""
    latest = schedule.slot(now)
    interval = latest - schedule.slot(latest - 1)
    return interval + min(interval, 3600.0)


def _finished_at(row: Mapping[str, object]) -> float | None:
    """When a PROXY BACKUPS row's backup completed (its `created` plus `duration_s`)."""
    try:
        created = calendar.timegm(time.strptime(str(row["created"]), "%Y-%m-%dT%H:%M:%SZ"))
        return created + float(str(row.get("duration_s") or 0))
    except (KeyError, ValueError):
        return None


def _newest_good_backup(rows: Sequence[Mapping[str, object]]) -> float | None:
    done = [
        _finished_at(r)
        for r in rows
        if r.get("state") == "complete" and r.get("verified") not in ("error", "failed")
    ]
    return max((t for t in done if t is not None), default=None)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _primary(state: ProxyState) -> list[Finding]:
    if state.primary is not None:
        return []
    why = f": {state.primary_error}" if state.primary_error else ""
    return [Finding(Level.CRITICAL, f"no primary{why} (writes fail; reads go on)")]


def _regions(state: ProxyState) -> list[Finding]:
    out = []
    for region, eligible in state.eligible_by_region.items():
        replicas = [n for n in state.nodes if n.region == region and n.addr != state.primary]
        if replicas and eligible == 0:
            why = ", ".join(f"{n.addr} {n.reason}" for n in replicas)
            out.append(Finding(Level.WARNING, f"region {region} has no eligible replica ({why})"))
    return out


def _nodes(state: ProxyState, limits: Limits) -> list[Finding]:
    out = []
    for n in state.nodes:
        if not n.up:
            out.append(Finding(Level.WARNING, f"node {n.name} does not answer"))
            continue
        if n.addr != state.primary and n.lag_ms is not None and n.lag_ms > limits.max_lag_ms:
            out.append(
                Finding(
                    Level.WARNING,
                    f"replica {n.name} lags {n.lag_ms:.0f} ms, over "
                    f"the {limits.max_lag_ms:g} ms budget",
                )
            )
        out.extend(_memory(n, limits))
    return out


def _memory(n: NodeView, limits: Limits) -> list[Finding]:
    if not n.maxmemory or n.used_memory is None:
        return []  # maxmemory 0: no limit to compare with
    share = n.used_memory / n.maxmemory
    for level, bound in (
        (Level.CRITICAL, limits.memory_critical),
        (Level.WARNING, limits.memory_warning),
    ):
        if share >= bound:
            return [
                Finding(
                    level,
                    f"node {n.name} uses {share:.0%} of maxmemory "
                    f"({n.used_memory} of {n.maxmemory} bytes; {level.name.lower()} "
                    f"at {bound:.0%})",
                )
            ]
    return []


def _backups(state: ProxyState, limits: Limits, now: float) -> list[Finding]:
    if limits.schedule is None:
        return []
    if state.backups_error is not None:
        return [Finding(Level.WARNING, f"backups: cannot list them: {state.backups_error}")]
    newest = _newest_good_backup(state.backups or ())
    limit = limits.backup_max_age_s
    if limit is None:
        limit = backup_age_limit(limits.schedule, now)
    sched = f'schedule "{limits.schedule.text}"'
    if newest is None:
        return [Finding(Level.WARNING, f"no complete backup yet ({sched})")]
    age = now - newest
    if age > limit:
        return [
            Finding(
                Level.WARNING,
                f"last complete backup is {_duration(age)} old, over {_duration(limit)} ({sched})",
            )
        ]
    return []


def findings(state: ProxyState, limits: Limits, now: float) -> list[Finding]:
    """Every problem, worst first; an empty list means all is well."""
    out = [
        *_primary(state),
        *_regions(state),
        *_nodes(state, limits),
        *_backups(state, limits, now),
    ]
    return sorted(out, key=lambda f: -f.level)


def summary(state: ProxyState, limits: Limits) -> str:
    """The one line printed when there is no finding."""
    up = sum(1 for n in state.nodes if n.up)
    return (
        f"OK: primary {state.primary}, {up}/{len(state.nodes)} nodes up, every region "
        f"with a replica has an eligible one, lag within {limits.max_lag_ms:g} ms"
    )
