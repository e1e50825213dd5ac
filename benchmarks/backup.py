"""PROXY BACKUP / RESTORE against `redis-cli --rdb - | openssl enc`, on the same data.

    python -m benchmarks.backup [--gb 1.0] [--rounds 2] [--out DIR]

A primary and one replica (redis-server, disk-based replication) are filled with about
`--gb` GB of incompressible values: 80% of the bytes in 1 MiB strings, 15% in 4 KiB
strings, 5% in hashes of 100 fields of 512 bytes, every value from os.urandom. georedis
runs as a subprocess (`python -m proxy.cli run`, one process) with `[backup] directory`
in a temp dir on the same disk. Each round, in alternating order:

- georedis: `PROXY BACKUP FROM <replica>`, BACKUP STATUS polled until complete (RDB over
  the replication protocol, walked, AES-256-GCM sealed, written and fsynced), then
  `PROXY RESTORE <id> TO <an empty redis-server>` (the whole backup checked, then read
  again and served to the target, which loads it as a replica);
- baseline: `redis-cli --rdb - | openssl enc -aes-256-ctr -pbkdf2 -out FILE` from the
  same replica plus an fsync of FILE; then `openssl enc -d` to a dump.rdb, an fsync and
  a redis-server started on it until it answers PING. openssl enc has no AEAD modes, so
  the baseline's cipher is CTR (no authentication): it does less work than GCM.

Measured: wall time, MB/s (RDB bytes / wall), CPU seconds (the proxy's utime+stime from
/proc/PID/stat; the baseline's children from wait4), RSS before and peak RSS (VmHWM: the
proxy's reset through /proc/PID/clear_refs before each step; each child's polled).
Redis' own CPU (the replica's fork and save, the target's load) is in neither figure.
Prints a table of medians over rounds; writes results.json and results.md under
<out>/backup-<UTC timestamp>/. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from benchmarks.cpu_ab import cpu_seconds
from benchmarks.targets import REPO_ROOT
from tests.helpers.backup import backup, backup_toml, pairs, proxy_cmd, set_env
from tests.helpers.proxyrun import FAST_HEALTH, wait_for
from tests.helpers.topology import HOST, RedisNode, RedisTopology, free_port

MB = 1_000_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"
OPENSSL = ["openssl", "enc", "-aes-256-ctr", "-pbkdf2", "-pass", "pass:x"]
SALT_HEADER = 16  # "Salted__" + 8 bytes of salt before openssl's ciphertext
LONG_S = 1800.0
Row = dict[str, float]
STEPS = ("georedis backup", "baseline backup", "georedis restore", "baseline restore")


def fill(c: redis.Redis, gb: float) -> dict[str, int]:
    """The data set (module docstring); written in pipelined batches of ~32 MB."""
    budget = gb * 1e9
    plan = (("big", 1 << 20, 0.80), ("small", 4096, 0.15), ("hash", 100 * 512, 0.05))
    counts: dict[str, int] = {}
    p, pending = c.pipeline(transaction=False), 0
    for kind, size, share in plan:
        counts[kind] = int(budget * share) // size
        for i in range(counts[kind]):
            if kind == "hash":
                p.hset(f"hash:{i}", mapping={f"f{j}": os.urandom(512) for j in range(100)})
            else:
                p.set(f"{kind}:{i}", os.urandom(size))
            pending += size
            if pending >= 32 << 20:
                p.execute()
                pending = 0
    p.execute()
    return counts


def proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_hwm(pid: int) -> bool:
    """VmHWM back to the current RSS (clear_refs 5), so a peak is this step's own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def in_proxy(pid: int, rdb_bytes: int, call: Callable[[], Any]) -> tuple[Any, Row]:
    reset_hwm(pid)
    rss, cpu, t = proc_mb(pid, "VmRSS"), cpu_seconds(pid), time.monotonic()
    out = call()
    wall = time.monotonic() - t
    row = {"wall_s": wall, "cpu_s": cpu_seconds(pid) - cpu, "rss_before_mb": rss,
           "peak_rss_mb": proc_mb(pid, "VmHWM")}  # fmt: skip
    if rdb_bytes == 0:  # the backup: its status says how big the RDB is
        rdb_bytes = int(out["rdb_bytes"])
    row["mb_s"] = rdb_bytes / MB / wall
    return out, row


