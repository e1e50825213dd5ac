"""The pure cluster pieces (routing.slots, slotmap, redirect, split) against real Redis.

One lone cluster-enabled redis-server checks `key_slot` against CLUSTER KEYSLOT; a real
cluster of 3 masters and 3 replicas (made by `redis-cli --cluster create`,
tests/helpers/cluster.py) checks that the maps parsed from its live CLUSTER SHARDS and
CLUSTER SLOTS replies send every slot to the master that serves it, that MOVED and ASK
from a real migration parse and update the map to what the cluster then says, and that
split MGET / MSET / DEL parts sent to the masters merge into what one Redis would reply.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest

from proxy.resp.replies import ReplySplitter
from proxy.resp.requests import pack
from routing.redirect import Redirect, parse_cluster_error
from routing.slotmap import SlotMap
from routing.slots import SLOTS, key_slot
from routing.split import CROSSSLOT_ERROR, split_command
from tests.helpers.cluster import RedisCluster, lone_cluster_node
from tests.helpers.raw import Raw
from tests.helpers.topology import HOST, RedisNode, wait_until


def _random_keys(n: int, rng: random.Random) -> list[bytes]:
    """Keys that exercise the hash tag rule: braces anywhere, empty and nested tags,
    binary bytes (NUL, CR, LF, 0xff), empty keys, long keys."""
    pieces = [b"{", b"}", b"{}", b"}{", b"{{", b"}}", b"user", b"\x00", b"\r\n", b"\xff", b"x"]
    keys = [b"", b"{}", b"{", b"}", b"{a}", b"a" * 1000]
    while len(keys) < n:
        keys.append(
            b"".join(
                rng.choice(pieces) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 4))
                for _ in range(rng.randint(1, 8))
            )
        )
    return keys


def test_key_slot_is_cluster_keyslot(tmp_path: Path) -> None:
    node = lone_cluster_node(tmp_path)
    try:
        keys = _random_keys(2000, random.Random(14))
        pipe = node.client().pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        want = [int(v) for v in pipe.execute()]
        start = time.perf_counter_ns()
        got = [key_slot(k) for k in keys]
        per_key = (time.perf_counter_ns() - start) / len(keys)
        print(f"key_slot: {per_key:.0f} ns/key over {len(keys)} keys")
        assert [k for k, g, w in zip(keys, got, want, strict=True) if g != w] == []
        assert len(set(want)) > 1000  # the keys are spread, not all in a few slots
    finally:
        node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster.start(3, 1, tmp=tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _nodes_view(node: RedisNode) -> dict[int, int]:
    """slot -> master port, from CLUSTER NODES: another reply, parsed independently."""
    out: dict[int, int] = {}
    for line in str(node.admin.execute_command("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if "master" not in fields[2].split(","):
            continue
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated or imported: still its owner's
            first, _, last = part.partition("-")
            for slot in range(int(first), int(last or first) + 1):
                out[slot] = port
    return out


def _live_map(node: RedisNode, resp3: bool = False, command: str = "SHARDS") -> SlotMap:
    raw = Raw(node.port)
    try:
        if resp3:
            raw.call("HELLO", "3")
        return SlotMap.from_reply(raw.call("CLUSTER", command), seed_host=HOST)
    finally:
        raw.close()


def test_live_replies_map_every_slot_to_its_master(cluster: RedisCluster) -> None:
    seed = cluster.nodes[0]
    maps = [
        _live_map(seed),
        _live_map(seed, resp3=True),
        _live_map(seed, command="SLOTS"),
        _live_map(seed, resp3=True, command="SLOTS"),
        _live_map(cluster.nodes[-1]),  # a replica's view is the same cluster
    ]
    assert all(m == maps[0] for m in maps[1:])
    m = maps[0]
    assert m.covered and len(m.shards) == 3
    owners = _nodes_view(seed)
    assert len(owners) == SLOTS
    assert all(m.master_of(s) == (HOST, owners[s]) for s in range(SLOTS))
    for shard in m.shards:
        assert shard.master is not None
        master = cluster.by_port(shard.master.port)
        assert master in cluster.masters()
        assert [n.port for n in shard.replicas] == [n.port for n in cluster.replicas_of(master)]
        assert {n.id for n in shard.nodes} == {cluster.node_ids()[n] for n in
                                               (master, *cluster.replicas_of(master))}  # fmt: skip


def test_keys_go_to_the_master_their_slot_says(cluster: RedisCluster) -> None:
    """The master the map picks answers the key itself; any other master says MOVED with
    the slot and address the map already has."""
    m = _live_map(cluster.nodes[0])
    clients = {n.port: Raw(n.port) for n in cluster.masters()}
    try:
        for key in _random_keys(60, random.Random(7)):
            slot = key_slot(key)
            owner = m.master_of(slot)
            assert owner is not None
            for port, raw in clients.items():
                reply = raw.call("GET", key)
                if port == owner[1]:
                    assert reply is None
                else:
                    assert parse_cluster_error(str(reply)) == Redirect(False, slot, HOST, owner[1])
    finally:
        for raw in clients.values():
            raw.close()


def _free_slot_moved_to(cluster: RedisCluster, slot: int, target: RedisNode) -> None:
    """CLUSTER SETSLOT <slot> NODE on every master (the slot holds no key)."""
    target_id = cluster.node_ids()[target]
    for node in [target, *(n for n in cluster.masters() if n is not target)]:
        node.admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def test_a_moved_slot_updates_the_map_to_what_the_cluster_then_says(
    cluster: RedisCluster,
) -> None:
    before = _live_map(cluster.nodes[0])
    slot = key_slot(b"move-me")
    source = cluster.by_port((before.master_of(slot) or ("", 0))[1])
    target = next(n for n in cluster.masters() if n is not source)
    _free_slot_moved_to(cluster, slot, target)
    try:
        raw = Raw(source.port)
        reply = raw.call("GET", b"move-me")
        raw.close()
        redirect = parse_cluster_error(str(reply))
        assert isinstance(redirect, Redirect) and not redirect.ask
        address = redirect.target(source.host)
        assert address == (HOST, target.port)
        learnt = before.with_moved(redirect.slot, address)
        # What a full refresh says once every node has heard, from any node.
        wait_until(
            lambda: all(_live_map(n) == learnt for n in cluster.nodes),
            10.0,
            "every node's CLUSTER SHARDS to show the moved slot",
            interval=0.05,
        )
    finally:
        _free_slot_moved_to(cluster, slot, source)
        wait_until(lambda: all(_live_map(n) == before for n in cluster.nodes), 10.0,
                   "the slot back on its first master", interval=0.05)  # fmt: skip


def test_ask_during_a_migration_and_asking_on_the_target(cluster: RedisCluster) -> None:
    m = _live_map(cluster.nodes[0])
    slot = key_slot(b"migrating")
    source = cluster.by_port((m.master_of(slot) or ("", 0))[1])
    target = next(n for n in cluster.masters() if n is not source)
    ids = cluster.node_ids()
    target.admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    source.admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    try:
        raw = Raw(source.port)
        # A key the source does not have is, during a migration, the target's business.
        ask = parse_cluster_error(str(raw.call("GET", b"migrating")))
        raw.close()
        assert ask == Redirect(True, slot, HOST, target.port)
        raw = Raw(target.port)
        moved = parse_cluster_error(str(raw.call("GET", b"migrating")))
        assert moved == Redirect(False, slot, HOST, source.port)  # without ASKING
        assert raw.call("ASKING") == b"OK"
        assert raw.call("GET", b"migrating") is None  # one command, served
        assert isinstance(parse_cluster_error(str(raw.call("GET", b"migrating"))), Redirect)
        raw.close()
    finally:
        for node in (source, target):
            node.admin.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


class _Wire:
    """One connection per master that returns each reply's raw bytes, as the proxy has them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=4.0)
        self.splitter = ReplySplitter()
        self.replies: list[bytes] = []

    def call(self, args: list[bytes]) -> bytes:
        self.sock.sendall(pack(args))
        while not self.replies:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.replies.extend(self.splitter.split(data))
        return self.replies.pop(0)


