"""Cluster mode's admin and observability per shard: PROXY CLUSTER, the shard fields of
PROXY BACKENDS, the georedis_cluster_* metrics, the status page's shard column, and what
the cluster checker puts in the snapshot for them. Snapshots are built in code; the
proxy is a plain namespace with what the verbs and the collector read.
"""

from __future__ import annotations

import pickle
import tomllib
import types
from array import array
from dataclasses import replace
from typing import Any, cast

import hiredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.loader import parse_config
from config.model import Address, Config
from proxy.admin.cluster import CLUSTER_OFF, slot_ranges
from proxy.admin.verbs import handle
from proxy.backend.clusterhealth import ClusterHealthChecker
from proxy.backend.clustermap import cluster_state, shard_heartbeat_key
from proxy.observe.metrics import CLUSTER_ONLY, make_registry
from proxy.observe.statuspage import render_status, status_json
from proxy.stats import ProxyStats
from routing.slotmap import ClusterNode, Shard, SlotMap
from routing.slots import SLOTS, key_slot
from routing.topology import NO_SHARD, NodeState, Reason, Role, Snapshot

HOST = "127.0.0.1"
REGIONS = """
[[regions]]
name = "a"
latitude = 1.0
longitude = 2.0
nodes = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
"""
CLUSTER = '[cluster]\nseeds = ["127.0.0.1:7000"]\n' + REGIONS


def config(text: str) -> Config:
    return parse_config(tomllib.loads(text), "g.toml")


def addr(port: int) -> Address:
    return Address(HOST, port)


def master(port: int, up: bool = True) -> NodeState:
    return NodeState(addr(port), "a", up=up, role=Role.PRIMARY, reason=Reason.PRIMARY)


def replica(port: int, eligible: bool, lag_ms: float | None = 1.25) -> NodeState:
    reason = Reason.OK if eligible else Reason.LAGGING
    return NodeState(addr(port), "a", up=True, role=Role.REPLICA, link_up=True,
                     lag_ms=lag_ms, eligible=eligible, reason=reason)  # fmt: skip


def two_shards() -> Snapshot:
    """Shard 0: 7000 + 7001 (eligible), slots 0-99 and 200; shard 1: 7002 + 7003 (lagging),
    slots 101-199 and 201-16383; slot 100 unserved."""
    s0 = Snapshot(1, (master(7000), replica(7001, True)), master(7000))
    s1 = Snapshot(1, (master(7002), replica(7003, False)), master(7002))
    table = array("H", [1] * SLOTS)
    table[0:100] = array("H", [0] * 100)
    table[100] = NO_SHARD
    table[200] = 0
    return Snapshot(
        1, (*s0.nodes, *s1.nodes), s0.primary, shards=(s0, s1), slot_shard=table,
        map_version=3, map_read_at=1700000000.5, cluster_state="ok",
    )  # fmt: skip


def app(cfg: Config, snap: Snapshot) -> Any:
    stats = ProxyStats()
    stats.cluster_moved, stats.cluster_ask, stats.cluster_retry = 5, 2, 1
    return types.SimpleNamespace(
        config=cfg, topo=snap, stats=stats, started_at=0.0, history=None,
        snapshot=lambda: snap, outstanding=lambda a: 0, pool_connections=lambda a: 0,
        clients=lambda: [],
    )  # fmt: skip


def call(host: Any, *args: str, proto: int = 3) -> Any:
    reply = handle(
        host, cast(Any, types.SimpleNamespace(proto=proto)), [b"PROXY", *map(str.encode, args)]
    )
    assert isinstance(reply, bytes)
    reader = hiredis.Reader(encoding="utf-8")
    reader.feed(reply)
    return reader.gets()


# --- PROXY CLUSTER ----------------------------------------------------------------------


def test_slot_ranges_as_redis_writes_them() -> None:
    assert slot_ranges(two_shards()) == [["0-99", "200"], ["101-199", "201-16383"]]
    assert slot_ranges(Snapshot(0, (), None)) == []


def test_proxy_cluster_reports_the_map_state_redirects_and_shards() -> None:
    out = call(app(config(CLUSTER), two_shards()), "CLUSTER")
    assert out["map_version"] == 3
    assert out["map_read_at"] == 1700000000.5
    assert out["cluster_state"] == "ok"
    assert out["redirects"] == {"moved": 5, "ask": 2, "retry": 1}
    s0, s1 = out["shards"]
    assert s0 == {
        "shard": 0, "slots": ["0-99", "200"], "master": "127.0.0.1:7000", "master_up": 1,
        "replicas": [{"addr": "127.0.0.1:7001", "region": "a", "up": 1, "eligible": 1,
                      "reason": "ok", "lag_ms": "1.2"}],
    }  # fmt: skip
    assert s1["slots"] == ["101-199", "201-16383"]
    assert [(r["addr"], r["eligible"]) for r in s1["replicas"]] == [("127.0.0.1:7003", 0)]


def test_proxy_cluster_before_the_first_map_and_in_resp2() -> None:
    out = call(app(config(CLUSTER), Snapshot(0, (), None)), "CLUSTER", proto=2)
    # RESP2: a map is a flat list of names and values.
    assert dict(zip(out[::2], out[1::2], strict=True))["cluster_state"] is None
    assert out[out.index("shards") + 1] == []


