"""Syscalls and CPU per request of georedis and twemproxy, side by side (issue 16).

    python -m benchmarks.syscalls [--requests N] [--clients N]

One redis-server, one georedis (workers = 1) and one nutcracker in front of it. For each
case (GET and SET at -P 1 and -P 16, -c 50) and each proxy in turn: `strace -c -f` is
attached to the proxy while redis-benchmark sends a fixed number of requests, and the
proxy's CPU time (user + system, /proc/PID/stat) is read before and after. Prints, per
request: every syscall that strace counted at least 0.01 times, their total, and the CPU
µs. Counts do not depend on how busy the machine is; the CPU µs do a little (and strace
itself slows every syscall, so they come from a second run without it). Linux only; needs
strace and nutcracker.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.cpu_ab import cpu_seconds, start_proxy
from benchmarks.targets import HOST, free_port, nutcracker_config, nutcracker_path, wait_ready

CASES = (("get", 1), ("set", 1), ("get", 16), ("set", 16))
_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(\w+)\s*$")


def parse_strace(text: str) -> dict[str, int]:
    """`strace -c` summary -> {syscall: calls} (the total line left out)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m and m.group(2) != "total":
            out[m.group(2)] = int(m.group(1))
    return out


def traced(pid: int, port: int, test: str, pipeline: int, n: int, clients: int,
           work: Path) -> tuple[dict[str, int], float]:  # fmt: skip
    """Syscall counts of `pid` over one redis-benchmark run, and its CPU µs per request
    over another run of the same size without strace (which slows every syscall)."""
    bench = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-P", str(pipeline),
             "-c", str(clients), "-q"]  # fmt: skip
    subprocess.run([*bench, "-n", "5000"], check=True, capture_output=True)  # warm up
    before = cpu_seconds(pid)
    subprocess.run([*bench, "-n", str(n)], check=True, capture_output=True)
    cpu_us = (cpu_seconds(pid) - before) / n * 1e6
    out = work / f"strace-{pid}-{test}-{pipeline}.txt"
    strace = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)  # attached to every thread before the first request
    subprocess.run([*bench, "-n", str(n)], check=True, capture_output=True)
    strace.send_signal(signal.SIGINT)
    strace.wait(30)
    return parse_strace(out.read_text()), cpu_us


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args(argv)
    binary = nutcracker_path()
    if binary is None or shutil.which("strace") is None:
        raise SystemExit("needs nutcracker and strace")
    with tempfile.TemporaryDirectory(prefix="georedis-syscalls-") as tmp:
        work = Path(tmp)
        rport, gport, tport = free_port(), free_port(), free_port()
        procs = [subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)]  # fmt: skip
        try:
            wait_ready(rport, 10.0, procs[0])
            procs.append(start_proxy(Path.cwd(), gport, rport, work))
            (work / "n.yml").write_text(nutcracker_config(tport, rport, 1))
            procs.append(
                subprocess.Popen(
                    [binary, "-c", str(work / "n.yml")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_ready(tport, 10.0, procs[2])
            proxies = {"georedis": (procs[1].pid, gport), "twemproxy": (procs[2].pid, tport)}
            print("| proxy | test | -P | syscalls per request | total | CPU µs/req |")
            print("|---|---|---|---|---|---|")
            for test, pipeline in CASES:
                for name, (pid, port) in proxies.items():
                    counts, cpu = traced(pid, port, test, pipeline, args.requests,
                                         args.clients, work)  # fmt: skip
                    n = args.requests
                    per = ", ".join(f"{k} {v / n:.2f}" for k, v in
                                    sorted(counts.items(), key=lambda kv: -kv[1])
                                    if v / n >= 0.01)  # fmt: skip
                    total = sum(counts.values()) / n
                    print(f"| {name} | {test.upper()} | {pipeline} | {per} | {total:.2f} | "
                          f"{cpu:.1f} |")  # fmt: skip
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                p.wait(10)


if __name__ == "__main__":
    main()
