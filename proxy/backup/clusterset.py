"""A cluster backup set: one backup per shard, tied together by the set's manifest (pure).

In cluster mode (`Snapshot.shards`) PROXY BACKUP takes one RDB per shard, each from the
node `choose_source` picks within that shard's snapshot, each sealed and stored as its
own object `<set>.s<i>.grbk` with its own manifest `<set>.s<i>.json` (its `cluster`:
the set, shard index, shard count, slot ranges). The set's manifest `<set>.json` is
written last, only once every shard's is: a listed set is a whole one, and retention
deletes `<set>.json` and then every `<set>.*` as for any backup. The shards' ids are not
`valid_id`s, so the listing shows the set, never its members on their own.

There is no cross-shard point in time: each shard's RDB is a fork on its source at the
moment of its own `+FULLRESYNC` (its manifest's `at`); the set records each one and the
spread between the first and the last.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from config.model import Address
from proxy.backup.job import Progress
from proxy.backup.manifest import Manifest, valid_id
from proxy.backup.source import choose_source
from proxy.errors import BackupError
from routing.slots import key_slot
from routing.topology import NodeState, Snapshot

Ranges = tuple[tuple[int, int], ...]  # inclusive first..last slot runs


@dataclass(frozen=True, slots=True)
class ShardPick:
    index: int
    node: NodeState
    slots: Ranges
    epoch: int
    master: Address | None  # the shard's master: a replica source catches up with it first


def shard_id(set_id: str, index: int) -> str:
    return f"{set_id}.s{index}"


def valid_shard_id(text: str) -> bool:
    """`<set id>.s<index>`: a member's id (readable on its own: VERIFY, georedis restore)."""
    set_id, dot, tail = text.rpartition(".s")
    return bool(dot) and valid_id(set_id) and tail.isdigit() and tail == str(int(tail))


def slot_ranges(slot_shard: Sequence[int], index: int) -> Ranges:
    """The runs of slots `slot_shard` gives shard `index`."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for slot, owner in enumerate(slot_shard):
        if owner == index and start is None:
            start = slot
        elif owner != index and start is not None:
            out.append((start, slot - 1))
            start = None
    if start is not None:
        out.append((start, len(slot_shard) - 1))
    return tuple(out)


def lock_master(snap: Snapshot, key: str) -> NodeState | None:
    """Where the scheduler's lock key is written: the primary, or in cluster mode the
    master of the key's slot (shard 0's master would answer MOVED)."""
    if not snap.shards:
        return snap.primary
    index = snap.slot_shard[key_slot(key.encode())]
    return snap.shards[index].primary if index < len(snap.shards) else None


def plan_set(snap: Snapshot, frm: str | None, ranking: tuple[str, ...]) -> list[ShardPick]:
    """Per shard, the node its backup reads (BackupError: refused, and why)."""
    if not snap.shards:
        raise BackupError("not in cluster mode")
    if frm is not None and ":" in frm:
        raise BackupError(
            "in cluster mode FROM names a region, not a node: a set takes one RDB per shard"
        )
    if frm is not None and frm not in {n.region for n in snap.nodes}:
        raise BackupError(f"unknown region {frm!r}")
    picks = []
    for i, shard in enumerate(snap.shards):
        ranges = slot_ranges(snap.slot_shard, i)
        if not ranges:
            continue  # a shard that serves no slot (a dead master's, emptied): no data
        if frm is not None and frm not in {n.region for n in shard.nodes}:
            raise BackupError(f"shard {i} has no node in {frm}")
        try:
            node = choose_source(shard, frm, ranking)
        except BackupError as e:
            raise BackupError(f"shard {i}: {e.why}") from None
        master = shard.primary.addr if shard.primary is not None else None
        picks.append(ShardPick(i, node, ranges, shard.epoch, master))
    if not picks:
        raise BackupError("no shard serves any slot yet")
    return picks


def shard_cluster(set_id: str, pick: ShardPick, count: int) -> dict[str, Any]:
    """A member manifest's `cluster`."""
    return {"set": set_id, "shard": pick.index, "shards": count,
            "slots": [list(r) for r in pick.slots]}  # fmt: skip


def set_manifest(set_id: str, created: float, parts: Sequence[Manifest], target: str,
                 finished: float) -> Manifest:  # fmt: skip
    """The set's manifest from its parts' (every one complete); the caller MACs it."""
    per_db: dict[str, int] = {}
    for m in parts:
        for db, n in m.keys_per_db.items():
            per_db[db] = per_db.get(db, 0) + n
    ats = [m.at for m in parts]
    rows = [_member(m) for m in parts]
    return Manifest(
        id=set_id, created=created, source="cluster", source_region=f"{len(parts)} shards",
        source_role="cluster", target=target, finished=finished,
        rdb_version=max(m.rdb_version for m in parts),
        rdb_bytes=sum(m.rdb_bytes for m in parts),
        size=sum(m.size for m in parts), key_id=parts[0].key_id,
        keys=sum(m.keys for m in parts), reserved_keys=sum(m.reserved_keys for m in parts),
        expires=sum(m.expires for m in parts), keys_per_db=dict(sorted(per_db.items())),
        epoch=max(m.epoch for m in parts), at=min(ats),
        cluster={"shards": len(parts), "members": rows,
                 "at_spread_s": round(max(ats) - min(ats), 6)},
    )  # fmt: skip


def _member(m: Manifest) -> dict[str, Any]:
    c = m.cluster or {}
    return {"id": m.id, "shard": c.get("shard"), "state": m.state, "slots": c.get("slots"),
            "source": f"{m.source} ({m.source_region})", "role": m.source_role, "at": m.at,
            "keys": m.user_keys, "size": m.size, "sha256": m.sha256}  # fmt: skip


def members(m: Manifest) -> list[dict[str, Any]]:
    if not m.is_set:
        raise BackupError(f"backup {m.id} is not a cluster set")
    assert m.cluster is not None
    return list(m.cluster["members"])


def check_member(set_m: Manifest, row: dict[str, Any], member: Manifest) -> None:
    """The member's manifest is the one the (signed) set names."""
    c = member.cluster or {}
    if c.get("set") != set_m.id or member.sha256 != row["sha256"] or member.id != row["id"]:
        raise BackupError(f"backup {set_m.id}: shard {row['shard']}'s manifest is not its own")


@dataclass(slots=True)
class SetProgress:
    """A set as PROXY BACKUP STATUS shows it: the set, then each shard's own progress."""

    id: str
    started: float
    shards: list[tuple[ShardPick, Progress]]
    state: str = "running"  # running | complete | failed
    finished: float = 0.0
    error: str | None = None
    manifest: Manifest | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, object]:
        end = self.finished or time.time()
        parts = [p for _, p in self.shards]
        d: dict[str, object] = {
            "id": self.id,
            "state": self.state,
            "source": f"cluster ({len(parts)} shards)",
            "cluster_shards": len(parts),
            "received": sum(p.received for p in parts),
            "written": sum(p.written for p in parts),
            "duration_s": round(end - self.started, 3),
            "error": self.error,
            "shards": [_shard_row(pick, p) for pick, p in self.shards],
        }
        if self.manifest is not None:
            d["keys"] = self.manifest.user_keys
        return d


def _shard_row(pick: ShardPick, p: Progress) -> dict[str, object]:
    ranges = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in pick.slots)
    return {"shard": pick.index, "slots": ranges, **p.as_dict()}
