"""Cluster mode's batch path (proxy/server/clusterbatch.py) in front of a real Redis Cluster.

A pipeline of plain reads (or writes) over keys of every shard goes per node, one write
each, and its replies come back in the client's order. A slot moved by hand (CLUSTER
SETSLOT + MIGRATE, as test_cluster_proxy.py's test 5) while georedis' map still names its
old owner makes the old owner's nodes answer MOVED for the commands of that slot inside
the pipeline: those are followed one by one, their replies in their places, and the
client never sees MOVED.

georedis refreshes its map only when told (a MOVED) or every `refresh_ms` (an hour here):
the map is stale, surely, when each pipeline is sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from config.model import Config
from routing.slots import key_slot
from tests.helpers import clusterproxy
from tests.helpers.cluster import RedisCluster
from tests.helpers.clusterproxy import client, slot_owners, start_proxy, wait_synced
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread
from tests.helpers.topology import RedisNode, free_port, wait_until

pytestmark = pytest.mark.skipif(
    "cluster" not in Config.__dataclass_fields__, reason="cluster mode is not built"
)

EXTRA = FAST_HEALTH + "[backend]\ntimeout_ms = 1000\n[routing]\nlag_recovery_ms = 0\n"
# Keys of each master in a pipeline, and of the slot that moves: the old owner's replica
# gets 7 reads, within a new connection's reply window (8, `MIN_IN_FLIGHT`), which a batch
# of reads must fit in (more go one by one).
PER_MASTER = 4
MOVED_KEYS = 3


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster) -> Iterator[ProxyThread]:
    toml = cluster.georedis_toml(free_port(), extra=EXTRA, refresh_ms=3_600_000)
    p = start_proxy(cluster, toml)
    try:
        yield p
    finally:
        p.stop()


def keys_of_masters(cluster: RedisCluster, prefix: str) -> list[str]:
    """`PER_MASTER` keys of each master, interleaved (one of each master in turn)."""
    owners = slot_owners(cluster)
    by_master: dict[int, list[str]] = {}
    n = 0
    while len(by_master) < 3 or any(len(v) < PER_MASTER for v in by_master.values()):
        key = f"{prefix}:{n}"
        bucket = by_master.setdefault(owners[key_slot(key.encode())].port, [])
        if len(bucket) < PER_MASTER:
            bucket.append(key)
        n += 1
    return [k for group in zip(*by_master.values(), strict=True) for k in group]


def tagged_keys(cluster: RedisCluster, master: RedisNode, prefix: str) -> tuple[int, list[str]]:
    """`MOVED_KEYS` keys of one slot that `master` serves, and that slot."""
    owners = slot_owners(cluster)
    n = 0
    while owners[key_slot(f"{{{prefix}{n}}}".encode())] is not master:
        n += 1
    tag = f"{{{prefix}{n}}}"
    return key_slot(tag.encode()), [f"{tag}:{i}" for i in range(MOVED_KEYS)]


def mixed(plain: list[str], moved: list[str]) -> list[str]:
    """The moved slot's keys spread through the pipeline, between the others'."""
    out = list(plain)
    step = len(plain) // len(moved)
    for i, key in enumerate(moved):
        out.insert(i * (step + 1) + 1, key)
    return out


def owner_seen_by(node: RedisNode, slot: int) -> int | None:
    """The port of the master `node` believes serves `slot`."""
    for line in str(node.admin.execute_command("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if "master" not in fields[2].split(","):
            continue
        for part in fields[8:]:
            first, _, last = part.partition("-")
            if not part.startswith("[") and int(first) <= slot <= int(last or first):
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
    return None


def move_slot(cluster: RedisCluster, slot: int, source: RedisNode, target: RedisNode) -> None:
    """`clusterproxy.move_slot`, then until every node knows the new owner (a replica of
    the source that does not would answer a moved key nil, not MOVED)."""
    clusterproxy.move_slot(cluster, slot, source, target)
    live = [n for n in cluster.nodes if n.running]
    wait_until(
        lambda: all(owner_seen_by(n, slot) == target.port for n in live), 10, "the new owner known"
    )


def map_owner(proxy: ProxyThread, slot: int) -> int | None:
    """The port of the master georedis' map (and its migration pins) names for `slot`."""
    app = proxy.app
    assert app is not None
    snap = proxy.call(lambda: app.topo)
    shard = snap.pinned.get(slot) or snap.shards[snap.slot_shard[slot]]
    return shard.primary.addr.port if shard.primary is not None else None


