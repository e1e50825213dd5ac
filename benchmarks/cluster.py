"""georedis in front of a Redis Cluster vs `redis-benchmark --cluster` straight at it.

    python -m benchmarks.cluster [--rounds N] [--requests N] [--clients N] [--out DIR]

One run starts a local cluster of 3 masters x 2 replicas (`redis-cli --cluster create`,
tests/helpers/cluster.py: masters in ap-southeast-1, replicas in us-east-1 and eu-west-1)
and georedis in cluster mode in front of it (`python -m proxy.cli run`, the `georedis`
entry, its region the masters'). Each round runs `redis-benchmark -t set,get -c 50` at
`-P 1` and `-P 16` through georedis (a standalone client: georedis routes by slot) and
with `--cluster` at a master (redis-benchmark routes by slot itself), the two targets
alternating and their order swapped every round, a FLUSHALL of every master before each
invocation. It prints medians over rounds and the georedis/direct ratios (the tables of
benchmarks/report.py), and writes results.json and results.md under
<out>/cluster-<UTC timestamp>/ with the servers' logs.

Both targets get `-r 100000`: without it redis-benchmark uses one literal key per test,
all in one slot, i.e. one shard for georedis and every master for `--cluster` (which
tags keys per node). GETs through georedis go to replicas (the nearest region's), those
of `--cluster` to the masters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import report
from benchmarks.invoke import run_csv
from benchmarks.report import Run, Scenario
from benchmarks.run import RESULTS_DIR, flush
from benchmarks.targets import (
    HOST,
    REPO_ROOT,
    Server,
    StartError,
    Target,
    free_port,
    tool_version,
    wait_ready,
    wait_serving,
)
from tests.helpers.cluster import RedisCluster

TESTS = ("set", "get")
KEYSPACE = "100000"  # redis-benchmark -r


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description="redis-benchmark through georedis on a 3x2 cluster vs --cluster direct",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of both targets (default 3)")
    p.add_argument("--requests", type=int, default=100000, help="-n per invocation")
    p.add_argument("--clients", type=int, default=50, help="-c per invocation")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds per invocation")
    a = p.parse_args(argv)
    for name in ("rounds", "requests", "clients"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    return a


def scenarios(a: argparse.Namespace) -> list[Scenario]:
    return [
        Scenario("P1", a.clients, 1, a.requests, TESTS),
        Scenario("P16", a.clients, 16, a.requests, TESTS),
    ]


def invoke(target: Target, sc: Scenario, timeout_s: float) -> tuple[dict[str, report.Row], str]:
    """One redis-benchmark run; `direct` is the cluster-aware one. (rows, error text)."""
    argv = [
        "redis-benchmark", "-h", target.host, "-p", str(target.port), "--csv",
        "-n", str(sc.requests), "-c", str(sc.clients), "-P", str(sc.pipeline),
        "-t", ",".join(sc.tests), "-r", KEYSPACE,
    ]  # fmt: skip
    if target.name == "direct":
        argv.append("--cluster")
    return run_csv(argv, sc.tests, timeout_s)


def start_georedis(cluster: RedisCluster, workdir: Path, logdir: Path) -> Server:
    """`python -m proxy.cli run --config FILE` in a process group of its own."""
    port = free_port()
    cfg = workdir / "georedis.toml"
    cfg.write_text(cluster.georedis_toml(port))
    log = logdir / "georedis.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    argv = [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )  # fmt: skip
    server = Server("georedis", port, proc, log)
    try:
        wait_ready(port, 30.0, proc)
        wait_serving(port, 30.0)
    except StartError as exc:
        server.stop()
        raise StartError(f"georedis: {exc}\n--- {log} ---\n{server.log_tail()}") from exc
    return server


def measure(
    a: argparse.Namespace, scs: Sequence[Scenario], targets: Sequence[Target],
    cluster: RedisCluster, runs: list[Run],
) -> None:  # fmt: skip
    """Every round: each scenario against both targets, the order swapped each round."""
    total = a.rounds * len(scs) * len(targets)
    for rnd in range(1, a.rounds + 1):
        order = list(targets) if rnd % 2 else list(reversed(targets))
        for sc in scs:
            for target in order:
                for master in cluster.masters():
                    flush(master.port)
                t0 = time.monotonic()
                rows, error = invoke(target, sc, a.run_timeout)
                runs.append(Run(rnd, target.name, sc.name, rows, time.monotonic() - t0, error))
                summary = " ".join(f"{k}={v.rps:,.0f}" for k, v in rows.items())
                print(
                    f"[{len(runs)}/{total}] round {rnd} {sc.name:<4} {target.name:<9} {summary}"
                    f"{'  ERROR: ' + error if error else ''}",
                    file=sys.stderr, flush=True,
                )  # fmt: skip


def render(scs: Sequence[Scenario], runs: Sequence[Run], meta: dict[str, object],
           notes: Sequence[str]) -> str:  # fmt: skip
    medians = report.compute_medians(runs)
    targets = report.ordered_targets({r.target for r in runs})
    lines = [
        f"# georedis on a Redis Cluster — {meta['timestamp']}",
        "",
        f"{meta['host']}: {meta['cpus']} CPUs, {meta['redis_version']}; 3 masters x 2 "
        f"replicas; direct = `redis-benchmark --cluster` at a master; -r {KEYSPACE}; "
        f"medians of {meta['rounds']} round(s), targets alternating.",
        "",
        "## Throughput (requests/s, median)",
        "",
        *report.throughput_table(scs, medians, targets),
    ]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = a.out / f"cluster-{stamp}"
    scs = scenarios(a)
    runs: list[Run] = []
    notes = ["GETs through georedis are served by replicas, those of --cluster by masters."]
    with RedisCluster.start(3, 2) as cluster:  # in a temporary folder, removed on exit
        try:
            georedis = start_georedis(cluster, cluster.base_dir, out_dir / "logs")
        except StartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            targets = [
                Target("direct", HOST, cluster.masters()[0].port),
                Target("georedis", HOST, georedis.port),
            ]
            measure(a, scs, targets, cluster, runs)
        except KeyboardInterrupt:
            notes.append("Interrupted: partial results.")
        finally:
            georedis.stop()
    meta: dict[str, object] = {
        "timestamp": stamp,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "redis_version": tool_version(["redis-server", "--version"]).split(" sha=")[0],
        "redis_benchmark_version": tool_version(["redis-benchmark", "--version"]),
        "rounds": a.rounds,
        "clients": a.clients,
        "requests": a.requests,
    }
    failed = [r for r in runs if r.error]
    notes += [f"round {r.round} {r.scenario} {r.target}: {r.error}" for r in failed]
    markdown = render(scs, runs, meta, notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(markdown)
    medians = report.compute_medians(runs)
    record = report.to_json(scs, runs, medians, ["direct", "georedis"], meta, notes)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown)
    print(f"results: {out_dir}", file=sys.stderr)
    return 1 if failed or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
