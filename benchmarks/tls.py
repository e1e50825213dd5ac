"""TLS through georedis vs redis-server's own TLS, direct (issue 16).

    python -m benchmarks.tls [--rounds N] [--requests N] [--clients N] [--tests set,get]
                             [--latency-requests N] [--plain] [--quick] [--out DIR]

A CA and a certificate for 127.0.0.1 (tests/helpers/certs.py); a TLS-only redis-server;
georedis (workers = 1) serving only TLS and speaking TLS to it. Each round: `redis-benchmark
--tls --cacert CA` at -P 1 and -P 16 (-c 50) and -c 1, against both, the order swapped every
round, FLUSHALL before each. Medians and ratios are printed and written (results.md/.json,
logs) under <out>/tls-<UTC timestamp>/. `--plain`: a plaintext pair beside, as a reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks import report
from benchmarks.invoke import run_csv
from benchmarks.report import Medians, Run, Scenario, Stat
from benchmarks.run import RESULTS_DIR, benchmark_argv
from benchmarks.targets import (
    HOST,
    REPO_ROOT,
    Server,
    StartError,
    Target,
    Topology,
    command,
    free_port,
    georedis_config,
    tool_version,
)
from tests.helpers.certs import Certs, make_certs

DEFAULT_TESTS = ("set", "get")
LATENCY_TESTS = ("get", "set")
# Target names: the TLS pair is "direct"/"georedis", so report.to_json's ratios are theirs.
DIRECT, GEOREDIS = "direct", "georedis"
DIRECT_PLAIN, GEOREDIS_PLAIN = "direct-plain", "georedis-plain"
# (label, direct target, georedis target): the column groups of the tables.
PAIRS = (("TLS", DIRECT, GEOREDIS), ("plain", DIRECT_PLAIN, GEOREDIS_PLAIN))
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    """The parsed command line, --quick and the defaults resolved."""

    rounds: int
    requests: int
    latency_requests: int
    clients: int
    tests: tuple[str, ...]
    plain: bool
    out: Path
    run_timeout_s: float
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.tls",
        description="redis-benchmark --tls: direct to redis-server's tls-port vs via georedis",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small -n, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of all targets (default 3; quick 1)")
    p.add_argument("--requests", type=int, help="-n at -P 1 and -P 16 (default 100000)")
    p.add_argument("--latency-requests", type=int, help="-n of the -c 1 run (default 5000)")
    p.add_argument("--clients", type=int, default=50, help="-c of the throughput runs")
    p.add_argument("--tests", default=",".join(DEFAULT_TESTS), help="redis-benchmark -t list")
    p.add_argument("--plain", action="store_true", help="also plaintext redis and georedis")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds per invocation")
    a = p.parse_args(argv)
    for name in ("rounds", "requests", "latency_requests", "clients"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    tests = tuple(t.strip() for t in a.tests.split(",") if t.strip())
    if not tests:
        p.error("--tests: name at least one redis-benchmark test")
    return Settings(
        a.rounds or (1 if a.quick else 3), a.requests or (5000 if a.quick else 100000),
        a.latency_requests or (500 if a.quick else 5000), a.clients, tests, a.plain, a.out,
        a.run_timeout, a.quick,
    )  # fmt: skip


def scenarios(s: Settings) -> list[Scenario]:
    """-P 1 and -P 16 throughput at -c clients, then -c 1 -P 1 latency of GET and SET."""
    return [
        Scenario("P1", s.clients, 1, s.requests, s.tests),
        Scenario("P16", s.clients, 16, s.requests, s.tests),
        Scenario("latency", 1, 1, s.latency_requests, LATENCY_TESTS, latency=True),
    ]


def redis_tls_argv(port: int, certs: Certs, data: Path) -> list[str]:
    """A redis-server serving only TLS on `port`, no client certificates, no persistence."""
    return [
        "redis-server",
        "--port", "0",
        "--tls-port", str(port),
        "--bind", HOST,
        "--tls-cert-file", str(certs.server.cert),
        "--tls-key-file", str(certs.server.key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data),
        "--daemonize", "no",
    ]  # fmt: skip


def georedis_tls_config(port: int, node: int, certs: Certs) -> str:
    """georedis (workers = 1) with TLS on [proxy] listen (no [tls] listen: TLS only) and
    TLS to `node`, verified against the CA (the certificate names 127.0.0.1)."""
    tables = (
        "\n[tls]\n"
        f'cert_file = "{certs.server.cert}"\n'
        f'key_file = "{certs.server.key}"\n'
        "\n[backend]\n"
        "tls = true\n"
        f'tls_ca_file = "{certs.ca}"\n'
    )
    return georedis_config(port, [node], 1, tables=tables)


def bench_argv(target: Target, sc: Scenario, ca: Path | None) -> list[str]:
    """run.py's redis-benchmark command line, with --tls --cacert when `ca` is given."""
    tls = ["--tls", "--cacert", str(ca)] if ca is not None else []
    return [*benchmark_argv(target, sc), *tls]


