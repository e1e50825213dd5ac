"""Pure helpers of the cluster health checker (`proxy.backend.clusterhealth`): a shard's
heartbeat key, what CLUSTER NODES and CLUSTER INFO replies say, a map node's address,
and the log line of a shard master that changed. No I/O, so they are tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from config.model import Address
from routing.slotmap import ClusterNode, Shard, slot_in
from routing.slots import key_slot
from routing.topology import Snapshot

log = logging.getLogger("georedis.health")


def shard_heartbeat_key(base: str, shard: Shard) -> str:
    """`base` with a hash tag that puts it in one of `shard`'s slots (the lowest tag
    number that does: a map that keeps the shard's slots keeps its key); `base` itself
    for a shard that serves no slot (nothing reads from it).

    Redis hashes the first `{...}` pair of a key: braces of `base` (the heartbeat prefix
    is free text, and `{app}` in it is a natural thing to write) would put every shard's
    key in the prefix's one slot. They are dropped, so the shard's tag is the first pair."""
    if not shard.ranges:
        return base
    plain = base.replace("{", "").replace("}", "")
    for n in range(1 << 20):  # ~3 tries for a third of the slots, 16384 for one slot
        tag = str(n)
        if slot_in(shard.ranges, key_slot(tag.encode())):
            return f"{plain}{{{tag}}}"
    return base


def migrating_slots(nodes_reply: object) -> frozenset[int]:
    """The slots the replying node migrates away: `[<slot>->-<target id>]` entries of its
    own (`myself`) line of CLUSTER NODES."""
    text = _text(nodes_reply)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 8 and "myself" in fields[2].split(","):
            return frozenset(int(f[1:].partition("->-")[0]) for f in fields[8:] if "->-" in f)
    return frozenset()


def cluster_state(info_reply: object) -> str:
    """`cluster_state` of a CLUSTER INFO reply ("ok" or "fail"); "" when it has none."""
    for line in _text(info_reply).splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "cluster_state":
            return value.strip()
    return ""


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def node_address(node: ClusterNode) -> Address:
    host, port = node.address
    return Address(host, port)


def log_masters(old: Snapshot, new: Snapshot) -> None:
    """One line per shard master that changed (log_changes speaks of shard 0's only)."""
    before = set(_masters(old.shards))
    for addr in _masters(new.shards):
        if addr not in before:
            log.warning("shard master is now %s", addr)


def _masters(parts: Iterable[Snapshot]) -> list[Address]:
    return [p.primary.addr for p in parts if p.primary is not None]