def test_split_commands_run_on_the_cluster_as_on_one_redis(cluster: RedisCluster) -> None:
    m = _live_map(cluster.nodes[0])
    wires = {n.port: _Wire(n.port) for n in cluster.masters()}

    def run(args: list[bytes]) -> bytes:
        split = split_command(args)
        assert split is not None
        replies = []
        for part in split.parts:
            owner = m.master_of(part.slot)
            assert owner is not None
            replies.append(wires[owner[1]].call(part.args))
        return split.merge(replies)

    keys = [b"k%d" % i for i in range(40)] + [b"{k1}x", b"\x00bin"]
    assert len({m.shard_of(key_slot(k)) for k in keys}) == 3
    # Without a split, Redis refuses keys in two slots, even two slots of one master:
    # the parts are per slot, not per master.
    first = cluster.masters()[0].port
    mine = [k for k in keys if m.master_of(key_slot(k)) == (HOST, first)]
    two = [mine[0], next(k for k in mine if key_slot(k) != key_slot(mine[0]))]
    assert wires[first].call([b"MGET", *two]) == CROSSSLOT_ERROR
    mset: list[bytes] = [b"MSET"]
    for i, key in enumerate(keys):
        mset += [key, b"v%d\r\n" % i]
    assert run(mset) == b"+OK\r\n"
    wanted = [*keys[::2], b"missing", *keys[1::2]]
    values = hiredis.Reader()
    values.feed(run([b"MGET", *wanted]))
    got = values.gets()
    expect = {k: b"v%d\r\n" % i for i, k in enumerate(keys)}
    assert got == [expect.get(k) for k in wanted]
    assert run([b"EXISTS", *keys, b"missing", keys[0]]) == b":%d\r\n" % (len(keys) + 1)
    assert run([b"TOUCH", *keys]) == b":%d\r\n" % len(keys)
    assert run([b"DEL", *keys[:10], b"missing"]) == b":10\r\n"
    assert run([b"UNLINK", *keys]) == b":%d\r\n" % (len(keys) - 10)
    assert run([b"EXISTS", *keys]) == b":0\r\n"
    for wire in wires.values():
        wire.sock.close()
