"""Plain forwarding: reads to the nearest eligible node, writes to the primary.

The attachment every session has. It owns the read routing of one client (the replica
it reads from while that stays eligible, decided once per snapshot), read-your-writes
(a client that wrote reads only from nodes known to have its writes), the fast path that
forwards a whole batch of plain reads (or writes) as it was received, and the retry of a
read whose node failed. It holds no backend connection of its own: requests go to the
shared pooled connections of the chosen node.

A failover's write hold (`proxy/server/writehold.py`) is a decision in `write` and
`batch`: while one is on, or there is no primary, the client waits as a whole instead of
sending; writes a demoted primary refused (-READONLY) wait there too (`reroute`) and are
sent to the new primary first (`send_rerouted`). Redis Cluster's slot routing chooses the
shard before `read_node` chooses its replica.
"""

from __future__ import annotations

from config.model import Address
from proxy.backend.connection import MIN_IN_FLIGHT
from proxy.errors import (
    BackendError,
    BackendTimeout,
    NoPrimary,
    NoReplica,
    NotExecuted,
    reply_for,
)
from proxy.resp.limits import keys_match
from proxy.resp.requests import pack
from proxy.server import clusterbatch, shards
from proxy.server.host import Client
from proxy.server.slot import READ, REROUTED, RETRIED, WRITE, Slot
from proxy.stats import CLASS_READ, CLASS_WRITE
from routing.commands import KIND_READ, KIND_WRITE
from routing.select import NO_REQUIREMENTS, ReadRequirements, select_read
from routing.topology import NodeState, Role, Snapshot

_PRIMARY = Role.PRIMARY  # a global, not an enum member read per read (KIND_READ's why)

# Reads forwarded as one slot at most this many (and at most the connection's window).
BATCH_READS_MAX = 256


