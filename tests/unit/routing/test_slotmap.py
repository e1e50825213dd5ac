"""Unit tests for routing.slotmap: slot maps from real CLUSTER SHARDS / CLUSTER SLOTS replies.

The replies below were captured from a real redis-server 7.0.15 cluster of 3 masters and 3
replicas (tests/helpers/cluster.py), decoded by hiredis as the proxy's probe decodes them:
bytes and ints, RESP2 maps as flat lists, RESP3 maps as dicts. In that cluster every node
announced a hostname (`cluster-announce-hostname nodeN.geo.example`) and slots 100, 101
and 16000 had been moved to the second shard, so shards own several ranges. The replies
for `cluster-preferred-endpoint-type hostname` and `unknown-endpoint` are from the same
cluster; SHARDS_AFTER_FAILOVER from another one, after its first master was SIGKILLed
and its replica promoted. No sockets.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.slotmap import ClusterNode, Shard, SlotMap, SlotMapError
from routing.slots import SLOTS

# fmt: off
ID0 = b"83a1f1ebc0fa39f99c22e3d4eb0a60e228e1ae80"
ID1 = b"35dffe7cd1cad2de96abed2359901ac010195754"
ID2 = b"69c1262f2f8f50856b512fdce0dccc0f509e73ca"
ID3 = b"527c3d7e3a3bf5fc498f0ec631e0852746f07365"
ID4 = b"cbb9155df6c04858b74a67a7aeac779c4359eaa7"
ID5 = b"923c2653151cc5b4bd8212268ab77b6febc75b60"
SHARDS_RESP2 = [
    [b"slots", [100, 101, 5461, 10922, 16000, 16000], b"nodes", [
        [b"id", ID1, b"port", 36499, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node1.geo.example", b"role", b"master", b"replication-offset", 42,
         b"health", b"online"],
        [b"id", ID4, b"port", 53989, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node4.geo.example", b"role", b"replica", b"replication-offset", 42,
         b"health", b"online"],
    ]],
    [b"slots", [10923, 15999, 16001, 16383], b"nodes", [
        [b"id", ID2, b"port", 43935, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node2.geo.example", b"role", b"master", b"replication-offset", 42,
         b"health", b"online"],
        [b"id", ID5, b"port", 41215, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node5.geo.example", b"role", b"replica", b"replication-offset", 42,
         b"health", b"online"],
    ]],
    [b"slots", [0, 99, 102, 5460], b"nodes", [
        [b"id", ID0, b"port", 48591, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node0.geo.example", b"role", b"master", b"replication-offset", 56,
         b"health", b"online"],
        [b"id", ID3, b"port", 48997, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"hostname", b"node3.geo.example", b"role", b"replica", b"replication-offset", 42,
         b"health", b"online"],
    ]],
]
SHARDS_RESP3_UNKNOWN_ENDPOINT = [
    {b"slots": [100, 101, 5461, 10922, 16000, 16000], b"nodes": [
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node1.geo.example", b"id": ID1,
         b"ip": b"127.0.0.1", b"port": 36499, b"replication-offset": 42, b"role": b"master"},
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node4.geo.example", b"id": ID4,
         b"ip": b"127.0.0.1", b"port": 53989, b"replication-offset": 42, b"role": b"replica"},
    ]},
    {b"slots": [10923, 15999, 16001, 16383], b"nodes": [
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node2.geo.example", b"id": ID2,
         b"ip": b"127.0.0.1", b"port": 43935, b"replication-offset": 42, b"role": b"master"},
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node5.geo.example", b"id": ID5,
         b"ip": b"127.0.0.1", b"port": 41215, b"replication-offset": 42, b"role": b"replica"},
    ]},
    {b"slots": [0, 99, 102, 5460], b"nodes": [
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node0.geo.example", b"id": ID0,
         b"ip": b"127.0.0.1", b"port": 48591, b"replication-offset": 56, b"role": b"master"},
        {b"endpoint": b"", b"health": b"online", b"hostname": b"node3.geo.example", b"id": ID3,
         b"ip": b"127.0.0.1", b"port": 48997, b"replication-offset": 42, b"role": b"replica"},
    ]},
]
SLOTS_RESP2 = [
    [0, 99,
        [b"127.0.0.1", 48591, ID0, [b"hostname", b"node0.geo.example"]],
        [b"127.0.0.1", 48997, ID3, [b"hostname", b"node3.geo.example"]],
    ],
    [100, 101,
        [b"127.0.0.1", 36499, ID1, [b"hostname", b"node1.geo.example"]],
        [b"127.0.0.1", 53989, ID4, [b"hostname", b"node4.geo.example"]],
    ],
    [102, 5460,
        [b"127.0.0.1", 48591, ID0, [b"hostname", b"node0.geo.example"]],
        [b"127.0.0.1", 48997, ID3, [b"hostname", b"node3.geo.example"]],
    ],
    [5461, 10922,
        [b"127.0.0.1", 36499, ID1, [b"hostname", b"node1.geo.example"]],
        [b"127.0.0.1", 53989, ID4, [b"hostname", b"node4.geo.example"]],
    ],
    [10923, 15999,
        [b"127.0.0.1", 43935, ID2, [b"hostname", b"node2.geo.example"]],
        [b"127.0.0.1", 41215, ID5, [b"hostname", b"node5.geo.example"]],
    ],
    [16000, 16000,
        [b"127.0.0.1", 36499, ID1, [b"hostname", b"node1.geo.example"]],
        [b"127.0.0.1", 53989, ID4, [b"hostname", b"node4.geo.example"]],
    ],
    [16001, 16383,
        [b"127.0.0.1", 43935, ID2, [b"hostname", b"node2.geo.example"]],
        [b"127.0.0.1", 41215, ID5, [b"hostname", b"node5.geo.example"]],
    ],
]
SLOTS_RESP2_HOSTNAME = [
    [0, 99,
        [b"node0.geo.example", 48591, ID0, [b"ip", b"127.0.0.1"]],
        [b"node3.geo.example", 48997, ID3, [b"ip", b"127.0.0.1"]],
    ],
    [100, 101,
        [b"node1.geo.example", 36499, ID1, [b"ip", b"127.0.0.1"]],
        [b"node4.geo.example", 53989, ID4, [b"ip", b"127.0.0.1"]],
    ],
    [102, 5460,
        [b"node0.geo.example", 48591, ID0, [b"ip", b"127.0.0.1"]],
        [b"node3.geo.example", 48997, ID3, [b"ip", b"127.0.0.1"]],
    ],
    [5461, 10922,
        [b"node1.geo.example", 36499, ID1, [b"ip", b"127.0.0.1"]],
        [b"node4.geo.example", 53989, ID4, [b"ip", b"127.0.0.1"]],
    ],
    [10923, 15999,
        [b"node2.geo.example", 43935, ID2, [b"ip", b"127.0.0.1"]],
        [b"node5.geo.example", 41215, ID5, [b"ip", b"127.0.0.1"]],
    ],
    [16000, 16000,
        [b"node1.geo.example", 36499, ID1, [b"ip", b"127.0.0.1"]],
        [b"node4.geo.example", 53989, ID4, [b"ip", b"127.0.0.1"]],
    ],
    [16001, 16383,
        [b"node2.geo.example", 43935, ID2, [b"ip", b"127.0.0.1"]],
        [b"node5.geo.example", 41215, ID5, [b"ip", b"127.0.0.1"]],
    ],
]
SLOTS_RESP3_UNKNOWN_ENDPOINT = [
    [0, 99,
        [None, 48591, ID0, {b"hostname": b"node0.geo.example", b"ip": b"127.0.0.1"}],
        [None, 48997, ID3, {b"hostname": b"node3.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [100, 101,
        [None, 36499, ID1, {b"hostname": b"node1.geo.example", b"ip": b"127.0.0.1"}],
        [None, 53989, ID4, {b"hostname": b"node4.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [102, 5460,
        [None, 48591, ID0, {b"hostname": b"node0.geo.example", b"ip": b"127.0.0.1"}],
        [None, 48997, ID3, {b"hostname": b"node3.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [5461, 10922,
        [None, 36499, ID1, {b"hostname": b"node1.geo.example", b"ip": b"127.0.0.1"}],
        [None, 53989, ID4, {b"hostname": b"node4.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [10923, 15999,
        [None, 43935, ID2, {b"hostname": b"node2.geo.example", b"ip": b"127.0.0.1"}],
        [None, 41215, ID5, {b"hostname": b"node5.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [16000, 16000,
        [None, 36499, ID1, {b"hostname": b"node1.geo.example", b"ip": b"127.0.0.1"}],
        [None, 53989, ID4, {b"hostname": b"node4.geo.example", b"ip": b"127.0.0.1"}],
    ],
    [16001, 16383,
        [None, 43935, ID2, {b"hostname": b"node2.geo.example", b"ip": b"127.0.0.1"}],
        [None, 41215, ID5, {b"hostname": b"node5.geo.example", b"ip": b"127.0.0.1"}],
    ],
]
DEAD = b"a372a2bde200242d52247f0af21a21eb7adccb4f"
PROMOTED = b"55bde6e942a7139ae7d05d559ac26e4b7e41841c"
SHARDS_AFTER_FAILOVER = [
    [b"slots", [0, 5460], b"nodes", [
        [b"id", PROMOTED, b"port", 51213, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"role", b"master", b"replication-offset", 14, b"health", b"online"],
    ]],
    [b"slots", [10923, 16383], b"nodes", [
        [b"id", b"137cd0f9c157edd54a7f32caf3326333d94ccb4d", b"port", 49797, b"ip", b"127.0.0.1",
         b"endpoint", b"127.0.0.1", b"role", b"master", b"replication-offset", 70,
         b"health", b"online"],
        [b"id", b"f638839075b6d8c2200601df144b6e8c4986b31f", b"port", 44551, b"ip", b"127.0.0.1",
         b"endpoint", b"127.0.0.1", b"role", b"replica", b"replication-offset", 70,
         b"health", b"online"],
    ]],
    [b"slots", [5461, 10922], b"nodes", [
        [b"id", b"129730528372bfe1dfd58f6b105657545d6a0048", b"port", 45991, b"ip", b"127.0.0.1",
         b"endpoint", b"127.0.0.1", b"role", b"master", b"replication-offset", 70,
         b"health", b"online"],
        [b"id", b"7df3c8d81f834bd3ec70081b55240d1f3b2fe193", b"port", 44831, b"ip", b"127.0.0.1",
         b"endpoint", b"127.0.0.1", b"role", b"replica", b"replication-offset", 70,
         b"health", b"online"],
    ]],
    [b"slots", [], b"nodes", [
        [b"id", DEAD, b"port", 35281, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
         b"role", b"master", b"replication-offset", 14, b"health", b"fail"],
    ]],
]
# fmt: on

LOCAL = "127.0.0.1"
# Each shard's master and replica ports in the captured cluster, and its slot ranges.
LAYOUT = {
    (48591, 48997): ((0, 99), (102, 5460)),
    (36499, 53989): ((100, 101), (5461, 10922), (16000, 16000)),
    (43935, 41215): ((10923, 15999), (16001, 16383)),
}


def _master_port(
    ranges_by_shard: dict[tuple[int, int], tuple[tuple[int, int], ...]], slot: int
) -> int:
    for (master, _), ranges in ranges_by_shard.items():
        if any(first <= slot <= last for first, last in ranges):
            return master
    raise AssertionError(slot)


def _check_layout(m: SlotMap, host: str = LOCAL) -> None:
    """`m` is the captured cluster: every slot's master, each shard's replica and ranges."""
    for slot in range(SLOTS):
        assert m.master_of(slot) == (host, _master_port(LAYOUT, slot)), slot
    assert len(m.shards) == 3
    for (master, replica), ranges in LAYOUT.items():
        index = m.shard_at((host, master))
        assert index is not None
        shard = m.shards[index]
        assert shard.ranges == ranges
        assert [n.address for n in shard.replicas] == [(host, replica)]
        assert shard.master is not None and shard.master.role == "master"
        assert shard.replicas[0].role == "replica"
    assert m.covered and m.unassigned() == ()


def test_cluster_shards_resp2() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, seed_host="10.9.9.9")
    _check_layout(m)
    shard = m.shards[m.shard_of(100) or 0]
    assert shard.master == ClusterNode(
        id=ID1.decode(), host=LOCAL, port=36499, role="master", ip=LOCAL,
        hostname="node1.geo.example", health="online",
    )  # fmt: skip
    assert shard.master.offset == 42
    assert shard.replicas[0].hostname == "node4.geo.example"
    assert shard.slot_count == 2 + 5462 + 1


def test_shards_are_in_slot_order_whatever_the_reply_order() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    assert [s.ranges[0][0] for s in m.shards] == [0, 100, 10923]
    assert m.shard_of(0) == 0 and m.shard_of(100) == 1 and m.shard_of(16383) == 2
    assert SlotMap.from_shards(list(reversed(SHARDS_RESP2)), LOCAL).shards == m.shards


def test_resp3_maps_and_an_unknown_endpoint_use_the_seed_host() -> None:
    """`unknown-endpoint`: CLUSTER SHARDS says endpoint "", the host asked is the one."""
    m = SlotMap.from_shards(SHARDS_RESP3_UNKNOWN_ENDPOINT, seed_host="10.0.0.7")
    _check_layout(m, host="10.0.0.7")
    assert all(n.ip == LOCAL for s in m.shards for n in s.nodes)
    # The same cluster as the RESP2 reply when the seed is the host the nodes are on.
    assert SlotMap.from_shards(SHARDS_RESP3_UNKNOWN_ENDPOINT, LOCAL) == SlotMap.from_shards(
        SHARDS_RESP2, LOCAL
    )


def test_cluster_slots_gives_the_same_map_as_cluster_shards() -> None:
    slots = SlotMap.from_slots(SLOTS_RESP2, seed_host="10.9.9.9")
    _check_layout(slots)
    # Same nodes, ids, hostnames, roles: equal maps (offsets and health aside, which
    # CLUSTER SLOTS does not give; here every node was online).
    assert slots == SlotMap.from_shards(SHARDS_RESP2, LOCAL)


def test_cluster_slots_with_hostnames_preferred() -> None:
    m = SlotMap.from_slots(SLOTS_RESP2_HOSTNAME, LOCAL)
    assert m.master_of(0) == ("node0.geo.example", 48591)
    assert m.master_of(16000) == ("node1.geo.example", 36499)
    node = m.shards[0].replicas[0]
    assert (node.host, node.ip, node.hostname) == ("node3.geo.example", LOCAL, "node3.geo.example")


def test_cluster_slots_resp3_null_endpoint_uses_the_seed_host() -> None:
    m = SlotMap.from_slots(SLOTS_RESP3_UNKNOWN_ENDPOINT, seed_host="10.0.0.7")
    _check_layout(m, host="10.0.0.7")
    assert m.shards[0].master is not None and m.shards[0].master.hostname == "node0.geo.example"


def test_from_reply_tells_the_two_replies_apart() -> None:
    want = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    for reply in (
        SHARDS_RESP2,
        SHARDS_RESP3_UNKNOWN_ENDPOINT,
        SLOTS_RESP2,
        SLOTS_RESP3_UNKNOWN_ENDPOINT,
    ):
        assert SlotMap.from_reply(reply, LOCAL) == want
    assert SlotMap.from_reply([], LOCAL).unassigned() == ((0, SLOTS - 1),)


def _as_str(v: object) -> object:
    """A reply as redis-py with decode_responses gives it: str instead of bytes."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [_as_str(x) for x in v]
    if isinstance(v, dict):
        return {_as_str(k): _as_str(x) for k, x in v.items()}
    return v


