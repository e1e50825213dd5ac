"""The slot map of a Redis Cluster: which shard serves each of the 16384 slots.

Built from the reply of `CLUSTER SHARDS` (Redis 7.0+: one entry per shard, its slot
ranges and its nodes with role, offset and health) or of `CLUSTER SLOTS` (every version:
one entry per slot range, the master then its replicas), as a parser gives them: RESP2
maps arrive as flat [name, value, ...] lists, RESP3 ones as dicts; strings as bytes or
str. A reply that does not make sense raises `SlotMapError`, so a refresh that got
one keeps the map it had.

The map is immutable, like the topology snapshot it goes into: a refresh builds a new one
and a MOVED reply makes a copy with one slot changed (`with_moved`), good until the
next refresh. `shard_of(slot)` is one index into a 16384-entry table. Two maps are equal
when they describe the same cluster (slots, nodes, roles, health), whatever their
`version`, replication offsets and order of shards: a refresh that changes nothing
swaps nothing.

A node's address is its preferred endpoint (what a MOVED would name). When the cluster
does not know it (`cluster-preferred-endpoint-type unknown-endpoint`, or a node that has
not learnt its own IP) the reply says NULL or "", and Redis says to use the host the
reply came from: `seed_host`. A preferred hostname that was never announced ("?") falls
back to the node's IP where the reply gives one.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from routing.slots import SLOTS

Address = tuple[str, int]
SlotRange = tuple[int, int]  # first and last slot, both included

_NONE = 0xFFFF  # "no shard" in the slot table (one unsigned short a slot)


class SlotMapError(ValueError):
    """A CLUSTER SHARDS / CLUSTER SLOTS reply that does not describe a slot map."""


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node as the reply describes it. `port` is its plain port (0: none), `tls_port`
    its TLS one (0: none). `offset` takes no part in equality: it moves all the time."""

    id: str
    host: str
    port: int
    role: str = "master"  # "master" or "replica"
    ip: str = ""
    hostname: str = ""
    tls_port: int = 0
    health: str = "online"  # online, loading or fail (CLUSTER SLOTS: always online)
    offset: int = field(default=0, compare=False)

    @property
    def address(self) -> Address:
        return (self.host, self.port or self.tls_port)


@dataclass(frozen=True, slots=True)
class Shard:
    """A master and its replicas, and the slots they serve (sorted, merged ranges).
    `provisional`: made by `with_moved` from a MOVED, not read from the cluster."""

    ranges: tuple[SlotRange, ...]
    master: ClusterNode | None
    replicas: tuple[ClusterNode, ...] = ()
    provisional: bool = False

    @property
    def nodes(self) -> tuple[ClusterNode, ...]:
        return ((self.master,) if self.master else ()) + self.replicas

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


