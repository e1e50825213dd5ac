"""A client's pub/sub connection: its own backend connection, pushes passed through.

SUBSCRIBE-family commands leave on a dedicated connection to the nearest eligible
replica (Redis replicates PUBLISH). Everything that connection sends back (subscribe
confirmations and messages, RESP2 arrays or RESP3 pushes) is forwarded as it comes, but
never ahead of replies the client is still owed: those go first (`backlog`).

Keyspace notifications (`__keyspace@<db>__:*`, `__keyevent@<db>__:*`) are made where a
key expires or is evicted: on the primary, whose `notify-keyspace-events` they follow.
Those channels and patterns go to a second connection, to the primary (`extra`); while
there are two, each subscribe confirmation's count is rewritten to the sum of both
connections' counts, so the client sees one connection's numbers. Confirmations of one
command split over the two may arrive in another order than the channels were named.

A subscriber that stops reading is disconnected once more than the hard limit of
`[proxy] client_output_buffer_limit_pubsub` (Redis' default, 32mb) waits for it, instead
of being buffered without bound.
"""

from __future__ import annotations

import logging

from config.model import Address
from proxy.backend.connection import BackendConnection
from proxy.errors import BackendError, reply_for
from proxy.logs import log_event
from proxy.resp.requests import pack
from proxy.server.channels import (
    CONFIRMATION_HEADS,
    Channels,
    confirmed,
    keyspace_only,
    recount,
    split,
)
from proxy.server.host import Client, Router
from proxy.server.local import unsubscribe_reply
from proxy.server.shards import shard_of_slot
from proxy.stats import CLASS_OTHER
from routing.select import NO_REQUIREMENTS
from routing.slots import key_slot
from routing.split import CROSSSLOT_ERROR
from routing.topology import Snapshot

log = logging.getLogger("georedis.session")

# The limit is checked every this many pushed bytes, not per message.
CHECK_EVERY_BYTES = 1 << 20


def start(client: Client, router: Router, args: list[bytes], now: float) -> Subscription | None:
    """The first SUBSCRIBE-family command: a connection of its own to the nearest
    eligible node. An UNSUBSCRIBE before any subscription is answered here, as Redis
    would; None when no subscription was made."""
    name = args[0].lower()
    if name.startswith(b"un") or name.startswith(b"pun") or name.startswith(b"sun"):
        client.reply_now(unsubscribe_reply(args, client.state.proto), CLASS_OTHER, now)
        return None
    shard = _shard_of(client.host.topo, args)
    node = router.read_node(NO_REQUIREMENTS, shard)
    primary = client.host.topo.primary
    if primary is not None and keyspace_only(args):
        node = primary  # nothing to read from a replica: no second connection
    if node is None:
        client.reply_now(reply_for(router.no_read_node()), CLASS_OTHER, now)
        return None
    st = client.state
    try:
        conn = client.host.pools[node.addr].dedicated(st.proto, st.db)
    except BackendError as e:
        client.reply_now(reply_for(e), CLASS_OTHER, now)
        return None
    sub = Subscription(client, conn, on_primary=primary is not None and node is primary)
    snap = client.host.topo
    # (A plain subscription's node is shard 0's: its SSUBSCRIBEs may name shard 0's.)
    sub.shard_master = _master_of(shard if shard is not None or not snap.shards else snap)
    sub.send(args)
    return sub


def _shard_of(snap: Snapshot, args: list[bytes]) -> Snapshot | None:
    """Cluster mode: SSUBSCRIBE's shard, that of its first channel's slot (Redis itself
    answers CROSSSLOT for channels of several slots). Plain channels: any node will do,
    the cluster bus carries PUBLISH everywhere."""
    if not snap.shards or len(args) < 2 or args[0].lower() != b"ssubscribe":
        return None
    return shard_of_slot(snap, key_slot(args[1]))


def _master_of(shard: Snapshot | None) -> Address | None:
    return shard.primary.addr if shard is not None and shard.primary is not None else None