def test_proxy_cluster_outside_cluster_mode_is_an_error() -> None:
    out = call(app(config(REGIONS), Snapshot(0, (), None)), "CLUSTER")
    assert isinstance(out, hiredis.ReplyError) and CLUSTER_OFF in str(out)
    assert "usage" in str(call(app(config(CLUSTER), two_shards()), "CLUSTER", "x"))
    assert any(
        line.startswith("PROXY CLUSTER ")
        for line in call(app(config(CLUSTER), two_shards()), "HELP")
    )


# --- PROXY BACKENDS ---------------------------------------------------------------------


def test_backends_rows_carry_shard_and_slots_in_cluster_mode_only() -> None:
    rows = call(app(config(CLUSTER), two_shards()), "BACKENDS")
    assert {r["node"]: (r["shard"], r["slots"]) for r in rows} == {
        "127.0.0.1:7000": (0, "0-99,200"), "127.0.0.1:7001": (0, "0-99,200"),
        "127.0.0.1:7002": (1, "101-199,201-16383"), "127.0.0.1:7003": (1, "101-199,201-16383"),
    }  # fmt: skip
    plain = Snapshot(1, (master(7000), replica(7001, True)), master(7000))
    for row in call(app(config(REGIONS), plain), "BACKENDS"):
        assert "shard" not in row and "slots" not in row


# --- metrics ----------------------------------------------------------------------------


def samples(host: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(host)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_cluster_metrics() -> None:
    snap = two_shards()
    down = Snapshot(1, (master(7002, up=False), replica(7003, False)), master(7002, up=False))
    s = samples(app(config(CLUSTER), replace(snap, shards=(snap.shards[0], down))))
    assert s[("georedis_cluster_map_version", ())] == 3
    assert s[("georedis_cluster_state_ok", ())] == 1
    for kind, n in (("moved", 5), ("ask", 2), ("retry", 1)):
        assert s[("georedis_cluster_redirects_total", (("kind", kind),))] == n
    assert s[("georedis_cluster_shard_eligible_replicas", (("shard", "0"),))] == 1
    assert s[("georedis_cluster_shard_eligible_replicas", (("shard", "1"),))] == 0
    assert s[("georedis_cluster_shard_master_up", (("shard", "0"),))] == 1
    assert s[("georedis_cluster_shard_master_up", (("shard", "1"),))] == 0
    assert {name for name, _ in s} >= CLUSTER_ONLY


def test_cluster_state_fail_and_unknown() -> None:
    snap = two_shards()
    failing = replace(snap, cluster_state="fail")
    assert samples(app(config(CLUSTER), failing))[("georedis_cluster_state_ok", ())] == 0
    unknown = replace(snap, cluster_state="")
    assert ("georedis_cluster_state_ok", ()) not in samples(app(config(CLUSTER), unknown))


def test_standalone_exports_no_cluster_family() -> None:
    plain = Snapshot(1, (master(7000), replica(7001, True)), master(7000))
    text = generate_latest(make_registry(app(config(REGIONS), plain))).decode()
    assert "georedis_cluster_" not in text


# --- status page --------------------------------------------------------------------------


def test_status_page_has_a_shard_column_in_cluster_mode_only() -> None:
    host = app(config(CLUSTER), two_shards())
    nodes = status_json(host)["regions"][0]["nodes"]
    assert {n["addr"]: n["shard"] for n in nodes} == {
        "127.0.0.1:7000": 0, "127.0.0.1:7001": 0, "127.0.0.1:7002": 1, "127.0.0.1:7003": 1,
    }  # fmt: skip
    assert "<th>shard</th>" in render_status(host)
    plain = Snapshot(1, (master(7000), replica(7001, True)), master(7000))
    assert "<th>shard</th>" not in render_status(app(config(REGIONS), plain))


# --- what the checker puts in the snapshot --------------------------------------------------


def test_cluster_state_from_cluster_info() -> None:
    assert (
        cluster_state(b"cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_ok:0\r\n")
        == "fail"
    )
    assert cluster_state("cluster_state:ok\r\n") == "ok"
    assert cluster_state(b"") == ""


def test_combined_snapshot_carries_map_read_at_and_state_and_pickles() -> None:
    c = ClusterHealthChecker(config(CLUSTER), "test", lambda snap: None)
    node = ClusterNode(id="m", host=HOST, port=7000, role="master", offset=0)
    c._apply(SlotMap((Shard(((0, SLOTS - 1),), node, ()),)))
    c._map_read_at, c._cluster_state = 1700000001.25, "fail"
    part = Snapshot(1, (master(7000),), master(7000))
    snap = c._combine([part], 2)
    assert (snap.map_read_at, snap.cluster_state, snap.map_version) == (1700000001.25, "fail", 1)
    back = pickle.loads(pickle.dumps(snap))  # workers get snapshots pickled
    assert (back.map_read_at, back.cluster_state) == (1700000001.25, "fail")


def test_braced_prefixes_give_each_shard_its_own_slot() -> None:
    thirds = (((0, 5460),), ((5461, 10922),), ((10923, SLOTS - 1),))
    for base in ("georedis:{app}:hb:", "{x}", "hb:}{"):
        keys = [shard_heartbeat_key(base, Shard(r, None)) for r in thirds]
        slots = [key_slot(k.encode()) for k in keys]
        assert all(r[0][0] <= s <= r[0][1] for r, s in zip(thirds, slots, strict=True)), keys
