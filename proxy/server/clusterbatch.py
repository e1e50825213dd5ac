"""Cluster mode's batch path: a pipeline's plain reads (or writes) sent per node in one write.

`Forwarding.batch` comes here when the snapshot has shards. A batch of one kind (all
plain single-slot reads, or all plain single-slot writes) is grouped by the node that
serves each command's slot (its shard's replica nearest to the client, or its master),
and each group goes as one write on that node's shared connection, with one waiter
(`_Run`) for its replies. The client's queue gets one slot for the whole batch
(`_Whole`), whose replies are put back in the client's order as the runs deliver them.

The profile this answers (benchmarks/README.md, "Cluster mode profile"): one by one,
each command paid a dispatch, a second and third table lookup, a `ClusterSlot`, a send
and a reply slot to pop; the standalone batch pays those once per batch. A batch of one
single-key command n times (a pipeline of GETs) is looked up once, its key rule checked
in one call and its slots hashed in one C call (`_run_targets`); any other batch looks at
each command (`_targets`).

A reply of a run that is a cluster redirection (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
LOADING, READONLY: see `shards`) did not run its command: that one command is taken out
of the run and followed alone, in a `ClusterSlot` of its own, exactly as one sent alone
is; its final reply fills its place. The client never sees MOVED or ASK.

What is not batched goes one by one, as before: a mix of kinds, keyless or cross-slot
commands, fanned-out ones, a slot whose shard has no master (or no readable node) now,
a connection that cannot be had, more than `BATCH_READS_MAX` reads.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from proxy.backend.pool import NodePool
from proxy.errors import BackendError, BackendTimeout, reply_for
from proxy.resp.limits import keys_match, pack_at
from proxy.server import shards
from proxy.server.host import Client
from proxy.server.slot import READ, RETRIED, WRITE, PlaceOwner, Slot
from proxy.stats import CLASS_READ, CLASS_WRITE, ProxyStats
from routing.commands import KIND_READ, CommandInfo
from routing.fanout import FANOUT
from routing.keyspecs import one_key_index
from routing.select import NO_REQUIREMENTS, ReadRequirements
from routing.slots import key_slots
from routing.split import NoSlot, slot_of_command
from routing.topology import NodeState, Snapshot

# Reads forwarded as one batch at most this many: the whole batch's replies are kept
# until the last arrives (it does not stream out as a standalone batch does).
BATCH_READS_MAX = 256


def group(keys: Sequence[Hashable]) -> list[tuple[Hashable, list[int]]]:
    """The positions of each distinct key, keys in the order first seen, positions in
    order: the runs of a batch (one per node) and which commands each carries."""
    runs: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        got = runs.get(key)
        if got is None:
            runs[key] = [i]
        else:
            got.append(i)
    return list(runs.items())


def batch(
    client: Client, cmds: list[list[bytes]], raw: bytes, first: CommandInfo, now: float
) -> bool:
    """Send a batch of plain reads (or writes) per node; False: nothing was sent, the
    session dispatches them one by one. `first`: the first command's, looked up."""
    host = client.host
    kind = first.kind
    read = kind == KIND_READ
    n = len(cmds)
    if n == 1:
        # One by one (`Forwarding.read`/`write`): a lone command through here read nil
        # more often from a source's replica during a reshard (the probe round after
        # SETSLOT MIGRATING, README "Redis Cluster"), in 2 runs of 6 of the reshard test.
        return False
    if read and n > BATCH_READS_MAX:
        return False
    targets = _run_targets(client, cmds, first) or _targets(client, cmds, kind)
    if targets is None:
        return False
    nodes = _nodes(client, targets, read)
    if nodes is None:
        return False
    st = client.state
    pools: list[NodePool] = []
    conns = []
    runs = group([id(node) for node in nodes])
    for _, idx in runs:
        node = nodes[idx[0]]
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        try:
            conn = pool.shared(st.id, st.proto, st.db)
        except BackendError:
            return False
        if read and len(idx) > conn.window:
            return False  # one by one, under the connection's reply window
        pools.append(pool)
        conns.append(conn)
    cls = CLASS_READ if read else CLASS_WRITE
    flags = READ if read else WRITE
    stats = host.stats
    stats.commands[cls] += n
    fwd = client.fwd
    for _, idx in runs:
        node = nodes[idx[0]]
        if read:
            fwd.count_read(node, len(idx))
        else:
            st.write_addr = node.addr
    if not read:
        st.writes_inflight += 1  # one per slot in the queue: Session.slot_ready counts it done
    via = st.db << 2 | st.proto
    # `node` names where it went, for the slow log (each run counts its node's latency).
    whole = _Whole(client, cmds, cls, flags, now, ",".join(p.name for p in pools), None)
    whole.parts = [b""] * n
    whole.stats = stats
    client.queue.append(whole)
    for (_, idx), pool, conn in zip(runs, pools, conns, strict=True):
        run = _Run(whole, idx, targets[idx[0]], pool, flags, via, now)
        # One node for the whole batch: its bytes go as the client sent them.
        conn.send(raw if len(runs) == 1 else pack_at(cmds, idx), run)
    return True


