"""Capacity: the least-squares trend, time to full (linear and compounding), the report."""

from __future__ import annotations

import json
import math

import pytest

from proxy.observe.capacity import (
    DAY,
    MONTH,
    compound_time_to,
    fit,
    linear_time_to,
    parse_horizon,
    parse_rate,
    render_text,
    report,
)
from proxy.observe.history import History
from tests.unit.proxy.observe.feed import MIB, PRIMARY, REPLICA, Clock, fill


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6months", 180 * DAY), ("30days", 30 * DAY), ("2w", 14 * DAY), ("12h", 43200),
     ("1year", 365 * DAY), ("1 month", MONTH), ("90d", 90 * DAY), ("1.5h", 5400)],
)  # fmt: skip
def test_parse_horizon(text: str, seconds: float) -> None:
    assert parse_horizon(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "6", "six months", "0days", "-1d", "3 fortnights"])
def test_parse_horizon_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="horizon"):
        parse_horizon(text)


def test_parse_rate() -> None:
    assert parse_rate("15%") == pytest.approx(0.15)
    assert parse_rate("2.5") == pytest.approx(0.025)
    for bad in ("fast", "-100%", "nan"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_fit_recovers_a_noisy_slope() -> None:
    # +-2% noise around 1 MB/s: the fit is within 1%.
    pts = [(1e9 + t, 50e6 + 1e6 * t + (2e4 if t % 2 else -2e4)) for t in range(100)]
    f = fit(pts)
    assert f is not None and f.slope == pytest.approx(1e6, rel=0.01)
    assert f.points == 100 and f.end - f.start == 99


def test_fit_needs_points_and_time() -> None:
    assert fit([(1.0, 1.0), (2.0, 2.0)]) is None
    assert fit([(1.0, 1.0)] * 5) is None


def test_time_to_full() -> None:
    assert linear_time_to(40.0, 100.0, 2.0) == 30.0
    assert linear_time_to(40.0, 100.0, 0.0) is None
    assert linear_time_to(40.0, 100.0, -1.0) is None
    assert linear_time_to(120.0, 100.0, 1.0) == 0.0
    # 15%/month compounding doubles in ln 2 / ln 1.15 = 4.96 months.
    assert compound_time_to(1.0, 2.0, 0.15) == pytest.approx(4.959 * MONTH, rel=1e-3)
    assert compound_time_to(1.0, 2.0, 0.0) is None


def _history(bytes_per_s: float, maxmemory: int, seconds: float = 300) -> tuple[History, Clock]:
    clock = Clock()
    h = History(step_s=1.0, clock=clock)
    fill(h, clock, seconds=seconds, every=0.2, bytes_per_s=bytes_per_s, maxmemory=maxmemory)
    return h, clock


def test_report_measures_the_rate_and_when_maxmemory_is_reached() -> None:
    h, clock = _history(bytes_per_s=20_000, maxmemory=200 * MIB)
    r = report(h, "30days")
    node = next(n for n in r["nodes"] if n["addr"] == str(PRIMARY))
    assert node["growth_bytes_per_day"] == pytest.approx(20_000 * DAY, rel=0.01)
    used = 100 * MIB + 20_000 * 300
    assert node["used_bytes"] == pytest.approx(used, rel=1e-6)
    assert node["limit_source"] == "maxmemory" and node["limit_bytes"] == 200 * MIB
    full_in = (200 * MIB - used) / 20_000
    assert node["trend"]["full_in_s"] == pytest.approx(full_in, rel=0.01)
    assert node["trend"]["full_at"] == pytest.approx(clock.t + full_in, rel=1e-6)
    assert node["growth_pct_per_month"] == pytest.approx(100 * 20_000 * MONTH / used, rel=0.01)
    d = r["deployment"]
    assert d["primary"] == str(PRIMARY) and d["used_bytes"] == node["used_bytes"]
    assert d["trend"]["node"] in (str(PRIMARY), str(REPLICA))
    json.dumps(r, allow_nan=False)  # what PROXY CAPACITY JSON sends


def test_without_maxmemory_the_host_memory_is_the_limit() -> None:
    h, _ = _history(bytes_per_s=1000, maxmemory=0)
    node = report(h)["nodes"][0]
    assert node["limit_source"] == "total_system_memory"
    assert node["limit_bytes"] == 16 * 1024 * MIB


def test_a_given_rate_compounds_monthly() -> None:
    h, _ = _history(bytes_per_s=0, maxmemory=200 * MIB)
    r = report(h, "6months", rate=0.15)
    node = r["nodes"][0]
    assert node["trend"]["full_in_s"] is None and node["trend"]["why"] == "not growing"
    given = node["given_rate"]
    assert given["at_horizon_bytes"] == pytest.approx(100 * MIB * 1.15**6, rel=1e-6)
    assert given["full_in_s"] == pytest.approx(math.log(2) / math.log(1.15) * MONTH, rel=1e-6)


def test_too_little_history_says_so() -> None:
    h, _ = _history(bytes_per_s=1000, maxmemory=200 * MIB, seconds=1.0)
    node = report(h)["nodes"][0]
    assert node["growth_bytes_per_day"] is None
    assert node["trend"]["why"] == "too little history to measure a trend"
    assert "too little history" in render_text(report(h))


def test_the_coarse_rows_are_used_once_they_span_an_hour() -> None:
    h, _ = _history(bytes_per_s=500, maxmemory=0, seconds=2 * 3600)
    node = report(h)["nodes"][0]
    assert node["fit_points"] == 120  # one-minute rows over two hours
    assert node["growth_bytes_per_day"] == pytest.approx(500 * DAY, rel=0.01)


def test_text_report() -> None:
    h, _ = _history(bytes_per_s=20_000, maxmemory=200 * MIB)
    text = render_text(report(h, "30days", rate=0.15))
    assert f"node {PRIMARY} (ap-southeast-1, primary)" in text
    assert "of 200.00 MiB maxmemory" in text
    assert "+1.61 GiB/day" in text  # 20 kB/s
    assert "full in 82 min" in text
    assert "at 15%/month" in text and "deployment" in text