def wait_all(*procs: subprocess.Popen[bytes]) -> list[tuple[float, float]]:
    """Wait for `procs`: each one's CPU seconds (wait4) and peak RSS in MB (VmHWM, polled
    every 10 ms: wait4's ru_maxrss also counts the pages of the parent it was forked from)."""
    done: dict[int, tuple[float, float]] = {}
    peak = {p.pid: 0.0 for p in procs}
    while len(done) < len(procs):
        for p in procs:
            if p.pid in done:
                continue
            with contextlib.suppress(OSError, KeyError):  # KeyError: a zombie has no VmHWM
                peak[p.pid] = max(peak[p.pid], proc_mb(p.pid, "VmHWM"))
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                if p.returncode:
                    raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
                done[pid] = (ru.ru_utime + ru.ru_stime, peak[pid])
        time.sleep(0.01)
    return [done[p.pid] for p in procs]


def fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def georedis(port: int, pid: int, replica: RedisNode, target: RedisNode,
             keys: int) -> tuple[int, Row, Row]:  # fmt: skip
    st, b = in_proxy(pid, 0, lambda: backup(port, "FROM", replica.address, timeout=LONG_S))
    rdb = int(st["rdb_bytes"])
    b["sealed_mb"] = int(st["size"]) / MB
    tc = target.client(socket_timeout=60)
    tc.flushall()

    def restore() -> dict[str, Any]:
        return pairs(proxy_cmd(port, "RESTORE", st["id"], "TO", target.address, timeout=LONG_S))

    _, r = in_proxy(pid, rdb, restore)
    if tc.dbsize() != keys:
        raise RuntimeError(f"georedis restore: {tc.dbsize()} keys, expected {keys}")
    tc.flushall()
    return rdb, b, r


