"""georedis presented as a cluster: each reply byte for byte as Redis 7.0 sends it.

The expected bytes were captured from a real Redis 7.0.15 cluster of two masters
(`redis-server --cluster-enabled yes` twice, `CLUSTER ADDSLOTSRANGE 0 8191` and `8192
16383`, `CLUSTER MEET`) with HELLO 2 and HELLO 3, asked on the first master, with the
second master's address and its live fields (pong time, message counters) made what
georedis says: both masters at one address, no bus. Redis' own order of shards and
NODES lines is its dict's; georedis' is by slot, "myself" first.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest

from routing import presentcluster as pc

A = "16e930f5c2d1a57ee43ba72c9a0264088d87b468"
B = "5abd1f59f915ebb090a7658804e8fae64202e0a1"
IDS = (A, B)
IP, PORT = "127.0.0.1", 17391


def bulk(s: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(s), s.encode())


def slots(meta: bytes) -> bytes:
    node = b"*4\r\n$9\r\n127.0.0.1\r\n:17391\r\n%s%s"
    return (b"*2\r\n*3\r\n:0\r\n:8191\r\n" + node % (bulk(A), meta)
            + b"*3\r\n:8192\r\n:16383\r\n" + node % (bulk(B), meta))  # fmt: skip


def shard(head: bytes, node_head: bytes, first: int, last: int, node: str) -> bytes:
    return (
        head + b"$5\r\nslots\r\n*2\r\n:%d\r\n:%d\r\n$5\r\nnodes\r\n*1\r\n" % (first, last)
        + node_head + b"$2\r\nid\r\n" + bulk(node) + b"$4\r\nport\r\n:17391\r\n"
        b"$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n"
        b"$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
        b"$6\r\nhealth\r\n$6\r\nonline\r\n"
    )  # fmt: skip


def shards(head: bytes, node_head: bytes) -> bytes:
    return (b"*2\r\n" + shard(head, node_head, 0, 8191, A)
            + shard(head, node_head, 8192, 16383, B))  # fmt: skip


NODES_TEXT = (
    f"{A} 127.0.0.1:17391@27391 myself,master - 0 0 1 connected 0-8191\n"
    f"{B} 127.0.0.1:17391@27391 master - 0 0 2 connected 8192-16383\n"
).encode()
INFO_TEXT = (
    b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"
    b"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:2\r\n"
    b"cluster_size:2\r\ncluster_current_epoch:2\r\ncluster_my_epoch:1\r\n"
    b"cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n"
    b"total_cluster_links_buffer_limit_exceeded:0\r\n"
)


def verbatim(text: bytes, proto: int) -> bytes:
    if proto == 2:
        return b"$%d\r\n%s\r\n" % (len(text), text)
    return b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text)


Build = Callable[[str, int, tuple[str, ...], int], bytes]


@pytest.mark.parametrize(
    ("build", "proto", "expected"),
    [(pc.slots_reply, 2, slots(b"*0\r\n")), (pc.slots_reply, 3, slots(b"%0\r\n")),
     (pc.shards_reply, 2, shards(b"*4\r\n", b"*14\r\n")),
     (pc.shards_reply, 3, shards(b"%2\r\n", b"%7\r\n")),
     (pc.nodes_reply, 2, verbatim(NODES_TEXT, 2)), (pc.nodes_reply, 3, verbatim(NODES_TEXT, 3)),
     (pc.info_reply, 2, verbatim(INFO_TEXT, 2)), (pc.info_reply, 3, verbatim(INFO_TEXT, 3))],
)  # fmt: skip
def test_replies_are_redis_own_bytes(build: Build, proto: int, expected: bytes) -> None:
    assert build(IP, PORT, IDS, proto) == expected


def test_the_verbatim_lengths_are_the_captured_ones() -> None:
    # The two-master capture said $213 / =217 for NODES with its longer pong field
    # ("0 1796283395573 0" where georedis says "0 0 2"): 12 more bytes.
    assert pc.nodes_reply(IP, PORT, IDS, 2).startswith(b"$%d\r\n" % (213 - 12))
    # A one-node cluster (captured too) in the same shape: one range, ids of one.
    one = pc.slots_reply("", 17391, (A,), 2)
    assert one == b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$0\r\n\r\n:17391\r\n" + bulk(A) + b"*0\r\n"


def test_ranges_cover_every_slot_once_in_order() -> None:
    assert pc.ranges(1) == [(0, 16383)]
    assert pc.ranges(2) == [(0, 8191), (8192, 16383)]
    three = pc.ranges(3)
    assert three[0][0] == 0 and three[-1][1] == 16383
    assert all(a[1] + 1 == b[0] for a, b in pairwise(three))


def test_a_port_whose_bus_port_would_overflow_says_bus_0() -> None:
    assert " 10.0.0.7:60000@0 " in pc.nodes_text("10.0.0.7", 60000, IDS)


def test_endpoint_reads_the_socket_address_as_client_info_writes_it() -> None:
    assert pc.endpoint("127.0.0.1:6380") == ("127.0.0.1", 6380)
    assert pc.endpoint("[::1]:6380") == ("::1", 6380)  # Redis writes v6 ips bare
    assert pc.endpoint("/tmp/georedis.sock") == ("", 0)  # no host:port: Redis' empty ip
    assert pc.endpoint("") == ("", 0)


def test_node_ids_are_40_hex_stable_distinct_and_per_listen_address() -> None:
    ids = pc.node_ids("0.0.0.0:6380")
    assert len(ids) == pc.PRESENTED == 2 and len(set(ids)) == 2
    assert all(len(i) == 40 and int(i, 16) >= 0 for i in ids)
    assert ids == pc.node_ids("0.0.0.0:6380")
    assert not set(ids) & set(pc.node_ids("0.0.0.0:6381"))
