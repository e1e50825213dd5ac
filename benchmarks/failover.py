"""The failover figures: write stall, time to resume, acknowledged writes lost.

    python -m benchmarks.failover [--rounds N]

Real redis-server processes (a primary and a replica in ap-southeast-1, one replica each
in us-east-1 and eu-west-1) and two georedis proxies in front of them, each carrying a
steady load of numbered writes (unique keys) and reads. Each round:

- planned: `PROXY FAILOVER TO <the next region>` on the first proxy; afterwards every
  write either proxy acknowledged is read back from the new primary;
- forced: the primary SIGKILLed, `PROXY FAILOVER FORCE` once both proxies see it gone;
  the writes acknowledged after the promotion are read back (those before the kill may
  be lost: FORCE reports how many bytes at most).

Printed per round and as medians: the longest gap between two acknowledged writes of
any client (the stall), failed writes and reads per proxy, the acknowledged writes not
found on the new primary (lost: must be 0), and for FORCE the time from the promotion to
writes flowing on both proxies. The tests (tests/integration/test_failover.py) assert
the same things; this prints the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from tests.helpers.failover import WriteLoad, missing_on, proxy_failover
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-1")


def _proxies(stack: ExitStack, topo: RedisTopology, n: int = 2) -> list[ProxyThread]:
    extra = FAST_HEALTH + "[backend]\ntimeout_ms = 2000\n"
    out = []
    for _ in range(n):
        cfg = config_from_toml(topo.config_toml(free_port(), extra=extra))
        p = stack.enter_context(ProxyThread(cfg))
        wait_for(partial(_has_primary, p), 10, "a primary")
        out.append(p)
    return out


def _has_primary(p: ProxyThread) -> bool:
    app = p.app
    return app is not None and p.call(lambda: app.topo.primary is not None)


def _loads(proxies: list[ProxyThread], tag: str) -> list[WriteLoad]:
    loads = [WriteLoad(p, f"{tag}-{i}") for i, p in enumerate(proxies)]
    for load in loads:
        load.start()
    return loads


def planned(topo: RedisTopology, region: str, tag: str) -> dict[str, float]:
    with ExitStack() as stack:
        proxies = _proxies(stack, topo)
        loads = _loads(proxies, tag)
        time.sleep(1.0)
        result = proxy_failover(proxies[0], "TO", region)
        time.sleep(1.0)
        for load in loads:
            load.finish()
    new = topo.by_port(int(str(result["new_primary"]).rsplit(":", 1)[1]))
    topo.primary = new
    return _figures(loads, missing_on(new, loads), float(str(result["writes_held_ms"])))


def forced(topo: RedisTopology, tag: str) -> dict[str, float]:
    old = topo.primary
    with ExitStack() as stack:
        proxies = _proxies(stack, topo)
        loads = _loads(proxies, tag)
        time.sleep(1.0)
        old.kill()
        wait_for(lambda: not any(_has_primary(p) for p in proxies), 5, "the primary gone")
        result = proxy_failover(proxies[0], "FORCE")
        promoted = time.monotonic()
        counts = [len(ld.acked) for ld in loads]
        wait_for(lambda: all(len(ld.acked) > n for ld, n in zip(loads, counts, strict=True)),
                 10, "writes on both")  # fmt: skip
        resumed_ms = (time.monotonic() - promoted) * 1000
        time.sleep(1.0)
        for load in loads:
            load.finish()
    new = topo.by_port(int(str(result["new_primary"]).rsplit(":", 1)[1]))
    old.restart()
    old.replicaof(new.host, new.port)
    old.wait_link_up()
    topo.primary = new
    after = []
    for load, n in zip(loads, counts, strict=True):
        tail = WriteLoad.__new__(WriteLoad)
        tail.acked = load.acked[n:]
        after.append(tail)
    figures = _figures(loads, missing_on(new, after), float(str(result["writes_held_ms"])))
    figures["resume_ms"] = resumed_ms
    return figures


def _figures(loads: list[WriteLoad], missing: list[str], held_ms: float) -> dict[str, float]:
    return {
        "writes_acked": sum(len(ld.acked) for ld in loads),
        "write_errors": sum(len(ld.write_errors) for ld in loads),
        "read_errors": sum(len(ld.read_errors) for ld in loads),
        "lost": len(missing),
        "stall_ms": max(ld.longest_stall for ld in loads) * 1000,
        "held_ms": held_ms,
    }


def _row(kind: str, rs: list[dict[str, float]]) -> str:
    stalls = [r["stall_ms"] for r in rs]
    resume = [r["resume_ms"] for r in rs if "resume_ms" in r]
    cells = [
        kind,
        str(len(rs)),
        f"{sum(r['writes_acked'] for r in rs):.0f}",
        f"{sum(r['write_errors'] for r in rs):.0f}",
        f"{sum(r['read_errors'] for r in rs):.0f}",
        f"{sum(r['lost'] for r in rs):.0f}",
        f"{statistics.median(stalls):.0f}, {max(stalls):.0f}",
        f"{statistics.median(r['held_ms'] for r in rs):.0f}",
        f"{statistics.median(resume):.0f}" if resume else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rows: dict[str, list[dict[str, float]]] = {"planned": [], "forced": []}
    with tempfile.TemporaryDirectory() as tmp, RedisTopology.start(tmp=Path(tmp)) as topo:
        for i in range(args.rounds):
            rows["planned"].append(planned(topo, REGIONS[i % len(REGIONS)], f"p{i}"))
            print("planned", i, rows["planned"][-1], flush=True)
        for i in range(args.rounds):
            rows["forced"].append(forced(topo, f"f{i}"))
            print("forced", i, rows["forced"][-1], flush=True)
    print()
    print("| kind | rounds | writes acked | failed writes | failed reads | lost | "
          "longest stall ms (median, max) | writes held ms | resume ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, rs in rows.items():
        print(_row(kind, rs))
    return 0 if all(r["lost"] == 0 for rs in rows.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
