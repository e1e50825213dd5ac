"""What users and ACL rules cost per command: the proxy's CPU per request, side by side.

    python -m benchmarks.acl_cost [--rounds N]

One redis-server and three georedis processes from this tree, alternating each round:
no `[[users]]` (nothing is checked: one attribute test per command), a user with
`allkeys +@all` (the command rules, cached per command name), and a user with
`~key:* +@all` (every key found from its key specs and matched; redis-benchmark's keys
are `key:...`). redis-benchmark SET and GET at -P 1 and -P 16 (-c 50), logged in with
`--user`. Prints the median CPU µs per request of each and the ratio to no users, the
same steady measure as `benchmarks.cpu_ab`.
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
from pathlib import Path

from benchmarks.cpu_ab import CASES, cpu_seconds
from benchmarks.targets import HOST, REPO_ROOT, command, free_port, georedis_config, wait_ready

PASSWORD = "bench-pw"
SIDES = {
    "no users": "",
    "allkeys +@all": "on allkeys +@all",
    "~key:* +@all": "on ~key:* +@all",
}


def _config(port: int, redis_port: int, rules: str) -> str:
    text = georedis_config(port, [redis_port], workers=1)
    if rules:
        digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
        text += f'\n[[users]]\nname = "bench"\nrules = "{rules}"\npassword_sha256 = ["{digest}"]\n'
    return text


def _start(port: int, redis_port: int, rules: str, work: Path) -> subprocess.Popen[bytes]:
    cfg = work / f"georedis-{port}.toml"
    cfg.write_text(_config(port, redis_port, rules))
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=(work / f"georedis-{port}.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_ready(port, 15.0, proc)
    return proc


def _measure(pid: int, port: int, login: bool, test: str, pipeline: int, n: int) -> float:
    auth = ["--user", "bench", "-a", PASSWORD] if login else []
    before = cpu_seconds(pid)
    subprocess.run(
        ["redis-benchmark", "-h", HOST, "-p", str(port), *auth, "-t", test, "-P",
         str(pipeline), "-c", "50", "-n", str(n), "-q"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return (cpu_seconds(pid) - before) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="georedis-acl-cost-") as tmp:
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
            for side, rules in SIDES.items():
                port = free_port()
                procs[side] = (_start(port, redis_port, rules, work), port)
            samples: dict[tuple[str, str, int], list[float]] = {}
            for _ in range(args.rounds):
                for side, (proc, port) in procs.items():
                    for test, pipeline, n in CASES:
                        us = _measure(proc.pid, port, bool(SIDES[side]), test, pipeline, n)
                        samples.setdefault((side, test, pipeline), []).append(us)
                command(redis_port, "FLUSHALL")
            _report(samples)
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            redis.terminate()
            time.sleep(0.2)


def _report(samples: dict[tuple[str, str, int], list[float]]) -> None:
    names = list(SIDES)
    print("| test | -P | " + " | ".join(f"{s} µs/req" for s in names) + " | ratios |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for test, pipeline, _ in CASES:
        med = [statistics.median(samples[(s, test, pipeline)]) for s in names]
        ratios = " / ".join(f"{m / med[0]:.3f}" for m in med[1:])
        print(f"| {test} | {pipeline} | " + " | ".join(f"{m:.2f}" for m in med) + f" | {ratios} |")


if __name__ == "__main__":
    main()
