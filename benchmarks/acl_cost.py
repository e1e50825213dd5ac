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
import statistics
import subprocess
from functools import partial
from pathlib import Path

from benchmarks.cpu_ab import AUTH, CASES, Samples, Side, alternate, start_proxy, users_config
from benchmarks.targets import REPO_ROOT

SIDES = {
    "no users": "",
    "allkeys +@all": "on allkeys +@all",
    "~key:* +@all": "on ~key:* +@all",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    sides: dict[str, Side] = {
        side: (partial(_start, rules), AUTH if rules else ()) for side, rules in SIDES.items()
    }
    _report(alternate(sides, args.rounds, "georedis-acl-cost-"))


def _start(rules: str, port: int, redis_port: int, work: Path) -> subprocess.Popen[bytes]:
    return start_proxy(REPO_ROOT, port, redis_port, work, users_config(rules))


def _report(samples: Samples) -> None:
    names = list(SIDES)
    print("| test | -P | " + " | ".join(f"{s} µs/req" for s in names) + " | ratios |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for test, pipeline, _ in CASES:
        med = [statistics.median(samples[(s, test, pipeline)]) for s in names]
        ratios = " / ".join(f"{m / med[0]:.3f}" for m in med[1:])
        print(f"| {test} | {pipeline} | " + " | ".join(f"{m:.2f}" for m in med) + f" | {ratios} |")


if __name__ == "__main__":
    main()
