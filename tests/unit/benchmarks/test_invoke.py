"""`benchmarks.invoke.run_csv` over a stand-in for redis-benchmark (a Python one-liner
that prints what redis-benchmark would): rows, or the reason there are none. No sockets."""

from __future__ import annotations

import sys

from benchmarks.invoke import run_csv

CSV = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
    '"p99_latency_ms","max_latency_ms"\\n"SET","1000.0","0.1","0.0","0.1","0.2","0.3","0.4"'
)


def _fake(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_rows_of_a_good_run() -> None:
    rows, error = run_csv(_fake(f"print('{CSV}')"), ["set"], 10)
    assert error == ""
    assert rows["set"].rps == 1000.0


def test_a_test_without_a_row_is_an_error_not_a_zero() -> None:
    rows, error = run_csv(_fake(f"print('{CSV}')"), ["set", "get"], 10)
    assert error == "no result for get"
    assert "set" in rows


def test_a_failed_or_silent_run_says_why() -> None:
    _, error = run_csv(_fake("import sys; sys.stderr.write('boom'); sys.exit(3)"), ["set"], 10)
    assert error == "redis-benchmark exit 3: boom"
    _, error = run_csv(_fake("print('no csv here')"), ["set"], 10)
    assert "no redis-benchmark CSV header" in error
    _, error = run_csv(_fake("import time; time.sleep(5)"), ["set"], 0.2)
    assert error == "redis-benchmark timed out after 0s"
