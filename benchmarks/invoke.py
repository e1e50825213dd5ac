"""One `redis-benchmark --csv` invocation and its rows, or why there are none (shared by
the scenario scripts that run it without `run.py`'s watched runner)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from benchmarks import report


def run_csv(
    argv: list[str], tests: Sequence[str], timeout_s: float
) -> tuple[dict[str, report.Row], str]:
    """(rows, "") on success; ({} or the rows it got, error text) otherwise. A test with
    no row is an error: a broken run must never read as a zero."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {}, f"redis-benchmark timed out after {timeout_s:.0f}s"
    tail = " ".join(done.stderr.split())[-300:]
    if done.returncode != 0:
        return {}, f"redis-benchmark exit {done.returncode}: {tail}"
    try:
        rows = report.parse_csv(done.stdout)
    except report.ParseError as exc:
        return {}, f"{exc}; stderr: {tail}"
    missing = [t for t in tests if t not in rows]
    return rows, (f"no result for {','.join(missing)}" if missing else "")
