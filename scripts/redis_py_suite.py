"""redis-py's own test suite, directly against Redis and then through georedis (issue 17).

Run by scripts/redis_py_suite.sh, which fetches the suite; not part of CI. Each phase gets
a fresh redis-server primary and one replica on free loopback ports (`--save ''`); the
"proxy" phase adds a georedis in front of them with `[routing] read_your_writes = true`
and `[policy] refuse = []` (the suite flushes between tests). pytest runs the suite once
per phase with a JUnit XML report (a second session for the ISOLATED tests); the tests
are then compared by id: every test that passed directly but not through georedis is
listed with its failure message.

    python3 scripts/redis_py_suite.py --suite /tmp/.../redis-8.1.0 [--phase both]
        [--timeout 30] [-k EXPR] [--files tests/test_commands.py ...] [--min-ratio 0.99]

Exit status: 0 when at least --min-ratio of the tests that passed directly pass through
georedis, 1 otherwise, 2 when the set-up failed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# The suites that need servers this set-up does not have (a cluster, sentinels, TLS,
# Redis Stack modules, Redis 8 data types, Redis Enterprise, the docker "multidb"
# profile), left out as redis-py's own CI does for a standalone server. The marker
# expression below skips what remains of them inside the files that are run.
# test_credentials.py imports redis-entraid at the top, which pulls azure-identity and
# msal and pins requests: not installed into the project's Python, so left out too.
EXCLUDED_FILES = {
    "test_credentials.py",
    "test_cluster.py",
    "test_cluster_transaction.py",
    "test_sentinel.py",
    "test_sentinel_managed_connection.py",
    "test_ssl.py",
    "test_bloom.py",
    "test_json.py",
    "test_search.py",
    "test_search_aggregation.py",
    "test_search_querystring.py",
    "test_search_result.py",
    "test_timeseries.py",
    "test_vsets.py",
}
MARKERS = "not onlycluster and not redismod and not ssl and not cp_integration"

# Tests that can leave the deployment broken for every test after them when they fail
# through georedis, so each phase runs them in a pytest session of their own, on fresh
# servers, after the others. test_auth sets `requirepass` on the primary (CONFIG SET is
# forwarded) and clears it in a teardown that first AUTHs, which georedis answers itself
# (no [[users]]) and refuses: the primary keeps the password, and every backend
# connection georedis opens afterwards (pools for another db, MULTI, blocking commands)
# fails its handshake ("georedis: backend ... unavailable"), ~50 unrelated tests with it.
ISOLATED = ("tests/test_commands.py::TestRedisCommands::test_auth",)

# DEBUG is enabled, so that the tests using it (DEBUG ERROR, DEBUG OBJECT) pass directly
# and what georedis does with them shows in the comparison.
REDIS_ARGS = (
    "--save", "", "--appendonly", "no", "--daemonize", "no",
    "--repl-diskless-sync", "no", "--enable-debug-command", "yes",
    "--shutdown-timeout", "0", "--loglevel", "notice",
)  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def send(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """One command over a fresh RESP2 connection; the raw reply (up to 64 KiB)."""
    req = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(req.encode())
        time.sleep(0.05)
        return s.recv(65536)


def answers_ping(port: int) -> bool:
    return send(port, "PING") == b"+PONG\r\n"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    """Every process started here; all stopped (TERM, then KILL) on the way out."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> None:
        with log.open("ab") as out:
            p = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
            )
        self.procs.append((name, p))

    def stop(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.terminate()
        for name, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"{name} (pid {p.pid}) did not stop on SIGTERM: killed", file=sys.stderr)
                p.kill()
                p.wait()
        self.procs.clear()


@dataclass
class Deployment:
    primary: int
    replica: int
    proxy: int | None


@contextlib.contextmanager
def deployment(work: Path, proxy_tree: Path | None, python: str) -> Iterator[Deployment]:
    procs = Processes()
    try:
        server = shutil.which("redis-server") or "redis-server"
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            d = work / f"node{port}"
            d.mkdir(parents=True, exist_ok=True)
            extra = ["--replicaof", HOST, str(ports[0])] if i else []
            argv = [server, "--port", str(port), "--bind", HOST, "--dir", str(d)]
            procs.start(f"redis-server :{port}", [*argv, *REDIS_ARGS, *extra], d / "log")
        for port in ports:
            wait_for(f"redis-server :{port}", functools.partial(answers_ping, port))
        wait_for(
            "the replica's link",
            lambda: b"master_link_status:up" in send(ports[1], "INFO", "replication"),
        )
        version = send(ports[0], "INFO", "server").split(b"redis_version:")[1].split(b"\r")[0]
        print(f"redis-server {version.decode()}: primary :{ports[0]}, replica :{ports[1]}")
        proxy = None
        if proxy_tree is not None:
            proxy = free_port()
            cfg = work / "georedis.toml"
            cfg.write_text(config_toml(proxy, ports))
            log = work / "georedis.log"
            argv = [python, "-m", "proxy.cli", "run", "--config", str(cfg)]
            procs.start("georedis", argv, log, cwd=proxy_tree)
            wait_for("georedis to answer PING", functools.partial(answers_ping, proxy))
            wait_for(
                "the replica to be eligible in PROXY BACKENDS",
                lambda: replica_eligible(proxy, ports[1]),
            )
            print(f"georedis :{proxy} (config {cfg}, log {log})")
        yield Deployment(ports[0], ports[1], proxy)
    finally:
        procs.stop()


