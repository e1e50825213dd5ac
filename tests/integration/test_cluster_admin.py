"""Cluster mode's admin and observability per shard, against a real Redis Cluster.

A cluster of 3 masters x 2 replicas (tests/helpers/cluster.py) and the real proxy in a
thread, in cluster mode, with a heartbeat prefix that holds a hash tag (`{hb}`). What is
checked, against the nodes themselves:

0. every master holds its shard's heartbeat key, in a slot of its own (before the fix
   every shard's key hashed to the prefix's tag, so two masters answered MOVED to their
   beats and their replicas' lag fell back to the offset estimate);

1. PROXY CLUSTER: map version and read time, cluster_state ok, every shard's slots and
   master as CLUSTER NODES says, each shard's two replicas eligible with their lag;
2. PROXY BACKENDS: each node's shard and slots;
3. a slot migrated by hand under the proxy: the ASK and the MOVED it follows are counted
   (PROXY CLUSTER's redirects, georedis_cluster_redirects_total), and the other
   georedis_cluster_* series are there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.model import Config
from proxy.observe.metrics import make_registry
from routing.slots import key_slot
from tests.helpers.cluster import RedisCluster
from tests.helpers.clusterproxy import slot_owners, start_proxy
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, wait_for
from tests.helpers.topology import free_port, no_retry

pytestmark = pytest.mark.skipif(
    "cluster" not in Config.__dataclass_fields__, reason="cluster mode is not built"
)

# A braced prefix (the bug), fast probes, and a map read only when asked for (a minute):
# the MOVED of test 3 must reach the proxy before a timed read learns of the move.
EXTRA = (
    FAST_HEALTH
    + 'heartbeat_prefix = "georedis:{hb}:"\n'
    + "[backend]\ntimeout_ms = 1000\n"
    + "[routing]\nlag_recovery_ms = 0\n"
)


def proxy_cmd(p: ProxyThread, *args: str, protocol: int = 3) -> Any:
    """A PROXY verb's reply; RESP3 and decoded: maps as dicts of str."""
    c = p.client(retry=no_retry(), single_connection_client=True, protocol=protocol,
                 decode_responses=True)  # fmt: skip
    try:
        return c.execute_command("PROXY", *args)
    finally:
        c.close()


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster) -> Iterator[ProxyThread]:
    toml = cluster.georedis_toml(free_port(), extra=EXTRA, refresh_ms=60000)
    p = start_proxy(cluster, toml)
    try:
        yield p
    finally:
        p.stop()


def test_every_master_holds_its_shards_heartbeat(cluster: RedisCluster, proxy: ProxyThread) -> None:
    owners = slot_owners(cluster)

    def beats() -> dict[str, list[str]]:
        return {
            # Either form, braced (the bug's) or not: the test fails on where they are.
            m.address: [k.decode() for k in m.client().keys("georedis:*hb*") if b":wait:" not in k]
            for m in cluster.masters()
        }

    wait_for(lambda: all(beats().values()), 5, "a heartbeat key on every master")
    for address, keys in beats().items():
        assert len(keys) == 1, keys  # one proxy, one beat per shard
        assert owners[key_slot(keys[0].encode())].address == address


def ranges_of(slots: list[int]) -> list[str]:
    out: list[str] = []
    start = prev = slots[0]
    for s in [*slots[1:], -1]:
        if s != prev + 1:
            out.append(str(start) if prev == start else f"{start}-{prev}")
            start = s
        prev = s
    return out


def expected_shards(cluster: RedisCluster) -> dict[str, list[str]]:
    """master address -> its slot ranges, as the cluster says."""
    by_master: dict[str, list[int]] = {}
    for slot, node in sorted(slot_owners(cluster).items()):
        by_master.setdefault(node.address, []).append(slot)
    return {m: ranges_of(s) for m, s in by_master.items()}