def _targets(client: Client, cmds: list[list[bytes]], kind: int) -> list[Snapshot] | None:
    """Each command's shard, command by command; None: not all of `kind`, plain and of
    one slot each (one by one: each gets its own answer, in order)."""
    snap = client.host.topo
    lookup = client.host.table.lookup
    perms = client.state.perms
    targets: list[Snapshot] = []
    for args in cmds:
        info = lookup(args)
        if info.kind != kind or info.name in FANOUT:
            return None
        if perms is not None and perms.admit(info, args) is not info:
            return None
        slot = slot_of_command(info, args)
        if slot is None or isinstance(slot, NoSlot):
            return None  # keyless, cross-slot or unknown keys: `shards.route` decides
        targets.append(shards.shard_of_slot(snap, slot))
    return targets


def _run_targets(
    client: Client, cmds: list[list[bytes]], first: CommandInfo
) -> list[Snapshot] | None:
    """`_targets` for one single-key command n times (a pipeline of GETs): one lookup,
    the user's key rule over all of them in one call (`admits_run`), every slot in one
    C call (`key_slots`). None where that shape does not hold: `_targets` decides."""
    if first.name in FANOUT or not client.host.table.repeats(cmds, first):
        return None
    pos = one_key_index(first.key_specs) if first.has_keys else None
    if pos is None:
        return None
    perms = client.state.perms
    if perms is not None and not perms.admits_run(first, cmds, keys_match):
        return None
    slots = key_slots(cmds, pos)
    if slots is None:
        return None
    snap = client.host.topo
    return [shards.shard_of_slot(snap, slot) for slot in slots]


def _nodes(client: Client, targets: list[Snapshot], read: bool) -> list[NodeState] | None:
    """Each command's node (its shard's, chosen once per shard); None when a shard has
    none now (one by one: each gets what it gets alone, a wait or an error)."""
    chosen: dict[int, NodeState] = {}
    out: list[NodeState] = []
    read_node = client.fwd.read_node
    for shard in targets:
        node = chosen.get(id(shard))
        if node is None:
            if read:
                node = read_node(NO_REQUIREMENTS, shard)
            elif not shard.primary_error:
                node = shard.primary
            if node is None:
                return None
            chosen[id(shard)] = node
        out.append(node)
    return out


class _Whole(Slot):
    """The client's one slot for a batch sent in runs: a place per command, filled as
    its reply arrives from whichever node; ready when the last one is filled. It waits
    on no connection itself (its runs do), so it is never retried or rerouted; errors
    and latency are counted per run, for each run's node (`hist` is None here)."""

    __slots__ = ("stats",)
    stats: ProxyStats

    def fill(self, pos: int, reply: bytes) -> None:
        parts = self.parts
        if pos >= len(parts):
            return  # the client has gone: its replies were discarded
        if reply[0] == 45:  # b"-"
            self.stats.errors[self.cls] += 1
        parts[pos] = reply
        self.pending -= 1
        if not self.pending:
            self.session.slot_ready(self)


