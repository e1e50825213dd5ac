"""End-to-end benchmark: redis-benchmark against Redis directly, via georedis, via twemproxy.

    python -m benchmarks.run [--quick] [--rounds N] [--requests N] [--replicas N]
                             [--workers N] [--features] [--out DIR]

One run starts a local topology (a redis-server primary, optional replicas, georedis and,
when installed, nutcracker), then for each round runs every scenario against every target
in turn, so that slow drifts of the machine (thermal, neighbours) hit all targets alike.
It writes results.json, results.md and results.png under <out>/<UTC timestamp>/, copies
the Markdown to <out>/latest.md and prints it. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType

from benchmarks import features, report
from benchmarks.report import Run, Scenario
from benchmarks.targets import (
    HOST,
    REPO_ROOT,
    StartError,
    Target,
    Topology,
    command,
    nutcracker_path,
    tool_version,
)

DEFAULT_TESTS = ("set", "get", "incr", "lpush", "lrange_100", "mset")
LATENCY_TESTS = ("get", "set")
ALL_TARGETS = ("direct", "georedis", "twemproxy")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Settings:
    """The parsed command line, with --quick and the defaults resolved."""

    rounds: int
    requests_p16: int
    requests_p1: int
    latency_requests: int
    clients: int
    replicas: int
    workers: int
    twemproxy_connections: int
    targets: tuple[str, ...]
    tests: tuple[str, ...]
    out: Path
    run_timeout_s: float
    quick: bool
    # A georedis+features target beside georedis (benchmarks/features.py).
    features: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="redis-benchmark: direct Redis vs georedis vs twemproxy, medians and ratios",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small -n, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of all targets (default 3; quick 1)")
    p.add_argument(
        "--requests", type=int, help="-n per test for both -P 16 and -P 1 (default 100000 / 50000)"
    )
    p.add_argument(
        "--latency-requests", type=int, help="-n per test of the -c 1 latency run (default 10000)"
    )
    p.add_argument("--clients", type=int, default=50, help="-c of the throughput runs")
    p.add_argument("--replicas", type=int, default=0, help="replicas next to the primary")
    p.add_argument("--workers", type=int, default=1, help="georedis [proxy] workers")
    p.add_argument(
        "--twemproxy-connections", type=int, default=1, help="nutcracker server_connections"
    )
    p.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help="comma-separated subset of direct,georedis,twemproxy",
    )
    p.add_argument("--tests", default=",".join(DEFAULT_TESTS), help="redis-benchmark -t list")
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (a timestamped dir inside)"
    )
    p.add_argument("--run-timeout", type=float, default=900.0, help="seconds per invocation")
    p.add_argument(
        "--features",
        action="store_true",
        help="also georedis+features (users and ACL key checks, a GeoIP database, "
        "read-your-writes, the slow log) beside georedis; needs georedis in --targets; "
        "implies --replicas 1 when --replicas is 0",
    )
    a = p.parse_args(argv)
    targets = tuple(t.strip() for t in a.targets.split(",") if t.strip())
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown or not targets:
        p.error(f"--targets: unknown {sorted(unknown)}; choose from {','.join(ALL_TARGETS)}")
    for name in ("rounds", "requests", "latency_requests", "clients", "workers"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.replicas < 0 or a.twemproxy_connections < 1:
        p.error("--replicas must be >= 0 and --twemproxy-connections >= 1")
    if a.features and "georedis" not in targets:
        p.error("--features compares against georedis: include it in --targets")
    return Settings(
        rounds=a.rounds or (1 if a.quick else 3),
        requests_p16=a.requests or (20000 if a.quick else 100000),
        requests_p1=a.requests or (5000 if a.quick else 50000),
        latency_requests=a.latency_requests or (1000 if a.quick else 10000),
        clients=a.clients,
        # Read-your-writes only changes where reads go when there is a replica.
        replicas=1 if a.features and a.replicas == 0 else a.replicas,
        workers=a.workers,
        twemproxy_connections=a.twemproxy_connections,
        targets=tuple(t for t in ALL_TARGETS if t in targets),
        tests=tuple(t.strip() for t in a.tests.split(",") if t.strip()),
        out=a.out,
        run_timeout_s=a.run_timeout,
        quick=a.quick,
        features=a.features,
    )


def scenarios(s: Settings) -> list[Scenario]:
    """-P 16 and -P 1 throughput at -c clients, then -c 1 -P 1 latency of GET and SET."""
    return [
        Scenario("P16", s.clients, 16, s.requests_p16, s.tests),
        Scenario("P1", s.clients, 1, s.requests_p1, s.tests),
        Scenario("latency", 1, 1, s.latency_requests, LATENCY_TESTS, latency=True),
    ]


def _run_watched(
    argv: list[str], timeout_s: float, alive: Callable[[], bool]
) -> tuple[int, str, str] | str:
    """Run argv to completion; (returncode, stdout, stderr), or why it was cut short.

    redis-benchmark does not notice a server that died mid-run (it waits on the dead
    connections), so the servers are checked twice a second and the run is killed as soon
    as one is gone, instead of at the deadline.
    """
    end = time.monotonic() + timeout_s
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.5)
                    return proc.returncode, out, err
                except subprocess.TimeoutExpired:
                    pass
                if not alive():
                    reason = "stopped: the target's server (or a Redis node) has exited"
                elif time.monotonic() > end:
                    reason = f"redis-benchmark timed out after {timeout_s:.0f}s"
                else:
                    continue
                proc.kill()
                proc.communicate()
                return reason
        except BaseException:  # Ctrl-C / SIGTERM: never leave redis-benchmark behind
            proc.kill()
            raise


def _oneline(text: str, limit: int = 300) -> str:
    """stderr squeezed onto one line (it goes into a Markdown list item), its end kept."""
    return " ".join(text.split())[-limit:]


def benchmark_argv(target: Target, sc: Scenario) -> list[str]:
    """redis-benchmark's command line for one scenario against one target."""
    argv = [
        "redis-benchmark",
        "-h", target.host,
        "-p", str(target.port),
        "--csv",
        "-n", str(sc.requests),
        "-c", str(sc.clients),
        "-P", str(sc.pipeline),
        "-t", ",".join(sc.tests),
    ]  # fmt: skip
    if target.auth is not None:
        argv += ["--user", target.auth[0], "-a", target.auth[1]]
    return argv


