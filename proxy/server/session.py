"""One client connection: parse commands, route them, write replies back in order.

The way of one command (DESIGN.md): bytes -> `RequestParser` -> command lookup ->
`routing.select_read` (reads) or the primary (writes) -> a pool connection -> the raw
reply lands in this session's `Slot`, and slots leave in queue order.

Connection state that Redis keeps per connection is either held here (database,
protocol, name: each selects or names the pooled connection used) or pins the client to
a dedicated backend connection: MULTI/WATCH (`_pinned`), blocking commands (`_blocked`),
subscriptions (`_pubsub`). See DESIGN.md, invariant 5.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from config.model import Address
from proxy.backend.connection import DISCARD, BackendConnection
from proxy.errors import BackendError, BackendTimeout, NoBackend, reply_for
from proxy.logs import log_event
from proxy.resp.errors import ProtocolError
from proxy.resp.replies import encode_error
from proxy.resp.requests import RequestParser, pack
from proxy.server import local
from proxy.server.proxyproto import ProxyProtocolError, parse_header
from proxy.server.scripts import kill_everywhere
from proxy.server.slot import (
    LONG,
    NO_DEADLINE,
    READ,
    RETRIED,
    UNPIN,
    WRITE,
    Slot,
    discard_replies,
    made,
)
from proxy.server.subscription import Subscription
from proxy.stats import CLASS_ADMIN, CLASS_OTHER, CLASS_READ, CLASS_WRITE
from routing.commands import (
    MAYBE_BLOCKING,
    REFUSED_COMMANDS,
    CommandInfo,
    Kind,
    is_blocking_call,
)
from routing.select import NO_REQUIREMENTS, ReadRequirements, select_read
from routing.topology import NodeState

if TYPE_CHECKING:
    from proxy.server.app import App
    from routing.geo import ClientLocation

log = logging.getLogger("georedis.session")

_CLOSE_GRACE_S = 5.0
# Work per client per loop turn (DESIGN.md, invariant 12): commands dispatched one by one
# in a turn, and reply slots owed before more commands are taken. A plain batch that is
# forwarded whole is bounded by the transport's read size instead (256 KB on uvloop).
_TURN_BUDGET = 256
_MAX_QUEUED = 1024
_PAUSED_WRITES = 1  # the client's socket send buffer is full
_PAUSED_BACKLOG = 2  # commands wait in `_held`
_EXECABORT = encode_error("EXECABORT Transaction discarded because of previous errors.")


class Session(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.loop = app.loop
        self.id = app.next_client_id()
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(app.limits)
        self.queue: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.dirty = False
        self.closing = False
        self.gone = False  # the connection is lost: requests not yet sent are dropped
        # Client-visible connection state.
        self.db = 0
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.peer = ""  # address:port as seen (TCP peer or PROXY header)
        self.local_addr = ""
        self.created = self.loop.time()
        self.last_cmd = self.created
        self.commands = 0
        self.location: ClientLocation | None = None
        self.ranking: tuple[str, ...] = app.default_ranking
        self.region = app.config.proxy.region
        # Per-connection routing knobs (PROXY MAXLAG / CONSISTENCY).
        self.max_lag_ms: float | None = None
        self.ryw = app.config.routing.read_your_writes
        self.writes_inflight = 0
        self.last_write_done = -1.0  # loop.time() of the last write reply; -1: none
        # The replica this client reads from, kept while it stays eligible.
        self._read_addr: Address | None = None
        self._read_version = -1  # snapshot version `_read_choice` was made for
        self._read_choice: NodeState | None = None
        # Dedicated backend connections.
        self._pinned: BackendConnection | None = None  # MULTI / WATCH
        self._pinned_node = ""
        self.in_multi = False
        self._tx_doomed = False  # a command inside MULTI was refused: EXEC aborts
        self._blocked: BackendConnection | None = None
        self._held: deque[list[bytes]] = deque()
        self._resume_scheduled = False
        self._paused = 0  # why reading is paused: _PAUSED_* bits
        # A WAIT held back until the commands before it are answered (see `_blocking`).
        self._deferred: tuple[BackendConnection, bytes, Slot] | None = None
        self._pubsub: Subscription | None = None
        # The watchdog's last look at the head of `queue`: (slot, replies owed, when).
        self._watch: tuple[Slot, int, float] | None = None
        # PROXY protocol header still expected.
        self._pp_buf: bytes | None = b"" if app.config.proxy.proxy_protocol else None
        self._pp_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.local_addr = _fmt_addr(sock)
        self.peer = _fmt_addr(peer)
        app = self.app
        app.stats.connections_total += 1
        if len(app.sessions) >= app.config.proxy.max_clients:
            app.stats.connections_rejected += 1
            self.transport.write(encode_error("ERR max number of clients reached"))
            self.transport.close()
            self.closing = True
            return
        app.sessions[self.id] = self
        app.stats.connections_current += 1
        if self._pp_buf is not None:
            if not app.proxy_protocol_allowed(peer[0] if peer else ""):
                self._pp_buf = None  # this peer may not send headers: use its address
                self._locate(peer[0] if peer else "")
            else:
                timeout = app.config.proxy.proxy_protocol_timeout_ms / 1000
                self._pp_timer = self.loop.call_later(timeout, self._pp_timeout)
        else:
            self._locate(peer[0] if peer else "")

    def connection_lost(self, exc: Exception | None) -> None:
        app = self.app
        if app.sessions.pop(self.id, None) is not None:
            app.stats.connections_current -= 1
        self.closing = True
        self.gone = True
        if self._pp_timer is not None:
            self._pp_timer.cancel()
        # Dedicated connections may carry state (MULTI, WATCH, a pending BLPOP,
        # subscriptions): never hand them to another client.
        for conn in (self._pinned, self._blocked, self._pubsub):
            if conn is not None:
                conn.close()
        self._pinned = self._blocked = self._pubsub = None
        for slot in self.queue:
            discard_replies(slot)  # replies still due have nowhere to go
        self.queue.clear()

    # Backpressure: a client that sends faster than it reads its replies must not make
    # the proxy buffer without bound. While its socket's send buffer is over the
    # transport's high-water mark, nothing more is read from it.
    def pause_writing(self) -> None:
        self._pause_reading(_PAUSED_WRITES)

    def resume_writing(self) -> None:
        self._resume_reading(_PAUSED_WRITES)

    # Reading stops for either of two reasons (a full send buffer, a backlog of commands
    # not yet dispatched) and resumes only when neither holds.
    def _pause_reading(self, why: int) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused |= why

    def _resume_reading(self, why: int) -> None:
        was = self._paused
        self._paused &= ~why
        if was and not self._paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def _locate(self, ip: str) -> None:
        self.set_location(self.app.geo.locate(ip))

    def set_location(self, loc: ClientLocation) -> None:
        self.location = loc
        self.ranking = loc.ranking
        self._read_version = -1  # the ranking changed: choose again
        self.region = loc.ranking[0] if loc.ranking else self.app.config.proxy.region

    # ------------------------------------------------------------------ PROXY protocol

    def _pp_timeout(self) -> None:
        if self._pp_buf is not None and not self.closing:
            log_event(log, "proxy_protocol_error", level=logging.WARNING, peer=self.peer,
                      error="no header in time")  # fmt: skip
            self.app.stats.protocol_errors += 1
            self.close_now()

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Consume the PROXY header; return the bytes after it, None while incomplete."""
        buf = (self._pp_buf or b"") + data
        try:
            header = parse_header(buf)
        except ProxyProtocolError as e:
            log_event(log, "proxy_protocol_error", level=logging.WARNING, peer=self.peer,
                      error=str(e))  # fmt: skip
            self.app.stats.protocol_errors += 1
            self.close_now()
            return None
        if header is None:
            self._pp_buf = buf
            return None
        self._pp_buf = None
        if self._pp_timer is not None:
            self._pp_timer.cancel()
            self._pp_timer = None
        peer_ip = self.peer.rsplit(":", 1)[0].strip("[]")
        if not header.local and header.src_ip is not None:
            self.peer = _fmt_addr((header.src_ip, header.src_port or 0))
            peer_ip = header.src_ip
        self._locate(peer_ip)
        return buf[header.consumed :]

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self._pp_buf is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        try:
            batch = self.parser.feed(data)
        except ProtocolError as e:
            self.protocol_error(str(e))
            return
        cmds = batch.commands
        if not cmds:
            return
        now = self.loop.time()
        self.last_cmd = now
        self.commands += len(cmds)
        if self._held or self._blocked is not None:
            self._held.extend(cmds)
            if len(self._held) > _TURN_BUDGET:
                self._pause_reading(_PAUSED_BACKLOG)
        elif batch.raw is None or not self._forward_batch(cmds, batch.raw, now):
            self.dispatch_all(cmds, now)
        if self.out and not self.dirty:
            self.flush()

    def _forward_batch(self, cmds: list[list[bytes]], raw: bytes, now: float) -> bool:
        """Fast path: a batch of plain reads (or plain writes) forwarded as received."""
        if self._pinned is not None or self._pubsub is not None:
            return False
        lookup = self.app.table.lookup
        kind = lookup(cmds[0]).kind
        if kind > Kind.WRITE:
            return False
        for args in cmds[1:]:
            if lookup(args).kind != kind:
                return False
        n = len(cmds)
        if kind == Kind.READ:
            node = self._read_node(NO_REQUIREMENTS)
            if node is None:
                return False
            flags, cls = READ, CLASS_READ
        else:
            node = self.app.topo.primary
            if node is None or self.app.topo.primary_error:
                return False
            flags, cls = WRITE, CLASS_WRITE
        pool = self.app.pool_of.get(id(node)) or self.app.pools[node.addr]
        try:
            conn = pool.shared(self.id, self.proto, self.db)
        except BackendError:
            return False  # dispatch_all then counts these commands one by one
        if kind == Kind.READ:
            self._count_read(node, n)
        if kind == Kind.WRITE:
            self.writes_inflight += 1
        slot = Slot(self, cmds, cls, flags, now, pool.name, pool.hist)
        self.queue.append(slot)
        self.app.stats.commands[cls] += n
        conn.send(raw, slot)
        return True

    def dispatch_all(self, cmds: list[list[bytes]] | deque[list[bytes]], now: float) -> None:
        """Dispatch in order, at most `_TURN_BUDGET` commands per loop turn and while
        fewer than `_MAX_QUEUED` slots are owed; the rest waits in `_held`.

        One client's 100k-command write then costs the others a few milliseconds a
        turn, not the whole batch at once (DESIGN.md, invariant 12), and a client far
        ahead of its replies stops being read until they catch up."""
        queue = self.queue
        for i, args in enumerate(cmds):
            if self.closing:
                return
            if self._blocked is not None:  # a blocking command: the rest waits for it
                self._held.extend(itertools.islice(cmds, i, None))
                return
            if i >= _TURN_BUDGET or len(queue) >= _MAX_QUEUED:
                self._hold(itertools.islice(cmds, i, None))
                return
            self.dispatch(args, now)

    def _hold(self, rest: Iterable[list[bytes]]) -> None:
        """Keep commands for a later turn; stop reading while they wait."""
        self._held.extend(rest)
        self._pause_reading(_PAUSED_BACKLOG)
        if len(self.queue) < _MAX_QUEUED:
            self._schedule_resume()
        # else: `slot_ready` schedules it once the owed replies drain.

    def _schedule_resume(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self.loop.call_soon(self._resume)

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, args: list[bytes], now: float) -> None:
        info = self.app.table.lookup(args)
        kind = info.kind
        if self._pinned is not None and self._pinned_takes(info):
            self._forward_pinned(args, info, now)
        elif self.in_multi and info.name not in ("quit", "reset"):
            self._refuse_in_multi(info, now)
        elif kind == Kind.READ:
            self.forward_read(args, now, 0)
        elif kind == Kind.WRITE:
            self.forward_write(args, now, CLASS_WRITE)
        elif kind == Kind.LOCAL:
            self._local(args, info, now)
        elif kind == Kind.TX:
            self._tx(args, info, now)
        elif kind == Kind.BLOCKING:
            self._blocking(args, info, now)
        elif kind == Kind.SUBSCRIBE:
            self._subscribe(args, now)
        elif kind == Kind.RUN_SCRIPT:
            if "readonly" in info.flags:  # EVAL_RO, EVALSHA_RO, FCALL_RO
                self.forward_read(args, now, LONG)
            else:
                self.forward_write(args, now, CLASS_WRITE, LONG)
        elif kind == Kind.SCRIPT:
            self._script(args, now)
        elif kind == Kind.KILL:
            self.app.stats.commands[CLASS_WRITE] += 1
            kill_everywhere(self, args, now)
        elif kind == Kind.ADMIN:
            self.app.stats.commands[CLASS_ADMIN] += 1
            self.reply_now(self.app.admin(self, args), CLASS_ADMIN, now)
        else:  # REFUSED
            self.app.stats.commands[CLASS_OTHER] += 1
            msg = REFUSED_COMMANDS.get(info.name, f"{info.name.upper()} is not supported")
            self.reply_now(encode_error(f"ERR georedis: {msg}"), CLASS_OTHER, now)

    def _refuse_in_multi(self, info: CommandInfo, now: float) -> None:
        """A command the proxy cannot queue in a transaction (it answers it itself, or
        it needs a connection of its own). Like a command Redis rejects while queueing,
        it dooms the transaction: EXEC will answer EXECABORT."""
        self._tx_doomed = True
        self.app.stats.commands[CLASS_OTHER] += 1
        msg = f"ERR georedis: {info.name.upper()} inside MULTI is not supported"
        self.reply_now(encode_error(msg), CLASS_OTHER, now)

    def _pinned_takes(self, info: CommandInfo) -> bool:
        """Whether a pinned (MULTI/WATCH) client's command goes to its connection."""
        kind = info.kind
        if kind == Kind.LOCAL:
            # Redis queues PING and ECHO inside MULTI: EXEC's reply must hold theirs.
            return self.in_multi and (info.name == "ping" or info.name == "echo")
        # Subscriptions take a connection of their own: a subscribed connection given
        # back to the pool would hand its pushes to another client as replies.
        return kind != Kind.ADMIN and kind != Kind.SUBSCRIBE

    def _read_node(self, req: ReadRequirements) -> NodeState | None:
        app = self.app
        snap = app.topo
        if self.ryw and (self.writes_inflight or self.last_write_done >= 0):
            ryw = self._ryw_requirements(req)
            if ryw is None:
                return snap.primary
            req = ryw
        if self.max_lag_ms is not None and req.max_lag_ms is None:
            req = ReadRequirements(self.max_lag_ms, req.min_offset, req.exclude)
        plain = req is NO_REQUIREMENTS
        if plain and snap.version == self._read_version:
            return self._read_choice  # same snapshot, same answer: decided once per round
        node = select_read(
            self.ranking, snap, app.pools.outstanding, req, app.fallback_primary, self._read_addr
        )
        if plain:
            self._read_version, self._read_choice = snap.version, node
        if node is not None and node is not snap.primary:
            self._read_addr = node.addr
        return node

    def _no_read_node(self) -> str:
        """Why no node may serve this client's read, in words."""
        snap = self.app.topo
        if (
            self.ryw
            and (self.writes_inflight or self.last_write_done >= 0)
            and (snap.primary is None or snap.primary_error)
        ):
            why = snap.primary_error or "no primary reachable"
            return f"{why}; no replica is known to have this connection's writes yet"
        return snap.primary_error or "no replica or primary available"

    def _ryw_requirements(self, req: ReadRequirements) -> ReadRequirements | None:
        """Read-your-writes: None means only the primary has this client's last write."""
        if self.writes_inflight:
            return None
        need = self.app.topo.offset_after(self.last_write_done)
        if need is None:
            return None
        return ReadRequirements(req.max_lag_ms, need, req.exclude)

    def _count_read(self, node: NodeState, n: int) -> None:
        stats = self.app.stats
        key = (self.region, node.region)
        stats.reads_by_region[key] = stats.reads_by_region.get(key, 0) + n
        if node is self.app.topo.primary:
            stats.fallbacks_primary += n
            if self.ryw and (self.writes_inflight or self.last_write_done >= 0):
                stats.ryw_redirects += n

    def forward_read(self, args: list[bytes], now: float, flags: int) -> None:
        self.app.stats.commands[CLASS_READ] += 1
        node = self._read_node(NO_REQUIREMENTS)
        if node is None:
            self.reply_now(reply_for(NoBackend(self._no_read_node())), CLASS_READ, now)
            return
        self._count_read(node, 1)
        self._send(node, args, CLASS_READ, READ | flags, now)

    def forward_write(self, args: list[bytes], now: float, cls: int, flags: int = 0) -> None:
        snap = self.app.topo
        node = snap.primary
        self.app.stats.commands[cls] += 1
        if node is None or snap.primary_error:
            err = snap.primary_error or "no primary available"
            self.reply_now(encode_error(f"ERR georedis: {err}; writes refused"), cls, now)
            return
        # Counted in every mode (used only with read-your-writes): a slot flagged WRITE
        # always decrements, so PROXY CONSISTENCY may switch with writes in flight.
        self.writes_inflight += 1
        self._send(node, args, cls, WRITE | flags, now)

    def _send(self, node: NodeState, args: list[bytes], cls: int, flags: int, now: float) -> None:
        pool = self.app.pool_of.get(id(node)) or self.app.pools[node.addr]
        slot = Slot(self, [args], cls, flags, now, pool.name, pool.hist)
        self.queue.append(slot)
        try:
            conn = pool.shared(self.id, self.proto, self.db)
        except BackendError as e:
            slot.fail(e)
            return
        conn.send(pack(args), slot)

    def reply_now(self, data: bytes, cls: int, now: float) -> None:
        """A reply the proxy makes itself, queued behind any replies still pending."""
        if data[:1] == b"-":
            self.app.stats.errors[cls] += 1
        if self.queue:
            self.queue.append(made(self, data, cls, now))
        else:
            self.out.append(data)

    # ------------------------------------------------------------------ replies

    def slot_ready(self, slot: Slot) -> None:
        """All replies of `slot` arrived: write out every finished slot at the head."""
        if slot.flags & WRITE:
            self.writes_inflight -= 1
            self.last_write_done = self.loop.time()
        if slot.flags & UNPIN:
            self._unblock()
        queue = self.queue
        if not queue or queue[0] is not slot:
            return
        out = self.out
        stats = self.app.stats
        now = self.loop.time()
        while queue and not queue[0].pending:
            s = queue.popleft()
            parts = s.parts
            if len(parts) == 1:
                out.append(parts[0])
            elif parts:
                out.extend(parts)
            if s.hist is not None:
                if s.errors:
                    stats.errors[s.cls] += s.errors
                # A blocking command's wait is the client's own timeout, not latency;
                # Redis' SLOWLOG leaves blocked time out too.
                if s.flags & UNPIN:
                    continue
                dt = now - s.t0
                n = len(s.cmds)
                if n == 1:
                    s.hist.observe(dt)
                else:
                    s.hist.observe_n(dt, n)
                if dt > self.app.slow_threshold:
                    self.app.record_slow(self, s, dt)
        deferred = self._deferred
        if deferred is not None and queue and queue[0] is deferred[2]:
            self._deferred = None  # everything before the WAIT is answered: send it
            deferred[0].send(deferred[1], deferred[2])
        if not queue and self._pubsub is not None:
            self._pubsub.release_backlog(out)
        if self._held and len(queue) < _MAX_QUEUED // 2 and self._blocked is None:
            self._schedule_resume()  # commands held while too many replies were owed
        self.mark_dirty()

    def stream_head(self, slot: Slot) -> None:
        """Write out the replies a big batch at the head of the queue already has.

        A pipeline of many large replies is then forwarded as it arrives, instead of
        being held whole (memory) and written in one huge piece (a loop stall)."""
        if self.queue and self.queue[0] is slot and slot.parts:
            self.out.extend(slot.parts)
            slot.parts = []
            self.mark_dirty()

    def slot_failed(self, slot: Slot, err: BackendError) -> None:
        """A backend failed these requests: retry reads once elsewhere, else errors.

        Replies already received stay; only the commands still waiting are retried (or
        answered with the error), so the client sees one reply per command, in order.
        """
        if self.closing and not self.queue:
            return  # gone (a QUIT still owes the replies queued before it)
        stats = self.app.stats
        waiting = slot.cmds[len(slot.cmds) - slot.pending :]
        if slot.flags & READ and not slot.flags & RETRIED:
            node = self._read_node(ReadRequirements(exclude=_addr_of(self.app, err.node)))
            if node is not None and str(node.addr) != err.node:
                stats.retries += len(waiting)
                slot.flags |= RETRIED
                pool = self.app.pools[node.addr]
                slot.node = pool.name
                slot.hist = stats.node_hist(pool.name)
                try:
                    conn = pool.shared(self.id, self.proto, self.db)
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

    def flush(self) -> None:
        self.dirty = False
        out = self.out
        if not out:
            return
        self.out = []
        transport = self.transport
        if transport is None or transport.is_closing():
            # The client is gone (or going): its replies have nowhere to go. uvloop
            # raises on a write to a closed transport, and this runs inside a backend
            # connection's read path: that must never break a connection other
            # clients share.
            return
        if len(out) == 1:
            transport.write(out[0])
        else:
            # No join: uvloop hands the pieces to writev (a join of big replies would
            # copy them all once more and hold the loop meanwhile).
            transport.writelines(out)
        if self.closing and not self.queue:
            self.close_now()

    # ------------------------------------------------------------------ local commands

    def _local(self, args: list[bytes], info: CommandInfo, now: float) -> None:
        self.app.stats.commands[CLASS_OTHER] += 1
        if self._pubsub is not None and info.name == "ping" and self.proto == 2:
            self._pubsub.send(args)  # RESP2 subscribed PING: Redis answers with a push
            return
        reply = local.handle(self, args, info.name)
        self.reply_now(reply, CLASS_OTHER, now)

    def quit_after_reply(self) -> None:
        self.closing = True

    def reset(self) -> None:
        """RESET: back to a fresh connection's state (Redis' RESET semantics)."""
        pinned, pubsub = self._pinned, self._pubsub
        # Forgotten first: the pub/sub connection's close must not read as "lost".
        self._pinned = self._pubsub = None
        if pinned is not None:
            # Dirty (MULTI/WATCH): never reused, but closed only after the replies
            # still due to this client (a pipelined MULTI's +OK and +QUEUED).
            self.app.pools[pinned.addr].release(pinned, self.proto, self.db, clean=False)
        if pubsub is not None:
            pubsub.close()
        self.in_multi = False
        self._tx_doomed = False
        self.db = 0
        self.proto = 2
        self.name = b""
        self.max_lag_ms = None
        self.ryw = self.app.config.routing.read_your_writes

    # ------------------------------------------------------------------ MULTI / WATCH

    def _tx(self, args: list[bytes], info: CommandInfo, now: float) -> None:
        name = info.name
        # A reply made here is counted here; a forwarded one in _forward_pinned.
        commands = self.app.stats.commands
        if name in ("exec", "discard") and self._pinned is None:
            commands[CLASS_WRITE] += 1
            msg = f"ERR {name.upper()} without MULTI"
            self.reply_now(encode_error(msg), CLASS_WRITE, now)
            return
        if name == "unwatch" and self._pinned is None:
            commands[CLASS_WRITE] += 1
            self.reply_now(b"+OK\r\n", CLASS_WRITE, now)
            return
        snap = self.app.topo
        if snap.primary is None or snap.primary_error:
            commands[CLASS_WRITE] += 1
            msg = snap.primary_error or "no primary available"
            self.reply_now(encode_error(f"ERR georedis: {msg}"), CLASS_WRITE, now)
            return
        pool = self.app.pools[snap.primary.addr]
        try:
            self._pinned = pool.dedicated(self.proto, self.db)
        except BackendError as e:
            commands[CLASS_WRITE] += 1
            self.reply_now(reply_for(e), CLASS_WRITE, now)
            return
        self._pinned_node = pool.name
        self._forward_pinned(args, info, now)

    def _forward_pinned(self, args: list[bytes], info: CommandInfo, now: float) -> None:
        conn = self._pinned
        assert conn is not None
        name = info.name
        stats = self.app.stats
        cls = CLASS_READ if info.kind == Kind.READ else CLASS_WRITE
        stats.commands[cls] += 1
        flags = 0
        if name == "exec" and self._tx_doomed and self.in_multi:
            # Discard on the backend; the client gets Redis' answer to a doomed EXEC.
            self._tx_doomed = False
            conn.send(pack([b"DISCARD"]), DISCARD)
            self.reply_now(_EXECABORT, cls, now)
            self.in_multi = False
            self._pinned = None
            self.app.pools[conn.addr].release(conn, self.proto, self.db, clean=True)
            return
        if name == "exec":
            self.writes_inflight += 1
            flags = WRITE
        if info.kind == Kind.BLOCKING and not self.in_multi:
            conn.blocking = True  # e.g. BLPOP while WATCHing: no deadline until released
            flags |= NO_DEADLINE
        elif info.kind == Kind.RUN_SCRIPT:
            flags |= LONG
        slot = Slot(self, [args], cls, flags, now, self._pinned_node, stats.node_hist(conn.name))
        self.queue.append(slot)
        if conn.closed:
            slot.deliver(reply_for(BackendError(conn.name)))
        else:
            conn.send(pack(args), slot)
        if name == "multi":
            self.in_multi = True
            self._tx_doomed = False
        elif (name in ("exec", "discard") and self.in_multi) or (
            name == "unwatch" and not self.in_multi
        ):
            # These leave no state on the connection: its FIFO keeps the pending reply
            # in order, so it can go back to the pool right away. (EXEC or DISCARD
            # without MULTI is an error that keeps the WATCH: the client stays pinned.)
            self.in_multi = False
            self._pinned = None
            self.app.pools[conn.addr].release(conn, self.proto, self.db, clean=True)

    # ------------------------------------------------------------------ blocking

    def _blocking(self, args: list[bytes], info: CommandInfo, now: float) -> None:
        readonly = "readonly" in info.flags
        if info.name in MAYBE_BLOCKING and not is_blocking_call(info, args):
            if readonly:
                self.forward_read(args, now, 0)
            else:
                self.forward_write(args, now, CLASS_WRITE)
            return
        cls = CLASS_READ if readonly else CLASS_WRITE
        self.app.stats.commands[cls] += 1
        node = self._read_node(NO_REQUIREMENTS) if readonly else self.app.topo.primary
        if node is None or (not readonly and self.app.topo.primary_error):
            msg = self.app.topo.primary_error or "no backend available"
            self.reply_now(encode_error(f"ERR georedis: {msg}"), cls, now)
            return
        if readonly:
            self._count_read(node, 1)
        pool = self.app.pools[node.addr]
        try:
            conn = pool.dedicated(self.proto, self.db)
        except BackendError as e:
            self.reply_now(reply_for(e), cls, now)
            return
        conn.blocking = True  # the client's timeout, not the backend deadline
        flags = UNPIN | NO_DEADLINE | (0 if readonly else WRITE)
        if flags & WRITE:
            self.writes_inflight += 1
        slot = Slot(self, [args], cls, flags, now, pool.name, self.app.stats.node_hist(pool.name))
        self._blocked = conn
        data = pack(args)
        if info.name in ("wait", "waitaof"):
            # WAIT counts replicas that acknowledged *this connection's* writes, but this
            # client wrote on a shared connection. So the dedicated connection first
            # makes a write of its own, after all of the client's earlier commands are
            # answered: replicas that have it also have everything the client wrote.
            bump = pack([b"SET", self.app.wait_key, b"1", b"PX", b"10000"])
            conn.send(bump, DISCARD)
            if self.queue:
                self._deferred = (conn, data, slot)
                self.queue.append(slot)
                return
        self.queue.append(slot)
        conn.send(data, slot)

    def _unblock(self) -> None:
        conn = self._blocked
        if conn is None:
            return
        self._blocked = None
        self.app.pools[conn.addr].release(conn, self.proto, self.db, clean=not conn.closed)
        if self._held and not self.closing:
            # Run after this reply is delivered, not inside the backend's reply loop.
            # The commands stay in `_held` until then: any that arrive meanwhile must
            # queue behind them (data_received appends while `_held` is not empty).
            self._schedule_resume()

    def _resume(self) -> None:
        self._resume_scheduled = False
        if self.closing or self._blocked is not None:
            return
        held, self._held = self._held, deque()
        self.dispatch_all(held, self.loop.time())
        if not self._held:
            self._resume_reading(_PAUSED_BACKLOG)
        if self.out and not self.dirty:
            self.flush()

    # ------------------------------------------------------------------ pub/sub

    def _subscribe(self, args: list[bytes], now: float) -> None:
        self.app.stats.commands[CLASS_OTHER] += 1
        if self._pubsub is None:
            name = args[0].lower()
            if name.startswith(b"un") or name.startswith(b"pun") or name.startswith(b"sun"):
                self.reply_now(local.unsubscribe_reply(args, self.proto), CLASS_OTHER, now)
                return
            node = self._read_node(NO_REQUIREMENTS)
            if node is None:
                self.reply_now(reply_for(NoBackend("no backend for pub/sub")), CLASS_OTHER, now)
                return
            pool = self.app.pools[node.addr]
            try:
                conn = pool.dedicated(self.proto, self.db)
            except BackendError as e:
                self.reply_now(reply_for(e), CLASS_OTHER, now)
                return
            self._pubsub = Subscription(self, conn)
        self._pubsub.send(args)

    def mark_dirty(self) -> None:
        """This client has output to write at the end of the current chunk.

        Whoever marks a session dirty, the app writes it out within this loop turn
        (`App.mark_dirty`): a reply stored by a path that is not a backend's read (a
        pool in back-off failing a write at once) is never left unwritten."""
        if not self.dirty:
            self.dirty = True
            self.app.mark_dirty(self)

    # ------------------------------------------------------------------ scripts

    def _script(self, args: list[bytes], now: float) -> None:
        """SCRIPT LOAD/FLUSH on the primary, copied to every replica that is up, so
        EVALSHA_RO finds the script wherever it lands."""
        self.forward_write(args, now, CLASS_WRITE)
        snap = self.app.topo
        data = pack(args)
        for node in snap.nodes:
            if node is snap.primary or not node.up:
                continue
            try:
                self.app.pools[node.addr].shared(self.id, self.proto, 0).send(data, DISCARD)
            except BackendError:
                continue
        if args[1].lower() == b"load":
            self.app.remember_script(args[2] if len(args) > 2 else b"")

    # ------------------------------------------------------------------ watchdog

    def overdue(self, now: float, limit: float, script_limit: float) -> bool:
        """The oldest reply owed has made no progress past every deadline that could
        answer it.

        Deadlines, failed connects and retries answer every command (an error at worst)
        well within `limit`: a reply still owed after that is a bug somewhere, and the
        client must not wait forever for it (DESIGN.md, invariant 10). Progress, not
        age: a huge pipeline may take long, but each check finds fewer replies owed.
        Called about once a second; nothing is recorded on the per-reply path."""
        if not self.queue:
            self._watch = None
            return False
        head = self.queue[0]
        if head.flags & NO_DEADLINE:
            return False
        mark = self._watch
        if mark is None or mark[0] is not head or mark[1] != head.pending:
            self._watch = (head, head.pending, now)
            return False
        return now - mark[2] > (script_limit if head.flags & LONG else limit)

    # ------------------------------------------------------------------ errors

    def protocol_error(self, message: str) -> None:
        self.app.stats.protocol_errors += 1
        log_event(log, "client_protocol_error", peer=self.peer, error=message)
        self.out.append(encode_error(f"ERR Protocol error: {message}"))
        self.closing = True
        self.queue.clear()
        self.flush()
        self.close_now()

    def close_now(self, abort: bool = False) -> None:
        """Close after what is already written (a last error, QUIT's +OK) or, with
        `abort`, at once. A graceful close waits for the client to read; one that never
        does is aborted after `_CLOSE_GRACE_S`, so it cannot hold its buffers forever."""
        self.closing = True
        transport = self.transport
        if transport is None or (transport.is_closing() and not abort):
            return
        if abort:
            transport.abort()
            return
        transport.close()
        self.loop.call_later(_CLOSE_GRACE_S, transport.abort)


def _fmt_addr(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "")


def _addr_of(app: App, name: str) -> Address | None:
    for node in app.topo.nodes:
        if str(node.addr) == name:
            return node.addr
    return None