def baseline(replica: RedisNode, tmp: Path, keys: int) -> tuple[int, Row, Row]:
    sealed, plain = tmp / "baseline.enc", tmp / "plain"
    t = time.monotonic()
    cli = subprocess.Popen(["redis-cli", "-h", HOST, "-p", str(replica.port), "--rdb", "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    enc = subprocess.Popen([*OPENSSL, "-out", str(sealed)], stdin=cli.stdout)
    assert cli.stdout is not None
    cli.stdout.close()
    (cli_cpu, cli_rss), (enc_cpu, enc_rss) = wait_all(cli, enc)
    fsync(sealed)
    wall = time.monotonic() - t
    rdb = sealed.stat().st_size - SALT_HEADER
    b = {"wall_s": wall, "mb_s": rdb / MB / wall, "cpu_s": cli_cpu + enc_cpu,
         "cli_peak_rss_mb": cli_rss, "openssl_peak_rss_mb": enc_rss}  # fmt: skip
    plain.mkdir(exist_ok=True)
    dump = plain / "dump.rdb"
    t = time.monotonic()
    dec = subprocess.Popen([*OPENSSL, "-d", "-in", str(sealed), "-out", str(dump)])
    [(dec_cpu, dec_rss)] = wait_all(dec)
    fsync(dump)
    node = RedisNode("plain", free_port(), plain, ["--dir", str(plain)])
    try:
        node.wait_ready(LONG_S)  # PING answers LOADING until the RDB is in
        wall = time.monotonic() - t
        n = node.admin.dbsize() - len(node.admin.keys("georedis:*"))  # the proxy's own
        if n != keys:
            raise RuntimeError(f"baseline restore: {n} user keys, expected {keys}")
    finally:
        node.stop()
    r = {"wall_s": wall, "mb_s": rdb / MB / wall, "cpu_s": dec_cpu, "openssl_peak_rss_mb": dec_rss}
    sealed.unlink()
    dump.unlink()
    return rdb, b, r


def cell(rows: list[Row], k: str, fmt: str = ".1f") -> str:
    vals = [r[k] for r in rows if k in r]
    return format(statistics.median(vals), fmt) if vals else "-"


def table(runs: dict[str, list[Row]], rdb: int) -> str:
    head = ["step", "wall s", "MB/s", "CPU s", "CPU s/GB", "RSS before MB", "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for step in STEPS:
        rows = runs[step]
        for r in rows:
            r["cpu_s_per_gb"] = r["cpu_s"] / (rdb / 1e9)
        peak = cell(rows, "peak_rss_mb", ".0f")
        if "cli_peak_rss_mb" in rows[0]:
            peak = f"cli {cell(rows, 'cli_peak_rss_mb', '.0f')}, openssl "
            peak += cell(rows, "openssl_peak_rss_mb", ".0f")
        elif "openssl_peak_rss_mb" in rows[0]:
            peak = f"openssl {cell(rows, 'openssl_peak_rss_mb', '.0f')}"
        cells = [step, cell(rows, "wall_s", ".2f"), cell(rows, "mb_s", ".0f"),
                 cell(rows, "cpu_s", ".2f"), cell(rows, "cpu_s_per_gb", ".2f"),
                 cell(rows, "rss_before_mb", ".0f"), peak]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tool(*cmd: str) -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="GB (10^9 bytes) of values")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop all
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runs: dict[str, list[Row]] = {s: [] for s in STEPS}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="georedis-bench-")))
        topo = stack.enter_context(RedisTopology.start({"ap-southeast-1": 2}, tmp=tmp / "redis"))
        replica = topo.nodes[1]
        t = time.monotonic()
        counts = fill(topo.primary.client(socket_timeout=120), args.gb)
        topo.wait_synced(timeout=LONG_S)
        keys = sum(counts.values())
        print(f"filled {counts} in {time.monotonic() - t:.1f} s", flush=True)
        target = RedisNode("target", free_port(), tmp / "redis")
        stack.callback(target.stop)
        target.wait_ready()
        port = free_port()
        extra = FAST_HEALTH + backup_toml(str(tmp / "backups"))
        cfg = topo.write_config(tmp / "georedis.toml", port, extra=extra)
        log = stack.enter_context((tmp / "proxy.log").open("w"))
        proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=set_env(),
                                start_new_session=True)  # fmt: skip
        stack.callback(proc.wait, 10)
        stack.callback(proc.terminate)

        def replica_eligible() -> bool:
            with contextlib.suppress(redis.RedisError, OSError):
                rows = [pairs(r) for r in proxy_cmd(port, "BACKENDS", timeout=2)]
                return any(r["node"] == replica.address and r["eligible"] for r in rows)
            return False

        wait_for(replica_eligible, 30, "the proxy and an eligible replica")
        hwm_reset = reset_hwm(proc.pid)
        for i in range(args.rounds):
            order = ("georedis", "baseline") if i % 2 == 0 else ("baseline", "georedis")
            for who in order:
                if who == "georedis":
                    rdb, b, r = georedis(port, proc.pid, replica, target, keys)
                    for f in (tmp / "backups").iterdir():
                        f.unlink()
                else:
                    rdb, b, r = baseline(replica, tmp, keys)
                runs[f"{who} backup"].append(b)
                runs[f"{who} restore"].append(r)
                print(f"round {i} {who}: backup {b}\n  restore {r}", flush=True)
    md = table(runs, rdb)
    meta = {
        "timestamp": stamp, "gb": args.gb, "rounds": args.rounds, "rdb_bytes": rdb,
        "keys": counts, "cpus": os.cpu_count(), "platform": platform.platform(),
        "redis": _tool("redis-server", "--version"), "openssl": _tool("openssl", "version"),
        "commit": _tool("git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"),
        "hwm_reset_per_step": hwm_reset, "baseline_cipher": " ".join(OPENSSL[1:4]),
    }  # fmt: skip
    out = args.out / f"backup-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    record = {"meta": meta, "runs": runs, "table": md}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "results.md").write_text(md)
    print(f"\nRDB {rdb / MB:.0f} MB, {keys} keys, medians of {args.rounds} round(s):\n")
    print(md + f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