def test_replies_of_str_parse_alike() -> None:
    assert SlotMap.from_reply(_as_str(SHARDS_RESP2), LOCAL) == SlotMap.from_reply(
        SHARDS_RESP2, LOCAL
    )
    assert SlotMap.from_reply(_as_str(SLOTS_RESP3_UNKNOWN_ENDPOINT), LOCAL) == SlotMap.from_reply(
        SLOTS_RESP2, LOCAL
    )


def test_after_a_failover_the_promoted_replica_is_master_and_the_dead_one_has_no_slots() -> None:
    m = SlotMap.from_shards(SHARDS_AFTER_FAILOVER, LOCAL)
    assert m.master_of(0) == m.master_of(5460) == (LOCAL, 51213)
    master = m.shards[m.shard_of(0) or 0].master
    assert master is not None and master.id == PROMOTED.decode()
    assert m.covered
    dead = m.shard_at((LOCAL, 35281))
    assert dead is not None and m.shards[dead].ranges == ()
    assert m.shards[dead].master is not None and m.shards[dead].master.health == "fail"
    assert dead not in {m.shard_of(s) for s in range(SLOTS)}


def test_a_failed_master_beside_a_live_one_is_not_the_master() -> None:
    """A moment after a failover one node's reply may list both as masters of a shard."""
    nodes = [
        [b"id", b"old", b"port", 7000, b"endpoint", b"10.0.0.1", b"role", b"master",
         b"health", b"fail"],
        [b"id", b"new", b"port", 7001, b"endpoint", b"10.0.0.2", b"role", b"master",
         b"health", b"online"],
    ]  # fmt: skip
    m = SlotMap.from_shards([[b"slots", [0, 16383], b"nodes", nodes]], LOCAL)
    assert m.master_of(7) == ("10.0.0.2", 7001)
    assert [n.id for n in m.shards[0].replicas] == ["old"]


