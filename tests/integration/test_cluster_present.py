"""`[cluster] present_as = "cluster"`: cluster-aware clients through georedis.

A real cluster of 3 masters x 2 replicas (tests/helpers/cluster.py) behind georedis in
cluster mode, presenting itself as a cluster whose masters are all georedis, at the
address the client reached (`routing.presentcluster`). Cluster clients read the slot
map from georedis and must then talk to georedis only:
1. redis-py's `RedisCluster` pointed at georedis sees one node, at georedis' address,
   and sets and reads keys of many slots (stored on every master behind it), MGET across
   slots through `mget_nonatomic`;
2. `redis-benchmark --cluster -t set,get` through georedis completes without an error;
3. the replies name the address the client connected to, in RESP2 and RESP3.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis
import redis.cluster

from proxy.resp.replies import ReplySplitter
from proxy.resp.requests import pack
from routing import presentcluster
from routing.slots import key_slot
from tests.helpers.cluster import RedisCluster
from tests.helpers.clusterproxy import start_proxy
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, wait_for
from tests.helpers.topology import free_port, no_retry

EXTRA = FAST_HEALTH + "[backend]\ntimeout_ms = 1000\n" + "[routing]\nlag_recovery_ms = 0\n"
BANNED = re.compile(r"ERR|MOVED|\bASK\b|CROSSSLOT|CLUSTERDOWN|TRYAGAIN|error", re.IGNORECASE)


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster) -> Iterator[ProxyThread]:
    toml = cluster.georedis_toml(free_port(), extra=EXTRA)
    assert toml.count("[cluster]\n") == 1
    toml = toml.replace("[cluster]\n", '[cluster]\npresent_as = "cluster"\n')
    p = start_proxy(cluster, toml)
    try:
        yield p
    finally:
        p.stop()


def cluster_client(p: ProxyThread) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster(host="127.0.0.1", port=p.port, retry=no_retry())


def keys_on_masters(cluster: RedisCluster, prefix: str) -> dict[int, int]:
    """master port -> how many `prefix*` keys it holds (asked of the nodes themselves)."""
    return {m.port: len(m.admin.keys(f"{prefix}*")) for m in cluster.masters()}


def test_redis_py_cluster_client_sets_and_reads_across_slots(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    rc = cluster_client(proxy)
    try:
        (node,) = rc.get_nodes()  # type: ignore[no-untyped-call]  # georedis, and only it
        assert (node.host, node.port) == ("127.0.0.1", proxy.port)
        keys = [f"present:{i}" for i in range(200)]
        assert len({key_slot(k.encode()) for k in keys}) > 100
        for k in keys:
            assert rc.set(k, k.upper())
        spread = keys_on_masters(cluster, "present:")
        assert sum(spread.values()) == len(keys) and all(spread.values()), spread
        want = [k.upper().encode() for k in keys]

        def all_read_back() -> bool:  # reads go to replicas, which may be a moment behind
            return [rc.get(k) for k in keys] == want

        wait_for(all_read_back, 10, "every key read back through the cluster client")

        def mget_reads_back() -> bool:
            return list(rc.mget_nonatomic([*keys, "present:missing"])) == [*want, None]

        wait_for(mget_reads_back, 10, "MGET across slots")
        assert rc.delete(*keys[:3]) == 3  # DEL is split per slot by redis-py
    finally:
        rc.close()


def test_redis_benchmark_cluster_mode_through_georedis(proxy: ProxyThread) -> None:
    done = subprocess.run(
        ["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(proxy.port),
         "-t", "set,get", "-n", "2000", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"Cluster has {presentcluster.PRESENTED} master nodes" in output, output
    assert not BANNED.search(output), output
    assert re.search(r"^SET: .*requests per second", output, re.MULTILINE), output
    assert re.search(r"^GET: .*requests per second", output, re.MULTILINE), output


def raw_replies(port: int, proto: int, *cmds: tuple[str, ...]) -> list[bytes]:
    """Each command's reply as the bytes georedis sent, after HELLO <proto>."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"".join(pack([a.encode() for a in c]) for c in (("HELLO", str(proto)), *cmds))
        )
        splitter, out = ReplySplitter(), list[bytes]()
        while len(out) < 1 + len(cmds):
            data = sock.recv(65536)
            assert data, f"closed after {out!r}"
            out += splitter.split(data)
    return out[1:]


@pytest.mark.parametrize("proto", [2, 3])
def test_the_replies_name_the_address_the_client_reached(proxy: ProxyThread, proto: int) -> None:
    ids = presentcluster.node_ids(str(proxy.config.proxy.listen))
    ip, port = "127.0.0.1", proxy.port
    got = raw_replies(port, proto, ("CLUSTER", "SLOTS"), ("CLUSTER", "SHARDS"),
                      ("CLUSTER", "NODES"), ("CLUSTER", "INFO"), ("CLUSTER", "MYID"),
                      ("CLUSTER", "KEYSLOT", "foo"), ("READONLY",), ("READWRITE",))  # fmt: skip
    assert got == [
        presentcluster.slots_reply(ip, port, ids, proto),
        presentcluster.shards_reply(ip, port, ids, proto),
        presentcluster.nodes_reply(ip, port, ids, proto),
        presentcluster.info_reply(ip, port, ids, proto),
        b"$40\r\n" + ids[0].encode() + b"\r\n",
        b":12182\r\n",
        b"+OK\r\n",
        b"+OK\r\n",
    ]
    assert b"127.0.0.1:%d@" % port in got[2]