def tls_client(port: int, ca: Path, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis(
        host=HOST, port=port, ssl=True, ssl_ca_certs=str(ca),
        socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
    )  # fmt: skip


def wait_tls(server: Server, ca: Path, serving: bool) -> None:
    """PING over TLS until it answers (a proxy: a SET and a GET); StartError on timeout
    or when the process exits. targets.wait_ready cannot: it speaks plaintext."""
    end = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            last = f"exited with code {server.proc.returncode}"
            break
        try:
            with tls_client(server.port, ca, 1.0) as c:
                c.ping()
                if serving:
                    c.set("benchmark:ready", "1")
                    c.get("benchmark:ready")
            return
        except (redis.RedisError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartError(f"{server.name}: {last}\n--- {server.log} ---\n{server.log_tail()}")


def spawn(topo: Topology, name: str, port: int, argv: list[str]) -> Server:
    """Start argv in a process group of its own, owned (and stopped) by `topo`."""
    log = topo.logdir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )  # fmt: skip
    server = Server(name, port, proc, log)
    topo.servers.append(server)  # registered first, so a failed start is stopped too
    return server


def check_config(path: Path) -> None:
    """`georedis check-config`: a rejected file is reported as such, not as a dead port."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-config", str(path)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise StartError(f"georedis check-config rejected {path}: {done.stdout}{done.stderr}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A target, the CA its clients verify it with (None: plaintext) and its FLUSHALL."""

    target: Target
    ca: Path | None
    flush: Callable[[], None]


def start_tls(topo: Topology, certs: Certs) -> list[Endpoint]:
    data = topo.workdir / "redis-tls"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    node = spawn(topo, "redis-tls", port, redis_tls_argv(port, certs, data))
    wait_tls(node, certs.ca, serving=False)
    gport = free_port()
    cfg = topo.workdir / "georedis-tls.toml"
    cfg.write_text(georedis_tls_config(gport, port, certs))
    check_config(cfg)
    argv = [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)]
    wait_tls(spawn(topo, "georedis-tls", gport, argv), certs.ca, serving=True)

    def flush() -> None:
        with tls_client(port, certs.ca, 30.0) as c:
            c.flushall()

    return [
        Endpoint(Target(DIRECT, HOST, port), certs.ca, flush),
        Endpoint(Target(GEOREDIS, HOST, gport), certs.ca, flush),
    ]


def start_plain(topo: Topology) -> list[Endpoint]:
    node = topo.start_redis("redis-plain")
    g = topo.start_georedis([node.port], 1, name="georedis-plain")

    def flush() -> None:
        command(node.port, "FLUSHALL", timeout=30.0)

    return [
        Endpoint(Target(DIRECT_PLAIN, HOST, node.port), None, flush),
        Endpoint(Target(GEOREDIS_PLAIN, HOST, g.port), None, flush),
    ]


def invoke(ep: Endpoint, sc: Scenario, timeout_s: float) -> tuple[dict[str, report.Row], str]:
    """One redis-benchmark run: (rows, "") or ({} or what it got, error text)."""
    argv = bench_argv(ep.target, sc, ep.ca)
    return run_csv(argv, sc.tests, timeout_s)


def measure(s: Settings, scs: Sequence[Scenario], eps: Sequence[Endpoint], runs: list[Run]) -> None:
    """Each round every scenario against every endpoint, the order swapped (drift hits both)."""
    total = s.rounds * len(scs) * len(eps)
    for rnd in range(1, s.rounds + 1):
        order = list(eps) if rnd % 2 else list(reversed(eps))
        for sc in scs:
            for ep in order:
                ep.flush()
                t0 = time.monotonic()
                rows, error = invoke(ep, sc, s.run_timeout_s)
                runs.append(Run(rnd, ep.target.name, sc.name, rows, time.monotonic() - t0, error))
                summary = " ".join(f"{k}={v.rps:,.0f}" for k, v in rows.items())
                print(
                    f"[{len(runs)}/{total}] round {rnd} {sc.name:<7} {ep.target.name:<14} "
                    f"{summary}{'  ERROR: ' + error if error else ''}",
                    file=sys.stderr, flush=True,
                )  # fmt: skip


def _stat(medians: Medians, scenario: str, test: str, target: str) -> Stat | None:
    return medians.get(scenario, {}).get(test, {}).get(target)


def _rps(stat: Stat | None) -> str:
    return f"{stat.rps:,.0f}" if stat else "—"


def _us(stat: Stat | None) -> str:
    return f"{stat.p50_ms * 1000.0:.0f}" if stat else "—"


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def measured_pairs(medians: Medians) -> list[tuple[str, str, str]]:
    """The column groups with anything measured: TLS always, plain with --plain."""
    seen = {t for by_test in medians.values() for by_t in by_test.values() for t in by_t}
    return [p for p in PAIRS if p[0] == "TLS" or {p[1], p[2]} & seen]


