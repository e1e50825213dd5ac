"""The cluster health checker's bookkeeping: heartbeat keys, maps applied, the snapshot.

No sockets and no event loop: `_apply` and `_combine` are called with slot maps built in
code, as `_read_map` and `refresh` would after reading the cluster. A probe connection
that was never opened stays unconnected whether closed or not, so closing is seen
through a subclass that counts its `close` calls.
"""

from __future__ import annotations

import pickle
import tomllib
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.loader import parse_config
from config.model import Address, Config
from proxy.backend.clusterhealth import ClusterHealthChecker, health_checker
from proxy.backend.clustermap import shard_heartbeat_key
from proxy.backend.health import CheckedNode, HealthChecker
from proxy.backend.probe import ProbeConnection
from routing.slotmap import ClusterNode, Shard, SlotMap, SlotRange
from routing.slots import SLOTS, key_slot
from routing.topology import NO_SHARD, Snapshot

HOST = "127.0.0.1"

# 7000 and 7001 in region a, 7003 in region b; 7002, 7004 and 7005 in none.
CLUSTER_TOML = """
[cluster]
seeds = ["127.0.0.1:7000"]

[[regions]]
name = "a"
latitude = 1.0
longitude = 2.0
nodes = ["127.0.0.1:7000", "127.0.0.1:7001"]

[[regions]]
name = "b"
latitude = 3.0
longitude = 4.0
nodes = ["127.0.0.1:7003"]
"""


