"""A cluster backup set's pure parts: ids, slot ranges, per-shard sources, the set manifest."""

from __future__ import annotations

import pytest

from config.model import Address
from proxy.backup.clusterset import (
    SetProgress,
    ShardPick,
    check_member,
    lock_master,
    members,
    plan_set,
    set_manifest,
    shard_id,
    slot_ranges,
    valid_shard_id,
)
from proxy.backup.job import Progress
from proxy.backup.manifest import Manifest
from proxy.backup.sealed import MasterKey
from proxy.errors import BackupError
from routing.topology import NO_SHARD, NodeState, Role, Snapshot

RANKING = ("ap", "us", "eu")
SET = "20261201T021500Z-3f9a1c"


def node(port: int, region: str, role: Role = Role.REPLICA, eligible: bool = True) -> NodeState:
    return NodeState(Address("10.0.0.1", port), region, up=True, role=role, eligible=eligible,
                     lag_ms=1.0)  # fmt: skip


def shard(base: int, *replicas: NodeState) -> Snapshot:
    master = node(base, "ap", Role.PRIMARY, eligible=False)
    return Snapshot(1, (master, *replicas), master, epoch=base)


def cluster(*shards: Snapshot, table: list[int] | None = None) -> Snapshot:
    if table is None:
        per = 16384 // len(shards) + 1
        table = [min(s // per, len(shards) - 1) for s in range(16384)]
    nodes = tuple(n for s in shards for n in s.nodes)
    return Snapshot(1, nodes, shards[0].primary, shards=shards, slot_shard=table)


def test_shard_ids_name_their_set_and_are_not_plain_ids() -> None:
    assert shard_id(SET, 2) == f"{SET}.s2"
    assert valid_shard_id(f"{SET}.s2") and valid_shard_id(f"{SET}.s10")
    for bad in (SET, f"{SET}.s", f"{SET}.s02", f"{SET}.sx", "x.s1", f"{SET}.s1/..", ""):
        assert not valid_shard_id(bad), bad


def test_slot_ranges_are_the_runs_of_each_shard() -> None:
    table = [0, 0, 1, NO_SHARD, 0, 1, 1]
    assert slot_ranges(table, 0) == ((0, 1), (4, 4))
    assert slot_ranges(table, 1) == ((2, 2), (5, 6))
    assert slot_ranges(table, 2) == ()


def test_each_shard_reads_its_own_nearest_replica_or_its_master() -> None:
    us, eu = node(11, "us"), node(12, "eu")
    lone = shard(20, node(21, "us", eligible=False))  # no replica can serve: its master
    picks = plan_set(cluster(shard(10, eu, us), lone), None, RANKING)
    assert [(p.index, p.node.addr.port) for p in picks] == [(0, 11), (1, 20)]
    assert picks[0].slots == ((0, 8192),) and picks[1].slots == ((8193, 16383),)
    assert [p.master for p in picks] == [Address("10.0.0.1", 10), Address("10.0.0.1", 20)]
    assert [p.epoch for p in picks] == [10, 20]


def test_from_a_region_per_shard_and_a_node_refused() -> None:
    snap = cluster(shard(10, node(11, "us"), node(12, "eu")), shard(20, node(21, "us")))
    assert [p.node.addr.port for p in plan_set(snap, "us", RANKING)] == [11, 21]
    with pytest.raises(BackupError, match="shard 1 has no node in eu"):
        plan_set(snap, "eu", RANKING)
    with pytest.raises(BackupError, match="unknown region 'mars'"):
        plan_set(snap, "mars", RANKING)
    with pytest.raises(BackupError, match="FROM names a region, not a node"):
        plan_set(snap, "10.0.0.1:11", RANKING)


def test_a_shard_without_slots_is_left_out() -> None:
    table = [0] * 16384
    picks = plan_set(cluster(shard(10, node(11, "us")), shard(20), table=table), None, RANKING)
    assert [p.index for p in picks] == [0]
    with pytest.raises(BackupError, match="not in cluster mode"):
        plan_set(Snapshot(1, (), None), None, RANKING)


def member(i: int, at: float, keys: int) -> Manifest:
    return Manifest(
        id=shard_id(SET, i), created=100.0, source=f"10.0.0.1:{i}", source_region="us",
        source_role="replica", target="t", finished=110.0 + i, at=at, rdb_version=10 + i,
        rdb_bytes=1000, size=1100, sha256=f"{i:064x}", key_id="k", keys=keys, reserved_keys=1,
        expires=2, keys_per_db={"0": keys - 1, "3": 1}, epoch=i,
        cluster={"set": SET, "shard": i, "shards": 2, "slots": [[i, i]]},
    )  # fmt: skip


def test_the_set_manifest_sums_its_members_and_records_each_moment() -> None:
    parts = [member(0, 101.5, 10), member(1, 101.25, 20)]
    m = set_manifest(SET, 100.0, parts, "t", 120.0)
    assert m.is_set and not parts[0].is_set
    assert (m.keys, m.user_keys, m.reserved_keys, m.expires) == (30, 28, 2, 4)
    assert m.keys_per_db == {"0": 28, "3": 2}
    assert (m.size, m.rdb_bytes, m.rdb_version, m.epoch, m.at) == (2200, 2000, 11, 1, 101.25)
    assert m.cluster is not None and m.cluster["at_spread_s"] == 0.25
    rows = members(m)
    assert [(r["id"], r["at"], r["state"]) for r in rows] == [
        (f"{SET}.s0", 101.5, "complete"), (f"{SET}.s1", 101.25, "complete")]  # fmt: skip
    assert m.summary()["cluster_shards"] == 2 and "cluster_shards" not in parts[0].summary()
    assert m.summary()["source"] == "cluster (2 shards)"
    check_member(m, rows[1], parts[1])
    with pytest.raises(BackupError, match="shard 0's manifest is not its own"):
        check_member(m, rows[0], parts[1])
    with pytest.raises(BackupError, match="not a cluster set"):
        members(parts[0])


def test_the_mac_covers_the_cluster_field_only_when_present() -> None:
    key = MasterKey.parse("a1" * 32)
    m = member(0, 101.0, 10)
    signed = m.mac = key.mac(m.signed())
    assert m.cluster is not None
    m.cluster["slots"] = [[0, 16383]]  # a member claiming other slots
    assert key.mac(m.signed()) != signed
    m.cluster = None  # a standalone manifest: what it signed before this field existed
    assert b"cluster" not in m.signed()


def test_progress_shows_each_shard() -> None:
    picks = [ShardPick(i, node(10 + i, "us"), ((i, i + 1),), 0, None) for i in range(2)]
    shards = [(p, Progress(shard_id(SET, p.index), "a", "us", 100.0)) for p in picks]
    shards[0][1].received, shards[1][1].received = 5, 7
    shards[1][1].state = "complete"
    d = SetProgress(SET, 100.0, shards).as_dict()
    assert (d["state"], d["cluster_shards"], d["received"]) == ("running", 2, 12)
    rows = d["shards"]
    assert isinstance(rows, list)
    assert [(r["shard"], r["slots"], r["state"]) for r in rows] == [
        (0, "0-1", "running"), (1, "1-2", "complete")]  # fmt: skip


def test_the_schedulers_lock_goes_to_its_slots_master() -> None:
    from routing.slots import key_slot

    key = "georedis:lock:backup:1796000000"
    table = [0] * 16384
    table[key_slot(key.encode())] = 1
    two = cluster(shard(10, node(11, "us")), shard(20, node(21, "us")), table=table)
    assert lock_master(two, key) is two.shards[1].primary
    table[key_slot(key.encode())] = NO_SHARD
    assert lock_master(two, key) is None
    standalone = shard(30)
    assert lock_master(standalone, key) is standalone.primary
