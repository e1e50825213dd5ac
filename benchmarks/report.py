"""Turn raw `redis-benchmark --csv` runs into medians, ratios, JSON, Markdown and a PNG.

Everything except `draw_png` and `write_results` is pure (text in, numbers out), so the
parsing and the arithmetic are unit-tested without sockets or processes.

The machines are noisy (benchmarks/README.md): a single run says little, so every
figure reported is the median over rounds, and the headline numbers are ratios between
targets measured in the same run, alternating, rather than absolute requests per second.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# With --features: the same georedis with users, GeoIP, read-your-writes and the slow log.
FEATURES = "georedis+features"
# The order targets appear in every table and chart (FEATURES comes after them).
TARGET_ORDER = ("direct", "georedis", "twemproxy")


class ParseError(ValueError):
    """The text is not the CSV that `redis-benchmark --csv` (7.x) prints."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of `redis-benchmark --csv`: a test's throughput and latency (ms)."""

    test: str
    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """One redis-benchmark invocation shape, run against every target each round."""

    name: str
    clients: int
    pipeline: int
    requests: int
    tests: tuple[str, ...]
    # Latency scenarios are reported as p50/p99; throughput ones as rps.
    latency: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """One redis-benchmark invocation: a scenario against a target in one round."""

    round: int
    target: str
    scenario: str
    rows: Mapping[str, Row] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Stat:
    """Medians over rounds of one (scenario, test, target)."""

    rps: float
    p50_ms: float
    p99_ms: float
    samples: int


# scenario -> test -> target -> Stat
Medians = dict[str, dict[str, dict[str, Stat]]]


# --- parsing ---------------------------------------------------------------------------

_COLUMNS = (
    "test",
    "rps",
    "avg_latency_ms",
    "min_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "max_latency_ms",
)


def normalize_test(label: str) -> str | None:
    """The `-t` name of a CSV test label, or None for rows that are not a measured test.

    redis-benchmark labels rows "SET", "LRANGE_100 (first 100 elements)", "MSET (10 keys)";
    before LRANGE it also fills the list and reports that as "LPUSH (needed to benchmark
    LRANGE)", which would otherwise collide with the real LPUSH row.
    """
    if "needed to benchmark" in label:
        return None
    head = label.split(" ", 1)[0].strip()
    return head.lower() or None


def parse_csv(text: str) -> dict[str, Row]:
    """Parse `redis-benchmark --csv` output into rows keyed by `-t` test name.

    Lines before the header (warnings such as "Could not fetch server CONFIG" if stderr
    was merged) are skipped; a missing header or a malformed row is an error, so a broken
    run is never silently reported as zero.
    """
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"test",')), None)
    if start is None:
        raise ParseError("no redis-benchmark CSV header in output")
    reader = csv.reader(io.StringIO("\n".join(lines[start:])))
    header = tuple(next(reader))
    if header != _COLUMNS:
        raise ParseError(f"unexpected CSV columns: {header!r}")
    rows: dict[str, Row] = {}
    for record in reader:
        if not record:
            continue
        if len(record) != len(_COLUMNS):
            raise ParseError(f"row has {len(record)} fields, expected {len(_COLUMNS)}: {record}")
        key = normalize_test(record[0])
        if key is None:
            continue
        try:
            values = [float(v) for v in record[1:]]
        except ValueError as exc:
            raise ParseError(f"non-numeric field in row {record}") from exc
        rows[key] = Row(key, *values)
    return rows


# --- arithmetic ------------------------------------------------------------------------


def median(values: Iterable[float]) -> float | None:
    """Median of the values, None when there are none (a target that never ran)."""
    vals = list(values)
    return statistics.median(vals) if vals else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def compute_medians(runs: Iterable[Run]) -> Medians:
    """Median rps, p50 and p99 over rounds for every (scenario, test, target) measured.

    Each statistic is the median of the per-round values of that statistic (the median
    of p99s, not a p99 of the union) since redis-benchmark gives us no raw samples.
    """
    grouped: dict[tuple[str, str, str], list[Row]] = {}
    for run in runs:
        for test, row in run.rows.items():
            grouped.setdefault((run.scenario, test, run.target), []).append(row)
    out: Medians = {}
    for (scenario, test, target), rows in grouped.items():
        stat = Stat(
            rps=statistics.median(r.rps for r in rows),
            p50_ms=statistics.median(r.p50_ms for r in rows),
            p99_ms=statistics.median(r.p99_ms for r in rows),
            samples=len(rows),
        )
        out.setdefault(scenario, {}).setdefault(test, {})[target] = stat
    return out