class Forwarding:
    __slots__ = (
        "_read_addr",
        "_read_choice",
        "_read_ranking",
        "_read_snap",
        "_shard_reads",
        "_shard_reads_key",
        "client",
        "host",
    )

    def __init__(self, client: Client) -> None:
        self.client = client
        self.host = client.host
        # The replica this client reads from, kept while it stays eligible.
        self._read_addr: Address | None = None
        self._read_snap: Snapshot | None = None  # the snapshot `_read_choice` was made for
        self._read_ranking: tuple[str, ...] = ()  # ... and the client's ranking then
        self._read_choice: NodeState | None = None
        # In a cluster, the same per shard: {id(shard): (shard, choice)}, good for the
        # map (`Snapshot.shards`) and ranking of `_shard_reads_key`.
        self._shard_reads: dict[int, tuple[Snapshot, NodeState | None]] = {}
        self._shard_reads_key: tuple[object, tuple[str, ...]] | None = None

    # ------------------------------------------------------------------ fast path

    def batch(self, cmds: list[list[bytes]], raw: bytes, now: float) -> bool:
        """A batch of plain reads (or plain writes) forwarded as received, as one slot.

        False when the batch is not all of one plain kind or has nowhere to go: the
        session then dispatches it command by command (which answers each with its
        error, in order)."""
        host = self.host
        lookup = host.table.lookup
        first = lookup(cmds[0])
        kind = first.kind
        if kind > KIND_WRITE:
            return False
        if host.topo.shards:  # grouped per node of each command's slot
            return clusterbatch.batch(self.client, cmds, raw, first, now)
        perms = self.client.state.perms
        n = len(cmds)
        if n > 1 and host.table.repeats(cmds, first):  # (no call for a lone command)
            # One command n times (not a container's: its subcommands may differ): one
            # entry stands for all, and a user's key rule is one call over the batch.
            if perms is not None and not perms.admits_run(first, cmds, keys_match):
                return False
        elif perms is not None:
            # All of one kind, each run as it is: a denied (or granted) one sends the
            # batch one by one, so each gets its own answer, in order.
            if not perms.admits_all(cmds, lookup, kind):
                return False
        elif n > 1:  # (a lone command without users: nothing to see)
            for args in cmds[1:]:
                if lookup(args).kind != kind:
                    return False
        if kind == KIND_READ:
            node = self.read_node(NO_REQUIREMENTS)
            if node is None:
                return False
            flags, cls = READ, CLASS_READ
        else:
            node = host.topo.primary
            if node is None or host.topo.primary_error or host.hold.active:
                return False  # one by one: the first write waits (or gets its error)
            st = self.client.state
            last = st.write_addr
            if st.writes_inflight and last is not node.addr and last != node.addr:
                return False  # one by one: they wait behind the old primary's (`write`)
            st.write_addr = node.addr
            flags, cls = WRITE, CLASS_WRITE
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        st = self.client.state
        try:
            conn = pool.shared(st.id, st.proto, st.db)
        except BackendError:
            return False
        if n > MIN_IN_FLIGHT and kind == KIND_READ and n > min(conn.window, BATCH_READS_MAX):
            # One slot is one waiter: the connection's reply window would not bound
            # it, and Redis builds every reply of what it read before writing any (2,000
            # GETs of 1 MB: 2 GB, seconds on a loaded node, then a backend timeout).
            # One by one, the intake's turn budget and that window apply. (The window is
            # never below MIN_IN_FLIGHT: a short batch is not asked it.)
            return False
        if kind == KIND_READ:
            self.count_read(node, n)
        else:
            st.writes_inflight += 1
        slot = Slot(self.client, cmds, cls, flags, now, pool.name, pool.hist)
        slot.via = st.db << 2 | st.proto  # a retry goes as it was sent (SELECT may follow)
        self.client.queue.append(slot)
        host.stats.commands[cls] += n
        conn.send(raw, slot)
        return True

    # ------------------------------------------------------------------ one command

    def read(self, args: list[bytes], now: float, flags: int) -> None:
        self.host.stats.commands[CLASS_READ] += 1
        snap = self.host.topo
        if snap.shards:
            return self._read_shard(args, now, flags)
        node = self.read_node(NO_REQUIREMENTS)
        if node is None:
            self.client.reply_now(reply_for(self.no_read_node()), CLASS_READ, now)
            return
        self.count_read(node, 1)
        self._send(node, args, CLASS_READ, READ | flags, now)

    def _read_shard(self, args: list[bytes], now: float, flags: int) -> None:
        shard = shards.route(self.client, args, now, CLASS_READ)
        if shard is None:
            return  # answered across shards, or refused
        node = self.read_node(NO_REQUIREMENTS, shard)
        if node is None:
            self.client.reply_now(reply_for(self.no_read_node(shard)), CLASS_READ, now)
            return
        self.count_read(node, 1)
        self._send_shard(node, args, CLASS_READ, READ | flags, now)

    def _write_shard(self, args: list[bytes], now: float, cls: int, flags: int) -> None:
        """A cluster's write: its slot's master. No write hold and no wait behind another
        primary's writes: each shard's master is the one primary of its slots, and a
        master that changes answers MOVED, which the slot follows (`shards`)."""
        self.host.stats.commands[cls] += 1
        shard = shards.route(self.client, args, now, cls)
        if shard is None:
            return
        node = shard.primary
        st = self.client.state
        st.writes_inflight += 1
        if node is None or shard.primary_error:
            shards.send_later(self.client, args, cls, WRITE | flags, now)
            return
        st.write_addr = node.addr
        self._send_shard(node, args, cls, WRITE | flags, now)

    def _send_shard(self, node: NodeState, args: list[bytes], cls: int, flags: int,
                    now: float) -> None:  # fmt: skip
        pool = self.host.pool_of.get(id(node)) or self.host.pools[node.addr]
        slot = shards.cluster_slot(self.client, self.client, [args], cls, flags, now, pool)
        self.client.queue.append(slot)
        shards.send_to(slot, pool)

    def write(self, args: list[bytes], now: float, cls: int, flags: int = 0) -> None:
        host = self.host
        snap = host.topo
        if snap.shards:
            return self._write_shard(args, now, cls, flags)
        node = snap.primary
        if host.hold.active or node is None or snap.primary_error:
            err = self.client.hold(args)
            if err is None:
                return  # dispatched again when the hold ends
            host.stats.commands[cls] += 1
            self.client.reply_now(err, cls, now)
            return
        st = self.client.state
        last = st.write_addr
        if st.writes_inflight and last is not node.addr and last != node.addr:
            # (Identity first: the snapshot's addresses are the config's objects; in
            # workers they are unpickled anew with each snapshot, hence the == after.)
            # Its earlier writes are in flight on the old primary (another proxy or
            # Sentinel switched it): one may yet come back -READONLY and be re-sent, and
            # this one must not overtake it.
            self.client.wait_writes(args)
            return
        st.write_addr = node.addr
        host.stats.commands[cls] += 1
        # A slot flagged WRITE always decrements (Session.slot_ready).
        st.writes_inflight += 1
        self._send(node, args, cls, WRITE | flags, now)

    def _send(self, node: NodeState, args: list[bytes], cls: int, flags: int, now: float) -> None:
        host = self.host
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        slot = Slot(self.client, [args], cls, flags, now, pool.name, pool.hist)
        self.client.queue.append(slot)
        st = self.client.state
        slot.via = st.db << 2 | st.proto
        try:
            conn = pool.shared(st.id, st.proto, st.db)
        except BackendError as e:
            slot.fail(e)
            return
        conn.send(pack(args), slot)

    # ------------------------------------------------------------------ read routing

    def read_node(self, req: ReadRequirements, snap: Snapshot | None = None) -> NodeState | None:
        """The node for this client's read: of the deployment, or of one cluster shard."""
        host = self.host
        if snap is None:
            snap = host.topo
        st = self.client.state
        if st.ryw and (st.writes_inflight or st.last_write_done >= 0):
            ryw = self._ryw_requirements(req, snap)
            if ryw is None:
                return snap.primary
            req = ryw
        if st.max_lag_ms is not None and req.max_lag_ms is None:
            req = ReadRequirements(st.max_lag_ms, req.min_offset, req.exclude)
        plain = req is NO_REQUIREMENTS
        ranking = st.ranking
        if plain and snap is self._read_snap and ranking is self._read_ranking:
            return self._read_choice  # same snapshot, same answer: decided once per round
        if plain and host.topo.shards and snap is not host.topo:
            return self._shard_read_node(snap, ranking)
        node = select_read(
            ranking, snap, host.pools.outstanding, req, host.fallback_primary, self._read_addr
        )
        if plain:
            self._read_snap, self._read_ranking, self._read_choice = snap, ranking, node
        if node is not None and node is not snap.primary:
            self._read_addr = node.addr
        return node

    def _shard_read_node(self, shard: Snapshot, ranking: tuple[str, ...]) -> NodeState | None:
        """`read_node` for a cluster's shard: decided once per shard and map, as the
        standalone one is once per snapshot (one entry for all would miss at every
        change of shard, i.e. at almost every command of a pipeline over the keyspace)."""
        host = self.host
        key = (host.topo.shards, ranking)
        cache = self._shard_reads
        held = self._shard_reads_key
        if held is None or held[0] is not key[0] or held[1] is not ranking or len(cache) > 64:
            cache.clear()  # (a new map, a new ranking; or pinned shards piling up)
            self._shard_reads_key = key
        got = cache.get(id(shard))
        if got is not None and got[0] is shard:
            return got[1]
        node = select_read(
            ranking, shard, host.pools.outstanding, NO_REQUIREMENTS, host.fallback_primary,
            self._read_addr,
        )  # fmt: skip
        cache[id(shard)] = (shard, node)
        if node is not None and node is not shard.primary:
            self._read_addr = node.addr
        return node

    def no_read_node(self, snap: Snapshot | None = None) -> NoReplica:
        """Why no node may serve this client's read."""
        snap = snap or self.host.topo
        if self.client.state.wrote and (snap.primary is None or snap.primary_error):
            why = snap.primary_error or "no primary reachable"
            return NoReplica(f"{why}; no replica is known to have this connection's writes yet")
        return NoReplica(snap.primary_error or "no replica or primary available")

    def _ryw_requirements(self, req: ReadRequirements, snap: Snapshot) -> ReadRequirements | None:
        """Read-your-writes: None means only the primary has this client's last write.
        (In a cluster, `snap` is the read's shard: a replica is eligible once it has the
        shard's offset of after the client's last write, wherever that write went.)"""
        st = self.client.state
        if st.writes_inflight:
            return None
        need = snap.offset_after(st.last_write_done)
        if need is None:
            return None
        return ReadRequirements(req.max_lag_ms, need, req.exclude)

    def count_read(self, node: NodeState, n: int) -> None:
        stats = self.host.stats
        st = self.client.state
        key = (st.region, node.region)
        stats.reads_by_region[key] = stats.reads_by_region.get(key, 0) + n
        if node.role is _PRIMARY:  # (the primary of a snapshot: of a shard too)
            stats.fallbacks_primary += n
            if st.wrote:
                stats.ryw_redirects += n

    # ------------------------------------------------------------------ failures

    def _snap_of(self, slot: Slot) -> Snapshot:
        """The snapshot a slot's node was chosen from: the deployment's, or its shard's."""
        snap = self.host.topo
        if not snap.shards:
            return snap
        args = slot.cmds[0]
        return shards.shard_of(snap, self.host.table.lookup(args), args)

    def retry_loading(self, slot: Slot) -> bool:
        """A single read answered -LOADING: a replica resyncing from its primary, or a
        primary loading its AOF after a restart, until the next probe says so. Redis
        would not have answered it; another node can, so it goes there once (batches
        pass it on: their other replies are already on their way from that node)."""
        host = self.host
        snap = self._snap_of(slot)
        addr = next((n.addr for n in snap.nodes if str(n.addr) == slot.node), None)
        node = self.read_node(ReadRequirements(exclude=addr), snap)
        if node is None or node.addr == addr:
            return False
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        st = self.client.state
        try:
            conn = pool.shared(st.id, slot.via & 3, slot.via >> 2)
        except BackendError:
            return False
        host.stats.retries += 1
        slot.flags |= RETRIED
        slot.node, slot.hist = pool.name, pool.hist
        conn.send(pack(slot.cmds[0]), slot)
        return True

    def reroute(self, slot: Slot) -> bool:
        """The tail of a write slot came back -READONLY or -LOADING (`Rerouting`): it
        waits in the write hold for the new primary (or the same one, loaded). Once per
        slot: a second refusal is passed on."""
        if slot.flags & REROUTED:
            return False
        slot.flags |= REROUTED
        self.host.stats.retries += slot.pending
        return self.host.hold.resend(self, slot, slot.node, self.host.topo)

    def send_rerouted(self, slot: Slot) -> None:
        host = self.host
        n = slot.pending
        node = host.topo.primary
        try:
            if self.client.gone:
                raise NotExecuted("the client has gone")  # unsent, as any gone client's
            if node is None:
                raise NoPrimary(host.topo.primary_error)
            pool = host.pools[node.addr]
            st = self.client.state
            conn = pool.shared(st.id, slot.via & 3, slot.via >> 2)
        except (BackendError, NoPrimary, NotExecuted) as e:
            reply = reply_for(e)
            for _ in range(n):
                slot.deliver(reply)
            return
        slot.node, slot.hist = pool.name, pool.hist
        st.write_addr = node.addr  # later writes follow these on the same connection
        conn.send(b"".join(pack(args) for args in slot.cmds[len(slot.cmds) - n :]), slot)

    def retry(self, slot: Slot, err: BackendError) -> None:
        """A backend failed these requests: retry reads once elsewhere, else errors.

        Replies already received stay; only the commands still waiting are retried (or
        answered with the error), so the client sees one reply per command, in order."""
        host = self.host
        stats = host.stats
        waiting = slot.cmds[len(slot.cmds) - slot.pending :]
        if slot.flags & READ and not slot.flags & RETRIED:
            node = self.read_node(ReadRequirements(exclude=err.addr), self._snap_of(slot))
            if node is not None and node.addr != err.addr:
                stats.retries += len(waiting)
                slot.flags |= RETRIED
                pool = host.pools[node.addr]
                slot.node = pool.name
                slot.hist = stats.node_hist(pool.name)
                st = self.client.state
                try:
                    conn = pool.shared(st.id, slot.via & 3, slot.via >> 2)
                    conn.send(b"".join(pack(args) for args in waiting), slot)
                    return
                except BackendError as e:
                    err = e
        if isinstance(err, BackendTimeout):
            stats.timeouts += len(waiting)
        else:
            stats.unavailable += len(waiting)
        reply = reply_for(err)
        for _ in waiting:
            slot.deliver(reply)
