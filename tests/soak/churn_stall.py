"""Why a replica is slow under 1 MB GET+RST churn: the proxy, or the machine?

    python -m tests.soak.churn_stall [RATE [THREADS]]

Churn (connect, GET a 1 MB value, reset; `tests.helpers.churn`) through a real georedis
subprocess for 10 s, while a thread sends INFO straight to the replica every 20 ms and
reads, around each one, the replica's time on a CPU and waiting for one
(/proc/PID/schedstat). A slow INFO whose time went to waiting for a CPU is the machine's
CPUs shared by the churn, the proxy and the replica, not a proxy fault. Prints the
node_down events from the proxy's log. Linux only; not collected by pytest.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from tests.helpers.topology import RedisTopology, free_port

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 10


def sched(pid: int) -> tuple[float, float]:
    """Seconds the process has run on a CPU, and waited for one, since it started."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def witness(port: int, pid: int, stop: threading.Event, out: list[tuple[float, float, float]]):  # type: ignore[no-untyped-def]
    direct = redis.Redis(port=port, socket_timeout=10)
    while not stop.is_set():
        t0 = time.monotonic()
        cpu0, wait0 = sched(pid)
        direct.info("replication")
        dt = time.monotonic() - t0
        cpu1, wait1 = sched(pid)
        out.append((dt, cpu1 - cpu0, wait1 - wait0))
        time.sleep(0.02)


def main(rate: int, threads: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="georedis-churn-stall-"))
    with RedisTopology.start({"ap-southeast-1": 1, "us-east-1": 1}) as t:
        replica = t.node("us-east-1")
        port = free_port()
        cfg = t.write_config(work / "georedis.toml", port, region="us-east-1")
        with (work / "proxy.log").open("w") as log:
            proxy = subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(2)
            redis.Redis(port=port).set("big", b"x" * (1 << 20))
            t.wait_synced()
            samples: list[tuple[float, float, float]] = []
            stop = threading.Event()
            watcher = threading.Thread(
                target=witness, args=(replica.port, replica.proc.pid, stop, samples)
            )
            watcher.start()
            start = sched(replica.proc.pid)
            churn = subprocess.run(
                [sys.executable, "-m", "tests.helpers.churn", str(port), str(SECONDS), "big",
                 str(threads), str(rate)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            stop.set()
            watcher.join()
            end = sched(replica.proc.pid)
            proxy.terminate()
            proxy.wait()
        report(int(churn.stdout), start, end, samples, replica.admin.info("stats"))
        downs = [x for x in (work / "proxy.log").read_text().splitlines() if "node_down" in x]
        print(f"node_down events: {len(downs)}", *downs[:4], sep="\n  ")


def report(made, start, end, samples, stats) -> None:  # type: ignore[no-untyped-def]
    print(f"connections: {made} ({made / SECONDS:.0f}/s)")
    print(f"replica over the run: {end[0] - start[0]:.2f} s on a CPU, "
          f"{end[1] - start[1]:.2f} s waiting for one")  # fmt: skip
    lat = sorted(s[0] for s in samples)
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    print(f"direct INFO ms: p50 {p50 * 1e3:.1f} p99 {p99 * 1e3:.1f} max {lat[-1] * 1e3:.1f}")
    for dt, cpu, wait in sorted(samples, reverse=True)[:5]:
        print(f"  INFO {dt * 1e3:.0f} ms: on a CPU {cpu * 1e3:.0f} ms, waiting {wait * 1e3:.0f} ms")
    print(f"replica output: {stats['total_net_output_bytes'] >> 20} MB")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 3400,
        int(sys.argv[2]) if len(sys.argv) > 2 else 4,
    )
