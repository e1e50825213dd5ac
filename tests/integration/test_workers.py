"""`[proxy] workers = 2`: two processes on one port, one health checker, one /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from tests.helpers.topology import RedisTopology, free_port


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix} not in /metrics")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
    raise AssertionError("the proxy did not start")


def test_two_workers_share_the_port_and_one_metrics(
    topology: RedisTopology, tmp_path: Path
) -> None:
    port, mport = free_port(), free_port()
    cfg = topology.write_config(
        tmp_path / "g.toml",
        port,
        metrics_port=mport,
        proxy_options={"workers": 2},
        extra="[health]\ninterval_ms = 100\n",
    )
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_port(port, time.monotonic() + 20)
        workers = _children(proc.pid)
        assert len([w for w in workers if w]) >= 2  # two workers (+ multiprocessing's helper)
        clients = [redis.Redis(port=port, socket_timeout=5) for _ in range(20)]
        for i, c in enumerate(clients):
            for j in range(10):
                c.set(f"w{i}:{j}", j)
        # Each worker reports every second; the supervisor serves the sum.
        deadline = time.monotonic() + 10
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics").read().decode()
            writes = _metric(text, "georedis_commands_total", **{"class": "write", "outcome": "ok"})
            if writes >= 200 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert writes >= 200  # every worker's commands, merged
        assert _metric(text, "georedis_node_up", node=topology.primary.address,
                       region="ap-southeast-1") == 1  # fmt: skip
        # One heartbeat key, whatever the number of workers: probes are not multiplied.
        keys = topology.primary.client().keys("georedis:hb:*")
        assert len([k for k in keys if b"wait" not in k]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    log.close()
    assert proc.returncode == 0, (tmp_path / "proxy.log").read_text()
    # Workers (and multiprocessing's resource tracker) go with the supervisor.
    deadline = time.monotonic() + 10
    left = workers
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if os.path.exists(f"/proc/{pid}") and not _is_zombie(pid)]
        time.sleep(0.1)
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_long_script_in_a_worker_does_not_take_the_node_down(
    topology: RedisTopology, tmp_path: Path
) -> None:
    """The supervisor probes, a worker runs the script: the worker tells it at once that
    the node is busy, so a 1.5 s EVAL does not read as the primary going down."""
    from tests.integration.test_robustness import _BUSY_MS

    port = free_port()
    cfg = topology.write_config(tmp_path / "g.toml", port, proxy_options={"workers": 2})
    log_path = tmp_path / "proxy.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_port(port, time.monotonic() + 20)
        c = redis.Redis(port=port, socket_timeout=10)
        assert c.eval(_BUSY_MS, 0, 1500) == 1
        time.sleep(0.5)
        assert c.set("after", "1") is True
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    text = log_path.read_text()
    assert "node_down" not in text, text[-3000:]


def test_publish_counts_the_subscribers_of_every_worker(
    topology: RedisTopology, tmp_path: Path
) -> None:
    """Eight subscribers spread over two workers by the kernel: PUBLISH through either
    counts all eight (the others' counts come from the supervisor, about once a second)."""
    from tests.helpers.proxyrun import wait_for
    from tests.helpers.raw import Raw

    port = free_port()
    cfg = topology.write_config(tmp_path / "g.toml", port, proxy_options={"workers": 2},
                                extra="[health]\ninterval_ms = 100\n")  # fmt: skip
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_port(port, time.monotonic() + 20)
        subs = [Raw(port) for _ in range(8)]
        for s in subs:
            s.send(["SUBSCRIBE", "everywhere"])
            assert s.read(1) == [[b"subscribe", b"everywhere", 1]]
        for _ in range(3):  # publishers on (likely) both workers
            pub = Raw(port)
            wait_for(lambda p=pub: p.call("PUBLISH", "everywhere", "hi") == 8, 10, "all eight")  # type: ignore[misc]
            pub.close()
        for s in subs:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