def benchmark(
    target: Target, sc: Scenario, timeout_s: float, alive: Callable[[], bool]
) -> tuple[dict[str, report.Row], str]:
    """One redis-benchmark invocation; its parsed rows, or ({}, error text) on failure."""
    result = _run_watched(benchmark_argv(target, sc), timeout_s, alive)
    if isinstance(result, str):
        return {}, result
    returncode, stdout, stderr = result
    if returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        return {}, f"redis-benchmark {how}: {_oneline(stderr)}"
    try:
        rows = report.parse_csv(stdout)
    except report.ParseError as exc:
        return {}, f"{exc}; stderr: {_oneline(stderr)}"
    missing = [t for t in sc.tests if t not in rows]
    return rows, (f"no result for {','.join(missing)}" if missing else "")


def flush(primary_port: int) -> None:
    """Empty the data set so every invocation starts alike (lists do not grow run to run)."""
    command(primary_port, "FLUSHALL", timeout=30.0)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(
    s: Settings,
    scs: Sequence[Scenario],
    targets: Sequence[Target],
    primary_port: int,
    runs: list[Run],
    alive: Callable[[Target], bool],
) -> None:
    """All rounds: per round, per scenario, every target in turn (direct, georedis, twemproxy).

    Appends to `runs` as it goes, so an interrupted run still reports what it measured.
    """
    total = s.rounds * len(scs) * len(targets)
    for rnd in range(1, s.rounds + 1):
        for sc in scs:
            for target in targets:
                flush(primary_port)
                t0 = time.monotonic()
                rows, error = benchmark(target, sc, s.run_timeout_s, partial(alive, target))
                runs.append(Run(rnd, target.name, sc.name, rows, time.monotonic() - t0, error))
                summary = " ".join(f"{k}={v.rps:,.0f}" for k, v in rows.items())
                _progress(
                    f"[{len(runs)}/{total}] round {rnd} {sc.name:<7} {target.name:<9} "
                    f"{summary}{'  ERROR: ' + error if error else ''}"
                )


