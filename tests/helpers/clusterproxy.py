"""georedis in cluster mode in front of a test cluster (tests/helpers/cluster.py): started
in a thread, waited for until it serves every shard, and plain clients that never retry.

Shared by the tests/integration/test_cluster_*.py modules, which each used to carry their
own copy.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import redis

from tests.helpers.cluster import RedisCluster
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisNode, free_port, no_retry, wait_until


def serving(p: ProxyThread, shards: int) -> bool:
    """The proxy has the slot map, and every shard's replicas are eligible for reads."""
    app = p.app
    assert app is not None
    snap = p.call(lambda: app.topo)
    return len(snap.shards) == shards and all(
        sum(len(v) for v in shard.eligible_by_region.values()) == len(shard.nodes) - 1
        for shard in snap.shards
    )


def start_proxy(cluster: RedisCluster, toml: str) -> ProxyThread:
    """The proxy of this config (`cluster.georedis_toml(...)`, perhaps edited), once it
    serves every shard of `cluster`."""
    p = ProxyThread(config_from_toml(toml)).start()
    try:
        wait_for(partial(serving, p, cluster.master_count), 20, "georedis serving every shard")
    except BaseException:
        p.stop()
        raise
    return p


def start_default(cluster: RedisCluster, extra: str) -> ProxyThread:
    return start_proxy(cluster, cluster.georedis_toml(free_port(), extra=extra))


def client(p: ProxyThread, ryw: bool = False, **kw: Any) -> redis.Redis:
    """One connection to georedis that does not retry (a retry would hide an error)."""
    c = p.client(retry=no_retry(), single_connection_client=True, **kw)
    if ryw:
        assert c.execute_command("PROXY", "CONSISTENCY", "session") in (b"OK", True)
    return c


def slot_owners(cluster: RedisCluster) -> dict[int, RedisNode]:
    """slot -> the master serving it, from CLUSTER NODES of a live master."""
    live = next(n for n in cluster.nodes if n.running and n.role() == "master")
    out: dict[int, RedisNode] = {}
    for line in str(live.admin.execute_command("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if "master" not in fields[2].split(","):
            continue
        node = cluster.by_port(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated: still its owner's
            first, _, last = part.partition("-")
            for slot in range(int(first), int(last or first) + 1):
                out[slot] = node
    return out


def move_slot(cluster: RedisCluster, slot: int, source: RedisNode, target: RedisNode) -> None:
    """The slot and its keys from `source` to `target`, as `redis-cli --cluster reshard`
    does it: IMPORTING/MIGRATING, MIGRATE in batches, then SETSLOT NODE on the target,
    the source and every other master."""
    ids = cluster.node_ids()
    target.admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    source.admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    while keys := source.admin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        source.admin.execute_command(
            "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
        )
    for node in [target, source, *(m for m in cluster.masters() if m not in (source, target))]:
        node.admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


def caught_up(cluster: RedisCluster) -> bool:
    """Every live replica's link is up and it has reached its master's offset as read
    just before it (its reads see every write acknowledged so far)."""
    for node in cluster.nodes:
        if not node.running:
            continue
        info = node.info("replication")
        if info.get("role") != "slave":
            continue
        master = cluster.by_port(int(info["master_port"]))
        if info.get("master_link_status") != "up" or node.offset() < master.offset():
            return False
    return True


def wait_synced(cluster: RedisCluster, timeout: float = 15.0) -> None:
    wait_until(partial(caught_up, cluster), timeout, "every replica caught up", interval=0.05)
