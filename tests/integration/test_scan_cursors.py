"""SCAN, SSCAN, HSCAN, ZSCAN through georedis: a cursor continues on the node that
issued it (issue 17, item 2), against real redis-servers.

The issue's reproducer: under read-your-writes, a client's reads go to the primary until
a probe shows a replica holding its writes, then to the replica; a SCAN COUNT 10 loop
after an MSET of 1,000 keys had its cursors continued on the other node (whose table is
seeded otherwise) and returned 755-977 of the keys. georedis now hands out cursors that
carry their node's number (`routing/cursors.py`): 1 + the node's place in [[regions]],
so in this topology the primary is 1 and the region's replica 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from config.model import Address
from routing.cursors import NODE_SHIFT
from tests.helpers.lagtools import start_proxy, wait_all_eligible
from tests.helpers.proxyrun import ProxyThread, wait_for
from tests.helpers.topology import RedisTopology

N = 1000
ROUNDS = 4
PRIMARY_NUMBER, REPLICA_NUMBER = 1, 2  # the topology's [[regions]] order


@pytest.fixture
def proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    p = start_proxy(topology, read_your_writes=True)
    try:
        wait_all_eligible(p, topology)
        yield p
    finally:
        p.stop()


# redis-py types replies loosely (bytes | str, ...): what Redis sent is bytes here.
Call = Callable[[int], tuple[int, list[Any]]]


def scan_all(calls: list[Call], cursors: list[int] | None = None, pause: float = 0.0) -> set[Any]:
    """Every element of one scan to its end; call i is made by `calls[i % len]`.

    `pause`: seconds to wait after the first call. A scan that starts right after the
    client's write reads the primary; a few probe rounds later (100 ms each here) its
    fresh reads would go to the replica, so the scan surely straddles that switch."""
    seen: set[Any] = set()
    cursor, i = 0, 0
    while True:
        cursor, elements = calls[i % len(calls)](cursor)
        seen.update(elements)
        if cursors is not None:
            cursors.append(cursor)
        if i == 0:
            time.sleep(pause)
        i += 1
        if cursor == 0:
            return seen
        assert i < 10 * N, "the scan does not end"


def keys_scan(c: redis.Redis, match: str) -> Call:
    return lambda cur: c.scan(cur, match=match, count=10)


def node_of(cursor: int) -> int:
    return cursor >> NODE_SHIFT


@pytest.mark.parametrize("protocol", [2, 3])
def test_scan_after_mset_returns_every_key(proxy: ProxyThread, protocol: int) -> None:
    c = proxy.client(protocol=protocol)
    for r in range(ROUNDS):
        want = {f"r{r}:k{i}".encode() for i in range(N)}
        c.mset({k: b"v" for k in want})
        cursors: list[int] = []
        assert scan_all([keys_scan(c, f"r{r}:*")], cursors) == want
        assert all(0 <= x < 2**53 for x in cursors)  # read exactly by every client
        assert {node_of(x) for x in cursors[:-1]} <= {PRIMARY_NUMBER, REPLICA_NUMBER}


def _fill(c: redis.Redis, kind: str, key: str) -> set[bytes]:
    members = {f"m{i}".encode() for i in range(N)}
    if kind == "sscan":
        c.sadd(key, *members)
    elif kind == "hscan":
        c.hset(key, mapping={m: b"1" for m in members})
    else:
        c.zadd(key, {m: i for i, m in enumerate(members)})
    return members


def _member_scan(c: redis.Redis, kind: str, key: str) -> Call:
    def call(cur: int) -> tuple[int, list[Any]]:
        if kind == "sscan":
            return c.sscan(key, cur, count=10)
        if kind == "hscan":
            cur, fields = c.hscan(key, cur, count=10)
            return cur, list(fields)
        cur, pairs = c.zscan(key, cur, count=10)
        return cur, [m for m, _ in pairs]

    return call


@pytest.mark.parametrize("kind", ["sscan", "hscan", "zscan"])
def test_member_scans_return_every_member(proxy: ProxyThread, kind: str) -> None:
    c = proxy.client()
    for r in range(ROUNDS):
        key = f"{kind}:{r}"
        want = _fill(c, kind, key)  # 1,000 members: a hash table, not a listpack
        cursors: list[int] = []
        assert scan_all([_member_scan(c, kind, key)], cursors, pause=0.4) == want
        assert {node_of(x) for x in cursors[:-1]} == {PRIMARY_NUMBER}  # where it began


def test_a_scan_continues_on_other_connections_and_another_georedis(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Pooled clients continue a scan on whatever connection they hold; a second georedis
    with the same config numbers the nodes the same."""
    other = start_proxy(topology, read_your_writes=True)
    try:
        wait_all_eligible(other, topology)
        writer, second, elsewhere = proxy.client(), proxy.client(), other.client()
        for r in range(ROUNDS):
            want = {f"p{r}:k{i}".encode() for i in range(N)}
            writer.mset({k: b"v" for k in want})  # the writer's fresh scan: the primary
            calls = [keys_scan(c, f"p{r}:*") for c in (writer, second, elsewhere)]
            assert scan_all(calls) == want
    finally:
        other.stop()


