"""Cluster mode's batch path on fakes: grouping per node, replies in the client's order,
a MOVED inside a run followed alone, a failed run's reads retried (no sockets)."""

from __future__ import annotations

from array import array
from typing import Any

from config.model import Address
from proxy.errors import BackendUnavailable
from proxy.resp.requests import pack
from proxy.server.clusterbatch import group
from proxy.server.forwarding import Forwarding
from routing.slots import key_slot
from routing.topology import NodeState, Reason, Role, Snapshot
from tests.unit.proxy.server.fakes import FakeClient, FakeHost, snapshot


def _node(ip: str, region: str, primary: bool) -> NodeState:
    if primary:
        return NodeState(Address(ip, 6379), region, up=True, role=Role.PRIMARY, offset=100,
                         reason=Reason.PRIMARY)  # fmt: skip
    return NodeState(Address(ip, 6379), region, up=True, role=Role.REPLICA, offset=100,
                     link_up=True, lag_ms=5.0, eligible=True, reason=Reason.OK)  # fmt: skip


A_MASTER, A_US, A_EU = _node("10.0.0.1", "sg", True), _node("10.0.1.1", "us", False), \
    _node("10.0.2.1", "eu", False)  # fmt: skip
B_MASTER, B_US = _node("10.9.0.1", "sg", True), _node("10.9.1.1", "us", False)
SHARD_A = snapshot(A_US, A_EU, primary=A_MASTER)
SHARD_B = snapshot(B_US, primary=B_MASTER)


def _keys() -> tuple[list[bytes], list[bytes]]:
    """Keys of shard A (slots < 8192) and of shard B (the others)."""
    a = [k for k in (b"k%d" % i for i in range(40)) if key_slot(k) < 8192][:3]
    b = [k for k in (b"k%d" % i for i in range(40)) if key_slot(k) >= 8192][:3]
    return a, b


class _Clock:
    """The loop's clock, all the cluster path asks of the loop here."""

    now = 100.0

    def time(self) -> float:
        return self.now


class _Host(FakeHost):
    def refresh_cluster_map(self) -> None:
        self.refreshes += 1


def _client() -> FakeClient:
    top = Snapshot(
        version=1, nodes=(A_MASTER, A_US, A_EU, B_MASTER, B_US), primary=A_MASTER,
        eligible_by_region=SHARD_A.eligible_by_region, shards=(SHARD_A, SHARD_B),
        slot_shard=array("H", [0] * 8192 + [1] * 8192),
    )  # fmt: skip
    c = FakeClient(_Host(top))
    c.host.loop = _Clock()  # type: ignore[assignment]
    fwd = Forwarding(c)  # type: ignore[arg-type]
    c.fwd = fwd  # type: ignore[attr-defined]
    c.router = fwd
    return c


def _sent(c: FakeClient, node: NodeState) -> list[tuple[bytes, Any]]:
    return c.host.pools[node.addr].shared_conn.sent


def test_group_keeps_first_seen_order_and_positions() -> None:
    assert group(["a", "b", "a", "c", "b"]) == [("a", [0, 2]), ("b", [1, 4]), ("c", [3])]
    assert group([]) == []


def test_reads_go_one_write_per_replica_and_come_back_in_order() -> None:
    c = _client()
    a, b = _keys()
    order = [a[0], b[0], a[1], b[1], a[2]]
    cmds = [[b"GET", k] for k in order]
    raw = b"".join(pack(x) for x in cmds)
    assert c.fwd.batch(cmds, raw, 0.0)  # type: ignore[attr-defined]
    (data_a, run_a), = _sent(c, A_US)  # fmt: skip
    (data_b, run_b), = _sent(c, B_US)  # fmt: skip
    assert data_a == b"".join(pack([b"GET", k]) for k in (a[0], a[1], a[2]))
    assert data_b == b"".join(pack([b"GET", k]) for k in (b[0], b[1]))
    assert len(c.queue) == 1
    # Shard B answers first: nothing goes out before shard A's first reply.
    assert not run_b.deliver(b"$2\r\nb0\r\n")
    assert run_b.deliver(b"$2\r\nb1\r\n")
    assert c.out == []
    for reply in (b"$2\r\na0\r\n", b"$2\r\na1\r\n"):
        assert not run_a.deliver(reply)
    assert run_a.deliver(b"$2\r\na2\r\n")
    assert b"".join(c.out) == b"$2\r\na0\r\n$2\r\nb0\r\n$2\r\na1\r\n$2\r\nb1\r\n$2\r\na2\r\n"
    assert c.host.stats.reads_by_region[("us", "us")] == 5


def test_a_moved_inside_a_run_is_followed_alone_into_its_place() -> None:
    c = _client()
    a, b = _keys()
    cmds = [[b"SET", a[0], b"1"], [b"SET", b[0], b"2"], [b"SET", a[1], b"3"]]
    assert c.fwd.batch(cmds, b"".join(pack(x) for x in cmds), 0.0)  # type: ignore[attr-defined]
    (_, run_a), = _sent(c, A_MASTER)  # fmt: skip
    (_, run_b), = _sent(c, B_MASTER)  # fmt: skip
    slot = key_slot(a[0])
    assert not run_a.deliver(b"-MOVED %d 10.9.0.1:6379\r\n" % slot)  # a[0] moved to B
    assert run_a.deliver(b"+OK\r\n")
    assert run_b.deliver(b"+OK\r\n")
    assert c.out == []  # a[0]'s place is still empty
    (data, moved), = _sent(c, B_MASTER)[1:]  # fmt: skip
    assert data == pack(cmds[0])
    assert moved.deliver(b"+OK\r\n")
    assert c.out == [b"+OK\r\n"] * 3
    assert c.host.stats.cluster_moved == 1
    assert c.host.topo.slot_shard[slot] == 1  # the map patched: the next goes to B at once
    assert c.state.writes_inflight == 0


