"""Real `redis-sentinel` processes watching a test topology's primary."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.helpers.topology import HOST, RedisTopology, free_port

MASTER_NAME = "georedis-test"


def sentinel_binary() -> str:
    found = shutil.which("redis-sentinel")
    if found is None:
        raise RuntimeError("redis-sentinel is not installed (apt-get install redis-sentinel)")
    return found


@contextmanager
def sentinels(
    topology: RedisTopology, n: int = 3, down_after_ms: int = 2000
) -> Iterator[list[int]]:
    """`n` sentinels (quorum n//2+1) on the topology's primary; yields their ports."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    p = topology.primary
    try:
        for _ in range(n):
            port = free_port()
            d = topology.base_dir / f"sentinel-{port}"
            d.mkdir()
            conf = d / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER_NAME} {p.host} {p.port} {n // 2 + 1}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 4\n"
            )
            procs.append(subprocess.Popen([sentinel_binary(), str(conf)],
                                          stdout=subprocess.DEVNULL))  # fmt: skip
            ports.append(port)
        _wait_all_know_replicas(ports, len(topology.nodes) - 1)
        yield ports
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(5)


def _wait_all_know_replicas(ports: list[int], replicas: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        c = redis.Redis(host=HOST, port=port, socket_timeout=2)
        while True:
            try:
                known = c.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                others = c.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
                if len(known) >= replicas and len(others) >= len(ports) - 1:
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel {port} did not discover the topology")
            time.sleep(0.1)


def sentinel_toml(ports: list[int]) -> str:
    addrs = ", ".join(f'"{HOST}:{p}"' for p in ports)
    return f'[sentinel]\nmaster_name = "{MASTER_NAME}"\naddresses = [{addrs}]\n'
