"""CPU per request of georedis in cluster mode from two source trees, alternating.

    python -m benchmarks.cluster_ab BEFORE_DIR [AFTER_DIR] [--rounds N]

`benchmarks.cpu_ab` in front of a Redis Cluster (3 masters x 2 replicas, started as the
tests start one): one georedis from each tree, redis-benchmark SET and GET at -P 1 and
-P 16 (-c 50, `-r 100000` so that a pipeline's keys spread over every shard) against
each in turn, the order swapped each round. Prints the median CPU µs per request of each
and their ratio. Each tree needs its C accelerator built (`cpu_ab`'s note).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.cpu_ab import CASES, Samples, measure, report
from benchmarks.targets import REPO_ROOT, command, free_port, wait_ready, wait_serving
from tests.helpers.cluster import RedisCluster

KEYSPACE = ("-r", "100000")


def start_in_cluster(
    tree: Path, cluster: RedisCluster, work: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = work / f"georedis-{port}.toml"
    cfg.write_text(cluster.georedis_toml(port))
    log = (work / f"georedis-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
        cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_ready(port, 30.0, proc)
    wait_serving(port, 30.0)
    return proc, port


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path, nargs="?", default=REPO_ROOT)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    samples: Samples = {}
    with RedisCluster.start(3, 2) as cluster:
        procs = {
            side: start_in_cluster(tree.resolve(), cluster, cluster.base_dir)
            for side, tree in (("before", args.before), ("after", args.after))
        }
        try:
            for r in range(args.rounds):
                for side, (proc, port) in list(procs.items())[:: 1 if r % 2 == 0 else -1]:
                    for test, pipeline, n in CASES:
                        us = measure(proc.pid, port, test, pipeline, n, KEYSPACE)
                        samples.setdefault((side, test, pipeline), []).append(us)
                for master in cluster.masters():
                    command(master.port, "FLUSHALL")
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(10)
    report(samples)


if __name__ == "__main__":
    main()
