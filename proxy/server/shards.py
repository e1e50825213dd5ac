"""Redis Cluster on the data path: a command's shard, commands that span shards, MOVED and ASK.

Only in cluster mode (`Snapshot.shards` set, `[cluster] seeds`): `Forwarding.read` and
`write` test `snap.shards` once and come here; the standalone path never does.

- `route` finds the shard of a command from its keys' slot (`routing.split`), so that
  forwarding then picks that shard's master, or its replica nearest to the client, exactly
  as it does for a standalone deployment (each shard is a `Snapshot` of its own). A
  command without keys goes to shard 0 (the top-level snapshot), except the keyless
  commands whose answer is the whole dataset's (`routing.fanout`: DBSIZE, KEYS,
  FLUSHALL, ...), which every master answers and georedis merges. MGET, MSET, DEL,
  UNLINK, EXISTS and TOUCH across slots are split per slot and merged
  (`routing.split`); any other command across slots gets Redis' CROSSSLOT error.
- What georedis sends in cluster mode goes in a `ClusterSlot`, which follows the
  cluster's answers instead of passing them on: MOVED (the slot has a new owner: sent
  there, the local map patched at once and a refresh of the map asked for, coalesced by
  the health side), ASK (a slot migrating: ASKING and the command sent to the target,
  once), TRYAGAIN and CLUSTERDOWN (re-routed after a back-off: a migration of a
  multi-key slot, or a failover, takes about a second). Each of these means the command
  did not run, so sending it again loses and doubles nothing. After `_MAX_TRIES` the
  client gets the cluster's error as it came. The client never sees MOVED or ASK.

The retry of a command reorders it after commands of the same client sent since, as a
cluster-aware client's retry does; replies still come back in the client's order.
"""

from __future__ import annotations

from array import array
from dataclasses import replace

from config.model import Address
from proxy.backend.pool import NodePool
from proxy.errors import BackendError, NoPrimary, NotExecuted, reply_for
from proxy.resp.requests import pack
from proxy.server.gather import Gather
from proxy.server.host import Client
from proxy.server.slot import READ, RETRIED, WRITE, PlaceOwner, Slot, SlotOwner
from proxy.stats import CLASS_READ
from routing.commands import CommandInfo
from routing.fanout import FANOUT, Merge
from routing.redirect import ClusterDown, Redirect, TryAgain, backoff, parse_cluster_error
from routing.select import NO_REQUIREMENTS
from routing.split import CROSSSLOT, CROSSSLOT_ERROR, NoSlot, Split, slot_of_command, split_command
from routing.topology import NO_SHARD, NodeState, Snapshot

ASKING = pack([b"ASKING"])
# Redirections and re-routings one command may take before its error reaches the client:
# a MOVED, then an ASK while the slot migrates, then back-offs through a failover
# (0.05 s doubling to 1 s: ~4.5 s in all, beyond a failover's node timeout + election).
_MAX_TRIES = 8
# Commands split across slots whose parts may be read from a replica.
_SPLIT_READS = frozenset({b"mget", b"exists"})


def route(client: Client, args: list[bytes], now: float, cls: int) -> Snapshot | None:
    """The shard `args` goes to; None when it was answered here (fanned out, split, or
    refused with CROSSSLOT)."""
    host = client.host
    snap = host.topo
    info = host.table.lookup(args)
    merge = FANOUT.get(info.name)
    if merge is not None:
        fan_out(client, args, merge, now, cls)
        return None
    slot = slot_of_command(info, args)
    if slot is CROSSSLOT:
        split = split_command(args)
        if split is None:
            client.reply_now(CROSSSLOT_ERROR, cls, now)
        else:
            spread(client, args, split, now, cls)
        return None
    if slot is None or isinstance(slot, NoSlot):
        return snap  # keyless, or keys Redis must judge itself: shard 0's node answers
    return shard_of_slot(snap, slot)


def shard_of_slot(snap: Snapshot, slot: int) -> Snapshot:
    if snap.pinned:  # a migration under way somewhere (an empty dict's test otherwise)
        pinned = snap.pinned.get(slot)
        if pinned is not None:
            return pinned
    index = snap.slot_shard[slot] if snap.slot_shard else NO_SHARD
    # No owner known: shard 0's master answers (MOVED, or CLUSTERDOWN), and that is followed.
    return snap.shards[index] if index < len(snap.shards) else snap


def shard_of(host_topo: Snapshot, info: CommandInfo, args: list[bytes]) -> Snapshot:
    slot = slot_of_command(info, args)
    if isinstance(slot, int):
        return shard_of_slot(host_topo, slot)
    return host_topo


# ---------------------------------------------------------------------- the cluster's slots


class ClusterSlot(Slot):
    """A slot that follows MOVED, ASK, TRYAGAIN and CLUSTERDOWN (see the module's text).
    `client` is the client it is for (its `session` may be a split's part collector)."""

    __slots__ = ("client", "tries")
    client: Client
    tries: int

    def deliver(self, reply: bytes) -> bool:
        if (
            reply[0] == 45
            and reply[1:4] in CLUSTER_CODES
            and self.pending == 1
            and self.tries < _MAX_TRIES
            and not self.client.closing
            and follow(self, reply)
        ):
            return True
        if reply in NILS and self.flags & _READ_ONCE == READ and reread(self):
            return True
        return Slot.deliver(self, reply)