class Subscription:
    __slots__ = ("backlog", "channels", "conn", "counted", "counts", "extra", "on_primary",
                 "pushed", "session", "shard_master")  # fmt: skip

    def __init__(self, session: Client, conn: BackendConnection, on_primary: bool) -> None:
        self.session = session
        self.conn = conn
        self.on_primary = on_primary  # `conn` is the primary's: no `extra` needed
        self.extra: BackendConnection | None = None  # to the primary, for keyspace events
        self.channels = Channels()
        self.counts = [0, 0]  # the last confirmation count from `conn` and `extra`
        # (word, name) confirmed by the replica: what PUBLISH's count includes.
        self.counted: set[tuple[bytes, bytes]] = set()
        self.backlog: list[bytes] = []  # pushes waiting behind replies still owed
        self.pushed = 0  # bytes pushed since the last limit check
        # Cluster mode: the master of the shard whose channels SSUBSCRIBE may name here.
        self.shard_master: Address | None = None
        conn.push_sink = self.on_push
        self._watch(conn)

    def _watch(self, conn: BackendConnection) -> None:
        pool_closed = conn.on_close  # the pool's bookkeeping runs too (no leak)

        def on_close(c: BackendConnection, err: BackendError) -> None:
            if pool_closed is not None:
                pool_closed(c, err)
            self.lost(err)

        conn.on_close = on_close

    def send(self, args: list[bytes]) -> None:
        """A command whose answers come back as pushes (no reply slot)."""
        if self.shard_master is not None and self._elsewhere(args):
            s = self.session
            s.reply_now(CROSSSLOT_ERROR, CLASS_OTHER, s.host.loop.time())
            return
        extra = None if self.on_primary else self._primary(args)
        for to_extra, part in split(args, self.channels, extra is not None):
            (extra if to_extra and extra is not None else self.conn).send_raw(pack(part))
        _, _, removed = self.channels.apply(args)
        if removed:
            self._uncount(args[0].lower(), removed)
        st, ch = self.session.state, self.channels
        st.sub, st.psub, st.ssub = len(ch.channels), len(ch.patterns), len(ch.shards)

    def _elsewhere(self, args: list[bytes]) -> bool:
        """A later SSUBSCRIBE whose channel another shard serves: this connection's node
        would answer MOVED, so the client gets CROSSSLOT (the README says so)."""
        shard = _shard_of(self.session.host.topo, args)
        return shard is not None and _master_of(shard) != self.shard_master

    def _primary(self, args: list[bytes]) -> BackendConnection | None:
        """The connection to the primary for keyspace channels, opened when a command
        first names one (None: not needed, or no primary now: they then go to `conn`)."""
        if self.extra is not None:
            return self.extra
        if not self.channels.wants_primary(args):
            return None
        s = self.session
        primary = s.host.topo.primary
        if primary is None:
            return None
        try:
            conn = s.host.pools[primary.addr].dedicated(s.state.proto, s.state.db)
        except BackendError:
            return None
        conn.push_sink = self.on_extra_push
        self._watch(conn)
        self.extra = conn
        return conn

    def on_extra_push(self, reply: bytes) -> None:
        self.on_push(reply, 1)

    def on_push(self, reply: bytes, source: int = 0) -> None:
        if reply[4:6] in CONFIRMATION_HEADS:  # not a message: cheap to tell
            if source == 0 and not self.on_primary:  # (the primary counts its own)
                self._count(reply)
            reply = recount(reply, self.counts, source, self.extra is not None)
        s = self.session
        self.pushed += len(reply)
        if self.pushed > CHECK_EVERY_BYTES:
            self.pushed = 0
            if self.over_limit():
                return
        if s.queue:
            self.backlog.append(reply)
            return
        s.out.append(reply)
        s.mark_dirty()

    def release_backlog(self, out: list[bytes]) -> None:
        """The client's queue emptied: the pushes that waited go out now, in order."""
        if self.backlog:
            out.extend(self.backlog)
            self.backlog.clear()

    def over_limit(self) -> bool:
        s = self.session
        pending = sum(len(r) for r in self.backlog)
        if s.transport is not None:
            pending += s.transport.get_write_buffer_size()
        hard = s.host.config.proxy.client_output_buffer_limit_pubsub.hard
        if not hard or pending <= hard:
            return False
        log_event(log, "pubsub_client_over_limit", peer=s.state.peer, buffered=pending)
        self.backlog.clear()
        s.close_now(abort=True)
        return True

    def lost(self, err: BackendError) -> None:
        """Subscriptions died with the backend connection; like a Redis restart, the
        client must reconnect and subscribe again."""
        self._forget()
        self.session.subscription_lost(self, reply_for(err))

    def _count(self, reply: bytes) -> None:
        """A subscribe confirmation from the replica: PUBLISH now reaches that name
        (before it, it would not: not counted)."""
        got = confirmed(reply)
        if got is not None and got not in self.counted:
            self.counted.add(got)
            self.session.host.listeners.add(*got)

    def _uncount(self, command: bytes, names: set[bytes]) -> None:
        word = command[2:] if command.startswith(b"un") else command[:1] + command[3:]
        gone = {(word, n) for n in names} & self.counted
        self.counted -= gone
        self.session.host.listeners.remove(word, [n for _, n in gone])

    def _forget(self) -> None:
        listeners = self.session.host.listeners
        for word, name in self.counted:
            listeners.remove(word, (name,))
        self.counted = set()  # (forgotten once, whichever comes first)

    def close(self) -> None:
        self._forget()
        self.backlog.clear()
        self.conn.close()
        if self.extra is not None:
            self.extra.close()