def test_older_cluster_slots_replies() -> None:
    """Redis 4-6: [ip, port, id] without metadata; Redis 3.0: [ip, port] only."""
    redis6 = [
        [0, 8191, [b"10.0.0.1", 7000, b"a"], [b"10.0.0.2", 7001, b"b"]],
        [8192, 16383, [b"10.0.0.3", 7002, b"c"]],
        [100, 100, [b"10.0.0.3", 7002, b"c"]],
    ]
    with pytest.raises(SlotMapError, match="claimed by two shards"):
        SlotMap.from_slots(redis6, LOCAL)  # slot 100 is a's and c's
    m = SlotMap.from_slots(redis6[:2], LOCAL)
    assert m.master_of(8191) == ("10.0.0.1", 7000) and m.master_of(8192) == ("10.0.0.3", 7002)
    assert m.shards[0].replicas[0].ip == "10.0.0.2"
    redis3 = [[0, 99, [b"10.0.0.1", 7000]], [200, 16383, [b"10.0.0.1", 7000]]]
    m = SlotMap.from_slots(redis3, LOCAL)
    assert len(m.shards) == 1 and m.shards[0].ranges == ((0, 99), (200, 16383))
    assert m.unassigned() == ((100, 199),) and not m.covered
    assert m.shard_of(150) is None and m.master_of(150) is None