def _get(medians: Medians, scenario: str, test: str, target: str) -> Stat | None:
    return medians.get(scenario, {}).get(test, {}).get(target)


def rps_ratio(medians: Medians, scenario: str, test: str, num: str, den: str) -> float | None:
    """Median rps of target `num` over that of `den` for one scenario and test."""
    a, b = _get(medians, scenario, test, num), _get(medians, scenario, test, den)
    return ratio(a.rps if a else None, b.rps if b else None)


def p50_delta_us(medians: Medians, scenario: str, test: str, target: str) -> float | None:
    """How many µs the target's median p50 is above direct Redis' (the proxy's cost)."""
    a, b = _get(medians, scenario, test, target), _get(medians, scenario, test, "direct")
    if a is None or b is None:
        return None
    return (a.p50_ms - b.p50_ms) * 1000.0


def ordered_targets(targets: Iterable[str]) -> list[str]:
    """Targets in the canonical order (direct, georedis, twemproxy), unknown ones last."""
    known = [t for t in TARGET_ORDER if t in set(targets)]
    return known + sorted(set(targets) - set(TARGET_ORDER))


# --- rendering -------------------------------------------------------------------------


def _fmt_rps(stat: Stat | None) -> str:
    return f"{stat.rps:,.0f}" if stat else "—"


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "—"


def _fmt_us(ms: float | None) -> str:
    return f"{ms * 1000.0:.0f}" if ms is not None else "—"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def throughput_table(
    scenarios: Sequence[Scenario], medians: Medians, targets: Sequence[str]
) -> list[str]:
    """Markdown rows: median rps per target and the georedis ratios, per test and -P."""
    header = ["test", "-P", "-c", *targets]
    pairs = (("georedis", "twemproxy"), ("georedis", "direct"), (FEATURES, "georedis"))
    ratios = [(n, d) for n, d in pairs if n in targets and d in targets]
    header += [f"{n}/{d}" for n, d in ratios]
    body: list[list[str]] = []
    for sc in (s for s in scenarios if not s.latency):
        for test in sc.tests:
            cells = [test, str(sc.pipeline), str(sc.clients)]
            cells += [_fmt_rps(_get(medians, sc.name, test, t)) for t in targets]
            cells += [_fmt_ratio(rps_ratio(medians, sc.name, test, n, d)) for n, d in ratios]
            body.append(cells)
    return _table(header, body)


def latency_table(
    scenarios: Sequence[Scenario], medians: Medians, targets: Sequence[str]
) -> list[str]:
    """Markdown rows: median p50/p99 in µs per target, and each proxy's p50 over direct."""
    header = ["test"]
    for t in targets:
        header += [f"{t} p50", f"{t} p99"]
    proxies = [t for t in targets if t != "direct"] if "direct" in targets else []
    header += [f"{t} - direct p50" for t in proxies]
    body: list[list[str]] = []
    for sc in (s for s in scenarios if s.latency):
        for test in sc.tests:
            cells = [test]
            for t in targets:
                stat = _get(medians, sc.name, test, t)
                cells += [
                    _fmt_us(stat.p50_ms if stat else None),
                    _fmt_us(stat.p99_ms if stat else None),
                ]
            for t in proxies:
                delta = p50_delta_us(medians, sc.name, test, t)
                cells.append(f"{delta:+.0f}" if delta is not None else "—")
            body.append(cells)
    return _table(header, body)


