"""Slot owners learned from MOVED replies, kept until a slot map read after them.

A MOVED patches the current snapshot at once (`shards.learn_moved`) and asks the health
side for a new map. But a health round that read the map before the MOVED may finish
after it, and its snapshot (with the old owner) would undo the patch: every client
would then meet the same MOVED again until the next round. So each learned owner is
put back into every new snapshot whose map was read before it was learned, and dropped
by the first map read after it (which knows at least as much as the MOVED did).
"""

from __future__ import annotations

import time
from array import array
from dataclasses import replace

from config.model import Address
from routing.topology import Snapshot


class MovedSlots:
    def __init__(self) -> None:
        # slot -> (its owner as a MOVED named it, time.time() it was learned). At most
        # one entry per slot: bounded by the 16384 slots.
        self._learned: dict[int, tuple[Address, float]] = {}

    def __len__(self) -> int:
        return len(self._learned)

    def learn(self, slot: int, owner: Address, at: float | None = None) -> None:
        self._learned[slot] = (owner, time.time() if at is None else at)

    def apply(self, snap: Snapshot) -> Snapshot:
        """`snap` with the owners learned since its map was read; the older ones are
        forgotten. The snapshot itself is never changed (a copy when anything differs)."""
        if not self._learned or not snap.slot_shard:
            return snap
        read_at = snap.map_read_at
        self._learned = {s: e for s, e in self._learned.items() if e[1] > read_at}
        index = {s.primary.addr: i for i, s in enumerate(snap.shards) if s.primary is not None}
        table: array[int] | None = None
        for slot, (owner, _) in self._learned.items():
            i = index.get(owner)
            if i is None or snap.slot_shard[slot] == i:
                continue  # a master this map does not know yet, or no news
            if table is None:
                table = array("H", snap.slot_shard)
            table[slot] = i
        return snap if table is None else replace(snap, slot_shard=table)
