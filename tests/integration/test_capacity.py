"""Capacity planning end to end: a primary filled at a steady rate while the proxy samples
it, then `georedis capacity` (a subprocess, as an operator runs it) asked for the report.

The full INFO is read every 200 ms, so the history's step is 1 s (5 x the INFO interval)
and ~25 s of filling give ~25 rows to fit. The true rate is what the primary itself
reports (`used_memory` read directly at the start and at the end): the proxy's fit must
be within 20% of it, and its time to full consistent with (maxmemory - used) / rate.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

ROOT = Path(__file__).resolve().parents[2]
MAXMEMORY = 64 * 1024 * 1024
VALUE = b"x" * 1000
KEYS_PER_S = 400  # ~0.45 MB/s of used_memory: ~11 MB over the test, far from 64 MB
FILL_S = 25.0
PASSWORD = "capacity-pw"

EXTRA = f"""
[health]
interval_ms = 100
probe_timeout_ms = 300
info_interval_ms = 200

[[users]]
name = "planner"
rules = "on +@proxystatus"
password_sha256 = ["{hashlib.sha256(PASSWORD.encode()).hexdigest()}"]

[[users]]
name = "reader"
rules = "on ~* +@read"
password_sha256 = ["{hashlib.sha256(PASSWORD.encode()).hexdigest()}"]
"""


class Filler:
    """Writes KEYS_PER_S keys a second to the primary, on a fixed schedule (a late turn
    catches up), so used_memory grows at a steady rate."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.stop = threading.Event()
        self.written = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * KEYS_PER_S)
            if due > self.written:
                pipe = self.client.pipeline(transaction=False)
                for i in range(self.written, due):
                    pipe.set(f"fill:{i}", VALUE)
                pipe.execute()
                self.written = due
            time.sleep(0.02)


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[RedisTopology]:
    regions = {"ap-southeast-1": 1, "us-east-1": 1}
    args = ["--maxmemory", str(MAXMEMORY)]
    with RedisTopology.start(regions, tmp=tmp_path / "redis", extra_args=args) as t:
        yield t


def _used(node: redis.Redis) -> tuple[float, int]:
    return time.time(), int(node.info("memory")["used_memory"])


def _capacity(conf: Path, *args: str, user: str = "planner") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOREDIS_PASSWORD": PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "capacity", "--config", str(conf), "--user", user,
         *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip


def test_capacity_measures_a_steady_fill(topo: RedisTopology, tmp_path: Path) -> None:
    port = free_port()
    conf = topo.write_config(tmp_path / "georedis.toml", port, extra=EXTRA)
    primary = topo.primary.client()
    filler = Filler(topo.primary.client())
    filler.thread.start()  # growing before the proxy's first sample: the whole history is steady
    try:
        time.sleep(1.0)
        with ProxyThread(config_from_toml(conf.read_text())) as p:
            assert p.app is not None
            app = p.app
            t0, u0 = _used(primary)
            addr = topo.primary.address

            def rows() -> int:
                s = app.history.nodes.get(addr)
                return len(s.column("used_memory")) if s is not None else 0

            wait_for(lambda: p.call(rows) >= FILL_S, FILL_S + 30, "25 history rows")
            t1, u1 = _used(primary)
            r = _capacity(conf, "--horizon", "30days", "--growth-rate", "15%", "--json",
                          "--plot", str(tmp_path / "capacity.png"))  # fmt: skip
            text = _capacity(conf)
            refused = _capacity(conf, user="reader")
            admin = p.client(username="planner", password=PASSWORD)
            verb = admin.execute_command("PROXY", "CAPACITY", "2weeks", "RATE", "10%")
            with pytest.raises(redis.ResponseError, match="horizon"):
                admin.execute_command("PROXY", "CAPACITY", "soon")
    finally:
        filler.stop.set()
        filler.thread.join(10)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    true_rate = (u1 - u0) / (t1 - t0)
    node = next(n for n in report["nodes"] if n["addr"] == addr)
    measured = node["growth_bytes_per_day"] / 86400
    print(f"true {true_rate:.0f} B/s, measured {measured:.0f} B/s over {node['fit_points']} "
          f"points; plot: {tmp_path / 'capacity.png'}")  # fmt: skip
    assert true_rate > 200_000, "the fill did not grow used_memory steadily"
    assert measured == pytest.approx(true_rate, rel=0.2)
    assert node["limit_bytes"] == MAXMEMORY and node["limit_source"] == "maxmemory"
    expected = (MAXMEMORY - u1) / true_rate
    assert node["trend"]["full_in_s"] == pytest.approx(expected, rel=0.25)
    assert node["given_rate"]["full_in_s"] > 0
    assert report["deployment"]["primary"] == addr
    assert (tmp_path / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "capacity.png").stat().st_size > 10_000

    assert text.returncode == 0, text.stderr
    assert f"node {addr} (ap-southeast-1, primary)" in text.stdout
    assert "maxmemory" in text.stdout and "full in" in text.stdout
    verb_text = verb.decode() if isinstance(verb, bytes) else str(verb)
    assert verb_text.startswith("# Capacity") and "at 10%/month" in verb_text, verb_text
    assert refused.returncode == 1 and "NOPERM" in refused.stderr, refused.stderr