def test_proxy_cluster_shows_the_map_and_every_shard(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    before = time.time()
    out = proxy_cmd(proxy, "CLUSTER")
    print("PROXY CLUSTER (RESP3):", json.dumps(out, indent=1))
    assert out["map_version"] >= 1
    assert 0 < out["map_read_at"] <= before
    assert out["cluster_state"] == "ok"
    assert set(out["redirects"]) == {"moved", "ask", "retry"}
    shards = out["shards"]
    assert [s["shard"] for s in shards] == list(range(cluster.master_count))
    assert {s["master"]: s["slots"] for s in shards} == expected_shards(cluster)
    for s in shards:
        assert s["master_up"] == 1
        master = next(m for m in cluster.masters() if m.address == s["master"])
        followers = {n.address for n in cluster.replicas_of(master)}
        assert {r["addr"] for r in s["replicas"]} == followers and len(followers) == 2
        for r in s["replicas"]:
            assert r["eligible"] == 1 and r["up"] == 1 and r["region"]
            assert float(r["lag_ms"]) >= 0
    # RESP2: a flat list of names and values.
    flat = proxy_cmd(proxy, "CLUSTER", protocol=2)
    assert flat[::2] == ["map_version", "map_read_at", "cluster_state", "redirects", "shards"]


def test_proxy_backends_gives_each_node_its_shard_and_slots(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    rows = proxy_cmd(proxy, "BACKENDS")
    shards = {s["master"]: s for s in proxy_cmd(proxy, "CLUSTER")["shards"]}
    assert len(rows) == len(cluster.nodes)
    for s in shards.values():
        members = {s["master"], *(r["addr"] for r in s["replicas"])}
        for row in rows:
            if row["node"] in members:
                assert (row["shard"], row["slots"]) == (s["shard"], ",".join(s["slots"]))


def metric_samples(p: ProxyThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    app = p.app
    assert app is not None
    text = p.call(lambda: generate_latest(make_registry(app)).decode())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def redirects(p: ProxyThread) -> dict[str, int]:
    return dict(proxy_cmd(p, "CLUSTER")["redirects"])


def test_a_migrated_slot_counts_one_ask_and_one_moved(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    ids = cluster.node_ids()
    owners = slot_owners(cluster)
    key = "adm:0"
    slot = key_slot(key.encode())
    source = owners[slot]
    target = next(m for m in cluster.masters() if m is not source)
    c = proxy.client(retry=no_retry(), single_connection_client=True)
    before = redirects(proxy)

    target.admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    source.admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    assert c.set(key, "v1")  # not on the source: ASK, then ASKING + SET on the target
    after_ask = redirects(proxy)
    assert after_ask["ask"] == before["ask"] + 1
    assert after_ask["moved"] == before["moved"]

    for node in [target, source, *(m for m in cluster.masters() if m not in (source, target))]:
        node.admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    version = proxy_cmd(proxy, "CLUSTER")["map_version"]
    assert c.set(key, "v2")  # the proxy's map still says source: MOVED, then the target
    after_moved = redirects(proxy)
    assert after_moved["moved"] == before["moved"] + 1
    assert target.client().get(key) == b"v2"
    c.close()

    s = metric_samples(proxy)
    for kind in ("moved", "ask", "retry"):
        series = ("georedis_cluster_redirects_total", (("kind", kind),))
        assert s[series] == after_moved[kind]
    assert s[("georedis_cluster_state_ok", ())] == 1
    assert s[("georedis_cluster_map_version", ())] >= 1
    for i in range(cluster.master_count):
        assert s[("georedis_cluster_shard_master_up", (("shard", str(i)),))] == 1
        assert s[("georedis_cluster_shard_eligible_replicas", (("shard", str(i)),))] == 2

    # The MOVED asked for a new map (a timed read is a minute away): a new map version,
    # with the slot in the target's shard.
    def read_again() -> bool:
        return int(proxy_cmd(proxy, "CLUSTER")["map_version"]) > version

    wait_for(read_again, 10, "the map read again after the MOVED")
    assert _slot_shown_at(proxy, slot, target.address)
    print("PROXY CLUSTER after the move:", json.dumps(proxy_cmd(proxy, "CLUSTER"), indent=1))


def _slot_shown_at(p: ProxyThread, slot: int, master: str) -> bool:
    shard = next(s for s in proxy_cmd(p, "CLUSTER")["shards"] if s["master"] == master)
    return any(_covers(r, slot) for r in shard["slots"])


def _covers(text: str, slot: int) -> bool:
    first, _, last = text.partition("-")
    return int(first) <= slot <= int(last or first)