def render_markdown(
    scenarios: Sequence[Scenario],
    medians: Medians,
    targets: Sequence[str],
    meta: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> str:
    """The whole report as Markdown: context line, throughput table, latency table, notes."""
    rounds = meta.get("rounds", "?")
    lines = [
        f"# georedis benchmark — {meta.get('timestamp', '')}",
        "",
        f"{meta.get('host', '')}: {meta.get('cpus', '?')} CPUs, {meta.get('redis_version', '')}, "
        f"{meta.get('nutcracker_version', 'no nutcracker')}; georedis workers="
        f"{meta.get('workers', '?')}, replicas={meta.get('replicas', 0)}; "
        f"medians of {rounds} round(s), targets alternating within each round.",
        "",
        "## Throughput (requests/s, median)",
        "",
        *throughput_table(scenarios, medians, targets),
    ]
    if any(s.latency for s in scenarios):
        lat = next(s for s in scenarios if s.latency)
        lines += [
            "",
            f"## Latency (µs, median of per-round percentiles; -c {lat.clients} -P {lat.pipeline})",
            "",
            *latency_table(scenarios, medians, targets),
        ]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def to_json(
    scenarios: Sequence[Scenario],
    runs: Sequence[Run],
    medians: Medians,
    targets: Sequence[str],
    meta: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The machine-readable record: context, every raw run, medians and ratios."""
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for sc in scenarios:
        for test in sc.tests:
            entry = {
                "georedis/twemproxy": rps_ratio(medians, sc.name, test, "georedis", "twemproxy"),
                "georedis/direct": rps_ratio(medians, sc.name, test, "georedis", "direct"),
                "georedis-direct_p50_us": p50_delta_us(medians, sc.name, test, "georedis"),
            }
            if FEATURES in targets:  # features on / off; absent without --features
                on_off = rps_ratio(medians, sc.name, test, FEATURES, "georedis")
                entry[f"{FEATURES}/georedis"] = on_off
            ratios.setdefault(sc.name, {})[test] = entry
    return {
        "meta": dict(meta),
        "targets": list(targets),
        "notes": list(notes),
        "scenarios": [asdict(s) for s in scenarios],
        "runs": [
            {
                "round": r.round,
                "target": r.target,
                "scenario": r.scenario,
                "seconds": round(r.seconds, 3),
                "error": r.error,
                "rows": {k: asdict(v) for k, v in r.rows.items()},
            }
            for r in runs
        ],
        "medians": {
            sc: {test: {t: asdict(s) for t, s in by_t.items()} for test, by_t in by_test.items()}
            for sc, by_test in medians.items()
        },
        "ratios": ratios,
    }


def draw_png(
    path: Path, scenarios: Sequence[Scenario], medians: Medians, targets: Sequence[str], title: str
) -> None:
    """Grouped bar charts: a panel per scenario, a bar per target per test.

    Throughput panels show median k requests/s; the latency panel shows median p50 as
    bars and median p99 as a marker above each bar.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    if not scenarios:
        return
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 3.6 * len(scenarios)), squeeze=False)
    width = 0.8 / max(len(targets), 1)
    for ax, sc in zip(axes[:, 0], scenarios, strict=True):
        xs = range(len(sc.tests))
        for i, target in enumerate(targets):
            stats = [_get(medians, sc.name, test, target) for test in sc.tests]
            offsets = [x + (i - (len(targets) - 1) / 2) * width for x in xs]
            if sc.latency:
                p50 = [s.p50_ms * 1000.0 if s else 0.0 for s in stats]
                p99 = [s.p99_ms * 1000.0 if s else 0.0 for s in stats]
                bars = ax.bar(offsets, p50, width, label=f"{target} p50")
                colour = bars.patches[0].get_facecolor()
                ax.plot(offsets, p99, "_", markersize=24, markeredgewidth=2.5, color=colour)
            else:
                ax.bar(offsets, [s.rps / 1000.0 if s else 0.0 for s in stats], width, label=target)
        ax.set_xticks(list(xs), list(sc.tests))
        if sc.latency:
            ax.set_ylabel("µs (bar p50, tick p99)")
        else:
            ax.set_ylabel("k requests/s")
        ax.set_title(f"-c {sc.clients} -P {sc.pipeline}" + (" latency" if sc.latency else ""))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    out_dir: Path,
    latest_md: Path,
    scenarios: Sequence[Scenario],
    runs: Sequence[Run],
    meta: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> str:
    """Write results.json, results.md and results.png to out_dir; copy the md to latest_md.

    Returns the Markdown so the caller can print it.
    """
    targets = ordered_targets({r.target for r in runs})
    medians = compute_medians(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = to_json(scenarios, runs, medians, targets, meta, notes)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(scenarios, medians, targets, meta, notes)
    md_path = out_dir / "results.md"
    md_path.write_text(markdown)
    title = f"georedis vs direct Redis vs twemproxy — {meta.get('timestamp', '')}"
    draw_png(out_dir / "results.png", scenarios, medians, targets, title)
    latest_md.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(md_path, latest_md)
    return markdown