def start_targets(topo: Topology, s: Settings, notes: list[str]) -> tuple[list[Target], int]:
    """Start the primary, replicas and proxies; the targets in run order and the primary port."""
    primary = topo.start_redis("redis-primary")
    replicas = [
        topo.start_redis(f"redis-replica{i}", replica_of=primary.port) for i in range(s.replicas)
    ]
    targets: list[Target] = []
    if "direct" in s.targets:
        targets.append(Target("direct", HOST, primary.port))
    if "georedis" in s.targets:
        nodes = [primary.port, *(r.port for r in replicas)]
        g = topo.start_georedis(nodes, s.workers)
        targets.append(Target("georedis", HOST, g.port))
        if s.features:
            targets.append(features.start(topo, nodes, s.workers))
    if "twemproxy" in s.targets:
        binary = nutcracker_path()
        if binary is None:
            notes.append(
                "twemproxy skipped: `nutcracker` not found on PATH (apt install nutcracker)."
            )
        else:
            tw = topo.start_twemproxy(binary, primary.port, s.twemproxy_connections)
            targets.append(Target("twemproxy", HOST, tw.port))
    return targets, primary.port


def _git_commit() -> str:
    """The commit measured ("" outside a repository or before the first commit); read-only."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def metadata(s: Settings, stamp: str) -> dict[str, object]:
    nutcracker = nutcracker_path()
    meta: dict[str, object] = {
        "timestamp": stamp,
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_version": tool_version(["redis-server", "--version"]).split(" sha=")[0],
        "redis_benchmark_version": tool_version(["redis-benchmark", "--version"]),
        "nutcracker_version": (
            tool_version([nutcracker, "--version"]).removeprefix("This is ") if nutcracker else ""
        ),
        "git_commit": _git_commit(),
        "rounds": s.rounds,
        "clients": s.clients,
        "requests_p16": s.requests_p16,
        "requests_p1": s.requests_p1,
        "latency_requests": s.latency_requests,
        "replicas": s.replicas,
        "workers": s.workers,
        "twemproxy_server_connections": s.twemproxy_connections,
        "quick": s.quick,
    }
    if s.features:  # absent without --features: that record stays as it was
        meta["features"] = True
    return meta


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Handled like Ctrl-C: unwinds through the code that stops the servers, and what was
    # measured so far is still reported.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = s.out / stamp
    notes: list[str] = []
    runs: list[Run] = []
    interrupted = False
    scs = scenarios(s)
    with (
        tempfile.TemporaryDirectory(prefix="georedis-bench-") as tmp,
        Topology(Path(tmp), out_dir / "logs") as topo,
    ):
        try:
            targets, primary_port = start_targets(topo, s, notes)
            _progress("targets: " + ", ".join(f"{t.name}={t.host}:{t.port}" for t in targets))
            measure(s, scs, targets, primary_port, runs, lambda t: not topo.exited(t.name))
            notes += features.notes(targets)
            notes += [
                f"{srv.name} exited with code {srv.proc.returncode} during the run; see {srv.log}."
                for srv in topo.exited()
            ]
        except StartError as exc:
            _progress(f"error: {exc}")
            if "georedis" in str(exc).split(":", 1)[0]:
                _progress("(to measure without it: --targets direct,twemproxy)")
            return 2
        except OSError as exc:  # FLUSHALL could not reach the primary
            _progress(f"error: lost the primary: {exc}")
            return 2
        except KeyboardInterrupt:
            interrupted = True
            notes.append("Interrupted (Ctrl-C or SIGTERM): partial results.")
            _progress("interrupted; stopping servers")
    if not runs:
        _progress("nothing was measured")
        return 130 if interrupted else 2
    failed = [r for r in runs if r.error]
    notes += [f"round {r.round} {r.scenario} {r.target}: {r.error}" for r in failed]
    if s.replicas and "georedis" in s.targets:
        notes.append(
            f"georedis reads from {s.replicas} replica(s); direct and twemproxy use the primary "
            "alone, so read ratios are not like-for-like."
        )
    markdown = report.write_results(
        out_dir, s.out / "latest.md", scs, runs, metadata(s, stamp), notes
    )
    print(markdown)
    _progress(f"results: {out_dir}")
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
