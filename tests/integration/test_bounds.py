"""Bounds on what one client can cost the others, against a real proxy process.

The proxy runs as `georedis run` (its RSS is its own), load comes from raw sockets and
from helper processes (tests/helpers/pinger.py, churn.py), so the test's threads do
not share a GIL with what is measured. Thresholds are the issue's: generous for these
2-core machines, far below what the unbounded proxy did (seconds, hundreds of MB).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import redis

from tests.helpers.pinger import percentile
from tests.helpers.topology import RedisNode, RedisTopology, free_port

BIG = 1 << 20


class ProxyProcess:
    def __init__(self, topology: RedisTopology, tmp: Path, **proxy_options: str) -> None:
        self.port = free_port()
        cfg = topology.write_config(tmp / "georedis.toml", self.port, proxy_options=proxy_options)
        self.log_path = tmp / "proxy.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the proxy did not start:\n{self.log()}")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10)

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def virtual_mb(self) -> float:
        return self._status_mb("VmSize:")

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field}")

    def log(self) -> str:
        return self.log_path.read_text()

    def pinger(self, seconds: float, *args: str) -> subprocess.Popen[str]:
        return _pinger(self.port, seconds, *args)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def proxy(topology: RedisTopology, tmp_path: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(topology, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def _pinger(port: int, seconds: float, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.helpers.pinger", str(port), str(seconds)]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, text=True)


class _Witnessed:
    """PING through the proxy and, over the same seconds, straight to a node: what the
    proxy adds is the first p99 less the second. On these 2-core machines the kernel
    sometimes leaves any process (the pinger, Redis, the proxy) unscheduled for 10-30 ms
    while the load runs; a bound on the proxy's p99 alone then fails on a slow CI run
    for what Redis itself shows at the same moment."""

    def __init__(self, proxy: ProxyProcess, node: RedisNode, seconds: float) -> None:
        self._through = proxy.pinger(seconds)
        self._direct = _pinger(node.port, seconds)

    def added_p99(self) -> tuple[float, float, float]:
        """(p99 through the proxy - p99 direct, p99 through, p99 direct)."""
        through = percentile(_latencies(self._through), 0.99)
        direct = percentile(_latencies(self._direct), 0.99)
        return through - direct, through, direct


def _latencies(pinger: subprocess.Popen[str]) -> list[float]:
    out, _ = pinger.communicate(timeout=60)
    values: list[float] = json.loads(out)
    assert len(values) > 100
    return values


def test_declared_lengths_reserve_nothing(proxy: ProxyProcess, topology: RedisTopology) -> None:
    """Three rounds of 1,000 connections each sending `*1048576\\r\\n` and waiting: RSS
    grows by less than 50 MB, the address space too (untouched pages of a reserved
    8 MB list are not resident, so RSS alone would not see the reservation), and another
    client's PING p99 is at most 20 ms over a direct PING's to Redis meanwhile. The
    thousand accepts of each round are work the proxy must do on its one core, and on a
    busy 2-core CI machine they alone have read 10.4 ms over; a proxy that reserved what
    the header declares stalls for seconds (and the address space check sees it)."""
    base, base_virtual = proxy.rss_mb(), proxy.virtual_mb()
    pings = _Witnessed(proxy, topology.primary, 6.0)
    time.sleep(0.3)
    peak, peak_virtual = base, base_virtual
    for _ in range(3):
        socks = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", proxy.port))
            s.sendall(b"*1048576\r\n")
            socks.append(s)
        time.sleep(0.5)
        peak = max(peak, proxy.rss_mb())
        peak_virtual = max(peak_virtual, proxy.virtual_mb())
        for s in socks:
            s.close()
        time.sleep(0.3)
    added, through, direct = pings.added_p99()
    assert peak - base < 50, (base, peak)
    assert peak_virtual - base_virtual < 200, (base_virtual, peak_virtual)
    assert added < 0.020, (through, direct)


def test_one_huge_write_does_not_stall_the_others(
    proxy: ProxyProcess, topology: RedisTopology
) -> None:
    """One client writes 100k SETs at once; another client's PING p99 is at most 20 ms
    over a direct PING's to the primary meanwhile (the unbounded proxy: seconds)."""
    data = b"".join(hiredis.pack_command(("SET", f"k{i}", "v")) for i in range(100_000))
    pings = _Witnessed(proxy, topology.primary, 3.0)
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        for _ in range(2):
            s.sendall(data)
            got = 0
            while got < 5 * 100_000:
                got += len(s.recv(1 << 20))
    added, through, direct = pings.added_p99()
    assert added < 0.020, (through, direct)
    assert proxy.client().get("k99999") == b"v"


def test_memory_comes_back_after_a_client_that_never_read(
    proxy: ProxyProcess, topology: RedisTopology
) -> None:
    """500 pipelined GETs of a 1 MB value, never read, then the client leaves: RSS
    returns to within 50 MB of where it was."""
    proxy.client().set("big", b"x" * BIG)
    topology.wait_synced()  # every replica serves the megabyte, not a nil
    base = proxy.rss_mb()
    for wait in (2.0, 0.2):  # gone after its replies arrived, then while they arrive
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 500)
        time.sleep(wait)
        s.close()
        time.sleep(1.0)
    deadline = time.monotonic() + 6
    while proxy.rss_mb() - base >= 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proxy.rss_mb() - base < 50, (base, proxy.rss_mb())


