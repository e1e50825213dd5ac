"""Soak test: mixed load through a real georedis process while nodes are faulted (issue 9).

    python3 -m tests.soak.soak --duration 180 [--json summary.json]

Not a pytest module (pytest collects only `test_*.py`): it runs for minutes and is started
by hand or by `scripts/soak.sh`. Everything is real: `redis-server` primary and replicas per
region (tests/helpers/topology.py), the proxy as a subprocess (`python -m proxy.cli run`)
so its RSS can be read from /proc, and clients on raw sockets (hiredis parses the replies).

Load, as asyncio tasks in this process:
- writers: `SET soak:<n> <n>` with a fresh n each time; every `+OK` is recorded;
- readers: `GET soak:<n>` of an acknowledged n: the reply must be n or nil (a lagging
  replica), never another value;
- a pipeliner: batches of SETs and GETs in one write;
- a big-value task: 1 MiB `SET`/`GET` on a few keys;
- churners: connect, `GET` a 1 MiB value, then reset the connection (RST) at once or after
  reading the reply.

Faults, one every `--fault-interval` seconds, rotating: SIGSTOP a replica for `--stop-s`
then SIGCONT; SIGKILL a replica and restart it (same port, same dir, replica again);
SIGSTOP the primary; SIGKILL the primary and restart it. The primary runs with
`appendonly yes` + `appendfsync always`, so a write it acknowledged survives its SIGKILL.

Asserted (exit status 1 when one fails):
- every request is answered or sees its connection closed within `--reply-bound` seconds
  (a request still waiting then counts as unanswered, and its connection is aborted);
- no acknowledged write is lost: at the end, with every node up and synced, each
  acknowledged key is read back from the primary directly, not through the proxy;
- the proxy's RSS grows by less than `--max-rss-growth-mb` over its value at the start;
- no healthy node is marked down: each `node_down` event in the proxy's JSON log must fall
  in a fault window of that very node (from the fault to its recovery plus `--grace`);
- no reply is the wrong one (a GET answered with another key's value, a reply to nobody),
  the proxy stays alive, every node is up in `PROXY BACKENDS` after the settle period, and
  a fresh client can SET and GET through the proxy at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import collections
import contextlib
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hiredis
import redis

from tests.helpers.topology import HOST, RedisNode, RedisTopology, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
BIG = 1 << 20  # bytes in a big value
BIG_SLOTS = 4  # big values live in soak:big:0..3
PRIMARY_PERSISTENCE = ("appendonly", "yes", "appendfsync", "always")

# hiredis' stub types its argument as a 1-tuple.
PACK: Any = hiredis.pack_command

# What a request ended as, besides a reply.
CLOSED = "closed"  # its connection closed before the reply came
HUNG = "hung"  # no reply and no close within the bound


@dataclass
class Fault:
    kind: str
    node: str
    start: float  # wall clock (time.time), to compare with the proxy's log timestamps
    end: float = 0.0  # when the node was back (thawed, or restarted and answering PING)


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    closed: int = 0
    hung: list[dict[str, Any]] = field(default_factory=list)
    # (time, task, command, error kind)
    errors: list[tuple[float, str, str, str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    indeterminate_writes: int = 0
    stale_reads: int = 0
    connects: int = 0
    churn_resets: int = 0
    big_last_acked: dict[int, int] = field(default_factory=dict)
    big_attempted: dict[int, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    rss_kb: list[tuple[float, int]] = field(default_factory=list)


def error_kind(text: str) -> str:
    """An error reply without the numbers and addresses, so equal errors count together."""
    text = re.sub(r"\d+(\.\d+)*(:\d+)?", "N", text)
    return text[:80]


class Conn:
    """One client connection: requests written in order, replies matched FIFO."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats
    ) -> None:
        self.reader, self.writer, self.stats = reader, writer, stats
        self.parser = hiredis.Reader()
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(cls, port: int, stats: Stats, timeout: float) -> Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        stats.connects += 1
        return cls(reader, writer, stats)

    def send(self, cmds: Sequence[Sequence[bytes | str | int]]) -> list[asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in cmds]
        if self.closed:
            for f in futs:
                f.set_result(CLOSED)
            return futs
        self.pending.extend(futs)
        self.writer.write(b"".join(PACK(tuple(c)) for c in cmds))
        return futs

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(1 << 18)
                if not data:
                    break
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not False:
                    if not self.pending:
                        self.stats.wrong.append(f"a reply for no request: {reply!r:.60}")
                        continue
                    fut = self.pending.popleft()
                    if not fut.done():
                        fut.set_result(reply)
        except hiredis.ProtocolError as e:
            self.stats.wrong.append(f"unparsable reply stream: {e}")
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            while self.pending:
                fut = self.pending.popleft()
                if not fut.done():
                    fut.set_result(CLOSED)
            self.writer.transport.abort()

    def abort(self, reset: bool = False) -> None:
        """Close now; with `reset` the peer gets an RST (SO_LINGER 0), as a crashed client."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        self.writer.transport.abort()


class Soak:
    def __init__(self, args: argparse.Namespace, topo: RedisTopology, proxy_port: int) -> None:
        self.args = args
        self.topo = topo
        self.port = proxy_port
        self.stats = Stats()
        self.faults: list[Fault] = []
        self.stopping = False
        self.counter = 0
        self.rng = random.Random(args.seed)

    # -- requests ---------------------------------------------------------------------

    def next_n(self) -> int:
        self.counter += 1
        return self.counter

    async def connect(self, task: str) -> Conn | None:
        try:
            return await Conn.open(self.port, self.stats, timeout=self.args.reply_bound)
        except (TimeoutError, OSError) as e:
            self.error(task, f"connect: {type(e).__name__}")
            await asyncio.sleep(0.1)
            return None

    def error(self, task: str, kind: str, command: str = "connect") -> None:
        self.stats.errors.append((time.time(), task, command, kind))

    async def call(
        self, conn: Conn, cmds: Sequence[Sequence[bytes | str | int]], task: str
    ) -> list[Any]:
        """Send `cmds` in one write; each result is a reply, CLOSED or HUNG (then the
        connection is aborted: the request is counted once, as unanswered)."""
        loop = asyncio.get_running_loop()
        sent_wall, deadline = time.time(), loop.time() + self.args.reply_bound
        futs = conn.send(cmds)
        self.stats.requests += len(cmds)
        # A refused or stuck write shows below, as a close or a missing reply.
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(conn.writer.drain(), self.args.reply_bound)
        remaining = deadline - loop.time()
        if remaining > 0:
            await asyncio.wait(futs, timeout=remaining)
        pending = {f for f in futs if not f.done()}
        out: list[Any] = []
        for cmd, f in zip(cmds, futs, strict=True):
            if f in pending:
                f.cancel()
                out.append(HUNG)
                self.stats.hung.append(
                    {
                        "task": task,
                        "command": str(cmd[0]),
                        "sent_at": round(sent_wall, 3),
                        "faults": self.active_faults(sent_wall),
                    }
                )
            else:
                r = f.result()
                out.append(r)
                if r is CLOSED:
                    self.stats.closed += 1
                else:
                    self.stats.answered += 1
                    if isinstance(r, hiredis.ReplyError):
                        self.error(task, error_kind(str(r)), str(cmd[0]))
        if pending:
            conn.abort()
        return out

    def active_faults(self, t: float) -> list[str]:
        return [
            f"{f.kind} {f.node}"
            for f in self.faults
            if f.start <= t <= (f.end or float("inf")) + self.args.grace
        ]

    def on_set(self, n: int, reply: Any) -> None:
        if reply == b"OK":
            self.stats.acked.append(n)
        elif reply is CLOSED or reply is HUNG:
            self.stats.indeterminate_writes += 1
        elif not isinstance(reply, hiredis.ReplyError):
            self.stats.wrong.append(f"SET soak:{n} answered {reply!r:.60}")

    def on_get(self, n: int, reply: Any) -> None:
        if reply is None:
            self.stats.stale_reads += 1
        elif isinstance(reply, bytes):
            if reply != str(n).encode():
                self.stats.wrong.append(f"GET soak:{n} answered {reply!r:.60}")
        elif not isinstance(reply, hiredis.ReplyError) and reply not in (CLOSED, HUNG):
            self.stats.wrong.append(f"GET soak:{n} answered {reply!r:.60}")

    def some_acked(self) -> int | None:
        acked = self.stats.acked
        return acked[self.rng.randrange(len(acked))] if acked else None

    # -- load tasks -------------------------------------------------------------------

    async def _loop(self, task: str, step: Any) -> None:
        conn: Conn | None = None
        pace = self.args.pace_ms / 1000
        while not self.stopping:
            if conn is None or conn.closed:
                conn = await self.connect(task)
                if conn is None:
                    continue
            await step(conn, task)
            await asyncio.sleep(pace)
        if conn is not None:
            conn.abort()

    async def writer(self, conn: Conn, task: str) -> None:
        n = self.next_n()
        [reply] = await self.call(conn, [("SET", f"soak:{n}", n)], task)
        self.on_set(n, reply)

    async def reader(self, conn: Conn, task: str) -> None:
        n = self.some_acked()
        if n is None:
            return
        [reply] = await self.call(conn, [("GET", f"soak:{n}")], task)
        self.on_get(n, reply)

    async def pipeliner(self, conn: Conn, task: str) -> None:
        plan: list[tuple[str, int]] = []
        for _ in range(16):
            n = self.some_acked() if self.rng.random() < 0.4 else None
            plan.append(("GET", n) if n is not None else ("SET", self.next_n()))
        cmds = [("GET", f"soak:{n}") if op == "GET" else ("SET", f"soak:{n}", n) for op, n in plan]
        replies = await self.call(conn, cmds, task)
        for (op, n), reply in zip(plan, replies, strict=True):
            (self.on_get if op == "GET" else self.on_set)(n, reply)

    async def big(self, conn: Conn, task: str) -> None:
        n = self.next_n()
        slot = n % BIG_SLOTS
        self.stats.big_attempted[slot].add(n)
        other = self.rng.randrange(BIG_SLOTS)
        replies = await self.call(
            conn, [("SET", f"soak:big:{slot}", big_value(n)), ("GET", f"soak:big:{other}")], task
        )
        if replies[0] == b"OK":
            self.stats.big_last_acked[slot] = max(n, self.stats.big_last_acked.get(slot, 0))
        elif replies[0] in (CLOSED, HUNG):
            self.stats.indeterminate_writes += 1
        elif not isinstance(replies[0], hiredis.ReplyError):
            self.stats.wrong.append(f"SET soak:big:{slot} answered {replies[0]!r:.60}")
        check = big_problem(replies[1])
        if check:
            self.stats.wrong.append(f"GET soak:big:{other}: {check}")
        await asyncio.sleep(self.args.big_pause_ms / 1000)

    async def churner(self, task: str) -> None:
        """Connect, GET a 1 MiB value, reset: half at once, half after reading the reply."""
        while not self.stopping:
            conn = await self.connect(task)
            if conn is None:
                continue
            slot = self.rng.randrange(BIG_SLOTS)
            if self.rng.random() < 0.5:
                conn.send([("GET", f"soak:big:{slot}")])
                await asyncio.sleep(self.rng.random() * 0.002)
            else:
                [reply] = await self.call(conn, [("GET", f"soak:big:{slot}")], task)
                check = big_problem(reply)
                if check:
                    self.stats.wrong.append(f"churn GET soak:big:{slot}: {check}")
            conn.abort(reset=True)
            self.stats.churn_resets += 1
            await asyncio.sleep(self.args.pace_ms / 1000)

    async def hog(self, task: str) -> None:
        """A slow consumer: pipeline `--hog-gets` GETs of a 1 MiB value, read nothing for
        `--hog-hold-s`, then reset. Its replies are not counted: it never asks for them."""
        while not self.stopping:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), self.args.reply_bound
                )
            except (TimeoutError, OSError) as e:
                self.error(task, f"connect: {type(e).__name__}")
                await asyncio.sleep(0.5)
                continue
            self.stats.connects += 1
            slot = self.rng.randrange(BIG_SLOTS)
            writer.write(PACK(("GET", f"soak:big:{slot}")) * self.args.hog_gets)
            await asyncio.sleep(self.args.hog_hold_s)
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.stats.churn_resets += 1
            await asyncio.sleep(self.args.hog_hold_s)

    # -- faults (a thread: the topology API blocks) -------------------------------------

    def fault_loop(self, stop: threading.Event) -> None:
        kinds = ["replica_stop", "replica_kill", "primary_stop", "primary_kill"]
        kinds = [k for k in kinds if k in self.args.faults]
        replicas = self.topo.replicas()
        i = 0
        if stop.wait(self.args.warmup):
            return
        while kinds:
            kind = kinds[i % len(kinds)]
            node = self.topo.primary if kind.startswith("primary") else replicas[i % len(replicas)]
            i += 1
            self.inject(kind, node)
            if stop.wait(self.args.fault_interval):
                return

    def inject(self, kind: str, node: RedisNode) -> None:
        fault = Fault(kind, node.address, time.time())
        self.faults.append(fault)
        try:
            if kind.endswith("_stop"):
                node.freeze()
                time.sleep(self.args.stop_s)
                node.thaw()
            else:
                node.kill()
                time.sleep(self.args.down_s)
                node.restart(timeout=60)  # same port, dir and arguments: same role
        finally:
            fault.end = time.time()

    # -- watching the proxy -----------------------------------------------------------

    async def sample_rss(self, pid: int) -> None:
        while not self.stopping:
            rss = rss_kb(pid)
            if rss is None:
                return
            self.stats.rss_kb.append((time.time(), rss))
            await asyncio.sleep(1.0)

    async def report(self, started: float) -> None:
        while not self.stopping:
            await asyncio.sleep(10)
            s = self.stats
            rss = s.rss_kb[-1][1] // 1024 if s.rss_kb else -1
            print(
                f"[{time.monotonic() - started:5.0f}s] requests={s.requests} "
                f"acked={len(s.acked)} errors={len(s.errors)} closed={s.closed} "
                f"unanswered={len(s.hung)} faults={len(self.faults)} rss={rss}MB",
                flush=True,
            )

    async def run_load(self, proxy: subprocess.Popen[bytes]) -> None:
        a = self.args
        started = time.monotonic()
        tasks = [
            *(self._loop("set", self.writer) for _ in range(a.writers)),
            *(self._loop("get", self.reader) for _ in range(a.readers)),
            *(self._loop("pipeline", self.pipeliner) for _ in range(a.pipeliners)),
            *(self._loop("big", self.big) for _ in range(a.big_tasks)),
            *(self.churner("churn") for _ in range(a.churners)),
            *(self.hog("hog") for _ in range(a.hogs)),
        ]
        running = [asyncio.create_task(t) for t in tasks]
        monitors = [
            asyncio.create_task(self.sample_rss(proxy.pid)),
            asyncio.create_task(self.report(started)),
        ]
        stop = threading.Event()
        faults = threading.Thread(target=self.fault_loop, args=(stop,), daemon=True)
        faults.start()
        try:
            while time.monotonic() - started < a.duration and proxy.poll() is None:
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            # The fault in progress ends first (a frozen node is thawed, a killed one back).
            await asyncio.get_running_loop().run_in_executor(None, faults.join)
            self.stopping = True
            for m in monitors:
                m.cancel()
            await asyncio.wait(running, timeout=a.reply_bound + 5)
            for t in running:
                t.cancel()


def big_value(n: int) -> bytes:
    return f"{n}:".encode().ljust(BIG, b"x")


def big_problem(reply: Any) -> str | None:
    """What is wrong with a reply to GET soak:big:*, or None (errors and nil are fine)."""
    if not isinstance(reply, bytes):
        fine = reply is None or reply is CLOSED or reply is HUNG
        return None if fine or isinstance(reply, hiredis.ReplyError) else f"{reply!r:.60}"
    head = reply[:24].split(b":", 1)[0]
    if len(reply) != BIG or not head.isdigit():
        return f"a value of {len(reply)} bytes starting {reply[:24]!r}"
    return None


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- setup and checks ---------------------------------------------------------------------


def enable_persistence(node: RedisNode) -> None:
    """AOF with fsync on every write, now and after every restart of this node."""
    pairs = list(PRIMARY_PERSISTENCE)
    for k, v in zip(pairs[::2], pairs[1::2], strict=True):
        node.admin.config_set(k, v)
        node.extra_args += [f"--{k}", v]
    wait_until(
        lambda: not node.info("persistence")["aof_rewrite_in_progress"],
        30,
        f"the first AOF rewrite of {node}",
        interval=0.05,
    )


def start_proxy(
    topo: RedisTopology, work: Path, port: int, metrics_port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    cfg = topo.write_config(work / "georedis.toml", port, metrics_port=metrics_port)
    log_path = work / "proxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.cli",
                "run",
                "--config",
                str(cfg),
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    return proc, log_path


def proxy_client(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)


def backends(port: int) -> list[dict[str, str]]:
    """PROXY BACKENDS as a list of {field: value} (RESP2 maps arrive as flat lists)."""
    rows = proxy_client(port).execute_command("PROXY", "BACKENDS")  # type: ignore[no-untyped-call]
    out = []
    for row in rows:
        items = row.items() if isinstance(row, dict) else zip(row[::2], row[1::2], strict=True)
        out.append({_s(k): _s(v) for k, v in items})
    return out


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def all_up(port: int) -> bool:
    rows = backends(port)
    return bool(rows) and all(r.get("up") == "1" for r in rows)


def lost_writes(primary: RedisNode, acked: Iterable[int]) -> list[int]:
    c = primary.client(socket_timeout=30)
    lost: list[int] = []
    keys = sorted(acked)
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        for n, v in zip(chunk, c.mget([f"soak:{n}" for n in chunk]), strict=True):
            if v != str(n).encode():
                lost.append(n)
    return lost


def lost_big(primary: RedisNode, stats: Stats) -> list[str]:
    """A big key must hold a write at least as new as the last acknowledged one."""
    c = primary.client(socket_timeout=30)
    problems = []
    for slot, n in sorted(stats.big_last_acked.items()):
        v = c.get(f"soak:big:{slot}")
        if not isinstance(v, bytes) or big_problem(v):
            problems.append(f"soak:big:{slot}: {'missing' if v is None else big_problem(v)}")
            continue
        m = int(v.split(b":", 1)[0])
        if m < n or m not in stats.big_attempted[slot]:
            problems.append(f"soak:big:{slot} holds write {m}, last acknowledged {n}")
    return problems


def parse_log(path: Path) -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """The proxy's node_up/node_down events (with `t`, a Unix time) and its error lines."""
    events: list[dict[str, Any]] = []
    errors: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                errors[error_kind(line.strip())] += 1
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("msg") in ("node_down", "node_up"):
            ts = str(obj.get("ts", ""))
            t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
            obj["t"] = t + int(ts[20:23] or 0) / 1000
            events.append(obj)
        if obj.get("level") in ("error", "critical") or "exc" in obj:
            exc_last = str(obj.get("exc", "")).strip().splitlines()[-1:] or [""]
            errors[error_kind(f"{obj.get('msg', '')} {exc_last[0]}".strip())] += 1
    return events, errors


