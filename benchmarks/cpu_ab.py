"""CPU per request of georedis from two source trees, side by side, alternating.

    python -m benchmarks.cpu_ab BEFORE_DIR [AFTER_DIR] [--rounds N] [--rules RULES]

Throughput on a small shared machine moves by 10-25% between back-to-back runs (other
load, the scheduler placing the proxy and redis-benchmark on one core or two), which
hides a change of a few percent in the per-command path. The proxy's own CPU time per
request (its threads' on-CPU time from /proc/PID/task/*/schedstat, in ns, over a fixed
number of requests) is far steadier: it is what a change to the code costs, whatever the
machine does meanwhile.

One redis-server, one georedis from each tree (`git worktree add /tmp/before <rev>`
gives a BEFORE_DIR; AFTER_DIR defaults to this checkout), and for each round, each tree
in turn, redis-benchmark SET and GET at -P 1 and -P 16 (-c 50). Prints the median CPU
µs per request of each and their ratio. `--rules "on ~key:* +@all"` runs both with one
`[[users]]` user of those ACL rules, redis-benchmark logged in as it (what a change to
the ACL path costs). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from benchmarks.targets import HOST, REPO_ROOT, command, free_port, georedis_config, wait_ready

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
USER, PASSWORD = "bench", "bench-pw"
AUTH = ("--user", USER, "-a", PASSWORD)
CASES = (("set", 1, 50_000), ("get", 1, 50_000), ("set", 16, 300_000), ("get", 16, 300_000))


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of `pid`: from schedstat, in nanoseconds,
    where the kernel has it (/proc/PID/stat counts 10 ms ticks: 2-3% of a -P 16 run)."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue  # (a thread that just ended)
    if found:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime + stime


def start_proxy(tree: Path, port: int, redis_port: int, work: Path,
                extra_config: str = "") -> subprocess.Popen[bytes]:  # fmt: skip
    cfg = work / f"georedis-{port}.toml"
    cfg.write_text(georedis_config(port, [redis_port], workers=1) + extra_config)
    env = dict(os.environ, PYTHONPATH=str(tree))
    log = (work / f"georedis-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_ready(port, 15.0, proc)
    return proc


def users_config(rules: str) -> str:
    """A `[[users]]` table for USER with these ACL rules ("" for none)."""
    if not rules:
        return ""
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    return f'\n[[users]]\nname = "{USER}"\nrules = "{rules}"\npassword_sha256 = ["{digest}"]\n'


def measure(pid: int, port: int, test: str, pipeline: int, n: int,
            extra: Sequence[str] = ()) -> float:  # fmt: skip
    """The proxy's CPU µs per request over one redis-benchmark run."""
    before = cpu_seconds(pid)
    subprocess.run(
        ["redis-benchmark", "-h", HOST, "-p", str(port), *extra, "-t", test, "-P",
         str(pipeline), "-c", "50", "-n", str(n), "-q"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return (cpu_seconds(pid) - before) / n * 1e6


Samples = dict[tuple[str, str, int], list[float]]
# A side: how to start its proxy (port, redis port, work dir), and redis-benchmark's
# extra arguments (a login).
Side = tuple[Callable[[int, int, Path], "subprocess.Popen[bytes]"], Sequence[str]]


def alternate(sides: dict[str, Side], rounds: int, prefix: str) -> Samples:
    """One redis-server, one proxy per side; each round runs every case on each side in
    turn. The medians of what `measure` returns are what to compare."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            wait_ready(redis_port, 10.0, redis)
            for side, (start, _) in sides.items():
                port = free_port()
                procs[side] = (start(port, redis_port, work), port)
            samples: Samples = {}
            for r in range(rounds):
                # Each round in the other order: the side that runs first after the
                # FLUSHALL would otherwise be first every round (a bias of a few %).
                for side, (proc, port) in list(procs.items())[:: 1 if r % 2 == 0 else -1]:
                    for test, pipeline, n in CASES:
                        us = measure(proc.pid, port, test, pipeline, n, sides[side][1])
                        samples.setdefault((side, test, pipeline), []).append(us)
                command(redis_port, "FLUSHALL")
            return samples
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            redis.terminate()
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path, nargs="?", default=REPO_ROOT)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rules", default="", help="ACL rules of a user both sides run with")
    args = ap.parse_args(argv)
    for tree in (args.before, args.after):
        if not list((tree / "proxy" / "resp").glob("_speedups*.so")):
            # A fresh worktree has no built C accelerator: it would measure the pure-
            # Python fallback (about twice the CPU at -P 16) against a built tree.
            ap.error(f"{tree}: no built proxy/resp/_speedups; run "
                     f"`python setup.py build_ext --inplace` there first")  # fmt: skip
    extra = users_config(args.rules)
    auth = AUTH if args.rules else ()
    sides: dict[str, Side] = {
        side: (partial(start_tree, tree.resolve(), extra), auth)
        for side, tree in (("before", args.before), ("after", args.after))
    }
    report(alternate(sides, args.rounds, "georedis-cpu-ab-"))


def start_tree(tree: Path, extra: str, port: int, redis_port: int,
               work: Path) -> subprocess.Popen[bytes]:  # fmt: skip
    return start_proxy(tree, port, redis_port, work, extra)


def report(samples: Samples, base: str = "before", other: str = "after") -> None:
    """The medians of two sides and `other`/`base`."""
    print(f"| test | -P | {base} µs/req | {other} µs/req | {other}/{base} |")
    print("|---|---|---|---|---|")
    for test, pipeline, _ in CASES:
        b = statistics.median(samples[(base, test, pipeline)])
        a = statistics.median(samples[(other, test, pipeline)])
        print(f"| {test} | {pipeline} | {b:.2f} | {a:.2f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