@dataclass(frozen=True, slots=True, eq=False)
class SlotMap:
    """Shards, and each slot's index into them.

    `SlotMap(shards)` builds the table; SlotMapError if a range is outside 0-16383 or two
    shards claim one slot. A map read from a reply has its shards in slot order; a map
    made by `with_moved` keeps its parent's order (new shards last), so the indices a
    caller holds stay good until the next refresh. Equality ignores the order too.
    """

    shards: tuple[Shard, ...]
    version: int = 0
    # 16384 unsigned shorts, read-only: the index into `shards` of each slot's shard.
    table: memoryview = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owner = array("H", [_NONE]) * SLOTS
        for index, shard in enumerate(self.shards):
            for first, last in shard.ranges:
                if not 0 <= first <= last < SLOTS:
                    raise SlotMapError(f"slot range {first}-{last} is outside 0-{SLOTS - 1}")
                count = last - first + 1
                if owner[first : last + 1].count(_NONE) != count:
                    raise SlotMapError(f"slots {first}-{last} are claimed by two shards")
                owner[first : last + 1] = array("H", [index]) * count
        # The usual way to set a field of a frozen dataclass while it is being made.
        object.__setattr__(self, "table", memoryview(owner.tobytes()).cast("H"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotMap):
            return NotImplemented
        return frozenset(self.shards) == frozenset(other.shards)

    def __hash__(self) -> int:
        return hash(frozenset(self.shards))

    @classmethod
    def from_reply(cls, reply: object, seed_host: str, version: int = 0) -> SlotMap:
        """From either reply, told apart by its shape (a SHARDS entry is a map)."""
        entries = _seq(reply, "reply")
        if entries and _maybe_fields(entries[0]) is not None:
            return cls.from_shards(reply, seed_host, version)
        return cls.from_slots(reply, seed_host, version)

    @classmethod
    def from_shards(cls, reply: object, seed_host: str, version: int = 0) -> SlotMap:
        """From CLUSTER SHARDS: [{slots: [first, last, ...], nodes: [{id, port, ...}]}]."""
        shards = []
        for entry in _seq(reply, "CLUSTER SHARDS reply"):
            fields = _fields(entry, "shard")
            bounds = [_int(v, "slot") for v in _seq(fields.get("slots", []), "slots")]
            if len(bounds) % 2:
                raise SlotMapError("a shard's slots are not pairs of first and last")
            nodes = [_shards_node(n, seed_host) for n in _seq(fields.get("nodes"), "nodes")]
            shards.append(_shard(list(zip(bounds[::2], bounds[1::2], strict=True)), nodes))
        return cls(_in_slot_order(shards), version)

    @classmethod
    def from_slots(cls, reply: object, seed_host: str, version: int = 0) -> SlotMap:
        """From CLUSTER SLOTS: [[first, last, [host, port, id, meta], replica, ...], ...];
        the ranges of one master (by id, or by address before Redis 4) make one shard."""
        ranges: dict[str, list[SlotRange]] = {}
        members: dict[str, list[ClusterNode]] = {}
        for entry in _seq(reply, "CLUSTER SLOTS reply"):
            items = _seq(entry, "slot range")
            if len(items) < 3:
                raise SlotMapError("a slot range without a master")
            first, last = _int(items[0], "slot"), _int(items[1], "slot")
            nodes = [_slots_node(n, seed_host, i > 0) for i, n in enumerate(items[2:])]
            host, port = nodes[0].address
            key = nodes[0].id or f"{host}:{port}"
            ranges.setdefault(key, []).append((first, last))
            known = members.setdefault(key, [])
            known.extend(n for n in nodes if n.address not in {k.address for k in known})
        return cls(_in_slot_order(_shard(ranges[k], members[k]) for k in ranges), version)

    # -- lookups ---------------------------------------------------------------------

    def shard_of(self, slot: int) -> int | None:
        """The index in `shards` of the shard serving `slot`; None: no shard does."""
        index = self.table[slot]
        return None if index == _NONE else int(index)

    def master_of(self, slot: int) -> Address | None:
        index = self.table[slot]
        if index == _NONE:
            return None
        master = self.shards[index].master
        return master.address if master else None

    def shard_at(self, address: Address) -> int | None:
        """The shard whose master is at `address`."""
        for index, shard in enumerate(self.shards):
            if shard.master is not None and shard.master.address == address:
                return index
        return None

    def node_at(self, address: Address) -> ClusterNode | None:
        for shard in self.shards:
            for node in shard.nodes:
                if node.address == address:
                    return node
        return None

    def unassigned(self) -> tuple[SlotRange, ...]:
        """The slot ranges no shard serves (empty: the map covers every slot)."""
        return _ranges(s for s in range(SLOTS) if self.table[s] == _NONE)

    @property
    def covered(self) -> bool:
        """Every slot is served (the shards' ranges never overlap, so counting will do)."""
        return sum(shard.slot_count for shard in self.shards) == SLOTS

    # -- what a MOVED teaches ------------------------------------------------------------

    def with_moved(self, slot: int, address: Address) -> SlotMap:
        """A map in which `slot` is served by the master at `address`: that shard when a
        master is there; else a new shard whose master is that node (a replica promoted
        by a failover, or a node the map does not know yet), until the next refresh
        tells the whole story (the promoted replica is still listed in its old shard
        too). The version goes up by one; self is unchanged, and is what comes back when
        the slot is already there."""
        if not 0 <= slot < SLOTS:
            raise SlotMapError(f"slot {slot} is outside 0-{SLOTS - 1}")
        target = self.shard_at(address)
        if target is not None and self.table[slot] == target:
            return self
        shards = [
            replace(s, ranges=_without(s.ranges, slot)) if slot_in(s.ranges, slot) else s
            for s in self.shards
        ]
        if target is None:
            known = self.node_at(address)
            node = (
                replace(known, role="master")
                if known
                else ClusterNode(id="", host=address[0], port=address[1])
            )
            shards.append(Shard(((slot, slot),), node, provisional=True))
        else:
            shards[target] = replace(shards[target], ranges=_with(shards[target].ranges, slot))
        # A provisional shard left without slots goes; a real master without slots stays
        # (CLUSTER SHARDS lists those too).
        kept = tuple(s for s in shards if s.ranges or not s.provisional)
        return SlotMap(kept, self.version + 1)


# -- building shards -------------------------------------------------------------------


def _shard(ranges: Sequence[SlotRange], nodes: Sequence[ClusterNode]) -> Shard:
    """A shard from its ranges and nodes: the master is the node with that role that is
    not failed (after a failover CLUSTER SHARDS lists the old master as a failed replica,
    but a moment before it may list it as a failed master beside the new one)."""
    masters = [n for n in nodes if n.role == "master"]
    live = [n for n in masters if n.health != "fail"] or masters
    master = live[0] if live else None
    replicas = tuple(sorted((n for n in nodes if n is not master), key=lambda n: n.address))
    return Shard(_ranges_of(ranges), master, replicas)


def _in_slot_order(shards: Iterable[Shard]) -> tuple[Shard, ...]:
    """By first slot (shards without slots last, by master id): one cluster, one order."""

    def first(shard: Shard) -> tuple[int, str]:
        start = shard.ranges[0][0] if shard.ranges else SLOTS
        return (start, shard.master.id if shard.master else "")

    return tuple(sorted(shards, key=first))


def _shards_node(raw: object, seed_host: str) -> ClusterNode:
    f = _fields(raw, "node")
    ip, hostname = _str(f.get("ip")), _str(f.get("hostname"))
    port, tls_port = _int(f.get("port", 0), "port"), _int(f.get("tls-port", 0), "tls-port")
    if not port and not tls_port:
        raise SlotMapError("a node without a port")
    role = _str(f.get("role")).lower()
    return ClusterNode(
        id=_str(f.get("id")),
        host=_endpoint(_str(f.get("endpoint")), ip, seed_host),
        port=port,
        role="master" if role == "master" else "replica",
        ip=ip,
        hostname=hostname,
        tls_port=tls_port,
        health=_str(f.get("health")).lower() or "online",
        offset=_int(f.get("replication-offset", 0), "replication-offset"),
    )


def _slots_node(raw: object, seed_host: str, replica: bool) -> ClusterNode:
    items = _seq(raw, "node")
    if len(items) < 2:
        raise SlotMapError("a node without a port")
    meta = _fields(items[3], "node metadata") if len(items) > 3 else {}
    ip, hostname = _str(meta.get("ip")), _str(meta.get("hostname"))
    endpoint = _str(items[0])
    # The metadata leaves out whichever of ip and hostname is the endpoint itself.
    if endpoint and endpoint != "?":
        if not ip:
            ip = endpoint
        elif not hostname and endpoint != ip:
            hostname = endpoint
    return ClusterNode(
        id=_str(items[2]) if len(items) > 2 else "",
        host=_endpoint(endpoint, ip, seed_host),
        port=_int(items[1], "port"),
        role="replica" if replica else "master",
        ip=ip,
        hostname=hostname,
    )


def _endpoint(endpoint: str, ip: str, seed_host: str) -> str:
    if endpoint == "?":
        return ip or seed_host
    return endpoint or seed_host


# -- slot ranges -------------------------------------------------------------------------


def slot_in(ranges: Sequence[SlotRange], slot: int) -> bool:
    return any(first <= slot <= last for first, last in ranges)


def _ranges(slots: Iterable[int]) -> tuple[SlotRange, ...]:
    """Ascending slots as merged ranges: 1, 2, 3, 7 -> (1, 3), (7, 7)."""
    out: list[SlotRange] = []
    for s in slots:
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return tuple(out)


def _ranges_of(ranges: Iterable[SlotRange]) -> tuple[SlotRange, ...]:
    """Sorted, with touching or overlapping ranges merged."""
    out: list[SlotRange] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def _without(ranges: Sequence[SlotRange], slot: int) -> tuple[SlotRange, ...]:
    out: list[SlotRange] = []
    for first, last in ranges:
        if first <= slot <= last:
            out.extend(r for r in ((first, slot - 1), (slot + 1, last)) if r[0] <= r[1])
        else:
            out.append((first, last))
    return tuple(out)


def _with(ranges: Sequence[SlotRange], slot: int) -> tuple[SlotRange, ...]:
    return _ranges_of([*ranges, (slot, slot)])


# -- reply values: RESP2 flat lists or RESP3 maps, bytes or str ---------------------------


def _seq(v: object, what: str) -> list[object] | tuple[object, ...]:
    if isinstance(v, list | tuple):
        return v
    raise SlotMapError(f"{what}: expected a list, got {type(v).__name__}")


def _maybe_fields(v: object) -> dict[str, object] | None:
    if isinstance(v, Mapping):
        pairs = list(v.items())
    elif isinstance(v, list | tuple) and len(v) % 2 == 0:
        pairs = list(zip(v[::2], v[1::2], strict=True))
    else:
        return None
    out: dict[str, object] = {}
    for key, value in pairs:
        if not isinstance(key, bytes | str):
            return None
        out[_str(key).lower()] = value
    return out


def _fields(v: object, what: str) -> dict[str, object]:
    fields = _maybe_fields(v)
    if fields is None:
        raise SlotMapError(f"{what}: expected a map")
    return fields


def _str(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _int(v: object, what: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, bytes | str) and _str(v).isdigit():
        return int(v)
    raise SlotMapError(f"{what}: expected an integer, got {v!r}")
