"""Cluster mode with `[proxy] workers = 2`: the supervisor reads the slot map and probes,
each worker routes by slot with the map it is handed (proxy/workers.py).

The real `georedis run` in a subprocess (two worker processes on one port, the kernel
spreading connections between them) in front of a real 3x2 cluster. Checked: multi-key
commands across slots from connections on both workers reply as one Redis would; PROXY
CLUSTER through a worker shows every shard; PROXY FAILOVER SHARD through a worker (the
supervisor runs it) under writers on several connections loses no acknowledged write,
and every worker's writes then go to the new master.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from tests.helpers.cluster import RedisCluster
from tests.helpers.proxyrun import FAST_HEALTH
from tests.helpers.topology import free_port, no_retry, wait_until
from tests.integration.test_cluster_failover import Writer, missing_in_masters
from tests.integration.test_workers import _children

EXTRA = FAST_HEALTH + "[backend]\ntimeout_ms = 1000\n[routing]\nlag_recovery_ms = 0\n"


def _answers(port: int) -> bool:
    try:
        reply = redis.Redis(port=port, socket_timeout=1, decode_responses=True).execute_command(
            "PROXY", "CLUSTER"
        )
    except redis.RedisError:
        return False
    return "shards" in str(reply)


@pytest.fixture(scope="module")
def proxy_port(cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("proxy")
    port = free_port()
    toml = cluster.georedis_toml(port, extra=EXTRA)
    assert toml.startswith("[proxy]\n")
    (tmp / "g.toml").write_text(toml.replace("[proxy]\n", "[proxy]\nworkers = 2\n", 1))
    log = (tmp / "proxy.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(tmp / "g.toml")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(port), 30, "georedis with two workers answering")
        assert len([w for w in _children(proc.pid) if w]) >= 2
        time.sleep(1.5)  # a probe round or two: every shard's replicas eligible
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()
    assert proc.returncode == 0, (tmp / "proxy.log").read_text()[-4000:]


def _clients(port: int, n: int) -> list[redis.Redis]:
    """`n` connections, each its own (the kernel spreads them over the workers)."""
    return [redis.Redis(port=port, socket_timeout=10, retry=no_retry(),
                        single_connection_client=True) for _ in range(n)]  # fmt: skip


def test_multi_key_commands_across_slots_on_every_worker(proxy_port: int) -> None:
    for i, c in enumerate(_clients(proxy_port, 8)):
        keys = [f"w{i}:{j}" for j in range(30)]  # 30 keys: every shard's slots
        assert c.mset({k: k for k in keys})
        assert c.mget([*keys, "absent"]) == [k.encode() for k in keys] + [None]
        assert c.exists(*keys, keys[0]) == 31
        assert c.delete(*keys[:10]) == 10
        assert c.mget(keys[:2]) == [None, None]
        c.close()


def test_proxy_cluster_through_a_worker(proxy_port: int) -> None:
    c = redis.Redis(port=proxy_port, protocol=3, decode_responses=True)
    reply = c.execute_command("PROXY", "CLUSTER")
    assert len(reply["shards"]) == 3
    c.close()


def test_failover_through_a_worker_loses_no_acknowledged_write(
    cluster: RedisCluster, proxy_port: int
) -> None:
    conns = _clients(proxy_port, 5)
    writers = [Writer(c, prefix=f"wk{i}") for i, c in enumerate(conns[:4])]
    for w in writers:
        w.start()
    try:
        wait_until(lambda: all(len(w.acked) > 50 for w in writers), 15, "writes acknowledged")
        reply = conns[4].execute_command("PROXY", "FAILOVER", "SHARD", "2")
        counts = [len(w.acked) for w in writers]
        wait_until(lambda: all(len(w.acked) > n + 50 for w, n in zip(writers, counts, strict=True)),
                   15, "every writer's writes after the failover")  # fmt: skip
    finally:
        for w in writers:
            w.stop_flag.set()
        for w in writers:
            w.join(10)
    result = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply
    assert result[b"result"] == b"ok", result
    new = cluster.by_port(int(result[b"new_primary"].decode().rsplit(":", 1)[1]))
    assert new.role() == "master"
    assert [w.errors[:3] for w in writers] == [[]] * 4
    acked = [k for w in writers for k in w.acked]
    assert missing_in_masters(cluster, acked) == []
