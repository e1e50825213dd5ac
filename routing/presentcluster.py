"""georedis as a Redis Cluster (`[cluster] present_as = "cluster"`): the replies.

Cluster-aware clients (redis-py's RedisCluster, Jedis, `redis-benchmark --cluster`) ask
CLUSTER SLOTS, SHARDS or NODES first and then connect to the nodes named there. georedis
names only itself, at the address the client reached it on (the client connection's
local socket address), so every client comes back to the georedis it found; which
backend serves a key stays georedis' business.

Itself, but as two masters at that one address, slots 0-8191 and 8192-16383 (`PRESENTED`):
`redis-benchmark --cluster` refuses a cluster of one node ("Invalid cluster: 1 node(s)",
a real one-node cluster too), while clients that key nodes by address (redis-py, Jedis,
redis-benchmark's connections) see one node, and those that key them by id (Lettuce)
open two connections to the same georedis, which costs nothing.

Each reply is built as Redis 7.0 sends it for such a cluster, byte for byte (RESP2 and
RESP3: SHARDS' maps, SLOTS' empty metadata map, NODES and INFO as verbatim text in RESP3);
tests/unit/routing/test_presentcluster.py holds the bytes captured from a real one. Pure:
no sockets, no config; the caller passes the address and the node ids (`node_ids`).
"""

from __future__ import annotations

import hashlib

from proxy.resp.replies import Value, encode, encode_bulk, encode_verbatim
from routing.slots import SLOTS

PRESENTED = 2  # masters named, all at georedis' address (see the docstring)
# No cluster bus behind georedis; Redis' default offset for it is still what a parser
# of `ip:port@cport` expects to find (redis-benchmark drops it, redis-py ignores it).
BUS_OFFSET = 10000


def node_ids(listen: str) -> tuple[str, ...]:
    """40 hex digits each, the same for the same listen address: stable across restarts
    and across the workers of one process, as a Redis node keeps its id. The first is
    "myself" (CLUSTER MYID)."""
    seed = b"georedis present_as cluster " + listen.encode()
    return tuple(hashlib.sha1(seed + b" %d" % i).hexdigest() for i in range(PRESENTED))


def ranges(count: int) -> list[tuple[int, int]]:
    """The slots of each of `count` masters: equal runs, in order, covering all."""
    cuts = [SLOTS * i // count for i in range(count + 1)]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(count)]


def endpoint(local_addr: str) -> tuple[str, int]:
    """("127.0.0.1", 6379) from a socket address as CLIENT INFO writes it ("[::1]:6379"
    too). ("", 0) when it is no host:port (a Unix socket): Redis' own empty ip, which
    clients read as "the address you asked"."""
    host, sep, port = local_addr.rpartition(":")
    if not sep or not port.isdigit():
        return "", 0
    return host.strip("[]"), int(port)


def slots_reply(ip: str, port: int, ids: tuple[str, ...], proto: int) -> bytes:
    """CLUSTER SLOTS: per range [first, last, [ip, port, id, {}]]; the empty map is the
    endpoints other than the preferred one (Redis 7's fourth element), none here."""
    meta = b"%0\r\n" if proto == 3 else b"*0\r\n"
    out = [b"*%d\r\n" % len(ids)]
    for node, (first, last) in zip(ids, ranges(len(ids)), strict=True):
        out.append(b"*3\r\n:%d\r\n:%d\r\n*4\r\n" % (first, last))
        out.append(encode_bulk(ip) + b":%d\r\n" % port + encode_bulk(node) + meta)
    return b"".join(out)


def shards_reply(ip: str, port: int, ids: tuple[str, ...], proto: int) -> bytes:
    """CLUSTER SHARDS: a shard per master (maps in RESP3, flat arrays in RESP2)."""
    shards: list[Value] = []
    for node, (first, last) in zip(ids, ranges(len(ids)), strict=True):
        me: dict[str, Value] = {
            "id": node,
            "port": port,
            "ip": ip,
            "endpoint": ip,
            "role": "master",
            "replication-offset": 0,
            "health": "online",
        }
        shards.append({"slots": [first, last], "nodes": [me]})
    return encode(shards, proto)


def nodes_text(ip: str, port: int, ids: tuple[str, ...]) -> str:
    """CLUSTER NODES: a line per master, the first one "myself", none with a master of
    its own; config epochs 1, 2, ... (distinct, as Redis makes them)."""
    bus = port + BUS_OFFSET if port + BUS_OFFSET <= 65535 else 0
    lines = []
    for i, (node, (first, last)) in enumerate(zip(ids, ranges(len(ids)), strict=True)):
        flags = "myself,master" if i == 0 else "master"
        lines.append(f"{node} {ip}:{port}@{bus} {flags} - 0 0 {i + 1} connected {first}-{last}\n")
    return "".join(lines)


def nodes_reply(ip: str, port: int, ids: tuple[str, ...], proto: int) -> bytes:
    return encode_verbatim(nodes_text(ip, port, ids), proto)


def info_text(count: int) -> str:
    """CLUSTER INFO of a healthy cluster of `count` masters, in Redis 7.0's order; no bus,
    so no messages (Redis lists a counter per message type only once one was sent)."""
    fields = (
        ("cluster_state", "ok"),
        ("cluster_slots_assigned", SLOTS),
        ("cluster_slots_ok", SLOTS),
        ("cluster_slots_pfail", 0),
        ("cluster_slots_fail", 0),
        ("cluster_known_nodes", count),
        ("cluster_size", count),
        ("cluster_current_epoch", count),
        ("cluster_my_epoch", 1),
        ("cluster_stats_messages_sent", 0),
        ("cluster_stats_messages_received", 0),
        ("total_cluster_links_buffer_limit_exceeded", 0),
    )
    return "".join(f"{k}:{v}\r\n" for k, v in fields)


def info_reply(ip: str, port: int, ids: tuple[str, ...], proto: int) -> bytes:
    """(The address is unused: the same arguments as the other replies'.)"""
    return encode_verbatim(info_text(len(ids)), proto)