# MOVED, ASK, TRYAGAIN, CLUSTERDOWN; and LOADING and READONLY, which a cluster's node
# answers while it loads after a restart, or as a replica a stale map still sends writes
# to: neither ran the command (re-routed later, the map refreshed meanwhile).
CLUSTER_CODES = frozenset({b"MOV", b"ASK", b"TRY", b"CLU", b"LOA", b"REA"})


# A replica's "no such key" while slots move may be a key that moved away: a reshard's
# MIGRATE deletes it from the source (its replicas too) before they learn the slot's new
# owner, and meanwhile they answer nil where their master answers MOVED (or ASK). So
# within this long of a redirection followed (or while a slot is pinned), such a nil is
# read again from the shard's master, once; at other times a nil costs nothing more.
UNSETTLED_S = 2.0
NILS = frozenset({b"$-1\r\n", b"_\r\n"})
_READ_ONCE = READ | RETRIED


def unsettled(client: Client) -> bool:
    host = client.host
    return bool(host.topo.pinned) or (
        host.loop.time() - host.stats.cluster_redirect_at < UNSETTLED_S
    )


def reread(slot: ClusterSlot) -> bool:
    """Send a replica's nil read to its shard's master (`NILS`); False: it stands."""
    client = slot.client
    if client.closing or not unsettled(client):
        return False
    host = client.host
    args = slot.cmds[0]
    shard = shard_of(host.topo, host.table.lookup(args), args)
    master = shard.primary
    if master is None or shard.primary_error or str(master.addr) == slot.node:
        return False
    slot.flags |= RETRIED  # once: the master's answer is the answer (or a MOVED, followed)
    send_to(slot, host.pools[master.addr])
    return True


def cluster_slot(owner: SlotOwner, client: Client, cmds: list[list[bytes]], cls: int,
                 flags: int, now: float, pool: NodePool) -> ClusterSlot:  # fmt: skip
    slot = ClusterSlot(owner, cmds, cls, flags, now, pool.name, pool.hist)
    slot.client = client
    slot.tries = 0
    st = slot.client.state
    slot.via = st.db << 2 | st.proto
    return slot


def send_later(client: Client, args: list[bytes], cls: int, flags: int, now: float) -> None:
    """No master for the slot in this snapshot (a failover under way, a master down until
    the cluster promotes a replica): routed again after a back-off, as after CLUSTERDOWN;
    the error only once the tries run out."""
    slot = ClusterSlot(client, [args], cls, flags, now, "", None)
    slot.client, slot.tries = client, 1
    st = client.state
    slot.via = st.db << 2 | st.proto
    client.queue.append(slot)
    if not _later(slot):
        slot.deliver(reply_for(NoPrimary("no master serves this slot")))


def follow(slot: ClusterSlot, reply: bytes) -> bool:
    """True when the command went (or will go) again; False passes `reply` on. Each
    re-route followed is counted (`ProxyStats.cluster_*`, for PROXY CLUSTER and
    /metrics); one refused because the tries ran out is not."""
    err = parse_cluster_error(reply)
    slot.tries += 1
    host = slot.client.host
    stats = host.stats
    stats.cluster_redirect_at = host.loop.time()
    if isinstance(err, Redirect):
        target = err.target(_host_of(slot.node))
        if target is None:
            host.refresh_cluster_map()
            followed = _later(slot)
        else:
            addr = Address(*target)
            if err.ask:
                learn_asked(slot.client, err.slot)
            else:
                learn_moved(slot.client, err.slot, addr)
            send_to(slot, host.pools[addr], asking=err.ask)
            followed = True
        if err.ask:
            stats.cluster_ask += followed
        else:
            stats.cluster_moved += followed
        return followed
    if reply.startswith((b"-LOADING", b"-READONLY")):
        host.refresh_cluster_map()
    elif not isinstance(err, TryAgain | ClusterDown):
        return False
    followed = _later(slot)
    stats.cluster_retry += followed
    return followed


def _host_of(node: str) -> str:
    host = node.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def learn_moved(client: Client, slot: int, addr: Address) -> None:
    """A MOVED: the slot's owner is patched into the current snapshot now (good until the
    next map), and the health side is asked for a new map (it coalesces the asks)."""
    host = client.host
    snap = host.topo
    host.refresh_cluster_map()
    host.moved.learn(slot, addr)  # kept through a round that read its map before this
    index = next(
        (i for i, s in enumerate(snap.shards) if s.primary is not None and s.primary.addr == addr),
        None,
    )
    if index is None or not snap.slot_shard or snap.slot_shard[slot] == index:
        return  # a master the map does not know yet: the refresh will bring it
    table = array("H", snap.slot_shard)
    table[slot] = index
    host.topo = replace(snap, slot_shard=table)


