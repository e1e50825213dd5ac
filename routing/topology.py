"""The topology snapshot: what the proxy believes about every node, frozen.

The health checker (`proxy.backend.health`) probes the nodes, builds a new `Snapshot` and swaps
it in; routing reads whichever snapshot is current and never mutates it
(docs/architecture.md, "Invariants"). Everything here is plain data so a snapshot can
also be pickled and sent to worker processes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from config.model import Address


class Role(Enum):
    PRIMARY = "primary"
    REPLICA = "replica"
    # A master that is not the primary (two masters at once, or a stray master).
    MASTER = "master"
    UNKNOWN = "unknown"


class Reason(Enum):
    """Why a node does or does not take reads. `OK` for an eligible replica."""

    OK = "ok"
    PRIMARY = "primary"
    DOWN = "down"
    LINK_DOWN = "link down"
    SYNCING = "syncing"
    LOADING = "loading"
    LAGGING = "lagging"
    FOREIGN_REPLID = "foreign replid"
    NO_PRIMARY = "no primary"
    # A master with an older failover epoch than the primary's: an old primary back
    # after a failover. It gets no writes and is made a replica of the primary.
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class NodeState:
    addr: Address
    region: str
    up: bool = False
    role: Role = Role.UNKNOWN
    # The replication ID this node serves (master) or follows (replica).
    replid: str = ""
    # master_repl_offset of a master; slave_repl_offset of a replica.
    offset: int = 0
    link_up: bool = False
    loading: bool = False
    syncing: bool = False
    # Replication lag measured through the heartbeat key; None when not measured.
    lag_ms: float | None = None
    lag_bytes: int | None = None
    eligible: bool = False
    reason: Reason = Reason.DOWN
    # The last full INFO of this node, parsed into fields (for metrics and status).
    info: Mapping[str, str] = field(default_factory=dict)
    # loop.time() of the probe that produced this state.
    sampled_at: float = 0.0
    error: str = ""
    epoch: int = 0  # the failover epoch key's number on this node (0: none)


@dataclass(frozen=True, slots=True)
class OffsetSample:
    """The primary's replication offset, read by a probe sent at `sent_at` (loop.time()).

    A probe sent after a write's reply was received reads an offset that includes that
    write; read-your-writes uses these samples to know which replicas have caught up.
    """

    sent_at: float
    offset: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    nodes: tuple[NodeState, ...]
    primary: NodeState | None
    # Why there is no usable primary (e.g. two masters at once); "" when there is one.
    primary_error: str = ""
    # Eligible replicas per region name, the order of `nodes` kept.
    eligible_by_region: Mapping[str, tuple[NodeState, ...]] = field(default_factory=dict)
    # Recent primary offset samples, oldest first.
    primary_offsets: tuple[OffsetSample, ...] = ()
    # The highest failover epoch seen, and the masters it fences (older epochs).
    epoch: int = 0
    fenced: tuple[NodeState, ...] = ()
    # Redis Cluster (`[cluster] seeds`): one snapshot per shard, its master as `primary`
    # and its replicas in `nodes`, each built as a standalone deployment's is, and for
    # each of the 16384 slots the index of its shard in `shards` (`NO_SHARD`: none).
    # Routing picks the shard by the key's slot before it picks a replica. The top-level
    # fields then hold every node in `nodes` and describe shard 0 otherwise (its primary,
    # offsets and eligible replicas), which is where keyless commands go. Standalone:
    # both empty. `map_version` counts the slot maps read from the cluster.
    shards: tuple[Snapshot, ...] = ()
    slot_shard: Sequence[int] = ()
    map_version: int = 0
    # Cluster mode: time.time() of the last slot map read (changed or not; 0: none yet),
    # and `cluster_state` as the CLUSTER INFO of a master last said ("ok", "fail"; "":
    # not read yet). One master is asked per round, in turn.
    map_read_at: float = 0.0
    cluster_state: str = ""
    # Slots a master is migrating away (its CLUSTER NODES says `[slot->-id]`) -> its
    # shard without eligible replicas: Redis does not tell replicas, so a replica answers
    # nil for a key already moved where its master answers ASK. Reads go to the master.
    pinned: Mapping[int, Snapshot] = field(default_factory=dict)

    def node(self, addr: Address) -> NodeState | None:
        for n in self.nodes:
            if n.addr == addr:
                return n
        return None

    def offset_after(self, t: float) -> int | None:
        """The primary offset read by the first probe sent at or after `t`, if any yet."""
        samples = self.primary_offsets
        i = bisect_left([s.sent_at for s in samples], t)
        return samples[i].offset if i < len(samples) else None


NO_SHARD = 0xFFFF  # `Snapshot.slot_shard` of a slot no shard serves

EMPTY = Snapshot(version=0, nodes=(), primary=None, primary_error="topology not probed yet")
