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
import logging
from collections import deque

from proxy.errors import BackendError, protocol_error
from proxy.logs import log_event
from proxy.resp.errors import ProtocolError
from proxy.resp.requests import Batch, RequestParser
from proxy.server import dispatch, hooks, local, output_limit, waiting
from proxy.server.blocking import Blocking
from proxy.server.client import ClientState
from proxy.server.clustertx import Deferred
from proxy.server.forwarding import Forwarding
from proxy.server.greeting import HeaderWait, welcome
from proxy.server.host import Host
from proxy.server.intake import PAUSED_WRITES, Intake
from proxy.server.slot import UNPIN, WRITE, Slot, discard_replies, made, pop_done
from proxy.server.subscription import Subscription
from proxy.server.transaction import Transaction
from proxy.stats import CLASS_OTHER, CLASS_WRITE
from routing.commands import KIND_DENIED, KIND_LOCAL, KIND_READ, KIND_WRITE

log = logging.getLogger("georedis.session")

_CLOSE_GRACE_S = 5.0


class Session(asyncio.Protocol):
    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop = host.loop
        cfg = host.config
        self.state = ClientState(host.next_client_id(), self.loop.time(), host.default_ranking,
                                 cfg.proxy.region, cfg.routing.read_your_writes)  # fmt: skip
        self.state.perms, self.state.authed = host.users.initial()
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(host.limits)
        self.queue: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.dirty = self.closing = False
        self.gone = False  # the connection is lost: requests not yet sent are dropped
        self.fwd = Forwarding(self)
        self.tx: Transaction | Deferred | None = None
        self.blocked: Blocking | None = None
        self.sub: Subscription | None = None
        self.intake = Intake(self.loop, self.dispatch, self._resume)
        self.writes_paused = False  # the send buffer is over its high-water mark
        self.over_soft_since = -1.0  # loop.time() the output passed the soft limit
        self.header: HeaderWait | None = None  # a PROXY protocol header still expected
        self.answered = 0.0  # loop.time() of the last reply out (`pop_done`: slow log)
        self.on_hold = False  # its next command waits for a new primary (`writehold`)
        self.waits_writes = False  # ... or for its writes in flight (`wait_writes`)

    @property
    def id(self) -> int:
        return self.state.id

    @property
    def peer(self) -> str:
        return self.state.peer

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
        self.header = welcome(self, transport)
        self.intake.transport = self.transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.leave(self)
        if self.on_hold:
            self.host.hold.forget(self.state.id)
        self.closing = self.gone = True
        if self.header is not None:
            self.header.cancel()
        # Dedicated connections may carry state (MULTI, WATCH, a pending BLPOP,
        # subscriptions): never hand them to another client.
        for att in (self.tx, self.blocked, self.sub):
            if att is not None:
                att.close()
        self.tx = self.blocked = self.sub = None
        for slot in self.queue:
            discard_replies(slot)  # replies still due have nowhere to go
        self.queue.clear()

    # Backpressure: a client that sends faster than it reads is not read (`Intake`).
    def pause_writing(self) -> None:
        self.writes_paused = True
        self.intake.pause(PAUSED_WRITES)

    def resume_writing(self) -> None:
        self.writes_paused = False
        self.over_soft_since = -1.0
        self.intake.unpause(PAUSED_WRITES)

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.header is not None:
            data, self.header = self.header.take(data)
            if not data:
                return
        error = None
        try:
            batch = self.parser.feed(data)
        except ProtocolError as e:  # what came before it runs first, as in Redis
            batch, error = Batch(e.commands, e.raw), str(e)
        cmds = batch.commands
        if cmds:
            now = self.loop.time()
            st = self.state
            st.last_cmd = now
            st.commands += len(cmds)
            st.last = cmds[-1]
            if self.intake.held or self.blocked is not None or self.on_hold:
                self.intake.keep(cmds)
            elif (batch.raw is None or st.hooked or self.tx is not None or self.sub is not None
                  or not self.fwd.batch(cmds, batch.raw, now)):  # fmt: skip
                self.dispatch_all(cmds, now)
        if error is not None:
            self.protocol_error(error)
        elif self.out and not self.dirty:
            self.flush()

    def dispatch_all(self, cmds: list[list[bytes]] | deque[list[bytes]], now: float) -> None:
        self.intake.run(cmds, now, self.queue, self._stopped)

    def _stopped(self) -> bool:
        return self.closing or self.blocked is not None or self.on_hold

    def _resume(self) -> None:
        if self._stopped():
            return
        self.dispatch_all(self.intake.take(), self.loop.time())
        self.intake.settle()
        if self.out and not self.dirty:
            self.flush()

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, args: list[bytes], now: float) -> None:
        """Hand one command to the attachment that owns its kind. The place where
        permissions (users and ACLs) are checked, once the command is known."""
        if self.state.hooked:  # CLIENT REPLY OFF or SKIP, MONITOR
            return hooks.dispatch(self, args, now, self.dispatch)
        info = self.host.table.lookup(args)
        perms = self.state.perms
        if perms is not None and (info := perms.admit(info, args)).kind == KIND_DENIED:
            return dispatch.deny(self, self.tx, info.name, now)
        kind = info.kind
        tx = self.tx
        if tx is not None and tx.takes(info):
            if not tx.forward(args, info, now):
                self.tx = None
        elif tx is not None and tx.in_multi and info.name not in ("quit", "reset"):
            tx.refuse(info, now)
        elif kind == KIND_READ:
            self.fwd.read(args, now, 0)
        elif kind == KIND_WRITE:
            self.fwd.write(args, now, CLASS_WRITE)
        elif kind == KIND_LOCAL and (self.sub is None or info.name != "ping"):
            self.host.stats.commands[CLASS_OTHER] += 1
            self.reply_now(local.handle(self, args, info.name), CLASS_OTHER, now)
        else:
            dispatch.attaching(self, args, info, now)

    # A write while the primary changes waits, with all after it (`waiting`, `writehold`).
    def hold(self, args: list[bytes]) -> bytes | None:
        return waiting.hold(self, args)

    def wait_writes(self, args: list[bytes]) -> None:
        waiting.wait_writes(self, args)

    def unhold(self, error: bytes | None) -> None:
        waiting.unhold(self, error)

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
            st = self.state
            st.writes_inflight -= 1
            st.last_write_done = self.loop.time()
            if self.waits_writes and not st.writes_inflight:
                self.waits_writes = False
                self.unhold(None)
        if slot.flags & UNPIN:
            self._unblock()
        queue = self.queue
        if not queue or queue[0] is not slot:
            return
        host, now = self.host, self.loop.time()
        pop_done(queue, self.out, host.stats, now, self.answered, host.slow_threshold, self._slow)
        self.answered = now
        if self.blocked is not None and self.blocked.deferred is not None:
            self.blocked.send_deferred()
        if not queue and self.sub is not None:
            self.sub.release_backlog(self.out)
        if self.intake.held and self.blocked is None:
            self.intake.drained(len(queue))
        # Still owed replies: written once this chunk's others are in. Nothing owed: no
        # later reply of this chunk would join the write, so it goes now (-P 1's case).
        self.mark_dirty() if queue else self.flush()

    def _slow(self, slot: Slot, seconds: float) -> None:
        self.host.record_slow(self.state, slot, seconds)

    def stream_head(self, slot: Slot) -> None:
        """A big batch at the queue's head forwards the replies it has so far."""
        if self.queue and self.queue[0] is slot and slot.parts:
            self.out.extend(slot.parts)
            slot.parts = []
            self.mark_dirty()

    def slot_failed(self, slot: Slot, err: BackendError) -> None:
        if self.closing and not self.queue:
            return  # gone (a QUIT still owes the replies queued before it)
        self.fwd.retry(slot, err)

    def slot_loading(self, slot: Slot) -> bool:
        return not self.closing and self.fwd.retry_loading(slot)

    def slot_readonly(self, slot: Slot) -> bool:
        return not self.closing and self.fwd.reroute(slot)

    def slot_unblocked(self, slot: Slot) -> bool:
        return not self.closing and self.blocked is not None and self.blocked.reissue(slot)

    def _unblock(self) -> None:
        blocked = self.blocked
        if blocked is None:
            return
        self.blocked = None
        blocked.release()
        if self.intake.held and not self.closing:
            # After this reply is delivered, not inside the backend's reply loop; what
            # arrives meanwhile queues behind `held` (data_received appends to it).
            self.intake.schedule()

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
        if self.writes_paused and output_limit.exceeded(self, transport.get_write_buffer_size()):
            return
        if self.closing and not self.queue:
            self.close_now()

    # ------------------------------------------------------------------ state changes

    def idle_for(self, now: float) -> float:
        busy = self.queue or self.blocked is not None or self.sub is not None
        return 0.0 if busy else now - self.state.last_cmd

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
        self.state.reset(*self.host.users.reset(self.state))

    def subscription_lost(self, sub: object, reply: bytes) -> None:
        """The pub/sub connection died: like a Redis restart, the client must reconnect."""
        if self.sub is sub and not self.closing:
            self.sub = None
            self.out.append(reply)
            self.closing = True
            self.mark_dirty()

    # ------------------------------------------------------------------ endings

    def protocol_error(self, message: str) -> None:
        """As Redis: the replies to the commands read before the error, then the error's,
        then the close. While some still wait their turn (behind a blocking command, past
        a turn's budget) this waits too, looking again every 10 ms; the parser reads
        nothing more meanwhile."""
        if self.intake.held or self.blocked is not None or self.on_hold:
            if not self.gone:
                self.loop.call_later(0.01, self.protocol_error, message)
            return
        self.host.stats.protocol_errors += 1
        log_event(log, "client_protocol_error", peer=self.state.peer, error=message)
        if not self.closing:  # after a QUIT among them Redis reads nothing more
            self.reply_now(protocol_error(message), CLASS_OTHER, self.loop.time())
        self.closing = True  # `flush` closes once the replies owed are out
        self.flush()

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