def replica_eligible(proxy: int, replica: int) -> bool:
    reply = send(proxy, "PROXY", "BACKENDS").decode(errors="replace").split("\r\n")
    # RESP2: a list of flat maps; find the replica's row and its "eligible" value.
    for i, line in enumerate(reply):
        if line == f"{HOST}:{replica}":
            row = reply[i : i + 40]
            k = row.index("eligible")
            return row[k + 1] == ":1"
    return False


def config_toml(proxy: int, nodes: list[int]) -> str:
    node_list = ", ".join(f'"{HOST}:{p}"' for p in nodes)
    return f"""[proxy]
listen = "{HOST}:{proxy}"
region = "local"

[[regions]]
name = "local"
latitude = 0.0
longitude = 0.0
nodes = [{node_list}]

[metrics]
enabled = false

[routing]
read_your_writes = true

[policy]
refuse = []
"""


def test_files(suite: Path, asked: list[str], with_async: bool) -> list[str]:
    if asked:
        return asked
    dirs = [suite / "tests"] + ([suite / "tests" / "test_asyncio"] if with_async else [])
    files = []
    for d in dirs:
        for f in sorted(d.glob("test_*.py")):
            if f.name not in EXCLUDED_FILES:
                files.append(str(f.relative_to(suite)))
    return files


def run_pytest(
    suite: Path, python: str, port: int, tests: list[str], xml: Path, args: argparse.Namespace
) -> None:
    argv = [
        # --tb=native: pytest's own traceback formatting re-parses source with `ast`,
        # which on CPython 3.11 raised "SystemError: AST constructor recursion depth
        # mismatch" (an INTERNALERROR that ended the whole run) after a failing test.
        python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--capture=fd", "--tb=native",
        f"--timeout={args.timeout}", "-m", MARKERS, f"--junitxml={xml}",
        f"--redis-url=redis://{HOST}:{port}/0",
        # No Redis Stack here: a port nothing listens on, so module probing fails fast.
        f"--redis-mod-url=redis://{HOST}:{free_port()}",
        *(["-k", args.k] if args.k else []),
        *tests,
    ]  # fmt: skip
    print("+", shlex.join(argv), flush=True)
    started = time.monotonic()
    log = xml.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=suite, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: pytest goes before the servers do
                proc.kill()
                proc.wait()
    tail = log.read_bytes().decode(errors="replace").strip().splitlines()[-1:]
    print(f"  pytest rc={rc} in {time.monotonic() - started:.0f}s: {' '.join(tail)} ({log})")
    if not xml.exists():
        raise RuntimeError(f"pytest wrote no report; see {log}")


def batches(files: list[str]) -> list[tuple[str, list[str]]]:
    """(name, pytest arguments) of each pytest session of a phase: the files without the
    ISOLATED tests, then those of them whose file is selected."""
    isolated = [t for t in ISOLATED if t.split("::")[0] in files]
    main = [*files, *(f"--deselect={t}" for t in isolated)]
    return [("main", main)] + ([("isolated", isolated)] if isolated else [])


@dataclass
class Result:
    outcome: str  # passed, failed, error, skipped
    message: str


def read_junit(xmls: list[Path]) -> dict[str, Result]:
    results: dict[str, Result] = {}
    cases = [c for xml in xmls for c in ET.parse(xml).getroot().iter("testcase")]
    for case in cases:
        if not case.get("name"):
            continue  # an empty entry pytest writes beside an INTERNALERROR
        tid = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
            if child.tag == "skipped":
                outcome = "skipped"
        # A test whose teardown errored appears twice; any failure wins.
        prev = results.get(tid)
        if prev is None or prev.outcome in ("passed", "skipped"):
            results[tid] = Result(outcome, message)
    return results


def short(message: str, lines: int) -> str:
    """The message's first line and the last `lines` lines of its traceback."""
    text = message.strip().splitlines()
    if len(text) <= lines + 1:
        return "\n".join(text)
    return "\n".join([text[0], "    ...", *text[-lines:]])


