"""Capacity planning: today's memory, its growth, and when it runs out. Pure.

Read from a `History` (`proxy.observe.history`): per node, the used memory now, the
growth rate measured by a least-squares line through its history, and when that line
reaches the node's limit (`maxmemory`, or the host's `total_system_memory` when
maxmemory is 0, as Redis then grows until the host runs out). With a given rate (a
fraction per month, compounding: "15%" means x1.15 each month) the same questions are
answered from that rate instead. A month is 30 days, a year 365.

The fit uses the coarse rows (10-minute means, up to 30 days) once they span an hour,
else the fine ones (10 s, the last hour): the longest view the history has, in rows of
one size, so `statistics.linear_regression` weighs every moment alike.

The deployment: the data set lives on the primary and every replica holds all of it, so
its use and growth are the primary's, and it is full when its first node is full (the
smallest limit decides). `PROXY CAPACITY` and `georedis capacity` both show
`render_text(report(...))`; the JSON form (`report`) also carries the fitted points for
the plot.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

from proxy.observe.history import History, Series

DAY = 86400.0
MONTH = 30 * DAY
MIN_POINTS = 3
MIN_COARSE_SPAN_S = 3600.0
DEFAULT_HORIZON = "6months"
_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0, "d": DAY, "day": DAY, "w": 7 * DAY, "week": 7 * DAY,
    "mo": MONTH, "month": MONTH, "y": 365 * DAY, "year": 365 * DAY,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")

Json = dict[str, Any]


def parse_horizon(text: str) -> float:
    """'6months', '30days', '2w', '12h', '1y' -> seconds; ValueError otherwise."""
    m = _DURATION.match(text.lower())
    if m is None or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a horizon like 6months, 30days, 2weeks or 1year")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rate(text: str) -> float:
    """'15%' or '15' (percent per month) -> 0.15; ValueError otherwise."""
    try:
        pct = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a growth rate like 15%") from None
    if not math.isfinite(pct) or pct <= -100:
        raise ValueError(f"{text!r}: a growth rate must be above -100%")
    return pct / 100


@dataclass(frozen=True, slots=True)
class Fit:
    """used(t) = intercept + slope * t, fitted over `points` from `start` to `end`."""

    slope: float  # bytes per second
    intercept: float
    points: int
    start: float
    end: float


def fit(points: list[tuple[float, float]]) -> Fit | None:
    """Least squares through (t, bytes); None with too few points or no time between."""
    if len(points) < MIN_POINTS:
        return None
    ts = [t - points[0][0] for t, _ in points]  # small numbers keep the fit exact
    if ts[-1] <= 0:
        return None
    slope, icept = statistics.linear_regression(ts, [v for _, v in points])
    return Fit(slope, icept - slope * points[0][0], len(points), points[0][0], points[-1][0])


def memory_points(series: Series) -> list[tuple[float, float]]:
    coarse = series.column("used_memory", coarse=True)
    if len(coarse) >= MIN_POINTS and coarse[-1][0] - coarse[0][0] >= MIN_COARSE_SPAN_S:
        return coarse
    return series.column("used_memory")


def linear_time_to(used: float, limit: float, slope: float) -> float | None:
    """Seconds until `used` growing by `slope` bytes/s reaches `limit`; None: never."""
    if used >= limit:
        return 0.0
    return (limit - used) / slope if slope > 0 else None


def compound_time_to(used: float, limit: float, rate: float) -> float | None:
    """Seconds until `used` compounding at `rate` per month reaches `limit`."""
    if used >= limit:
        return 0.0
    if rate <= 0 or used <= 0:
        return None
    return math.log(limit / used) / math.log1p(rate) * MONTH


def _limit(series: Series) -> tuple[float | None, str]:
    maxmemory = series.now("maxmemory")
    if maxmemory > 0:
        return maxmemory, "maxmemory"
    host = series.now("total_system_memory")
    if host > 0:
        return host, "total_system_memory"
    return None, "unknown"


def node_report(addr: str, series: Series, now: float, horizon_s: float,
                rate: float | None) -> Json:  # fmt: skip
    used = series.now("used_memory")
    limit, source = _limit(series)
    points = memory_points(series)
    f = fit(points)
    out: Json = {
        "addr": addr, "region": series.region, "role": series.role,
        "used_bytes": None if math.isnan(used) else int(used),
        "keys": None if math.isnan(series.now("keys")) else int(series.now("keys")),
        "limit_bytes": None if limit is None else int(limit), "limit_source": source,
        "used_pct": None if limit is None or math.isnan(used) else 100 * used / limit,
        "fit_points": len(points), "fit_window_s": f.end - f.start if f else 0.0,
        "growth_bytes_per_day": None if f is None else f.slope * DAY,
        "growth_pct_per_month": None if f is None or not used > 0
        else 100 * f.slope * MONTH / used,
        "history": [[round(t, 3), v] for t, v in points],
    }  # fmt: skip
    out["trend"] = _projection(used, limit, now, horizon_s, f, None)
    out["given_rate"] = None if rate is None else _projection(used, limit, now, horizon_s,
                                                              None, rate)  # fmt: skip
    return out


def _projection(used: float, limit: float | None, now: float, horizon_s: float,
                f: Fit | None, rate: float | None) -> Json:  # fmt: skip
    """When the limit is reached and what is used at the horizon, by the fit or a rate."""
    if math.isnan(used):
        return {"full_in_s": None, "full_at": None, "at_horizon_bytes": None,
                "why": "no memory sample yet"}  # fmt: skip
    if rate is not None:
        at_horizon = used * (1 + rate) ** (horizon_s / MONTH)
        full_in = None if limit is None else compound_time_to(used, limit, rate)
    elif f is None:
        return {"full_in_s": None, "full_at": None, "at_horizon_bytes": None,
                "why": "too little history to measure a trend"}  # fmt: skip
    else:
        at_horizon = used + f.slope * horizon_s
        full_in = None if limit is None else linear_time_to(used, limit, f.slope)
    why = "no limit known" if limit is None else ("not growing" if full_in is None else "")
    return {
        "full_in_s": full_in,
        "full_at": None if full_in is None else now + full_in,
        "at_horizon_bytes": max(0.0, at_horizon),
        "at_horizon_pct": None if limit is None else 100 * max(0.0, at_horizon) / limit,
        "why": why,
    }


def _soonest(nodes: list[Json], key: str) -> Json | None:
    full = [n for n in nodes if n[key] is not None and n[key]["full_in_s"] is not None]
    return min(full, key=lambda n: n[key]["full_in_s"]) if full else None


def report(history: History, horizon: str = DEFAULT_HORIZON, rate: float | None = None,
           now: float | None = None) -> Json:  # fmt: skip
    """The whole report as plain data (JSON-ready). Raises ValueError on a bad horizon."""
    horizon_s = parse_horizon(horizon)
    t = history.clock() if now is None else now
    nodes = [node_report(a, s, t, horizon_s, rate) for a, s in sorted(history.nodes.items())]
    primary = next((n for n in nodes if n["role"] == "primary"), None)
    deployment: Json = {
        "primary": None if primary is None else primary["addr"],
        "used_bytes": None if primary is None else primary["used_bytes"],
        "keys": None if primary is None else primary["keys"],
        "growth_bytes_per_day": None if primary is None else primary["growth_bytes_per_day"],
        "growth_pct_per_month": None if primary is None else primary["growth_pct_per_month"],
    }
    for key in ("trend", "given_rate"):
        first = _soonest(nodes, key)
        deployment[key] = None if first is None else {**first[key], "node": first["addr"]}
    return {
        "generated_at": t, "horizon": horizon, "horizon_s": horizon_s,
        "growth_rate_per_month": rate, "nodes": nodes, "deployment": deployment,
    }  # fmt: skip


# --- text --------------------------------------------------------------------------


_W = 16  # the label column of the text report


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    v = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{sign}{v:.0f} {unit}" if unit == "B" else f"{sign}{v:.2f} {unit}"
        v /= 1024
    return f"{sign}{v:.2f} TiB"  # pragma: no cover - the loop returns at TiB


def human_duration(s: float | None) -> str:
    if s is None:
        return "never"
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    if s < 2 * DAY:
        return f"{s / 3600:.1f} h"
    if s < 2 * MONTH:
        return f"{s / DAY:.1f} days"
    return f"{s / MONTH:.1f} months" if s < 2 * 365 * DAY else f"{s / 365 / DAY:.1f} years"


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime(" (%Y-%m-%d %H:%M UTC)", time.gmtime(t))


def _full_line(label: str, p: Json | None, horizon: str) -> str:
    if p is None:
        return ""
    if p["full_in_s"] is None:
        full = f"not full ({p['why']})" if p["why"] else "not full"
    elif p["full_in_s"] == 0:
        full = "full now"
    else:
        full = f"full in {human_duration(p['full_in_s'])}{_when(p['full_at'])}"
    at = ""
    if p["at_horizon_bytes"] is not None:
        pct = p.get("at_horizon_pct")
        at = f"; by {horizon}: {human_bytes(p['at_horizon_bytes'])}"
        at += f" ({pct:.0f}%)" if pct is not None else ""
    return f"  {label:<{_W}}{full}{at}\n"


def _growth(n: Json) -> str:
    per_day = n["growth_bytes_per_day"]
    if per_day is None:
        return "too little history yet"
    pct = n["growth_pct_per_month"]
    text = f"{'+' if per_day >= 0 else ''}{human_bytes(per_day)}/day"
    return text + (f" ({pct:+.1f}%/month)" if pct is not None else "")


def render_text(r: Json) -> str:
    rate = r["growth_rate_per_month"]
    given = "" if rate is None else f"at {rate * 100:g}%/month"
    out = [f"# Capacity{_when(r['generated_at'])}, horizon {r['horizon']}\n"]
    for n in r["nodes"]:
        pct = f" ({n['used_pct']:.1f}%)" if n["used_pct"] is not None else ""
        keys = f", {n['keys']:,} keys" if n["keys"] is not None else ""
        out.append(
            f"node {n['addr']} ({n['region']}, {n['role']})\n"
            f"  {'used':<{_W}}{human_bytes(n['used_bytes'])} of "
            f"{human_bytes(n['limit_bytes'])} {n['limit_source']}{pct}{keys}\n"
            f"  {'growth':<{_W}}{_growth(n)}, fitted over "
            f"{human_duration(n['fit_window_s'])} ({n['fit_points']} points"
            f"{'; under an hour: a rough trend' if n['fit_window_s'] < 3600 else ''})\n"
            + _full_line("trend", n["trend"], r["horizon"])
            + _full_line(given, n["given_rate"], r["horizon"])
        )
    d = r["deployment"]
    out.append(
        f"deployment (the primary's data set, {d['primary'] or 'no primary'})\n"
        f"  {'used':<{_W}}{human_bytes(d['used_bytes'])}"
        + (f", {d['keys']:,} keys" if d["keys"] is not None else "") + "\n"
        f"  {'growth':<{_W}}{_growth(d)}\n"
        + (_full_line("trend", d["trend"], r["horizon"]) or f"  {'trend':<{_W}}not full\n")
        + (_full_line(given, d["given_rate"], r["horizon"]) if rate is not None else "")
    )  # fmt: skip
    if d["trend"] is not None:
        out.append(f"  first full: {d['trend']['node']}\n")
    return "".join(out)