def _scans(c: redis.Redis) -> int:
    entry = c.info("commandstats").get("cmdstat_scan")
    return int(entry["calls"]) if entry else 0


def test_a_continued_cursor_stays_on_its_replica_when_read_your_writes_moves_reads(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    c = proxy.client()
    want = {f"y:k{i}".encode() for i in range(N)}
    c.mset({k: b"v" for k in want})
    topology.wait_synced()
    s = proxy.client()  # has not written: its fresh scan reads the region's replica
    primary, replica = topology.primary.client(), topology.node("ap-southeast-1", 1).client()
    for n in (primary, replica):
        n.config_resetstat()

    def scan_then_write(cur: int) -> tuple[int, list[Any]]:
        reply = s.scan(cur, match="y:*", count=10)
        s.set("y-other", cur)  # from now on read-your-writes would read the primary
        return reply

    cursors: list[int] = []
    assert scan_all([scan_then_write], cursors) == want
    assert {node_of(x) for x in cursors[:-1]} == {REPLICA_NUMBER}
    assert _scans(primary) == 0 and _scans(replica) == len(cursors)


def test_the_end_of_a_scan_is_cursor_0(proxy: ProxyThread, topology: RedisTopology) -> None:
    c = proxy.client()
    c.sadd("small", "a", "b")
    c.wait(3, 2000)
    for args in (("SSCAN", "small", "0"), ("SCAN", "0", "MATCH", "nothing:*", "COUNT", "100000")):
        reply = c.execute_command(*args)
        assert reply[0] == 0 or reply[0] == b"0"  # redis-py may parse it already


@pytest.mark.parametrize(
    "args",
    [("SCAN", "abc"), ("SCAN", "18446744073709551616"), ("SSCAN", "s", "x1"),
     ("HSCAN", "h", "1.5"), ("ZSCAN", "z", "-")],
)  # fmt: skip
def test_an_invalid_cursor_gets_redis_own_error(
    proxy: ProxyThread, topology: RedisTopology, args: tuple[str, ...]
) -> None:
    c, direct = proxy.client(), topology.primary.client()
    c.sadd("s", "a")
    c.hset("h", "f", "v")
    c.zadd("z", {"a": 1})
    with pytest.raises(redis.ResponseError) as theirs:
        direct.execute_command(*args)
    with pytest.raises(redis.ResponseError) as ours:
        c.execute_command(*args)
    assert str(ours.value) == str(theirs.value) == "invalid cursor"


def test_a_cursor_whose_node_is_down_says_to_start_again(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Another node would read the cursor as a place in its own table and miss keys
    without a word: the client is told to start again instead."""
    c = proxy.client()
    c.mset({f"d:k{i}": b"v" for i in range(N)})
    topology.wait_synced()
    s = proxy.client()
    cursor, _ = s.scan(0, match="d:*", count=10)
    assert node_of(cursor) == REPLICA_NUMBER
    replica = topology.node("ap-southeast-1", 1)
    replica.kill()
    addr = Address(replica.host, replica.port)

    def down() -> bool:
        assert proxy.app is not None
        node = proxy.app.topo.node(addr)
        return node is None or not node.up

    wait_for(lambda: proxy.call(down), 5, "the replica marked down")
    with pytest.raises(redis.ResponseError) as e:
        s.scan(cursor, match="d:*", count=10)
    assert str(e.value) == (
        f"georedis: the node of this SCAN cursor ({addr}) is down; "
        "start the scan again from cursor 0"
    )
    assert scan_all([keys_scan(s, "d:*")]) == {f"d:k{i}".encode() for i in range(N)}


def test_a_cursor_from_inside_multi_continues_on_the_primary(proxy: ProxyThread) -> None:
    """Inside MULTI a scan runs on the pinned primary connection and its cursor comes back
    as Redis wrote it; outside, such a cursor continues on the primary."""
    c = proxy.client()
    want = {f"t:k{i}".encode() for i in range(N)}
    c.mset({k: b"v" for k in want})
    pipe = c.pipeline(transaction=True)
    pipe.scan(0, match="t:*", count=10)
    ((cursor, first),) = pipe.execute()
    assert cursor != 0 and node_of(cursor) == 0
    rest = scan_all([lambda cur: c.scan(cur or cursor, match="t:*", count=10)])
    assert set(first) | rest == want
