"""`PROXY CLUSTER`: the slot map and each shard as the proxy sees them (cluster mode).

Everything comes from the snapshot in force (`routing.topology.Snapshot`: `shards`,
`slot_shard`, `map_version`, `map_read_at`, `cluster_state`, made by
`proxy.backend.clusterhealth`) and from this process' counters of the re-routes it
followed (`ProxyStats.cluster_*`, counted in `proxy.server.shards`). The slot ranges are
also what `PROXY BACKENDS` shows per node (`node_shards`).
"""

from __future__ import annotations

from config.model import Address
from proxy.admin.host import AdminClient, AdminHost
from proxy.errors import bad_argument, usage
from proxy.resp.replies import Value, encode
from routing.topology import NodeState, Snapshot

CLUSTER_OFF = "PROXY CLUSTER needs cluster mode, and it is off ([cluster] seeds is not set)"


def cluster(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    if args:
        return usage("PROXY CLUSTER")
    if not app.config.cluster.seeds:
        return bad_argument(CLUSTER_OFF)
    snap = app.topo
    stats = app.stats
    ranges = slot_ranges(snap)
    info: dict[str, Value] = {
        "map_version": snap.map_version,
        "map_read_at": round(snap.map_read_at, 3) if snap.map_read_at else None,
        "cluster_state": snap.cluster_state or None,  # None: no master's CLUSTER INFO yet
        "redirects": {
            "moved": stats.cluster_moved,
            "ask": stats.cluster_ask,
            "retry": stats.cluster_retry,
        },
        "shards": [_shard(i, shard, ranges[i]) for i, shard in enumerate(snap.shards)],
    }
    return encode(info, s.proto)


def _shard(index: int, shard: Snapshot, ranges: list[str]) -> Value:
    master = shard.primary
    return {
        "shard": index,
        "slots": list(ranges),
        "master": str(master.addr) if master is not None else None,
        "master_up": int(master is not None and master.up and not shard.primary_error),
        "replicas": [_replica(n) for n in shard.nodes if master is None or n.addr != master.addr],
    }


def _replica(n: NodeState) -> Value:
    return {
        "addr": str(n.addr),
        "region": n.region,
        "up": int(n.up),
        "eligible": int(n.eligible),
        "reason": n.reason.value,  # why not eligible, as PROXY BACKENDS says it
        "lag_ms": None if n.lag_ms is None else f"{n.lag_ms:.1f}",
    }


def slot_ranges(snap: Snapshot) -> list[list[str]]:
    """Per shard index, the runs of slots `slot_shard` gives it, as Redis writes them
    ("0-5460", a lone slot as "100"); [] for a shard that serves none."""
    out: list[list[str]] = [[] for _ in snap.shards]
    table = snap.slot_shard
    start = 0
    for slot in range(1, len(table) + 1):
        if slot < len(table) and table[slot] == table[start]:
            continue
        index = table[start]
        if index < len(out):  # NO_SHARD: a slot no shard serves
            last = slot - 1
            out[index].append(str(start) if last == start else f"{start}-{last}")
        start = slot
    return out


def node_shards(snap: Snapshot) -> dict[Address, tuple[int, str]]:
    """Each node of the cluster -> its shard's index and slot ranges ("0-5460,6000");
    empty outside cluster mode."""
    ranges = slot_ranges(snap)
    return {
        n.addr: (i, ",".join(ranges[i])) for i, shard in enumerate(snap.shards) for n in shard.nodes
    }