def throughput_table(scs: Sequence[Scenario], medians: Medians) -> list[str]:
    """test | -P | direct TLS | georedis TLS | ratio (and the plain group with --plain)."""
    pairs = measured_pairs(medians)
    header = ["test", "-P"]
    for label, _, _ in pairs:
        header += [f"direct {label}", f"georedis {label}", "ratio"]
    body: list[list[str]] = []
    for sc in (x for x in scs if not x.latency):
        for test in sc.tests:
            cells = [test.upper(), str(sc.pipeline)]
            for _, d, g in pairs:
                a, b = _stat(medians, sc.name, test, d), _stat(medians, sc.name, test, g)
                value = report.rps_ratio(medians, sc.name, test, g, d)
                cells += [_rps(a), _rps(b), f"{value:.2f}x" if value is not None else "—"]
            body.append(cells)
    return _markdown(header, body)


def latency_table(scs: Sequence[Scenario], medians: Medians) -> list[str]:
    """test | direct TLS p50 | georedis TLS p50 | georedis - direct (µs), at -c 1 -P 1."""
    pairs = measured_pairs(medians)
    header = ["test"]
    for label, _, _ in pairs:
        header += [f"direct {label} p50", f"georedis {label} p50", "+µs"]
    body: list[list[str]] = []
    for sc in (x for x in scs if x.latency):
        for test in sc.tests:
            cells = [test.upper()]
            for _, d, g in pairs:
                a, b = _stat(medians, sc.name, test, d), _stat(medians, sc.name, test, g)
                delta = f"{(b.p50_ms - a.p50_ms) * 1000.0:+.0f}" if a and b else "—"
                cells += [_us(a), _us(b), delta]
            body.append(cells)
    return _markdown(header, body)


def render(scs: Sequence[Scenario], runs: Sequence[Run], meta: dict[str, object],
           notes: Sequence[str]) -> str:  # fmt: skip
    medians = report.compute_medians(runs)
    lines = [
        f"# TLS: georedis vs redis-server direct — {meta['timestamp']}",
        "",
        f"{meta['host']}: {meta['cpus']} CPUs, {meta['redis_version']}; redis-benchmark "
        f"--tls --cacert; georedis workers=1, TLS to clients and to the node; -c "
        f"{meta['clients']} -n {meta['requests']}; medians of {meta['rounds']} round(s), "
        "targets alternating, the order swapped every round.",
        "",
        "## Throughput (requests/s, median; ratio = georedis / direct)",
        "",
        *throughput_table(scs, medians),
    ]
    if any(sc.latency for sc in scs):
        lines += ["", "## Latency (-c 1 -P 1, p50 µs, median)", "", *latency_table(scs, medians)]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def metadata(s: Settings, stamp: str) -> dict[str, object]:
    return {
        "timestamp": stamp, "host": platform.node(), "cpus": os.cpu_count(),
        "redis_version": tool_version(["redis-server", "--version"]).split(" sha=")[0],
        "redis_benchmark_version": tool_version(["redis-benchmark", "--version"]),
        "rounds": s.rounds, "clients": s.clients, "requests": s.requests,
        "latency_requests": s.latency_requests, "plain": s.plain, "quick": s.quick,
    }  # fmt: skip


def write_results(out_dir: Path, scs: Sequence[Scenario], runs: Sequence[Run],
                  meta: dict[str, object], notes: Sequence[str]) -> str:  # fmt: skip
    """results.md and results.json (report.to_json's record) in out_dir; the Markdown."""
    markdown = render(scs, runs, meta, notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(markdown)
    medians = report.compute_medians(runs)
    targets = sorted({r.target for r in runs})
    record = report.to_json(scs, runs, medians, targets, meta, notes)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return markdown


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = s.out / f"tls-{stamp}"
    scs = scenarios(s)
    runs: list[Run] = []
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="georedis-tls-") as tmp,
        Topology(Path(tmp), out_dir / "logs") as topo,
    ):
        try:
            certs = make_certs(Path(tmp) / "certs")
            eps = start_tls(topo, certs) + (start_plain(topo) if s.plain else [])
            measure(s, scs, eps, runs)
        except StartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (redis.RedisError, OSError) as exc:  # a FLUSHALL could not reach the node
            notes.append(f"lost a redis-server: {exc}")
        except KeyboardInterrupt:
            notes.append("Interrupted: partial results.")
        notes += [f"{srv.name} exited with code {srv.proc.returncode}" for srv in topo.exited()]
    failed = [r for r in runs if r.error]
    notes += [f"round {r.round} {r.scenario} {r.target}: {r.error}" for r in failed]
    print(write_results(out_dir, scs, runs, metadata(s, stamp), notes))
    print(f"results: {out_dir}", file=sys.stderr)
    return 1 if failed or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