def spurious_downs(
    events: list[dict[str, Any]], faults: list[Fault], grace: float
) -> list[dict[str, Any]]:
    """node_down events outside every fault window of that node."""
    out = []
    for e in events:
        if e.get("msg") != "node_down":
            continue
        if not any(
            f.node == e.get("node") and f.start - 0.5 <= e["t"] <= (f.end or e["t"]) + grace
            for f in faults
        ):
            out.append(
                {
                    "node": e.get("node"),
                    "region": e.get("region"),
                    "at": e.get("ts"),
                    "error": e.get("error"),
                    "during": [
                        f"{f.kind} {f.node}"
                        for f in faults
                        if f.start - 0.5 <= e["t"] <= (f.end or e["t"]) + grace
                    ],
                }
            )
    return out


def phase_of(t: float, faults: list[Fault], grace: float) -> str:
    """The kind of the latest fault whose window (start to recovery + grace) holds `t`."""
    latest = None
    for f in faults:
        if f.start <= t <= (f.end or t) + grace:
            latest = f
    return latest.kind if latest else "no fault"


# -- main ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="georedis-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: work dir {work} (node logs, proxy.log)", flush=True)
    t0 = time.monotonic()
    topo = RedisTopology.start(tmp=work / "redis", timeout=30)
    proxy: subprocess.Popen[bytes] | None = None
    try:
        enable_persistence(topo.primary)
        port, mport = free_port(), free_port()
        proxy, log_path = start_proxy(topo, work, port, mport)
        wait_until(lambda: all_up(port), 30, "the proxy to serve and see every node up", 0.1)
        client = proxy_client(port)
        soak = Soak(args, topo, port)
        for slot in range(BIG_SLOTS):  # the churners' values exist before the first fault
            n = soak.next_n()
            soak.stats.big_attempted[slot].add(n)
            client.set(f"soak:big:{slot}", big_value(n))
            soak.stats.big_last_acked[slot] = n
        client.close()
        start_rss = rss_kb(proxy.pid) or 0
        load_start = time.monotonic()
        print(f"soak: load for {args.duration:.0f}s, proxy pid {proxy.pid}", flush=True)
        _loop_run(soak.run_load(proxy))
        load_s = time.monotonic() - load_start
        proxy_alive = proxy.poll() is None

        # Settle: every node running and thawed, replicas linked, the proxy seeing all up.
        for node in topo.nodes:
            if node.frozen:
                node.thaw()
            if not node.running:
                node.restart(timeout=60)
        settle_error = None
        try:
            for node in topo.replicas():
                node.wait_link_up(args.settle)
            if proxy_alive:
                wait_until(lambda: all_up(port), args.settle, "every node up in the proxy", 0.2)
        except Exception as e:
            settle_error = str(e).splitlines()[0]
        down_at_end = []
        final_ok = False
        if proxy_alive:
            with contextlib.suppress(redis.RedisError, OSError):
                down_at_end = [r["node"] for r in backends(port) if r.get("up") != "1"]
            with contextlib.suppress(redis.RedisError, OSError):
                c = proxy_client(port)
                final_ok = bool(c.set("soak:final", "1")) and c.get("soak:final") == b"1"
                c.close()
        settled_rss = rss_kb(proxy.pid) if proxy_alive else None
        lost = lost_writes(topo.primary, soak.stats.acked)
        big_lost = lost_big(topo.primary, soak.stats)
        for node in topo.replicas():
            with contextlib.suppress(Exception):
                node.wait_link_up(1)
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.terminate()
            try:
                proxy.wait(15)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        topo.stop()

    events, log_errors = parse_log(log_path)
    s = soak.stats
    spurious = spurious_downs(events, soak.faults, args.grace)
    peak_rss = max([start_rss, *(r for _, r in s.rss_kb)])
    growth_mb = (peak_rss - start_rss) / 1024
    errors = collections.Counter(kind for _, _, _, kind in s.errors)
    by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    read_errors: collections.Counter[str] = collections.Counter()
    for t, task, command, kind in s.errors:
        phase = phase_of(t, soak.faults, args.grace)
        by_phase[phase][f"{task} {command}: {kind}"] += 1
        if command == "GET":
            read_errors[phase] += 1
    summary: dict[str, Any] = {
        "duration_s": round(load_s, 1),
        "wall_s": round(time.monotonic() - t0, 1),
        "requests": s.requests,
        "answered": s.answered,
        "closed_before_reply": s.closed,
        "unanswered": len(s.hung),
        "acknowledged_writes": len(s.acked) + len(s.big_last_acked),
        "indeterminate_writes": s.indeterminate_writes,
        "lost_writes": len(lost) + len(big_lost),
        "faults": dict(collections.Counter(f.kind for f in soak.faults)),
        "start_rss_mb": round(start_rss / 1024, 1),
        "peak_rss_mb": round(peak_rss / 1024, 1),
        "end_rss_mb": round(s.rss_kb[-1][1] / 1024, 1) if s.rss_kb else None,
        "rss_growth_mb": round(growth_mb, 1),
        "settled_rss_mb": round(settled_rss / 1024, 1) if settled_rss else None,
        "node_down_events": sum(1 for e in events if e.get("msg") == "node_down"),
        "spurious_node_down": len(spurious),
        "nodes_down_at_end": down_at_end,
        "wrong_replies": len(s.wrong),
        "stale_reads": s.stale_reads,
        "read_errors": sum(read_errors.values()),
        "read_errors_during_primary_faults": sum(
            v for k, v in read_errors.items() if k.startswith("primary")
        ),
        "client_connections": s.connects,
        "churn_resets": s.churn_resets,
        "client_errors": dict(errors.most_common()),
        "client_errors_by_phase": {k: dict(v.most_common()) for k, v in by_phase.items()},
        "proxy_alive": proxy_alive,
        "proxy_exit_code": None if proxy_alive else proxy.returncode if proxy else None,
        "proxy_log_errors": dict(log_errors.most_common(10)),
        "final_set_get_ok": final_ok,
        "settle_error": settle_error,
        "details": {
            "unanswered": s.hung[:20],
            "lost": lost[:20],
            "lost_big": big_lost,
            "spurious_node_down": spurious[:20],
            "wrong_replies": s.wrong[:20],
            "fault_log": [
                {"kind": f.kind, "node": f.node, "start": round(f.start, 3), "end": round(f.end, 3)}
                for f in soak.faults
            ],
        },
        "work_dir": str(work),
    }
    failures = []
    if summary["unanswered"]:
        failures.append(f"{summary['unanswered']} requests unanswered past {args.reply_bound}s")
    if summary["lost_writes"]:
        failures.append(f"{summary['lost_writes']} acknowledged writes lost")
    if spurious:
        failures.append(f"{len(spurious)} node_down events for nodes not faulted")
    if growth_mb > args.max_rss_growth_mb:
        failures.append(f"proxy RSS grew {growth_mb:.0f} MB (> {args.max_rss_growth_mb})")
    if args.fail_on_read_errors and summary["read_errors_during_primary_faults"]:
        failures.append(
            f"{summary['read_errors_during_primary_faults']} read errors during primary faults"
            " (replicas up)"
        )
    if s.wrong:
        failures.append(f"{len(s.wrong)} wrong replies")
    if not proxy_alive:
        failures.append("the proxy exited")
    if down_at_end or settle_error:
        failures.append(f"not every node up after settling: {down_at_end or settle_error}")
    if proxy_alive and not final_ok:
        failures.append("a fresh client could not SET/GET through the proxy at the end")
    summary["failures"] = failures
    summary["passed"] = not failures
    if summary["passed"] and not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        summary["work_dir"] = None
    return summary