def test_churn_of_big_reads_marks_no_node_down(
    proxy: ProxyProcess, topology: RedisTopology
) -> None:
    """Connect, GET 1 MB, reset, for 10 s from a process of its own: another client's
    reads and writes all succeed meanwhile, and no node is marked down unless it really
    was slow: a direct INFO to each node, sampled all along, is the witness.

    (The replica's long stalls were the proxy's doing: a fresh pool connection wrote
    every waiting GET before the first reply told their size, docs/notes/
    replica-stall-under-churn.md; fixed, and held by the next test. On these 2-core
    machines the replica may still answer a direct INFO after 20-100 ms of CPU
    contention; a down verdict then is evidence, not the proxy's own load.)"""
    c = proxy.client()
    c.set("big", b"x" * BIG)
    topology.wait_synced()  # every replica serves the megabyte, not a nil
    worst = _DirectWitness(topology)
    churn = subprocess.Popen(
        # 2,000 connections a second: what these 2-core machines sustain beside the proxy
        # and the replicas without the replicas themselves falling behind most of the time.
        [
            sys.executable,
            "-m",
            "tests.helpers.churn",
            str(proxy.port),
            "10",
            "big",
            "4",
            "2000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    errors: list[str] = []
    ops = 0
    with worst:
        while churn.poll() is None:
            try:
                c.set("small", "1")
                assert c.strlen("big") == BIG
                ops += 1
            except redis.RedisError as e:
                errors.append(str(e))
            time.sleep(0.005)
    made = int(churn.communicate()[0])
    assert made > 5000, made
    assert ops > 100
    downs = re.findall(r"node_down node=(\S+)", proxy.log())
    unjustified = [n for n in downs if worst.seconds.get(n, 0.0) < 0.25]
    assert not unjustified, (downs, worst.seconds)
    # A steady client's error is allowed only when some node really stalled past the
    # backend deadline (1 s) as seen directly; otherwise there must be none.
    if max(worst.seconds.values()) < 1.0:
        assert not errors, (errors[:5], worst.seconds)


class _DirectWitness:
    """INFO straight to every node every 20 ms, from a thread: the worst latency each."""

    def __init__(self, topology: RedisTopology) -> None:
        self.nodes = {n.address: n.port for n in topology.nodes}
        self.seconds: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> _DirectWitness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        clients = {a: redis.Redis(port=p, socket_timeout=30) for a, p in self.nodes.items()}
        while not self._stop.is_set():
            for addr, cl in clients.items():
                t = time.perf_counter()
                cl.info("replication")
                dt = time.perf_counter() - t
                self.seconds[addr] = max(self.seconds.get(addr, 0.0), dt)
            time.sleep(0.02)


def test_a_client_that_never_reads_is_disconnected_at_its_output_limit(
    topology: RedisTopology, tmp_path: Path
) -> None:
    """2,000 pipelined GETs of a 1 MB value, never read: the client is disconnected at
    its output limit (client_output_buffer_limit_normal, here 64mb hard; the default
    256mb works the same, with more to move on a 2-core machine), the proxy's RSS grows
    by less than twice that, and another client is served meanwhile.

    The reads reach the replica a turn's budget at a time, not as one batch: Redis
    builds all replies to what it read before writing any, and 2 GB of them once took a
    CI replica past the proxy's backend timeout (`Forwarding.batch`)."""
    proxy = ProxyProcess(topology, tmp_path, client_output_buffer_limit_normal="64mb 32mb 60")
    try:
        _never_reads(proxy, topology, limit_mb=64, value=BIG, count=2000)
    finally:
        proxy.stop()


def _never_reads(
    proxy: ProxyProcess, topology: RedisTopology, limit_mb: int, value: int, count: int
) -> None:
    proxy.client().set("big", b"x" * value)
    topology.wait_synced()
    base = peak = proxy.rss_mb()
    other = proxy.client()
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"PING\r\n")
        assert s.recv(7) == b"+PONG\r\n"
        host, port = s.getsockname()[:2]
        victim = f"{host}:{port}"
        assert victim in {c["addr"] for c in other.client_list()}
        s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * count)
        deadline = time.monotonic() + 30
        while "client_output_limit" not in proxy.log() and time.monotonic() < deadline:
            peak = max(peak, proxy.rss_mb())
            assert other.ping() is True
            time.sleep(0.05)
        assert "client_output_limit" in proxy.log(), (peak - base, proxy.log()[-800:])
        assert peak - base < 2 * limit_mb, (base, peak)
        # Gone from the proxy at once (the kernel may still trickle out what it had).
        assert victim not in {c["addr"] for c in other.client_list()}
    assert other.get("big") == b"x" * value


def test_fresh_connections_hand_a_node_no_burst_of_big_reads(
    proxy: ProxyProcess, topology: RedisTopology
) -> None:
    """200 clients GET 1 MB at once, the first reads of a new pool connection: the node
    is handed a few at a time, not all (a connection that started with its cap open wrote
    every one before the first reply told their size, and the node built 200 MB of
    replies before answering anything else: docs/notes/replica-stall-under-churn.md).
    Measured where it happens: the replicas' output buffers for the proxy's connections."""
    proxy.client().set("big", b"x" * BIG)
    topology.wait_synced()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        admins = [n.client() for n in topology.replicas()]
        while not stop.is_set():
            for a in admins:
                for c in a.client_list():
                    if c.get("name") == "georedis":
                        peak[0] = max(peak[0], int(c.get("omem", 0)) + int(c.get("tot-mem", 0)))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        for s in socks:
            reader = hiredis.Reader()
            while (reply := reader.gets()) is False:
                reader.feed(s.recv(1 << 20))
            assert reply == b"x" * BIG
    finally:
        stop.set()
        sampler.join(5)
        for s in socks:
            s.close()
    # At most MIN_IN_FLIGHT (8) replies of 1 MB per connection, plus slack.
    assert peak[0] < 40 * BIG, f"{peak[0] / BIG:.0f} MB of replies held for the proxy"