def moved_count(proxy: ProxyThread) -> int:
    app = proxy.app
    assert app is not None
    return int(proxy.call(lambda: app.stats.cluster_moved))


def pipelined(c: redis.Redis, *commands: tuple[object, ...]) -> list[object]:
    pipe = c.pipeline(transaction=False)
    for cmd in commands:
        pipe.execute_command(*cmd)
    return list(pipe.execute(raise_on_error=False))


def test_reads_and_writes_of_a_moved_slot_inside_a_pipeline(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    source, target = cluster.masters()[0], cluster.masters()[1]
    read_slot, read_moved = tagged_keys(cluster, source, "r")
    write_slot, write_moved = tagged_keys(cluster, source, "w")
    plain = keys_of_masters(cluster, "p")
    keys = mixed(plain, read_moved)
    values = {k: str(1000 * i) for i, k in enumerate(keys + write_moved)}
    c = client(proxy)
    sets = [("SET", k, values[k]) for k in keys + write_moved]
    assert pipelined(c, *sets) == [True] * len(sets)
    wait_synced(cluster, 10)

    # Plain batches: replies in order, from each master's replica.
    for _ in range(3):
        assert pipelined(c, *[("GET", k) for k in keys]) == [values[k].encode() for k in keys]

    # Reads: the source's replicas answer MOVED for the moved slot, georedis follows.
    move_slot(cluster, read_slot, source, target)
    assert map_owner(proxy, read_slot) == source.port  # stale: MOVED will come
    before = moved_count(proxy)
    got = pipelined(c, *[("GET", k) for k in keys])
    assert got == [values[k].encode() for k in keys]
    assert moved_count(proxy) > before  # the moved keys' GETs were redirected

    # Writes: the source master answers MOVED; each INCRBY's reply is its own key's.
    wkeys = mixed(plain, write_moved)
    # The MOVED patched the map at once and asked for a new one, read on the next health
    # round (every 100 ms): that one must come before the next move, not after it.
    assert map_owner(proxy, read_slot) == target.port
    time.sleep(1.0)
    move_slot(cluster, write_slot, source, target)
    assert map_owner(proxy, write_slot) == source.port
    before = moved_count(proxy)
    got = pipelined(c, *[("INCRBY", k, i + 1) for i, k in enumerate(wkeys)])
    assert got == [int(values[k]) + i + 1 for i, k in enumerate(wkeys)]
    assert moved_count(proxy) > before
    for i, k in enumerate(wkeys):  # each applied once, on its slot's master
        owner = target if k in write_moved else slot_owners(cluster)[key_slot(k.encode())]
        assert owner.client().get(k) == str(int(values[k]) + i + 1).encode()
    c.close()


def test_a_slow_pipeline_over_every_master_is_in_the_slow_log(cluster: RedisCluster) -> None:
    """A cluster batch is one slot of no one node (its runs count each node's latency):
    the slow log skipped it whole, so a cluster pipeline never showed there. With the
    threshold at 0 (every command is slow) it is one entry, naming the nodes it went to."""
    # `georedis_toml` ends in [metrics]: the first line of `extra` lands there.
    extra = "slowlog_threshold_us = 0\n" + EXTRA
    p = start_proxy(cluster, cluster.georedis_toml(free_port(), extra=extra, refresh_ms=3_600_000))
    try:
        c = client(p)
        keys = keys_of_masters(cluster, "slowlog")
        assert c.execute_command("PROXY", "SLOWLOG", "RESET") in (b"OK", True)
        assert pipelined(c, *[("GET", k) for k in keys]) == [None] * len(keys)
        entries = c.execute_command("PROXY", "SLOWLOG", "GET", "-1")
        batches = [e for e in entries if e[3][0] == b"(pipeline)"]
        assert len(batches) == 1, entries
        args, backend = batches[0][3], batches[0][6].decode()
        assert args[1:3] == [b"GET", keys[0].encode()]
        assert len(backend.split(",")) == 3, backend  # one run per master's node
    finally:
        p.stop()