def _loop_run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def print_summary(summary: dict[str, Any]) -> None:
    rows = [
        ("duration (load)", f"{summary['duration_s']} s (wall {summary['wall_s']} s)"),
        ("requests", summary["requests"]),
        ("  answered", summary["answered"]),
        ("  connection closed first", summary["closed_before_reply"]),
        ("  unanswered (hung)", summary["unanswered"]),
        ("acknowledged writes", summary["acknowledged_writes"]),
        ("indeterminate writes", summary["indeterminate_writes"]),
        ("lost writes", summary["lost_writes"]),
        ("faults", ", ".join(f"{k} {v}" for k, v in summary["faults"].items()) or "none"),
        (
            "proxy RSS start/peak/end/settled",
            f"{summary['start_rss_mb']} / {summary['peak_rss_mb']} / {summary['end_rss_mb']}"
            f" / {summary['settled_rss_mb']} MB",
        ),
        ("node_down events", summary["node_down_events"]),
        ("  spurious (healthy node)", summary["spurious_node_down"]),
        ("nodes down at end", ", ".join(summary["nodes_down_at_end"]) or "none"),
        ("wrong replies", summary["wrong_replies"]),
        ("stale reads (nil)", summary["stale_reads"]),
        (
            "read errors",
            f"{summary['read_errors']} ({summary['read_errors_during_primary_faults']}"
            " during primary faults)",
        ),
        ("client connections", f"{summary['client_connections']} ({summary['churn_resets']} RST)"),
        ("final SET/GET", "ok" if summary["final_set_get_ok"] else "FAILED"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n== georedis soak summary ==")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("client errors by kind:")
    for k, v in summary["client_errors"].items() or [("none", "")]:
        print(f"  {v:>7}  {k}")
    print("client errors by phase (task: kind):")
    for phase, kinds in summary["client_errors_by_phase"].items():
        print(f"  {phase}:")
        for k, v in list(kinds.items())[:8]:
            print(f"    {v:>7}  {k}")
    if summary["proxy_log_errors"]:
        print("proxy log errors:")
        for k, v in summary["proxy_log_errors"].items():
            print(f"  {v:>7}  {k}")
    d = summary["details"]
    for name in ("unanswered", "spurious_node_down", "wrong_replies", "lost", "lost_big"):
        for item in d[name][:5]:
            print(f"{name}: {item}")
    print("RESULT:", "PASS" if summary["passed"] else "FAIL")
    for f in summary["failures"]:
        print(f"  - {f}")
    if summary["work_dir"]:
        print(f"logs kept in {summary['work_dir']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python3 -m tests.soak.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    p.add_argument("--json", help="also write the summary as JSON to this path")
    p.add_argument("--fault-interval", type=float, default=4, help="seconds between faults")
    p.add_argument(
        "--faults",
        default="replica_stop,replica_kill,primary_stop,primary_kill",
        help="comma-separated fault kinds, rotated in this order",
    )
    p.add_argument("--stop-s", type=float, default=2, help="how long a SIGSTOP lasts")
    p.add_argument("--down-s", type=float, default=1, help="how long a SIGKILLed node stays down")
    p.add_argument("--warmup", type=float, default=3, help="seconds of load before the 1st fault")
    p.add_argument(
        "--grace",
        type=float,
        default=5,
        help="seconds after a node's recovery its node_down still counts as expected",
    )
    p.add_argument(
        "--reply-bound",
        type=float,
        default=10,
        help="a request neither answered nor closed after this is unanswered",
    )
    p.add_argument("--settle", type=float, default=30, help="seconds allowed to settle at the end")
    p.add_argument("--max-rss-growth-mb", type=float, default=200)
    p.add_argument("--writers", type=int, default=3)
    p.add_argument("--readers", type=int, default=2)
    p.add_argument("--pipeliners", type=int, default=1)
    p.add_argument("--big-tasks", type=int, default=1)
    p.add_argument("--churners", type=int, default=4)
    p.add_argument("--pace-ms", type=float, default=1, help="pause between a task's requests")
    p.add_argument("--big-pause-ms", type=float, default=200, help="pause between big SET/GETs")
    p.add_argument("--hogs", type=int, default=1, help="slow consumers (GETs never read)")
    p.add_argument("--hog-gets", type=int, default=64, help="1 MiB GETs a slow consumer sends")
    p.add_argument("--hog-hold-s", type=float, default=2, help="how long it holds them unread")
    p.add_argument(
        "--fail-on-read-errors",
        action="store_true",
        help="also fail when a GET errs during a primary fault (issue 9 item 5)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep node and proxy logs here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    args = p.parse_args(argv)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    summary = run(args)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