class _Run:
    """The waiter of one node's part of a batch: its replies go to their places."""

    __slots__ = ("flags", "i", "pool", "pos", "session", "shard", "t0", "via", "whole")

    def __init__(self, whole: _Whole, pos: list[int], shard: Snapshot, pool: NodePool,
                 flags: int, via: int, t0: float) -> None:  # fmt: skip
        self.whole = whole
        # The client: a backend connection drops what it has not written for a client
        # that has gone (it looks for `session.gone`).
        self.session: Client = whole.session  # type: ignore[assignment]
        self.pos = pos  # the batch's positions this run carries, in order
        self.i = 0  # replies received
        self.shard = shard
        self.pool = pool
        self.flags = flags
        self.via = via
        self.t0 = t0

    def deliver(self, reply: bytes) -> bool:
        i = self.i
        self.i = i + 1
        pos = self.pos[i]
        if reply[0] == 45 and reply[1:4] in shards.CLUSTER_CODES and not self.session.closing:
            self._follow(pos, reply)
        elif reply in shards.NILS and self.flags & READ and not self.flags & RETRIED:
            self._reread(pos, reply)
        else:
            self.whole.fill(pos, reply)
        if self.i < len(self.pos):
            return False
        hist = self.pool.hist
        if hist is not None:
            t = self.session.host.loop.time()
            hist.classes[self.whole.cls].observe_n(t - self.t0, len(self.pos))
        return True

    def _follow(self, pos: int, reply: bytes) -> None:
        """One command's redirection, followed by a cluster slot of its own."""
        whole = self.whole
        args = whole.cmds[pos]
        slot = shards.cluster_slot(
            _Place(whole, pos), self.session, [args], whole.cls, self.flags, self.t0, self.pool
        )
        slot.via = self.via  # as it was sent (a SELECT since must not change it)
        if not shards.follow(slot, reply):
            whole.fill(pos, reply)

    def _reread(self, pos: int, reply: bytes) -> None:
        """A replica's nil while slots move: read again from the master (`shards.NILS`)."""
        whole = self.whole
        slot = shards.cluster_slot(
            _Place(whole, pos), self.session, [whole.cmds[pos]], whole.cls, self.flags,
            self.t0, self.pool,
        )  # fmt: skip
        slot.via = self.via
        if not shards.reread(slot):
            whole.fill(pos, reply)

    def fail(self, err: BackendError) -> None:
        """The node failed: the reads still due are retried once on another node of the
        shard (as `Forwarding.retry` does); the rest get the error, each in its place."""
        waiting = self.pos[self.i :]
        client = self.session
        stats = client.host.stats
        if self.flags & READ and not self.flags & RETRIED and not client.closing:
            excluded = ReadRequirements(exclude=err.addr)
            node = client.fwd.read_node(excluded, self.shard)
            if node is not None and node.addr != err.addr:
                pool = client.host.pools[node.addr]
                try:
                    conn = pool.shared(client.state.id, self.via & 3, self.via >> 2)
                except BackendError as e:
                    err = e
                else:
                    stats.retries += len(waiting)
                    run = _Run(self.whole, waiting, self.shard, pool,
                               self.flags | RETRIED, self.via, self.t0)  # fmt: skip
                    conn.send(pack_at(self.whole.cmds, waiting), run)
                    return
        if isinstance(err, BackendTimeout):
            stats.timeouts += len(waiting)
        else:
            stats.unavailable += len(waiting)
        reply = reply_for(err)
        for pos in waiting:
            self.whole.fill(pos, reply)


class _Place(PlaceOwner):
    """The owner of a command followed out of a run: its reply fills its place."""

    __slots__ = ("pos", "whole")

    def __init__(self, whole: _Whole, pos: int) -> None:
        self.whole, self.pos = whole, pos

    def put(self, reply: bytes) -> None:
        self.whole.fill(self.pos, reply)