def test_a_failed_runs_reads_are_retried_on_another_replica_of_its_shard() -> None:
    c = _client()
    a, b = _keys()
    cmds = [[b"GET", a[0]], [b"GET", b[0]], [b"GET", a[1]]]
    assert c.fwd.batch(cmds, b"".join(pack(x) for x in cmds), 0.0)  # type: ignore[attr-defined]
    (_, run_a), = _sent(c, A_US)  # fmt: skip
    (_, run_b), = _sent(c, B_US)  # fmt: skip
    assert not run_a.deliver(b"$2\r\na0\r\n")
    run_a.fail(BackendUnavailable(A_US.addr, "connection lost"))
    (data, retry), = _sent(c, A_EU)  # fmt: skip
    assert data == pack(cmds[2])  # only what was still due
    assert retry.deliver(b"$2\r\na1\r\n")
    assert run_b.deliver(b"$2\r\nb0\r\n")
    assert c.out == [b"$2\r\na0\r\n", b"$2\r\nb0\r\n", b"$2\r\na1\r\n"]


def test_a_batch_with_a_keyless_or_cross_slot_command_goes_one_by_one() -> None:
    c = _client()
    a, b = _keys()
    for odd in ([b"MGET", a[0], b[0]], [b"RANDOMKEY"]):
        cmds = [[b"GET", a[0]], odd]
        assert not c.fwd.batch(cmds, b"".join(pack(x) for x in cmds), 0.0)  # type: ignore[attr-defined]
        assert _sent(c, A_US) == [] and _sent(c, B_US) == []


def test_an_ask_pins_its_slots_reads_to_the_master_that_answered_it() -> None:
    """The source's replicas would answer nil for keys already moved: after an ASK the
    slot's reads go to its master (which answers ASK for them) until the next map."""
    c = _client()
    a, _ = _keys()
    slot = key_slot(a[0])
    cmds = [[b"SET", a[0], b"1"], [b"SET", a[1], b"2"]]
    assert c.fwd.batch(cmds, b"".join(pack(x) for x in cmds), 0.0)  # type: ignore[attr-defined]
    (_, run_a), = _sent(c, A_MASTER)  # fmt: skip
    assert slot not in c.host.topo.pinned
    assert not run_a.deliver(b"-ASK %d 10.9.0.1:6379\r\n" % slot)  # a[0]: migrating to B
    pinned = c.host.topo.pinned[slot]
    assert pinned.primary is A_MASTER and pinned.eligible_by_region == {}
    assert c.host.stats.cluster_ask == 1
    (data, _), = _sent(c, B_MASTER)  # fmt: skip
    assert data == b"*1\r\n$6\r\nASKING\r\n" + pack(cmds[0])
    reads = [[b"GET", a[0]], [b"GET", a[1]]]
    assert c.fwd.batch(reads, b"".join(pack(x) for x in reads), 0.0)  # type: ignore[attr-defined]
    assert len(_sent(c, A_MASTER)) == 2  # the GET of the pinned slot went to the master


def test_a_replicas_nil_is_read_again_from_the_master_only_while_slots_move() -> None:
    """A reshard deletes a moved key from the source's replicas before they learn its new
    owner: within UNSETTLED_S of a redirection their nil is asked of the master, once."""
    c = _client()
    a, _ = _keys()
    reads = [[b"GET", a[0]], [b"GET", a[1]]]
    raw = b"".join(pack(x) for x in reads)
    assert c.fwd.batch(reads, raw, 0.0)  # type: ignore[attr-defined]
    (_, run), = _sent(c, A_US)  # fmt: skip
    assert not run.deliver(b"$-1\r\n")
    assert run.deliver(b"$2\r\nv1\r\n")
    assert c.out == [b"$-1\r\n", b"$2\r\nv1\r\n"]  # settled: the nil stands
    assert _sent(c, A_MASTER) == []

    c.host.stats.cluster_redirect_at = 99.0  # a MOVED followed a second ago
    c.out.clear()
    assert c.fwd.batch(reads, raw, 0.0)  # type: ignore[attr-defined]
    (_, run), = _sent(c, A_US)[1:]  # fmt: skip
    assert not run.deliver(b"$-1\r\n")
    assert run.deliver(b"$2\r\nv1\r\n")
    assert c.out == []  # a[0]'s place waits for the master
    (data, again), = _sent(c, A_MASTER)  # fmt: skip
    assert data == pack(reads[0])
    assert again.deliver(b"-MOVED %d 10.9.0.1:6379\r\n" % key_slot(a[0]))  # moved: followed
    (_, moved), = _sent(c, B_MASTER)  # fmt: skip
    assert moved.deliver(b"$2\r\nv0\r\n")
    assert c.out == [b"$2\r\nv0\r\n", b"$2\r\nv1\r\n"]