class CountingConn(ProbeConnection):
    """A probe connection that counts the checker's `close` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


def config(text: str = CLUSTER_TOML) -> Config:
    return parse_config(tomllib.loads(text), "g.toml")


def checker() -> ClusterHealthChecker:
    return ClusterHealthChecker(config(), "test", lambda snap: None)


def node(port: int, role: str = "master", offset: int = 0) -> ClusterNode:
    return ClusterNode(id=f"id{port}", host=HOST, port=port, role=role, offset=offset)


def shard(ranges: tuple[SlotRange, ...], master: int, *replicas: int, offset: int = 0) -> Shard:
    return Shard(ranges, node(master, offset=offset), tuple(node(p, "replica") for p in replicas))


HALF = SLOTS // 2
# Two shards: 7000 (replica 7001) serves the low half, 7002 (replica 7003) the high one.
LOW = ((0, HALF - 1),)
HIGH = ((HALF, SLOTS - 1),)
TWO = SlotMap((shard(LOW, 7000, 7001), shard(HIGH, 7002, 7003)))


def addr(port: int) -> Address:
    return Address(HOST, port)


def without(ranges: tuple[SlotRange, ...], slot: int) -> tuple[SlotRange, ...]:
    """`ranges` less one slot of theirs."""
    split = [((a, slot - 1), (slot + 1, b)) if a <= slot <= b else ((a, b),) for a, b in ranges]
    return tuple(r for pair in split for r in pair if r[0] <= r[1])


def key_in(key: str, ranges: tuple[SlotRange, ...]) -> bool:
    slot = key_slot(key.encode())
    return any(first <= slot <= last for first, last in ranges)


# --- shard_heartbeat_key --------------------------------------------------------------


@pytest.mark.parametrize(
    "ranges",
    [
        ((0, SLOTS - 1),),  # one shard serves all
        LOW,
        HIGH,
        ((0, 5460),),
        ((5461, 10922),),
        ((10923, 16383),),
        ((100, 101), (5461, 10922), (16000, 16000)),  # several ranges, as after resharding
        ((0, 0),),  # one-slot shards at both ends
        ((SLOTS - 1, SLOTS - 1),),
        ((0, 0), (SLOTS - 1, SLOTS - 1)),
        ((8000, 8000),),
    ],
)
def test_heartbeat_key_lies_in_the_shard(ranges: tuple[SlotRange, ...]) -> None:
    key = shard_heartbeat_key("georedis:hb:x", Shard(ranges, node(7000)))
    assert key.startswith("georedis:hb:x{")
    assert key_in(key, ranges)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, SLOTS - 1), st.integers(0, 300))
def test_heartbeat_key_lies_in_any_small_range(first: int, width: int) -> None:
    ranges = ((first, min(first + width, SLOTS - 1)),)
    assert key_in(shard_heartbeat_key("hb:", Shard(ranges, None)), ranges)


def test_heartbeat_key_is_stable_and_differs_between_shards() -> None:
    low, high = TWO.shards
    assert shard_heartbeat_key("hb:", low) == shard_heartbeat_key("hb:", low)
    # Another Shard object with the same slots (a map read again) gets the same key.
    assert shard_heartbeat_key("hb:", shard(LOW, 7004)) == shard_heartbeat_key("hb:", low)
    assert shard_heartbeat_key("hb:", low) != shard_heartbeat_key("hb:", high)


def test_a_shard_without_slots_gets_the_base_key() -> None:
    assert shard_heartbeat_key("georedis:hb:x", Shard((), node(7000))) == "georedis:hb:x"


@pytest.mark.parametrize("base", ["hb:{app}:", "hb:{"])
def test_heartbeat_key_lies_in_the_shard_whatever_the_base(base: str) -> None:
    ranges = ((0, 0),)
    assert key_in(shard_heartbeat_key(base, Shard(ranges, node(7000))), ranges)


# --- _apply ---------------------------------------------------------------------------


def nodes_by_port(c: ClusterHealthChecker) -> dict[int, CheckedNode]:
    return {n.addr.port: n for n in c._nodes}


def test_apply_gives_each_node_its_region_or_none() -> None:
    c = checker()
    c._apply(TWO)
    regions = {n.addr.port: n.region for n in c._nodes}
    assert regions == {7000: "a", 7001: "a", 7002: "", 7003: "b"}


def test_apply_gives_each_node_its_shards_heartbeat_key() -> None:
    c = checker()
    c._apply(TWO)
    low, high = (shard_heartbeat_key(c.heartbeat_key, s) for s in TWO.shards)
    keys = {n.addr.port: n.heartbeat_key for n in c._nodes}
    assert keys == {7000: low, 7001: low, 7002: high, 7003: high}
    assert [s.key for s in c._shards] == [low, high]
    assert [s.master for s in c._shards] == [addr(7000), addr(7002)]
    assert [s.addrs for s in c._shards] == [(addr(7000), addr(7001)), (addr(7002), addr(7003))]


def test_an_equal_map_changes_nothing() -> None:
    c = checker()
    c._apply(TWO)
    nodes, shards, first = list(c._nodes), list(c._shards), c._map
    # Equal: the same cluster, though shards come in another order, with another
    # version and other replication offsets.
    again = SlotMap((shard(HIGH, 7002, 7003), shard(LOW, 7000, 7001, offset=99)), version=7)
    assert again == TWO
    c._apply(again)
    assert c._map is first
    assert c._map_version == 1
    assert all(a is b for a, b in zip(c._nodes, nodes, strict=True))
    assert all(a is b for a, b in zip(c._shards, shards, strict=True))


def test_a_failover_keeps_the_shard_and_its_memory() -> None:
    c = checker()
    c._apply(TWO)
    low, high = c._shards
    low.acked_ms = 5.0
    low.acks.append(5.0)
    before = nodes_by_port(c)
    # 7001 took over 7000's slots; 7000 is its replica now.
    c._apply(SlotMap((shard(LOW, 7001, 7000), shard(HIGH, 7002, 7003))))
    assert c._map_version == 2
    assert c._shards[0] is low
    assert c._shards[1] is high
    assert low.master == addr(7001)
    assert low.acked_ms == 5.0
    assert list(low.acks) == [5.0]
    after = nodes_by_port(c)
    assert all(after[p] is before[p] for p in (7000, 7001, 7002, 7003))


def test_slots_that_move_reset_the_acks_only_when_the_key_moves() -> None:
    c = checker()
    c._apply(TWO)
    low = c._shards[0]
    low.acked_ms = 5.0
    low.acks.append(5.0)
    key = low.key
    beat_slot = key_slot(key.encode())
    # First the shard gives away a slot that is not its key's: the key stays, so do the
    # acks. (The slot goes unserved: a map need not cover every slot.)
    other = HALF - 1 if beat_slot != HALF - 1 else 0
    c._apply(SlotMap((shard(without(LOW, other), 7000, 7001), shard(HIGH, 7002, 7003))))
    assert c._shards[0] is low
    assert low.key == key
    assert (low.acked_ms, list(low.acks)) == (5.0, [5.0])
    # Then the key's own slot goes: a new key, and beats under the old one say nothing.
    rest = without(LOW, beat_slot)
    c._apply(SlotMap((shard(rest, 7000, 7001), shard(HIGH, 7002, 7003))))
    assert c._shards[0] is low
    assert low.key != key
    assert key_in(low.key, rest)
    assert low.acked_ms is None
    assert not low.acks
    ports = nodes_by_port(c)
    assert [ports[p].heartbeat_key for p in (7000, 7001)] == [low.key, low.key]


def test_nodes_and_shards_gone_from_the_map_are_closed() -> None:
    c = checker()
    c._apply(SlotMap((shard(LOW, 7000, 7001, 7004), shard(HIGH, 7002, 7003))))
    conns = {n.addr.port: CountingConn() for n in c._nodes}
    for n in c._nodes:
        n.conn = conns[n.addr.port]
    beat = [CountingConn() for _ in c._shards]
    listing = [CountingConn() for _ in c._shards]
    for s, b, m in zip(c._shards, beat, listing, strict=True):
        s.beat_conn, s.nodes_conn = b, m
    # 7004 leaves the low shard; the high shard's slots go to it, its nodes leave.
    c._apply(SlotMap((shard(((0, SLOTS - 1),), 7000, 7001),)))
    assert {p: conn.closed for p, conn in conns.items()} == {
        7000: 0, 7001: 0, 7004: 1, 7002: 1, 7003: 1,
    }  # fmt: skip
    assert [b.closed for b in beat] == [0, 1]
    assert [m.closed for m in listing] == [0, 1]
    assert [n.addr.port for n in c._nodes] == [7000, 7001]
    assert all(not conn.connected for conn in conns.values())


def test_a_new_node_gets_a_new_checked_node() -> None:
    c = checker()
    c._apply(TWO)
    before = nodes_by_port(c)
    c._apply(SlotMap((shard(LOW, 7000, 7001, 7005), shard(HIGH, 7002, 7003))))
    after = nodes_by_port(c)
    assert set(after) == {7000, 7001, 7002, 7003, 7005}
    assert all(after[p] is before[p] for p in before)
    assert after[7005].region == ""
    assert after[7005].heartbeat_key == c._shards[0].key


# --- _combine -------------------------------------------------------------------------


def parts(count: int, version: int = 1) -> list[Snapshot]:
    return [Snapshot(version=version, nodes=(), primary=None) for _ in range(count)]


def test_combine_before_any_map_says_so() -> None:
    snap = checker()._combine([], 1)
    assert snap.version == 1
    assert snap.primary_error == "cluster slot map not read yet"
    assert snap.shards == ()


def test_combine_gives_a_picklable_slot_table() -> None:
    c = checker()
    served = SlotMap((shard(((0, 99),), 7000, 7001), shard(((200, SLOTS - 1),), 7002, 7003)))
    c._apply(served)
    snap = c._combine(parts(2), 1)
    assert isinstance(snap.slot_shard, array)
    assert snap.slot_shard.typecode == "H"
    assert list(snap.slot_shard) == list(served.table)
    assert [snap.slot_shard[s] for s in (0, 99, 100, 199, 200, SLOTS - 1)] == [
        0, 0, NO_SHARD, NO_SHARD, 1, 1,
    ]  # fmt: skip
    # Snapshots go to the workers pickled; the map's own table (a memoryview) would not.
    copy = pickle.loads(pickle.dumps(snap))
    assert copy.slot_shard == snap.slot_shard
    assert copy.shards == snap.shards


def test_map_version_counts_only_maps_that_change() -> None:
    c = checker()
    c._apply(TWO)
    assert c._combine(parts(2), 1).map_version == 1
    c._apply(SlotMap(tuple(reversed(TWO.shards)), version=3))
    assert c._combine(parts(2), 2).map_version == 1
    c._apply(SlotMap((shard(LOW, 7001, 7000), shard(HIGH, 7002, 7003))))
    assert c._combine(parts(2), 3).map_version == 2


# --- health_checker -------------------------------------------------------------------


def test_health_checker_is_the_cluster_one_iff_seeds_are_set() -> None:
    on = health_checker(config(), "test", lambda snap: None)
    assert isinstance(on, ClusterHealthChecker)
    standalone = CLUSTER_TOML.replace('[cluster]\nseeds = ["127.0.0.1:7000"]\n', "")
    assert "[cluster]" not in standalone
    off = health_checker(config(standalone), "test", lambda snap: None)
    assert type(off) is HealthChecker