def test_a_tls_only_node_is_reached_on_its_tls_port() -> None:
    node = [b"id", b"t", b"tls-port", 7443, b"endpoint", b"10.0.0.1", b"role", b"master"]
    m = SlotMap.from_shards([[b"slots", [0, 16383], b"nodes", [node]]], LOCAL)
    assert m.master_of(0) == ("10.0.0.1", 7443)


@pytest.mark.parametrize(
    "reply, words",
    [
        (b"oops", "expected a list"),
        ([[b"slots", [0], b"nodes", []]], "pairs"),
        ([[b"slots", [0, 16384], b"nodes", []]], "outside"),
        ([[b"slots", [5, 4], b"nodes", []]], "outside"),
        ([[b"slots", [0, 10], b"nodes", [[b"id", b"x", b"role", b"master"]]]], "port"),
        ([[b"slots", [0, b"x"], b"nodes", []]], "integer"),
        ([[0, 10]], "without a master"),
        ([[0, 10, [b"10.0.0.1"]]], "port"),
        ([[0, 10, [b"10.0.0.1", True]]], "integer"),
    ],
)
def test_replies_that_make_no_map_raise(reply: object, words: str) -> None:
    with pytest.raises(SlotMapError, match=words):
        SlotMap.from_reply(reply, LOCAL)


