"""One client connection: transport, parsing, the ordered reply queue, flushing, closing.

The way of one command (docs/architecture.md, "The way of one command"): bytes ->
`RequestParser` -> command lookup -> `dispatch` hands it to the attachment that owns its
kind -> a pool connection -> the raw reply lands in this session's `Slot`, and slots leave
in queue order (`slot_ready`, `flush`).

What a client's commands need beyond that lives in attachments, each in a file of its
own: `forwarding` (always: read/write routing, the batch fast path, read-your-writes,
retry), `transaction` (MULTI/WATCH, `tx`), `blocking` (`blocked`), `subscription`
(`sub`), and `scripts` (broadcasts). They coexist (WATCH + SUBSCRIBE is legal) and see
this session only through `host.Client`. Client-visible state is `state` (`ClientState`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterable
from typing import cast

from proxy.errors import MAX_CLIENTS, BackendError, NotSupported, protocol_error, reply_for
from proxy.logs import log_event
from proxy.resp.errors import ProtocolError
from proxy.resp.requests import RequestParser
from proxy.server import blocking, local, scripts, subscription, transaction
from proxy.server.blocking import Blocking
from proxy.server.client import ClientState
from proxy.server.forwarding import Forwarding
from proxy.server.host import Host
from proxy.server.proxyproto import ProxyProtocolError, fmt_addr, parse_header
from proxy.server.slot import LONG, NO_DEADLINE, UNPIN, WRITE, Slot, discard_replies, made
from proxy.server.subscription import Subscription
from proxy.server.transaction import Transaction
from proxy.stats import CLASS_ADMIN, CLASS_OTHER, CLASS_WRITE
from routing.commands import REFUSED_COMMANDS, CommandInfo, Kind

log = logging.getLogger("georedis.session")

_CLOSE_GRACE_S = 5.0
# Work per client per loop turn (docs/architecture.md, "Bounds"): commands dispatched one
# by one in a turn, and reply slots owed before more commands are taken. A plain batch
# forwarded whole is bounded by the transport's read size instead (256 KB on uvloop).
_TURN_BUDGET = 256
_MAX_QUEUED = 1024
_PAUSED_WRITES = 1  # the client's socket send buffer is full
_PAUSED_BACKLOG = 2  # commands wait in `_held`


class Session(asyncio.Protocol):
    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop = host.loop
        cfg = host.config
        self.state = ClientState(host.next_client_id(), self.loop.time(), host.default_ranking,
                                 cfg.proxy.region, cfg.routing.read_your_writes)  # fmt: skip
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(host.limits)
        self.queue: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.dirty = self.closing = False
        self.gone = False  # the connection is lost: requests not yet sent are dropped
        self.fwd = Forwarding(self)
        self.tx: Transaction | None = None
        self.blocked: Blocking | None = None
        self.sub: Subscription | None = None
        self._held: deque[list[bytes]] = deque()  # commands for a later turn
        self._resume_scheduled = False
        self._paused = 0  # why reading is paused: _PAUSED_* bits
        self._watch: tuple[Slot, int, float] | None = None  # see `overdue`
        self._pp_buf: bytes | None = b"" if cfg.proxy.proxy_protocol else None
        self._pp_timer: asyncio.TimerHandle | None = None

    @property
    def id(self) -> int:
        return self.state.id

    @property
    def in_multi(self) -> bool:
        return self.tx is not None and self.tx.in_multi

    @property
    def pinned(self) -> bool:
        return self.tx is not None

    @property
    def subscribed(self) -> bool:
        return self.sub is not None

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        peer = t.get_extra_info("peername")
        st, host = self.state, self.host
        st.local_addr, st.peer = fmt_addr(t.get_extra_info("sockname")), fmt_addr(peer)
        host.stats.connections_total += 1
        if not host.admit(self):
            t.write(MAX_CLIENTS)
            t.close()
            self.closing = True
            return
        ip = peer[0] if peer else ""
        if self._pp_buf is not None and host.proxy_protocol_allowed(ip):
            timeout = host.config.proxy.proxy_protocol_timeout_ms / 1000
            self._pp_timer = self.loop.call_later(timeout, self._bad_header, "no header in time")
        else:
            self._pp_buf = None  # no header expected (or this peer may not send one)
            st.set_location(host.geo.locate(ip))

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.leave(self)
        self.closing = self.gone = True
        if self._pp_timer is not None:
            self._pp_timer.cancel()
        # Dedicated connections may carry state (MULTI, WATCH, a pending BLPOP,
        # subscriptions): never hand them to another client.
        for att in (self.tx, self.blocked, self.sub):
            if att is not None:
                att.close()
        self.tx = self.blocked = self.sub = None
        for slot in self.queue:
            discard_replies(slot)  # replies still due have nowhere to go
        self.queue.clear()

    # Backpressure: while the client's send buffer is over the high-water mark, or
    # commands wait in `_held`, nothing more is read from it; reading resumes when
    # neither holds.
    def pause_writing(self) -> None:
        self._pause_reading(_PAUSED_WRITES)

    def resume_writing(self) -> None:
        self._resume_reading(_PAUSED_WRITES)

    def _pause_reading(self, why: int) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused |= why

    def _resume_reading(self, why: int) -> None:
        was = self._paused
        self._paused &= ~why
        if was and not self._paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def _bad_header(self, error: str) -> None:
        if self._pp_buf is not None and not self.closing:
            log_event(log, "proxy_protocol_error", level=logging.WARNING,
                      peer=self.state.peer, error=error)  # fmt: skip
            self.host.stats.protocol_errors += 1
            self.close_now()

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Consume the PROXY header; return the bytes after it, None while incomplete."""
        buf = (self._pp_buf or b"") + data
        try:
            header = parse_header(buf)
        except ProxyProtocolError as e:
            self._bad_header(str(e))
            return None
        if header is None:
            self._pp_buf = buf
            return None
        self._pp_buf = None
        if self._pp_timer is not None:
            self._pp_timer.cancel()
        st = self.state
        ip = st.peer.rsplit(":", 1)[0].strip("[]")
        if not header.local and header.src_ip is not None:
            st.peer, ip = fmt_addr((header.src_ip, header.src_port or 0)), header.src_ip
        st.set_location(self.host.geo.locate(ip))
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
        st = self.state
        st.last_cmd = now
        st.commands += len(cmds)
        if self._held or self.blocked is not None:
            self._held.extend(cmds)
            if len(self._held) > _TURN_BUDGET:
                self._pause_reading(_PAUSED_BACKLOG)
        elif (
            batch.raw is None
            or self.tx is not None
            or self.sub is not None
            or not self.fwd.batch(cmds, batch.raw, now)
        ):
            self.dispatch_all(cmds, now)
        if self.out and not self.dirty:
            self.flush()

    def dispatch_all(self, cmds: list[list[bytes]] | deque[list[bytes]], now: float) -> None:
        """Dispatch in order, at most `_TURN_BUDGET` commands per loop turn and while
        fewer than `_MAX_QUEUED` slots are owed; the rest waits in `_held`, so one
        client's 100k-command pipeline costs the others a few milliseconds a turn."""
        queue = self.queue
        for i, args in enumerate(cmds):
            if self.closing:
                return
            if self.blocked is not None:  # a blocking command: the rest waits for it
                self._held.extend(itertools.islice(cmds, i, None))
                return
            if i >= _TURN_BUDGET or len(queue) >= _MAX_QUEUED:
                self._hold(itertools.islice(cmds, i, None))
                return
            self.dispatch(args, now)

    def _hold(self, rest: Iterable[list[bytes]]) -> None:
        self._held.extend(rest)
        self._pause_reading(_PAUSED_BACKLOG)
        if len(self.queue) < _MAX_QUEUED:
            self._schedule_resume()
        # else: `slot_ready` schedules it once the owed replies drain.

    def _schedule_resume(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if self.closing or self.blocked is not None:
            return
        held, self._held = self._held, deque()
        self.dispatch_all(held, self.loop.time())
        if not self._held:
            self._resume_reading(_PAUSED_BACKLOG)
        if self.out and not self.dirty:
            self.flush()

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, args: list[bytes], now: float) -> None:
        """Hand one command to the attachment that owns its kind. The place where
        permissions (users and ACLs) are checked, once the command is known."""
        info = self.host.table.lookup(args)
        kind = info.kind
        tx = self.tx
        if tx is not None and tx.takes(info):
            if not tx.forward(args, info, now):
                self.tx = None
        elif tx is not None and tx.in_multi and info.name not in ("quit", "reset"):
            tx.refuse(info, now)
        elif kind == Kind.READ:
            self.fwd.read(args, now, 0)
        elif kind == Kind.WRITE:
            self.fwd.write(args, now, CLASS_WRITE)
        else:
            self._dispatch_other(args, info, now)

    def _dispatch_other(self, args: list[bytes], info: CommandInfo, now: float) -> None:
        kind, stats = info.kind, self.host.stats
        if kind == Kind.LOCAL:
            stats.commands[CLASS_OTHER] += 1
            if self.sub is not None and info.name == "ping" and self.state.proto == 2:
                self.sub.send(args)  # RESP2 subscribed PING: Redis answers with a push
            else:
                self.reply_now(local.handle(self, args, info.name), CLASS_OTHER, now)
        elif kind == Kind.TX:
            self.tx = transaction.begin(self, args, info, now)
        elif kind == Kind.BLOCKING:
            self.blocked = blocking.start(self, self.fwd, args, info, now)
        elif kind == Kind.SUBSCRIBE:
            stats.commands[CLASS_OTHER] += 1
            if self.sub is not None:
                self.sub.send(args)
            else:
                self.sub = subscription.start(self, self.fwd, args, now)
        elif kind == Kind.RUN_SCRIPT:
            if "readonly" in info.flags:  # EVAL_RO, EVALSHA_RO, FCALL_RO
                self.fwd.read(args, now, LONG)
            else:
                self.fwd.write(args, now, CLASS_WRITE, LONG)
        elif kind == Kind.SCRIPT:
            scripts.copy_to_replicas(self, self.fwd, args, now)
        elif kind == Kind.KILL:
            scripts.kill_everywhere(self, args, now)
        elif kind == Kind.ADMIN:
            stats.commands[CLASS_ADMIN] += 1
            self.reply_now(self.host.admin(self.state, args), CLASS_ADMIN, now)
        else:  # REFUSED
            stats.commands[CLASS_OTHER] += 1
            why = REFUSED_COMMANDS.get(info.name, f"{info.name.upper()} is not supported")
            self.reply_now(reply_for(NotSupported(why)), CLASS_OTHER, now)

    def reply_now(self, data: bytes, cls: int, now: float) -> None:
        """A reply the proxy makes itself, queued behind any replies still pending."""
        if data[:1] == b"-":
            self.host.stats.errors[cls] += 1
        if self.queue:
            self.queue.append(made(self, data, cls, now))
        else:
            self.out.append(data)

    # ------------------------------------------------------------------ replies

    def slot_ready(self, slot: Slot) -> None:
        """All replies of `slot` arrived: write out every finished slot at the head."""
        if slot.flags & WRITE:
            self.state.writes_inflight -= 1
            self.state.last_write_done = self.loop.time()
        if slot.flags & UNPIN:
            self._unblock()
        queue = self.queue
        if not queue or queue[0] is not slot:
            return
        out = self.out
        stats = self.host.stats
        slow = self.host.slow_threshold
        now = self.loop.time()
        while queue and not queue[0].pending:
            s = queue.popleft()
            parts = s.parts
            if len(parts) == 1:
                out.append(parts[0])
            elif parts:
                out.extend(parts)
            # A blocking command's wait is the client's own timeout, not latency;
            # Redis' SLOWLOG leaves blocked time out too.
            if s.hist is not None and not s.flags & UNPIN:
                if s.errors:
                    stats.errors[s.cls] += s.errors
                dt = now - s.t0
                n = len(s.cmds)
                if n == 1:
                    s.hist.observe(dt)
                else:
                    s.hist.observe_n(dt, n)
                if dt > slow:
                    self.host.record_slow(self.state, s, dt)
            elif s.errors and s.hist is not None:
                stats.errors[s.cls] += s.errors
        if self.blocked is not None and self.blocked.deferred is not None:
            self.blocked.send_deferred()
        if not queue and self.sub is not None:
            self.sub.release_backlog(out)
        if self._held and len(queue) < _MAX_QUEUED // 2 and self.blocked is None:
            self._schedule_resume()  # commands held while too many replies were owed
        self.mark_dirty()

    def stream_head(self, slot: Slot) -> None:
        """A big batch at the head of the queue forwards the replies it has so far
        (instead of holding them whole and writing one huge piece)."""
        if self.queue and self.queue[0] is slot and slot.parts:
            self.out.extend(slot.parts)
            slot.parts = []
            self.mark_dirty()

    def slot_failed(self, slot: Slot, err: BackendError) -> None:
        if self.closing and not self.queue:
            return  # gone (a QUIT still owes the replies queued before it)
        self.fwd.retry(slot, err)

    def _unblock(self) -> None:
        blocked = self.blocked
        if blocked is None:
            return
        self.blocked = None
        blocked.release()
        if self._held and not self.closing:
            # After this reply is delivered, not inside the backend's reply loop; what
            # arrives meanwhile queues behind `_held` (data_received appends to it).
            self._schedule_resume()

    def mark_dirty(self) -> None:
        """Output to write: the host writes it within this loop turn, whoever marked it
        (a reply stored outside a backend's read is never left unwritten)."""
        if not self.dirty:
            self.dirty = True
            self.host.mark_dirty(self)

    def flush(self) -> None:
        self.dirty = False
        out = self.out
        if not out:
            return
        self.out = []
        transport = self.transport
        if transport is None or transport.is_closing():
            # Gone (or going): uvloop raises on a write to a closed transport, and this
            # runs inside a backend connection's read path that other clients share.
            return
        if len(out) == 1:
            transport.write(out[0])
        else:
            transport.writelines(out)  # writev, no join: no second copy of big replies
        if self.closing and not self.queue:
            self.close_now()

    # ------------------------------------------------------------------ state changes

    def quit_after_reply(self) -> None:
        self.closing = True

    def reset(self) -> None:
        """RESET: back to a fresh connection's state (Redis' RESET semantics)."""
        tx, sub = self.tx, self.sub
        self.tx = self.sub = None  # forgotten first: the pub/sub close is not "lost"
        if tx is not None:
            tx.abandon()
        if sub is not None:
            sub.close()
        self.state.reset()

    def subscription_lost(self, sub: object, reply: bytes) -> None:
        """The pub/sub connection died: like a Redis restart, the client must reconnect."""
        if self.sub is sub and not self.closing:
            self.sub = None
            self.out.append(reply)
            self.closing = True
            self.mark_dirty()

    # ------------------------------------------------------------------ endings

    def overdue(self, now: float, limit: float, script_limit: float) -> bool:
        """The oldest reply owed made no progress past every deadline that could answer
        it: a bug somewhere, and the watchdog closes the client (docs/architecture.md,
        "Robustness mechanisms"). Progress, not age; nothing recorded per reply."""
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

    def protocol_error(self, message: str) -> None:
        self.host.stats.protocol_errors += 1
        log_event(log, "client_protocol_error", peer=self.state.peer, error=message)
        self.out.append(protocol_error(message))
        self.closing = True
        self.queue.clear()
        self.flush()
        self.close_now()

    def close_now(self, abort: bool = False) -> None:
        """Close after what is already written or, with `abort`, at once. A graceful
        close that the client never reads is aborted after `_CLOSE_GRACE_S`."""
        self.closing = True
        transport = self.transport
        if transport is None or (transport.is_closing() and not abort):
            return
        if abort:
            transport.abort()
            return
        transport.close()
        self.loop.call_later(_CLOSE_GRACE_S, transport.abort)