def compare(work: Path, direct: dict[str, Result], proxied: dict[str, Result], version: str,
            min_ratio: float, detail_lines: int) -> int:  # fmt: skip
    passed = sorted(t for t, r in direct.items() if r.outcome == "passed")
    ok = [t for t in passed if proxied.get(t, Result("missing", "")).outcome == "passed"]
    differ = [t for t in passed if t not in set(ok)]
    better = sorted(
        t for t, r in proxied.items()
        if r.outcome == "passed" and direct.get(t, Result("", "")).outcome != "passed"
    )  # fmt: skip
    ratio = len(ok) / len(passed) if passed else 0.0
    report = work / "differences.txt"
    with report.open("w") as out:
        for t in differ:
            r = proxied.get(t, Result("missing", "not run through georedis"))
            out.write(f"=== {t} [{r.outcome}]\n{r.message.strip()}\n\n")
    counts = {
        name: {o: sum(r.outcome == o for r in res.values())
               for o in ("passed", "failed", "error", "skipped")}
        for name, res in (("direct", direct), ("georedis", proxied))
    }  # fmt: skip
    print()
    print(f"redis-py {version} test suite, redis-server behind georedis")
    for name, c in counts.items():
        print(f"  {name:9}: " + ", ".join(f"{v} {k}" for k, v in c.items()))
    print(f"passed directly:                 {len(passed)}")
    print(f"  of those, passed via georedis: {len(ok)}")
    print(f"  ratio:                         {ratio:.4f} ({100 * ratio:.2f}%)")
    print(f"passed only via georedis:        {len(better)}")
    print(f"\n{len(differ)} tests passed directly but not through georedis "
          f"(full messages: {report}):")  # fmt: skip
    for t in differ:
        r = proxied.get(t, Result("missing", "not run through georedis"))
        print(f"- {t} [{r.outcome}]")
        if detail_lines:
            for line in short(r.message, detail_lines).splitlines():
                print(f"      {line}")
    if better:
        print("\npassed through georedis but not directly (flaky or environment):")
        for t in better:
            print(f"- {t} [direct: {direct.get(t, Result('missing', '')).outcome}]")
    return 0 if ratio >= min_ratio else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", type=Path, required=True, help="redis-py source (with tests/)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/georedis-redis-py-suite/run"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--georedis-tree", type=Path, default=REPO,
                    help="the source tree georedis runs from (default: this one)")  # fmt: skip
    ap.add_argument("--phase", choices=["both", "direct", "proxy", "compare"], default="both",
                    help="compare: only compare an earlier run's reports in --work")  # fmt: skip
    ap.add_argument("--timeout", type=int, default=30, help="pytest-timeout per test, s")
    ap.add_argument("--no-asyncio", action="store_true", help="only the synchronous tests")
    ap.add_argument("--files", nargs="*", default=[], help="test files (relative to --suite)")
    ap.add_argument("-k", default="", help="pytest -k expression")
    ap.add_argument("--min-ratio", type=float, default=0.99)
    ap.add_argument("--detail-lines", type=int, default=3,
                    help="traceback lines printed per differing test (0: none)")  # fmt: skip
    args = ap.parse_args()
    suite = args.suite.resolve()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    files = test_files(suite, args.files, not args.no_asyncio)
    version = subprocess.run(
        [args.python, "-c", "import redis; print(redis.__version__)"],
        cwd=suite, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for phase in ("direct", "proxy"):
            if args.phase not in ("both", phase):
                continue
            tree = args.georedis_tree.resolve() if phase == "proxy" else None
            for xml in work.glob(f"{phase}.*xml"):
                xml.unlink()
            for batch, tests in batches(files):
                print(f"\n== {phase}, {batch}: {len(tests)} arguments", flush=True)
                shutil.rmtree(work / phase / batch, ignore_errors=True)
                with deployment(work / phase / batch, tree, args.python) as dep:
                    port = dep.proxy if dep.proxy is not None else dep.primary
                    xml = work / f"{phase}.{batch}.xml"
                    run_pytest(suite, args.python, port, tests, xml, args)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"redis_py_suite: {e}", file=sys.stderr)
        return 2
    if not (work / "direct.main.xml").exists() or not (work / "proxy.main.xml").exists():
        print(f"reports in {work}: run both phases to compare")
        return 0
    direct = read_junit(sorted(work.glob("direct.*.xml")))
    proxied = read_junit(sorted(work.glob("proxy.*.xml")))
    return compare(work, direct, proxied, version, args.min_ratio, args.detail_lines)


if __name__ == "__main__":
    sys.exit(main())