def learn_asked(client: Client, slot: int) -> None:
    """An ASK: the slot is migrating away from the master that answered. Only that master
    knows (Redis 7.0 does not tell its replicas), and they answer nil for keys already
    moved; so its reads go to that master at once (which answers ASK for them), as the
    health side pins it at its next look at CLUSTER NODES, which also ends the pin."""
    host = client.host
    snap = host.topo
    if slot in snap.pinned or not snap.slot_shard:
        return
    index = snap.slot_shard[slot]
    if index >= len(snap.shards):
        return
    master_only = replace(snap.shards[index], eligible_by_region={})
    host.topo = replace(snap, pinned={**snap.pinned, slot: master_only})


def send_to(slot: ClusterSlot, pool: NodePool, asking: bool = False) -> None:
    client = slot.client
    try:
        conn = pool.shared(client.state.id, slot.via & 3, slot.via >> 2)
    except BackendError as e:
        slot.fail(e)
        return
    slot.node, slot.hist = pool.name, pool.hist
    data = pack(slot.cmds[0])
    if asking:
        conn.send(ASKING + data, _Asking(slot))
    else:
        conn.send(data, slot)


class _Asking:
    """ASKING, then the command: ASKING's +OK is dropped, the command's reply is the slot's."""

    __slots__ = ("asked", "slot")

    def __init__(self, slot: ClusterSlot) -> None:
        self.slot = slot
        self.asked = False

    def deliver(self, reply: bytes) -> bool:
        if not self.asked:
            self.asked = True
            return False
        return self.slot.deliver(reply)

    def fail(self, err: BackendError) -> None:
        self.slot.fail(err)


def _later(slot: ClusterSlot) -> bool:
    delay = backoff(slot.tries, attempts=_MAX_TRIES)
    if delay is None:
        return False
    loop = slot.client.host.loop
    loop.call_later(delay, _reroute, slot)
    return True


def _reroute(slot: ClusterSlot) -> None:
    """Route the command again, from the snapshot now in force."""
    client = slot.client
    host = client.host
    if client.gone:
        slot.deliver(reply_for(NotExecuted("the client has gone")))
        return
    shard = shard_of(host.topo, host.table.lookup(slot.cmds[0]), slot.cmds[0])
    node = _node_for(client, shard, bool(slot.flags & READ))
    if node is None:
        slot.tries += 1
        if not _later(slot):
            slot.deliver(reply_for(NoPrimary(shard.primary_error or "no master for this slot")))
        return
    send_to(slot, host.pools[node.addr])


def _node_for(client: Client, shard: Snapshot, read: bool) -> NodeState | None:
    if read:
        return client.fwd.read_node(NO_REQUIREMENTS, shard)
    return shard.primary if not shard.primary_error else None


# ---------------------------------------------------------------------- across shards


class _Merged(Slot):
    """The client's one reply to a split or fanned-out command: the merge of its parts'
    replies, delivered once, never retried or rerouted itself (its parts were)."""

    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        if reply[:1] == b"-":
            self.errors += 1
        self.parts.append(reply)
        self.pending = 0
        self.session.slot_ready(self)
        return True


class _Part(PlaceOwner):
    """A part's slot owner: its reply (or failure) goes to the gather, not to a client."""

    __slots__ = ("gather", "i")

    def __init__(self, gather: Gather, i: int) -> None:
        self.gather, self.i = gather, i

    def put(self, reply: bytes) -> None:
        self.gather.add(self.i, reply)


def fan_out(client: Client, args: list[bytes], merge: Merge, now: float, cls: int) -> None:
    snap = client.host.topo
    targets = [(s.primary if not s.primary_error else None, [args]) for s in snap.shards]
    _gather(client, args, targets, merge, now, cls, write=cls != CLASS_READ)


def spread(client: Client, args: list[bytes], split: Split, now: float, cls: int) -> None:
    snap = client.host.topo
    read = args[0].lower() in _SPLIT_READS
    targets: Targets = []
    for part in split.parts:
        shard = shard_of_slot(snap, part.slot)
        targets.append((_node_for(client, shard, read), [part.args]))
    _gather(client, args, targets, split.merge, now, cls, write=not read, read=read)


Targets = list[tuple[NodeState | None, list[list[bytes]]]]  # each part's node and commands


def _gather(client: Client, args: list[bytes], targets: Targets, merge: Merge, now: float,
            cls: int, write: bool, read: bool = False) -> None:  # fmt: skip
    host = client.host
    st = client.state
    whole = _Merged(client, [args], cls, WRITE if write else 0, now, "", None)
    if write:
        st.writes_inflight += 1  # read-your-writes: Session.slot_ready counts it done
    client.queue.append(whole)
    addrs = [n.addr if n is not None else Address("", 0) for n, _ in targets]
    gather = Gather(whole, addrs, lambda got: merge([r for _, r in got]))
    for i, (node, cmds) in enumerate(targets):
        if node is None:
            gather.add(i, reply_for(NoPrimary("no master for this slot")))
            continue
        pool = host.pools[node.addr]
        if read:
            client.fwd.count_read(node, 1)
        part = cluster_slot(_Part(gather, i), client, cmds, cls, READ if read else 0, now, pool)
        send_to(part, pool)
