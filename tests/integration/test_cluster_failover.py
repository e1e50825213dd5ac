"""`PROXY FAILOVER` in cluster mode: Redis Cluster's own `CLUSTER FAILOVER`, one shard.

A real cluster of 3 masters x 2 replicas (tests/helpers/cluster.py) behind the real proxy
in cluster mode (tests/helpers/clusterproxy.py). While a client
writes numbered keys through georedis, `PROXY FAILOVER SHARD <i>` runs through georedis;
then the nodes themselves are asked who is master, and every acknowledged write is read
back, from the masters directly and through georedis. Requests that name no replica are
errors, and change nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.cluster

from config.model import Config
from tests.helpers.cluster import RedisCluster
from tests.helpers.clusterproxy import client, start_default, wait_synced
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread
from tests.helpers.topology import wait_until

pytestmark = pytest.mark.skipif(
    "cluster" not in Config.__dataclass_fields__, reason="cluster mode is not built"
)

EXTRA = FAST_HEALTH + "[backend]\ntimeout_ms = 1000\n[routing]\nlag_recovery_ms = 0\n"


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster) -> Iterator[ProxyThread]:
    p = start_default(cluster, EXTRA)
    try:
        yield p
    finally:
        p.stop()


def failover(p: ProxyThread, *words: str) -> dict[str, Any]:
    """PROXY FAILOVER's reply as a mapping (a flat array in RESP2)."""
    c = client(p, socket_timeout=30, decode_responses=True)
    try:
        reply = c.execute_command("PROXY", "FAILOVER", *words)
    finally:
        c.close()
    return dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply


class Writer(threading.Thread):
    """SET <prefix>:<i> <i> through georedis until stopped; records, never asserts."""

    def __init__(self, c: redis.Redis, prefix: str = "n") -> None:
        super().__init__(daemon=True)
        self.c = c
        self.prefix = prefix
        self.stop_flag = threading.Event()
        self.acked: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            key = f"{self.prefix}:{n}"
            try:
                self.c.set(key, n)
                self.acked.append(key)
            except redis.RedisError as e:
                self.errors.append(f"SET {key}: {type(e).__name__} {e}")
            time.sleep(0.002)


def _value_of(key: str) -> bytes:
    return key.rsplit(":", 1)[1].encode()


def missing_in_masters(cluster: RedisCluster, keys: list[str]) -> list[str]:
    """Acknowledged keys the masters do not hold with their number (redis-py's own
    cluster client, which follows the cluster's map itself)."""
    seed = next(n for n in cluster.nodes if n.role() == "master")
    rc = redis.cluster.RedisCluster(host=seed.host, port=seed.port)
    try:
        values = rc.mget_nonatomic(keys)
    finally:
        rc.close()
    return [k for k, v in zip(keys, values, strict=True) if v != _value_of(k)]


def missing_through(p: ProxyThread, keys: list[str]) -> list[str]:
    c = client(p, ryw=True)
    out: list[str] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        out += [k for k, v in zip(chunk, c.mget(chunk), strict=True) if v != _value_of(k)]
    c.close()
    return out


# --- errors first: they change nothing, and the failover below changes the cluster -----------


def test_requests_that_name_no_replica_are_errors(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    master = cluster.masters()[0]
    roles = {n.port: n.role() for n in cluster.nodes}
    with pytest.raises(redis.ResponseError, match=f"{master.address} is not a replica"):
        failover(proxy, "TO", master.address)
    with pytest.raises(redis.ResponseError, match="unknown shard 99"):
        failover(proxy, "SHARD", "99")
    with pytest.raises(redis.ResponseError, match="takes SHARD <index>"):
        failover(proxy)
    assert {n.port: n.role() for n in cluster.nodes} == roles
    assert "takes SHARD" in str(failover(proxy, "STATUS")["last"])  # recorded as a failure


# --- PROXY FAILOVER SHARD <i> under writes ---------------------------------------------------


def test_failover_of_a_shard_under_writes(cluster: RedisCluster, proxy: ProxyThread) -> None:
    app = proxy.app
    assert app is not None
    index = 1
    old = proxy.call(lambda: app.topo).shards[index].primary
    assert old is not None
    writer = Writer(client(proxy, socket_timeout=10))
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 100, 10, "writes acknowledged", interval=0.01)
        reply = failover(proxy, "SHARD", str(index))
        before = len(writer.acked)
        wait_until(lambda: len(writer.acked) > before + 100, 10, "writes after the failover",
                   interval=0.01)  # fmt: skip
    finally:
        writer.stop_flag.set()
        writer.join(10)

    assert reply["result"] == "ok", reply
    assert reply["shard"] == index and reply["old_primary"] == str(old.addr), reply
    assert reply["map_updated"] == 1, reply  # the proxy's own map shows the new master
    new = cluster.by_port(int(str(reply["new_primary"]).rsplit(":", 1)[1]))
    assert new.port != old.addr.port
    assert new.role() == "master"  # the node itself says so
    assert cluster.by_port(old.addr.port).role() == "slave"
    assert writer.errors[:5] == []
    acked = list(writer.acked)
    assert missing_in_masters(cluster, acked) == []
    wait_synced(cluster)
    assert missing_through(proxy, acked) == []


def test_force_to_a_replica_finds_its_shard(cluster: RedisCluster, proxy: ProxyThread) -> None:
    """TO <host:port> alone names the shard; FORCE promotes without the master's part (the
    master is up here, and follows the new one once the cluster's config says so)."""
    app = proxy.app
    assert app is not None
    shard = proxy.call(lambda: app.topo).shards[2]
    assert shard.primary is not None
    target = next(n for n in shard.nodes if n is not shard.primary)
    reply = failover(proxy, "FORCE", "TO", str(target.addr))
    assert reply["result"] == "ok" and reply["kind"] == "cluster-force", reply
    assert reply["shard"] == 2 and reply["new_primary"] == str(target.addr), reply
    assert cluster.by_port(target.addr.port).role() == "master"
    old = cluster.by_port(shard.primary.addr.port)
    wait_until(lambda: old.role() == "slave", 10, "the old master follows", interval=0.05)
    c = client(proxy, ryw=True)
    assert c.set("after:force", 1) and c.get("after:force") == b"1"
    c.close()
