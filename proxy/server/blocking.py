"""Blocking commands (BLPOP, XREAD BLOCK, WAIT, ...) on a connection of their own.

A blocking command holds its backend connection until it is answered, which may take
the client's whole timeout: on a shared connection it would stall every other client's
replies queued behind it. So it goes on a dedicated connection with no backend deadline
(the wait is the client's own), and the client's next commands wait in the session
(`Session._held`) until the reply comes (`Session.slot_ready` sees `UNPIN`), as they
would on Redis, where a blocked connection reads nothing else.

WAIT and WAITAOF count replicas that acknowledged *this connection's* writes, but the
client wrote on shared connections. So the dedicated connection first makes a write of
its own, after all of the client's earlier commands are answered: replicas that have it
also have everything the client wrote (`deferred`).

A blocking write that Redis unblocks because its node was demoted (`-UNBLOCKED ...
instance state changed`, a failover) did not execute: it waits in the write hold and
blocks again on the new primary (`reissue`, `send_rerouted`), so the client is woken by
the push that comes after the failover, as if nothing had happened.

CLIENT UNBLOCK of a georedis client names its georedis id; Redis needs the id of the
dedicated connection. So each blocking command goes after a `CLIENT ID` in the same write
(no extra round trip), whose answer the attachment keeps (`backend_id`).

The attachment exists only while the command is in flight (`Session.blocked`).
"""

from __future__ import annotations

from proxy.backend.connection import DISCARD, BackendConnection
from proxy.errors import BackendError, NoPrimary, NotExecuted, reply_for
from proxy.resp.requests import pack
from proxy.server import shards
from proxy.server.host import Client, Router
from proxy.server.slot import NO_DEADLINE, REROUTED, UNPIN, WRITE, Slot
from proxy.stats import CLASS_READ, CLASS_WRITE
from routing.commands import MAYBE_BLOCKING, CommandInfo, is_blocking_call
from routing.select import NO_REQUIREMENTS


def start(
    client: Client, router: Router, args: list[bytes], info: CommandInfo, now: float
) -> Blocking | None:
    """Send a blocking command; the attachment while it blocks, None if it does not."""
    readonly = "readonly" in info.flags
    if info.name in MAYBE_BLOCKING and not is_blocking_call(info, args):
        if readonly:
            router.read(args, now, 0)
        else:
            router.write(args, now, CLASS_WRITE)
        return None
    host = client.host
    cls = CLASS_READ if readonly else CLASS_WRITE
    snap = host.topo
    if snap.shards:  # a cluster: the shard of its keys (Redis answers CROSSSLOT for two)
        snap = shards.shard_of(snap, info, args)
    if not readonly and (host.hold.active or snap.primary is None or snap.primary_error):
        refused = client.hold(args)  # a blocking write waits like any write
        if refused is not None:
            host.stats.commands[cls] += 1
            client.reply_now(refused, cls, now)
        return None
    host.stats.commands[cls] += 1
    node = router.read_node(NO_REQUIREMENTS, snap) if readonly else snap.primary
    if node is None or (not readonly and snap.primary_error):
        err = router.no_read_node(snap) if readonly else NoPrimary(snap.primary_error)
        client.reply_now(reply_for(err), cls, now)
        return None
    if readonly:
        router.count_read(node, 1)
    pool = host.pools[node.addr]
    st = client.state
    try:
        conn = pool.dedicated(st.proto, st.db)
    except BackendError as e:
        client.reply_now(reply_for(e), cls, now)
        return None
    conn.blocking = True  # the client's timeout, not the backend deadline
    flags = UNPIN | NO_DEADLINE | (0 if readonly else WRITE)
    if flags & WRITE:
        st.writes_inflight += 1
        st.write_addr = node.addr  # see Forwarding.write
    slot = Slot(client, [args], cls, flags, now, pool.name, host.stats.node_hist(pool.name))
    blocked = Blocking(client, conn)
    data = pack(args)
    if info.name in ("wait", "waitaof"):
        bump = pack([b"SET", host.wait_key, b"1", b"PX", b"10000"])
        conn.send(bump, DISCARD)
        if client.queue:
            blocked.deferred = (data, slot)
            client.queue.append(slot)
            return blocked
    client.queue.append(slot)
    blocked.send(data, slot)
    return blocked


_CLIENT_ID = pack([b"CLIENT", b"ID"])


class Blocking:
    __slots__ = ("backend_id", "client", "conn", "deferred")

    def __init__(self, client: Client, conn: BackendConnection) -> None:
        self.client = client
        self.conn = conn
        # A WAIT held back until the commands before it are answered.
        self.deferred: tuple[bytes, Slot] | None = None
        self.backend_id: int | None = None  # CLIENT ID of `conn`, for CLIENT UNBLOCK

    def send(self, data: bytes, slot: Slot) -> None:
        """The blocking command, after the CLIENT ID that CLIENT UNBLOCK needs."""
        self.backend_id = None
        self.conn.send(_CLIENT_ID, _BackendId(self))
        self.conn.send(data, slot)

    def send_deferred(self) -> None:
        """Called as the queue advances: send the WAIT once it reached the head."""
        deferred = self.deferred
        queue = self.client.queue
        if deferred is not None and queue and queue[0] is deferred[1]:
            self.deferred = None  # everything before the WAIT is answered: send it
            self.send(deferred[0], deferred[1])

    def reissue(self, slot: Slot) -> bool:
        if slot.flags & REROUTED or not slot.flags & WRITE:
            return False
        slot.flags |= REROUTED
        old = self.conn
        host = self.client.host
        # Closed once its reader is done with this reply (now it would fail the slot).
        host.loop.call_soon(old.close)
        return host.hold.resend(self, slot, str(old.addr), host.topo)

    def send_rerouted(self, slot: Slot) -> None:
        host = self.client.host
        node = host.topo.primary
        st = self.client.state
        try:
            if self.client.gone:  # no connection opened for nobody
                raise NotExecuted("the client has gone")
            if node is None:
                raise NoPrimary(host.topo.primary_error)
            pool = host.pools[node.addr]
            conn = pool.dedicated(st.proto, st.db)
        except (BackendError, NoPrimary, NotExecuted) as e:
            slot.deliver(reply_for(e))
            return
        conn.blocking = True
        self.conn = conn
        slot.node, slot.hist = pool.name, pool.hist
        self.send(pack(slot.cmds[0]), slot)

    def release(self) -> None:
        conn = self.conn
        st = self.client.state
        self.client.host.pools[conn.addr].release(conn, st.proto, st.db, clean=not conn.closed)

    def close(self) -> None:
        self.conn.close()


class _BackendId:
    """The CLIENT ID reply before a blocking command (a backend `Waiter`)."""

    __slots__ = ("blocked",)

    def __init__(self, blocked: Blocking) -> None:
        self.blocked = blocked

    def deliver(self, reply: bytes) -> bool:
        if reply[:1] == b":":
            self.blocked.backend_id = int(reply[1:-2])
        return True

    def fail(self, err: BackendError) -> None:
        pass  # the blocking command behind it fails too, and says why