def test_equality_ignores_version_and_offsets_but_not_health() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    assert replace(m, version=9) == m and replace(m, version=9).version == 9
    moved_offsets = [
        [b"slots", sh[1], b"nodes", [[*n[:-3], 10**6, *n[-2:]] for n in sh[3]]]
        for sh in SHARDS_RESP2
    ]
    assert SlotMap.from_shards(moved_offsets, LOCAL) == m
    failed = [
        [b"slots", sh[1], b"nodes", [[*n[:-1], b"fail"] for n in sh[3]]] for sh in SHARDS_RESP2
    ]
    assert SlotMap.from_shards(failed, LOCAL) != m


# -- what a MOVED teaches ---------------------------------------------------------------------


def test_moved_to_another_master_moves_the_slot_to_its_shard() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    moved = m.with_moved(5, (LOCAL, 43935))
    assert moved.master_of(5) == (LOCAL, 43935)
    assert moved.version == m.version + 1
    assert moved.shards[0].ranges == ((0, 4), (6, 99), (102, 5460))
    assert moved.shards[2].ranges == ((5, 5), (10923, 15999), (16001, 16383))
    assert all(moved.master_of(s) == m.master_of(s) for s in range(SLOTS) if s != 5)
    assert m.master_of(5) == (LOCAL, 48591)  # the old map is unchanged
    # Moving it back restores the layout (a new version, an equal map).
    assert moved.with_moved(5, (LOCAL, 48591)) == m


