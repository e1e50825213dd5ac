"""Pure tests of the benchmark report: CSV parsing, medians, ratios and rendering.

The CSV samples are verbatim output of redis-benchmark 7.0.15 (`--csv`), the version the
harness runs; no sockets and no processes here.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from benchmarks import report, run, targets
from benchmarks.report import ParseError, Row, Run, Scenario, Stat

REAL_CSV = """\
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","222222.23","2.990","0.616","2.127","6.167","6.231","6.255"
"GET","400000.00","1.192","0.424","1.231","1.703","1.823","1.839"
"INCR","200000.00","2.337","0.352","1.775","4.015","4.103","4.127"
"LPUSH","999999.94","0.451","0.160","0.447","0.671","0.767","0.791"
"LPUSH (needed to benchmark LRANGE)","888888.00","0.459","0.224","0.455","0.607","0.687","0.711"
"LRANGE_100 (first 100 elements)","124999.99","3.898","0.584","3.519","7.399","7.863","7.975"
"MSET (10 keys)","400000.00","1.524","0.384","1.519","2.471","2.607","2.631"
"""

HEADER = REAL_CSV.splitlines()[0]


# --- parsing ---------------------------------------------------------------------------


def test_parse_real_output_keys_rows_by_t_name() -> None:
    rows = report.parse_csv(REAL_CSV)
    assert list(rows) == ["set", "get", "incr", "lpush", "lrange_100", "mset"]
    assert rows["get"] == Row("get", 400000.0, 1.192, 0.424, 1.231, 1.703, 1.823, 1.839)
    assert rows["mset"].p99_ms == pytest.approx(2.607)


def test_parse_ignores_the_lpush_filler_row_of_lrange() -> None:
    # The filler row comes after the real LPUSH; it must not overwrite it.
    assert report.parse_csv(REAL_CSV)["lpush"].rps == pytest.approx(999999.94)


def test_parse_skips_warnings_before_the_header() -> None:
    text = "WARNING: Could not fetch server CONFIG\n" + REAL_CSV
    assert len(report.parse_csv(text)) == 6


def test_parse_latency_run() -> None:
    text = f'{HEADER}\n"SET","14388.49","0.065","0.032","0.063","0.087","0.119","0.247"\n'
    row = report.parse_csv(text)["set"]
    assert (row.p50_ms, row.p99_ms) == (0.063, 0.119)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Could not connect to Redis at 127.0.0.1:1: Connection refused\n",
        '"test","rps"\n"SET","1"\n',
        f'{HEADER}\n"SET","1.0","2.0"\n',
        f'{HEADER}\n"SET","fast","1","1","1","1","1","1"\n',
    ],
)
def test_parse_rejects_broken_output(text: str) -> None:
    with pytest.raises(ParseError):
        report.parse_csv(text)


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("SET", "set"),
        ("LRANGE_100 (first 100 elements)", "lrange_100"),
        ("MSET (10 keys)", "mset"),
        ("LPUSH (needed to benchmark LRANGE)", None),
        ("", None),
    ],
)
def test_normalize_test(label: str, key: str | None) -> None:
    assert report.normalize_test(label) == key


# --- arithmetic ------------------------------------------------------------------------


def test_median_odd_even_and_empty() -> None:
    assert report.median([3.0, 1.0, 2.0]) == 2.0
    assert report.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert report.median([]) is None


def test_ratio() -> None:
    assert report.ratio(50.0, 200.0) == 0.25
    assert report.ratio(None, 2.0) is None
    assert report.ratio(2.0, None) is None
    assert report.ratio(2.0, 0.0) is None


def _row(test: str, rps: float, p50: float = 0.1, p99: float = 0.2) -> Row:
    return Row(test, rps, p50, p50, p50, p99, p99, p99)


def _runs(
    target: str, scenario: str, rps: list[float], p50: list[float] | None = None
) -> list[Run]:
    p50 = p50 or [0.1] * len(rps)
    return [
        Run(i + 1, target, scenario, {"get": _row("get", r, p)})
        for i, (r, p) in enumerate(zip(rps, p50, strict=True))
    ]


def test_compute_medians_takes_each_statistic_over_rounds() -> None:
    runs = [
        Run(1, "direct", "P1", {"get": _row("get", 100.0, 0.05, 0.9)}),
        Run(2, "direct", "P1", {"get": _row("get", 300.0, 0.07, 0.1)}),
        Run(3, "direct", "P1", {"get": _row("get", 200.0, 0.06, 0.3)}),
    ]
    stat = report.compute_medians(runs)["P1"]["get"]["direct"]
    assert stat == Stat(rps=200.0, p50_ms=0.06, p99_ms=0.3, samples=3)


def test_compute_medians_skips_failed_runs_and_keeps_targets_apart() -> None:
    runs = [*_runs("direct", "P16", [10.0, 30.0]), Run(3, "direct", "P16", {}, error="boom")]
    runs += _runs("georedis", "P16", [5.0, 7.0, 9.0])
    m = report.compute_medians(runs)
    assert m["P16"]["get"]["direct"].rps == 20.0
    assert m["P16"]["get"]["direct"].samples == 2
    assert m["P16"]["get"]["georedis"].rps == 7.0


def test_ratios_and_p50_delta() -> None:
    runs = _runs("direct", "P1", [100.0], [0.050]) + _runs("georedis", "P1", [80.0], [0.125])
    runs += _runs("twemproxy", "P1", [64.0], [0.080])
    m = report.compute_medians(runs)
    assert report.rps_ratio(m, "P1", "get", "georedis", "twemproxy") == pytest.approx(1.25)
    assert report.rps_ratio(m, "P1", "get", "georedis", "direct") == pytest.approx(0.8)
    assert report.p50_delta_us(m, "P1", "get", "georedis") == pytest.approx(75.0)
    assert report.rps_ratio(m, "P1", "set", "georedis", "direct") is None
    assert report.p50_delta_us(m, "P16", "get", "georedis") is None


def test_ordered_targets() -> None:
    assert report.ordered_targets({"twemproxy", "other", "direct"}) == [
        "direct",
        "twemproxy",
        "other",
    ]


# --- rendering -------------------------------------------------------------------------

SCENARIOS = [
    Scenario("P16", 50, 16, 1000, ("get",)),
    Scenario("latency", 1, 1, 100, ("get",), latency=True),
]


def _sample_runs() -> list[Run]:
    runs: list[Run] = []
    for target, rps, p50 in (
        ("direct", 400.0, 0.05),
        ("georedis", 300.0, 0.09),
        ("twemproxy", 200.0, 0.07),
    ):
        runs += _runs(target, "P16", [rps])
        runs += _runs(target, "latency", [1.0], [p50])
    return runs


def test_markdown_tables_show_medians_ratios_and_latency() -> None:
    runs = _sample_runs()
    m = report.compute_medians(runs)
    md = report.render_markdown(SCENARIOS, m, list(report.TARGET_ORDER), {"rounds": 1}, ["a note"])
    assert "| get | 16 | 50 | 400 | 300 | 200 | 1.50x | 0.75x |" in md
    # p50/p99 in µs, then georedis and twemproxy minus direct.
    assert "| get | 50 | 200 | 90 | 200 | 70 | 200 | +40 | +20 |" in md
    assert "- a note" in md


def test_markdown_marks_a_missing_target() -> None:
    runs = [r for r in _sample_runs() if not (r.target == "georedis" and r.scenario == "P16")]
    md = report.render_markdown(
        SCENARIOS, report.compute_medians(runs), list(report.TARGET_ORDER), {}
    )
    assert "| get | 16 | 50 | 400 | — | 200 | — | — |" in md


def test_markdown_without_twemproxy_has_no_twemproxy_ratio() -> None:
    runs = [r for r in _sample_runs() if r.target != "twemproxy"]
    md = report.render_markdown(SCENARIOS, report.compute_medians(runs), ["direct", "georedis"], {})
    assert "georedis/twemproxy" not in md
    assert "| get | 16 | 50 | 400 | 300 | 0.75x |" in md


def test_json_record_holds_runs_medians_and_ratios() -> None:
    runs = _sample_runs()
    m = report.compute_medians(runs)
    record = json.loads(
        json.dumps(report.to_json(SCENARIOS, runs, m, list(report.TARGET_ORDER), {"x": 1}))
    )
    assert record["meta"] == {"x": 1}
    assert len(record["runs"]) == 6
    assert record["medians"]["P16"]["get"]["twemproxy"]["rps"] == 200.0
    assert record["ratios"]["P16"]["get"]["georedis/twemproxy"] == pytest.approx(1.5)
    assert record["ratios"]["latency"]["get"]["georedis-direct_p50_us"] == pytest.approx(40.0)


def test_write_results_writes_all_files(tmp_path: Path) -> None:
    out = tmp_path / "20250101T000000Z"
    md = report.write_results(out, tmp_path / "latest.md", SCENARIOS, _sample_runs(), {"rounds": 1})
    assert (out / "results.md").read_text() == md == (tmp_path / "latest.md").read_text()
    assert json.loads((out / "results.json").read_text())["targets"] == list(report.TARGET_ORDER)
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- generated configs and command line (pure text, no processes) ----------------------


def test_georedis_config_is_the_documented_toml() -> None:
    doc = tomllib.loads(targets.georedis_config(7000, [7001, 7002], workers=4))
    assert doc["proxy"] == {"listen": "127.0.0.1:7000", "region": "ap-southeast-1", "workers": 4}
    assert doc["regions"][0]["nodes"] == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert doc["metrics"] == {"enabled": False}


def test_nutcracker_config_points_at_the_primary() -> None:
    text = targets.nutcracker_config(7000, 7001, server_connections=2)
    assert "  listen: 127.0.0.1:7000\n" in text
    assert "  server_connections: 2\n" in text
    assert "    - 127.0.0.1:7001:1\n" in text


def test_args_defaults_and_quick() -> None:
    full = run.parse_args([])
    assert (full.rounds, full.requests_p16, full.requests_p1) == (3, 100000, 50000)
    assert full.targets == ("direct", "georedis", "twemproxy")
    quick = run.parse_args(["--quick", "--targets", "twemproxy,direct", "--requests", "7"])
    assert (quick.rounds, quick.requests_p16, quick.requests_p1) == (1, 7, 7)
    assert quick.targets == ("direct", "twemproxy")  # always run in the canonical order
    assert [s.pipeline for s in run.scenarios(full)] == [16, 1, 1]
    assert run.scenarios(full)[2].clients == 1


def test_args_reject_unknown_target() -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["--targets", "direct,predixy"])
