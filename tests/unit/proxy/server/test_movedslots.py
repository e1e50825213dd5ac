"""Owners learned from MOVED survive a snapshot whose map was read before them, and are
dropped by the first map read after them (no sockets)."""

from __future__ import annotations

from array import array
from dataclasses import replace

from config.model import Address
from proxy.server.movedslots import MovedSlots
from routing.topology import NodeState, Reason, Role, Snapshot
from tests.unit.proxy.server.fakes import snapshot


def _master(ip: str) -> NodeState:
    return NodeState(Address(ip, 6379), "sg", up=True, role=Role.PRIMARY, offset=1,
                     reason=Reason.PRIMARY)  # fmt: skip


A, B = _master("10.0.0.1"), _master("10.9.0.1")


def _snap(read_at: float) -> Snapshot:
    return Snapshot(
        version=1, nodes=(A, B), primary=A,
        shards=(snapshot(primary=A), snapshot(primary=B)),
        slot_shard=array("H", [0] * 8192 + [1] * 8192), map_read_at=read_at,
    )  # fmt: skip


def test_a_round_that_read_its_map_before_the_moved_keeps_the_learned_owner() -> None:
    moved = MovedSlots()
    moved.learn(5, B.addr, at=100.0)
    old = _snap(read_at=99.0)
    got = moved.apply(old)
    assert got.slot_shard[5] == 1 and got.slot_shard[6] == 0
    assert old.slot_shard[5] == 0  # the health side's snapshot is not changed in place
    assert len(moved) == 1


def test_a_map_read_after_the_moved_is_believed_and_forgets_it() -> None:
    moved = MovedSlots()
    moved.learn(5, B.addr, at=100.0)
    newer = _snap(read_at=101.0)
    assert moved.apply(newer) is newer  # the map knows best now: slot 5 stays with A
    assert len(moved) == 0


def test_an_owner_the_map_does_not_know_yet_patches_nothing() -> None:
    moved = MovedSlots()
    moved.learn(5, Address("10.5.5.5", 6379), at=100.0)
    snap = _snap(read_at=99.0)
    assert moved.apply(snap) is snap
    assert len(moved) == 1  # kept: the next map may bring that master


def test_standalone_snapshots_pass_untouched() -> None:
    moved = MovedSlots()
    moved.learn(5, B.addr, at=100.0)
    plain = replace(_snap(99.0), shards=(), slot_shard=())
    assert moved.apply(plain) is plain