def test_moved_where_the_map_already_says_is_the_same_map() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    assert m.with_moved(100, (LOCAL, 36499)) is m


def test_moved_to_an_unknown_node_makes_a_provisional_shard() -> None:
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    moved = m.with_moved(7000, ("10.1.1.1", 7000)).with_moved(7001, ("10.1.1.1", 7000))
    assert moved.master_of(7000) == moved.master_of(7001) == ("10.1.1.1", 7000)
    new = moved.shards[moved.shard_of(7000) or 0]
    assert new.provisional and new.ranges == ((7000, 7001),) and new.replicas == ()
    assert moved.shard_of(7000) == moved.shard_of(7001)
    # Once its slots are elsewhere again, the placeholder goes.
    back = moved.with_moved(7000, (LOCAL, 36499)).with_moved(7001, (LOCAL, 36499))
    assert back == m and len(back.shards) == 3


def test_moved_to_a_replica_promotes_it_in_a_provisional_shard() -> None:
    """A failover: MOVED names the former replica, whose id and hostname the map knows."""
    m = SlotMap.from_shards(SHARDS_RESP2, LOCAL)
    moved = m.with_moved(0, (LOCAL, 48997))
    shard = moved.shards[moved.shard_of(0) or 0]
    assert shard.provisional and shard.master is not None
    assert (shard.master.id, shard.master.role) == (ID3.decode(), "master")
    assert shard.master.hostname == "node3.geo.example"


def test_moved_slot_outside_the_range_raises() -> None:
    with pytest.raises(SlotMapError):
        SlotMap.from_shards(SHARDS_RESP2, LOCAL).with_moved(SLOTS, (LOCAL, 1))


def _naive_owner(shards: list[Shard]) -> list[int | None]:
    owner: list[int | None] = [None] * SLOTS
    for i, shard in enumerate(shards):
        for first, last in shard.ranges:
            owner[first : last + 1] = [i] * (last - first + 1)
    return owner


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(1, SLOTS - 1), min_size=1, max_size=6, unique=True),
    moves=st.lists(st.tuples(st.integers(0, SLOTS - 1), st.integers(0, 4)), max_size=8),
)
def test_the_table_always_agrees_with_the_ranges(
    cuts: list[int], moves: list[tuple[int, int]]
) -> None:
    """Random layouts and MOVEDs (to the 4 known masters or one unknown node): after
    each, every slot's shard is the one whose ranges hold it, as a naive walk finds."""
    bounds = [0, *sorted(cuts), SLOTS]
    shards = [
        Shard(((bounds[i], bounds[i + 1] - 1),), ClusterNode(f"n{i % 4}", "h", 7000 + i % 4))
        for i in range(len(bounds) - 1)
    ]
    shards = [s for s in shards if s.master and s.master.id != "n3"] + [
        Shard((), ClusterNode("n3", "h", 7003))
    ]
    merged: dict[str, list[tuple[int, int]]] = {}
    for s in shards:
        assert s.master is not None
        merged.setdefault(s.master.id, []).extend(s.ranges)
    m = SlotMap(
        tuple(Shard(tuple(r), ClusterNode(i, "h", 7000 + int(i[1]))) for i, r in merged.items())
    )
    for slot, target in moves:
        m = m.with_moved(slot, ("h", 7000 + target))
        assert m.master_of(slot) == ("h", 7000 + target)
        naive = _naive_owner(list(m.shards))
        assert [m.shard_of(s) for s in range(SLOTS)] == naive
