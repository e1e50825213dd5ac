"""MULTI/EXEC and WATCH: a client pinned to a primary connection of its own.

A transaction's queued commands and a WATCH's watched keys live on one backend
connection, so from MULTI or WATCH until EXEC, DISCARD, UNWATCH or RESET every command of
the client goes to that connection (`takes`), in order. EXEC, DISCARD and UNWATCH leave
no state on it: it goes back to the pool at once (its FIFO keeps the pending reply in
order). A command the proxy cannot queue in a transaction dooms it, as a command Redis
rejects while queueing does: EXEC then answers EXECABORT.

SELECT goes to the pinned connection too, as Redis runs it there: while WATCHing it
changes the client's database at once; inside MULTI it is queued and the client's
database changes with EXEC (`_ExecSelecting` puts it back when EXEC did not run). A
connection that ran SELECT is closed when released, not pooled under a database it is
no longer on.

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
from proxy.server.client import ClientState, strict_int
from proxy.server.host import Client
from proxy.server.slot import EXEC, LONG, NO_DEADLINE, RESP3, WRITE, Slot
from proxy.stats import CLASS_OTHER, CLASS_READ, CLASS_WRITE
from routing.commands import CommandInfo, Kind, refusal
from routing.split import CROSSSLOT, CROSSSLOT_ERROR, slot_of_command


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


def takes(info: CommandInfo, in_multi: bool) -> bool:
    """Whether a pinned transaction's connection takes this command."""
    kind = info.kind
    if kind == Kind.REFUSED or kind == Kind.MASKED:
        # Never sent as is: the policy and CONFIG GET's masking hold inside MULTI and
        # while WATCHing too (inside MULTI they are refused and doom the EXEC).
        return False
    if kind == Kind.LOCAL:
        # Redis queues PING and ECHO inside MULTI: EXEC's reply must hold theirs.
        # SELECT runs on the pinned connection, queued or not (see the docstring).
        name = info.name
        return name == "select" or (in_multi and (name == "ping" or name == "echo"))
    # Subscriptions take a connection of their own: a subscribed connection given
    # back to the pool would hand its pushes to another client as replies.
    return kind != Kind.ADMIN and kind != Kind.SUBSCRIBE and kind != Kind.MONITOR


class _ExecSelecting(Slot):
    """The EXEC of a transaction that queued SELECT. The client's database was switched
    when EXEC was sent, so that commands pipelined after it go to the new one; if EXEC
    did not run (a failed WATCH's null, EXECABORT), Redis left it unchanged: so do we.
    Commands already dispatched between EXEC and its reply stay where they went."""

    __slots__ = ("before", "state")
    before: int
    state: ClientState

    def deliver(self, reply: bytes) -> bool:
        if not _ran(reply):
            self.state.db = self.before
        return Slot.deliver(self, reply)


def _crosses(slot: int, info: CommandInfo, args: list[bytes]) -> bool:
    """A cluster transaction's command with keys outside its slot: Redis' CROSSSLOT."""
    if not info.has_keys:
        return False
    found = slot_of_command(info, args)
    return found is CROSSSLOT or (isinstance(found, int) and found != slot)


def _ran(exec_reply: bytes) -> bool:
    return exec_reply[:1] == b"*" and exec_reply[1:3] != b"-1"


def _db_index(client: Client, args: list[bytes]) -> int | None:
    """The database a SELECT names, when Redis would switch to it (else it answers the
    error itself, on the pinned connection)."""
    db = strict_int(args[1]) if len(args) == 2 else None
    return db if db is not None and 0 <= db < client.host.databases else None


class Transaction:
    __slots__ = ("client", "conn", "doomed", "in_multi", "node", "queued_db", "reply_kind",
                 "selected", "slot")  # fmt: skip

    def __init__(self, client: Client, conn: BackendConnection, node: str) -> None:
        self.client = client
        self.conn = conn
        self.node = node
        self.in_multi = False
        self.doomed = False  # a command inside MULTI was refused: EXEC aborts
        self.selected = False  # SELECT ran on the connection: not pooled again
        self.queued_db: int | None = None  # a SELECT queued inside MULTI
        # Cluster mode: the one slot this transaction's keys may be in, and the slot
        # class that turns a redirection into an error that says so (`clustertx`).
        self.slot: int | None = None
        self.reply_kind: type[Slot] = Slot

    def takes(self, info: CommandInfo) -> bool:
        """Whether this command goes to the pinned connection."""
        return takes(info, self.in_multi)

    def forward(self, args: list[bytes], info: CommandInfo, now: float) -> bool:
        """Send one command on the pinned connection; False once it was given back."""
        conn = self.conn
        client = self.client
        name = info.name
        stats = client.host.stats
        cls = CLASS_READ if info.kind == Kind.READ or info.kind == Kind.SCAN else CLASS_WRITE
        stats.commands[cls] += 1
        if self.slot is not None and _crosses(self.slot, info, args):
            if self.in_multi:
                self.doomed = True
                client.state.multi += 1
            client.reply_now(CROSSSLOT_ERROR, cls, now)
            return True
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
        elif name == "select":
            self._select(args)
        if info.kind == Kind.BLOCKING and not self.in_multi:
            conn.blocking = True  # e.g. BLPOP while WATCHing: no deadline until released
            flags |= NO_DEADLINE
        elif info.kind == Kind.RUN_SCRIPT:
            flags |= LONG
        switch = name == "exec" and self.in_multi and self.queued_db is not None
        kind = _ExecSelecting if switch else self.reply_kind
        slot = kind(client, [args], cls, flags, now, self.node, stats.node_hist(conn.name))
        if isinstance(slot, _ExecSelecting):
            self._switch(slot)
        client.queue.append(slot)
        if conn.closed:
            slot.deliver(reply_for(BackendError(conn.addr)))
        else:
            conn.send(pack(args), slot)
        if name == "multi":
            self.in_multi = True
            self.doomed = False
            self.queued_db = None
            client.state.multi = 0
        elif self.in_multi and name not in ("exec", "discard"):
            client.state.multi += 1  # (queued, as far as CLIENT LIST tells)
        elif (name in ("exec", "discard") and self.in_multi) or (
            name == "unwatch" and not self.in_multi
        ):
            # (EXEC or DISCARD without MULTI is an error that keeps the WATCH.)
            self._release(clean=True)
            return False
        return True

    def _select(self, args: list[bytes]) -> None:
        db = _db_index(self.client, args)
        if db is None:
            return  # Redis answers the error (queued: at EXEC) and stays where it is
        self.selected = True
        if self.in_multi:
            self.queued_db = db
        else:
            self.client.state.db = db

    def _switch(self, slot: _ExecSelecting) -> None:
        st = slot.state = self.client.state
        slot.before = st.db
        assert self.queued_db is not None
        st.db, self.queued_db = self.queued_db, None

    def refuse(self, info: CommandInfo, now: float) -> None:
        self.doomed = True
        self.client.state.multi += 1
        refuse_in_multi(self.client, info, now)

    def _release(self, clean: bool) -> None:
        self.in_multi = False
        self.client.state.multi = -1
        st = self.client.state
        pool = self.client.host.pools[self.conn.addr]
        pool.release(self.conn, st.proto, st.db, clean=clean and not self.selected)

    def abandon(self) -> None:
        """RESET: the connection is dirty (MULTI/WATCH) and never reused, but closed only
        after the replies still due to this client (a pipelined MULTI's +OK, +QUEUED)."""
        self._release(clean=False)

    def close(self) -> None:
        self.conn.close()
