"""MULTI/EXEC and WATCH: a client pinned to a primary connection of its own.

A transaction's queued commands and a WATCH's watched keys live on one backend
connection, so from MULTI or WATCH until EXEC, DISCARD, UNWATCH or RESET every command of
the client goes to that connection (`takes`), in order. EXEC, DISCARD and UNWATCH leave
no state on it: it goes back to the pool at once (its FIFO keeps the pending reply in
order). A command the proxy cannot queue in a transaction dooms it, as a command Redis
rejects while queueing does: EXEC then answers EXECABORT.

The attachment exists only while the client is pinned (`Session.tx`); `forward` returns
False when the connection was given back, and the session forgets it.
"""

from __future__ import annotations

from proxy.backend.connection import DISCARD, BackendConnection
from proxy.errors import (
    EXECABORT,
    BackendError,
    Refused,
    not_supported,
    reply_for,
    without_multi,
)
from proxy.resp.requests import pack
from proxy.server.host import Client
from proxy.server.slot import EXEC, LONG, NO_DEADLINE, RESP3, WRITE, Slot
from proxy.stats import CLASS_OTHER, CLASS_READ, CLASS_WRITE
from routing.commands import CommandInfo, Kind, refusal


def begin(client: Client, args: list[bytes], info: CommandInfo, now: float) -> Transaction | None:
    """MULTI, WATCH, EXEC, DISCARD or UNWATCH from a client not pinned yet.

    Returns the new attachment, or None when the command was answered without one."""
    name = info.name
    host = client.host
    commands = host.stats.commands
    if name in ("exec", "discard", "unwatch"):
        commands[CLASS_WRITE] += 1
        # Redis' own answers for these without MULTI (UNWATCH without WATCH is fine).
        reply = b"+OK\r\n" if name == "unwatch" else without_multi(name)
        client.reply_now(reply, CLASS_WRITE, now)
        return None
    snap = host.topo
    if host.hold.active or snap.primary is None or snap.primary_error:
        # A new MULTI/WATCH waits like a write while the primary changes.
        err = client.hold(args)
        if err is not None:
            commands[CLASS_WRITE] += 1
            client.reply_now(err, CLASS_WRITE, now)
        return None
    assert snap.primary is not None
    pool = host.pools[snap.primary.addr]
    st = client.state
    try:
        conn = pool.dedicated(st.proto, st.db)
    except BackendError as e:
        commands[CLASS_WRITE] += 1
        client.reply_now(reply_for(e), CLASS_WRITE, now)
        return None
    tx = Transaction(client, conn, pool.name)
    return tx if tx.forward(args, info, now) else None


def refuse_in_multi(client: Client, info: CommandInfo, now: float) -> None:
    """A command the proxy cannot queue in a transaction (it answers it itself, or it
    needs a connection of its own, or the command policy refuses it): refused, and the
    transaction is doomed."""
    client.host.stats.commands[CLASS_OTHER] += 1
    if info.kind == Kind.REFUSED:
        reply = reply_for(Refused(refusal(info.name, client.host.table.refuse)))
    else:
        reply = not_supported(f"{info.name.replace('|', ' ').upper()} inside MULTI")
    client.reply_now(reply, CLASS_OTHER, now)


class Transaction:
    __slots__ = ("client", "conn", "doomed", "in_multi", "node")

    def __init__(self, client: Client, conn: BackendConnection, node: str) -> None:
        self.client = client
        self.conn = conn
        self.node = node
        self.in_multi = False
        self.doomed = False  # a command inside MULTI was refused: EXEC aborts

    def takes(self, info: CommandInfo) -> bool:
        """Whether this command goes to the pinned connection."""
        kind = info.kind
        if kind == Kind.REFUSED or kind == Kind.MASKED:
            # Never sent as is: the policy and CONFIG GET's masking hold inside MULTI and
            # while WATCHing too (inside MULTI they are refused and doom the EXEC).
            return False
        if kind == Kind.LOCAL:
            # Redis queues PING and ECHO inside MULTI: EXEC's reply must hold theirs.
            return self.in_multi and (info.name == "ping" or info.name == "echo")
        # Subscriptions take a connection of their own: a subscribed connection given
        # back to the pool would hand its pushes to another client as replies.
        return kind != Kind.ADMIN and kind != Kind.SUBSCRIBE

    def forward(self, args: list[bytes], info: CommandInfo, now: float) -> bool:
        """Send one command on the pinned connection; False once it was given back."""
        conn = self.conn
        client = self.client
        name = info.name
        stats = client.host.stats
        cls = CLASS_READ if info.kind == Kind.READ else CLASS_WRITE
        stats.commands[cls] += 1
        if name == "exec" and self.doomed and self.in_multi:
            # Discard on the backend; the client gets Redis' answer to a doomed EXEC.
            conn.send(pack([b"DISCARD"]), DISCARD)
            client.reply_now(EXECABORT, cls, now)
            self._release(clean=True)
            return False
        flags = 0
        if name == "exec":
            client.state.writes_inflight += 1
            client.state.write_addr = conn.addr  # see Forwarding.write
            flags = WRITE | EXEC | (RESP3 if client.state.proto == 3 else 0)
        if info.kind == Kind.BLOCKING and not self.in_multi:
            conn.blocking = True  # e.g. BLPOP while WATCHing: no deadline until released
            flags |= NO_DEADLINE
        elif info.kind == Kind.RUN_SCRIPT:
            flags |= LONG
        slot = Slot(client, [args], cls, flags, now, self.node, stats.node_hist(conn.name))
        client.queue.append(slot)
        if conn.closed:
            slot.deliver(reply_for(BackendError(conn.addr)))
        else:
            conn.send(pack(args), slot)
        if name == "multi":
            self.in_multi = True
            self.doomed = False
        elif (name in ("exec", "discard") and self.in_multi) or (
            name == "unwatch" and not self.in_multi
        ):
            # (EXEC or DISCARD without MULTI is an error that keeps the WATCH.)
            self._release(clean=True)
            return False
        return True

    def refuse(self, info: CommandInfo, now: float) -> None:
        self.doomed = True
        refuse_in_multi(self.client, info, now)

    def _release(self, clean: bool) -> None:
        self.in_multi = False
        st = self.client.state
        self.client.host.pools[self.conn.addr].release(self.conn, st.proto, st.db, clean=clean)

    def abandon(self) -> None:
        """RESET: the connection is dirty (MULTI/WATCH) and never reused, but closed only
        after the replies still due to this client (a pipelined MULTI's +OK, +QUEUED)."""
        self._release(clean=False)

    def close(self) -> None:
        self.conn.close()
