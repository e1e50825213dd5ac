"""Run one fuzz target under atheris: `python -m tests.fuzz.run TARGET --runs N`.

The parent process writes the built-in seeds (`seeds`) and a dictionary to a temp dir,
starts a worker process that runs libFuzzer through atheris, and once it is gone prints
one JSON line: inputs run, seconds, exec/s, failures, peak RSS. The worker is a separate
process because libFuzzer ends with C `exit()` once its runs are done, and because the
parent then reads the worker's peak RSS (getrusage RUSAGE_CHILDREN).

A property failure does not stop the run (use --stop-on-crash for libFuzzer's own
behaviour): the worker saves the first input (--keep N: the first N) of each distinct
failure under --crash-dir as `<target>-<sha1>` (replay one without atheris:
`python -m tests.fuzz.run TARGET --replay FILE`) and goes on, so one known bug does not
end a million-input run. A worker that dies (timeout, out of memory, a native crash)
leaves libFuzzer's artifact in --crash-dir and is started again for the runs still to
do, at most 3 times.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("requests", "replies", "replies-pure", "proxyproto")
_STAT = re.compile(rb"^stat::(\w+):\s+(\d+)")
_DONE = re.compile(rb"^Done (\d+) runs in (\d+) second")


# ------------------------------------------------------------------ built-in corpus

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_PING, _GET = b"*1\r\n$4\r\nPING\r\n", b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
_SET = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\nv\r\nw\x00 xy\r\n"
_V2_TCP4 = (
    _V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 9, 10, 0, 0, 1]) + b"\xc78\x18\xec"
)
_V2_TCP6 = (
    _V2_SIGNATURE + b"\x21\x21\x00\x2a" + bytes(15) + b"\x01" + bytes(16) + b"\x01\xbb\x18\xec"
)
_REPLIES = (
    b"+OK\r\n-ERR x\r\n:-12\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n",
    b"*3\r\n:1\r\n$1\r\nx\r\n+y\r\n*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n*0\r\n$6\r\n\r\n+a\r\n\r\n",
    b"_\r\n,3.14\r\n#t\r\n(123\r\n=7\r\ntxt:abc\r\n!3\r\nERR\r\n~2\r\n+a\r\n_\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n%1\r\n+k\r\n%0\r\n",
    b"|1\r\n+ttl\r\n:3600\r\n*2\r\n|1\r\n+a\r\n+b\r\n$1\r\nv\r\n:7\r\n",
)


def seeds(target: str) -> list[bytes]:
    """The built-in corpus: a few valid inputs, and some the parser must refuse."""
    from tests.fuzz.targets import EVERY_BYTE, frame

    by_target = {
        "requests": [
            frame(_PING),
            frame(_GET + _SET + _PING, [3, 17, 40]),
            frame(_SET + _GET, flags=EVERY_BYTE),
            frame(b"PING\r\nSET a 'b c' \"\\x41\\n\"\r\n\r\n" + _GET, [6]),
            frame(_GET + b"PING\r\n", [len(_GET)]),
            frame(b"*0\r\n*-1\r\n" + _PING + b"*5000\r\n$3\r\nDEL\r\n", [9, 30], flags=2),
            frame(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$40\r\n" + bytes(40) + b"\r\n", flags=1),
            frame(b"*9\r\n$1\r\na\r\n", flags=1),
            frame(b"*1\r\n+PING\r\n" + _PING, [5]),
            frame(b"GET " + b"k" * 40 + b"\r\n", flags=3),
        ],
        "replies": [frame(r, [7, 19, 33]) for r in _REPLIES]
        + [frame(b"".join(_REPLIES), flags=EVERY_BYTE), frame(b"$10\r\nabc", [2, 6])],
        "proxyproto": [
            frame(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 6380\r\n*1\r\n", [6, 20]),
            frame(b"PROXY TCP6 2400:4050:1234::1 2001:db8::2 40000 6380\r\n"),
            frame(b"PROXY UNKNOWN\r\n", [5]),
            frame(b"PROXY UNKNOWN ff:: ee:: 1 2\r\n"),
            frame(_V2_TCP4 + b"*1\r\n", [3, 14, 20]),
            frame(_V2_TCP6 + b"\x04\x00\x03abc", flags=EVERY_BYTE),
            frame(_V2_SIGNATURE + b"\x20\x00\x00\x00", flags=1),
            frame(_V2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x01x", flags=3),
        ],
    }
    by_target["replies-pure"] = by_target["replies"]
    return by_target[target]


# libFuzzer dictionary entries: tokens the mutator may insert.
DICTIONARY: dict[str, list[bytes]] = {
    "requests": [
        b"*", b"$", b"\r\n", b"*1\r\n", b"$4\r\nPING\r\n", b"*5000\r\n", b"*-1\r\n", b"$-1",
        b'"', b"'", b"\\x", b"+", b"~", b"_",
    ],
    "replies": [b"\r\n", b"*", b"$", b"%", b"|", b"~", b">", b"=", b"!", b"-1", b"_\r\n"],
    "proxyproto": [
        b"PROXY ", b"TCP4 ", b"TCP6 ", b"UNKNOWN", b"\r\n", _V2_SIGNATURE, b"\x21\x11",
        b"\x21\x21", b"\x20\x00", b"255.255.255.255", b"::ffff:", b" 65535",
    ],
}  # fmt: skip
DICTIONARY["replies-pure"] = DICTIONARY["replies"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one fuzz target under atheris.")
    p.add_argument("target", choices=NAMES)
    p.add_argument("--runs", type=int, default=100_000, help="inputs to run (-runs)")
    p.add_argument("--max-len", type=int, default=4096, help="longest input (-max_len)")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="libFuzzer -rss_limit_mb")
    p.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer -seed (0: random)")
    p.add_argument("--corpus", type=Path, help="keep the corpus here (default: a temp dir)")
    crashes = Path(tempfile.gettempdir(), "georedis-fuzz-crashes")
    p.add_argument("--crash-dir", type=Path, default=crashes, help=f"default: {crashes}")
    p.add_argument("--keep", type=int, default=1, help="inputs saved per distinct failure")
    p.add_argument("--stop-on-crash", action="store_true", help="stop at the first failure")
    p.add_argument("--replay", type=Path, nargs="+", help="run these inputs once, no atheris")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the worker's log file
    args, libfuzzer = p.parse_known_args(argv)
    if args.target == "replies-pure":  # before proxy.resp.replies is first imported
        os.environ["GEOREDIS_PURE_PYTHON"] = "1"
    if args.replay:
        return _replay(args.target, args.replay)
    if args.worker is not None:
        _work(args, libfuzzer)  # does not return
    return _parent(args, libfuzzer)


def _replay(target: str, paths: list[Path]) -> int:
    from tests.fuzz.targets import TARGETS

    failed = 0
    for path in paths:
        try:
            print(f"{path}: {TARGETS[target](path.read_bytes())}")
        except Exception:
            failed += 1
            print(f"{path}: FAILED\n{traceback.format_exc()}")
    return 1 if failed else 0


def signature(e: BaseException) -> str:
    """What makes two failures the same one: a property's name (the message up to its
    first ':'), or the exception type and the function that raised it."""
    if isinstance(e, AssertionError) and str(e):
        return str(e).split(":", 1)[0]
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__} in {Path(frame.filename).name}:{frame.name}"


def _work(args: argparse.Namespace, libfuzzer: list[str]) -> None:
    import atheris  # type: ignore[import-untyped]  # no stubs

    with atheris.instrument_imports(include=["proxy"]):
        from tests.fuzz.targets import TARGETS
    fn = TARGETS[args.target]
    log: Path = args.worker
    crash_dir: Path = args.crash_dir
    tally: collections.Counter[str] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    every = max(1, args.runs // 200)

    def test_one_input(data: bytes) -> None:
        try:
            tally[fn(data)] += 1
        except Exception as e:
            tally["FAILED"] += 1
            sig = signature(e)
            seen[sig] += 1
            if seen[sig] <= args.keep:
                crash_dir.mkdir(parents=True, exist_ok=True)
                path = crash_dir / f"{args.target}-{hashlib.sha1(data).hexdigest()[:16]}"
                path.write_bytes(data)
                _append(log, {"failure": sig, "file": str(path), "message": str(e)[:600]})
                if seen[sig] == 1:
                    print(f"\n=== new failure {sig}: {path}", file=sys.stderr, flush=True)
            if args.stop_on_crash:
                raise
        n = tally.total()
        if n % every == 0 or n > args.runs - every:
            _append(log, {"outcomes": dict(tally), "worker": os.getpid()})

    atheris.Setup([sys.argv[0], *libfuzzer], test_one_input)
    atheris.Fuzz()


def _append(log: Path, record: dict[str, Any]) -> None:
    with log.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _dictionary(target: str, path: Path) -> None:
    def quote(token: bytes) -> str:
        return '"' + "".join(f"\\x{b:02x}" for b in token) + '"'

    path.write_text("".join(quote(t) + "\n" for t in DICTIONARY[target]))


def _parent(args: argparse.Namespace, libfuzzer: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{args.target}-") as tmp:
        corpus = args.corpus or Path(tmp, "corpus")
        corpus.mkdir(parents=True, exist_ok=True)
        for seed in seeds(args.target):
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        dict_path, log = Path(tmp, "dict"), Path(tmp, "log.jsonl")
        _dictionary(args.target, dict_path)
        args.crash_dir.mkdir(parents=True, exist_ok=True)
        flags = [
            f"-max_len={args.max_len}",
            f"-rss_limit_mb={args.rss_limit_mb}",
            f"-timeout={args.timeout}",
            f"-seed={args.seed}",
            f"-dict={dict_path}",
            f"-artifact_prefix={args.crash_dir}/{args.target}-",
            "-print_final_stats=1",
            *libfuzzer,
            str(corpus),
        ]
        done, deaths, stats = 0, list[int](), dict[str, int]()
        start = time.monotonic()
        while done < args.runs and len(deaths) <= 3:
            left = str(args.runs - done)
            cmd = [sys.executable, "-m", "tests.fuzz.run", args.target, "--runs", left]
            cmd += ["--worker", str(log), "--crash-dir", str(args.crash_dir)]
            cmd += ["--keep", str(args.keep)]
            cmd += ["--stop-on-crash"] if args.stop_on_crash else []
            rc, ran, stats = _run_worker([*cmd, f"-runs={left}", *flags])
            done += ran
            if rc != 0:
                deaths.append(rc)
                if args.stop_on_crash or ran == 0:
                    break
        seconds = time.monotonic() - start
        records = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
    last = {r["worker"]: r["outcomes"] for r in records if "outcomes" in r}  # per worker
    outcomes: collections.Counter[str] = sum(
        map(collections.Counter, last.values()), collections.Counter()
    )
    failures = [r for r in records if "failure" in r]
    report = {
        "target": args.target,
        "execs": done,
        "seconds": round(seconds, 1),
        "execs_per_s": round(done / seconds) if seconds else 0,
        "failed_inputs": outcomes.get("FAILED", 0),
        "distinct_failures": sorted({f["failure"] for f in failures}),
        "reproducers": list(dict.fromkeys(f["file"] for f in failures)),
        "worker_deaths": deaths,
        "outcomes": outcomes,
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "libfuzzer_peak_rss_mb": stats.get("peak_rss_mb"),
        "new_units": stats.get("new_units_added"),
    }
    print(json.dumps(report), flush=True)
    return 1 if failures or deaths else 0


def _run_worker(cmd: list[str]) -> tuple[int, int, dict[str, int]]:
    """Run one worker, echoing its output; (exit status, inputs it ran, libFuzzer stats)."""
    stats: dict[str, int] = {}
    ran = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.buffer.write(line)
            if m := _STAT.match(line):
                stats[m[1].decode()] = int(m[2])
            elif m := _DONE.match(line):
                ran = int(m[1])
            elif m := re.match(rb"^#(\d+)\s", line):
                ran = max(ran, int(m[1]))
    return proc.returncode, stats.get("number_of_executed_units", ran), stats


if __name__ == "__main__":
    sys.exit(main())
