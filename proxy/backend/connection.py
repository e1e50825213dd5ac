"""One backend connection: pipelined, multiplexed, with a FIFO of pending replies.

Many clients' commands share a connection. Bytes are queued in `send` and written once
per event-loop turn (`call_soon`), so all the commands that a turn collected, from every
client, leave in one write: this is where a proxy earns back its extra hop. Replies come
back in request order; the `ReplySplitter` finds each one's end and hands the raw bytes to
the waiter at the head of the FIFO.

A connection that fails (refused, reset, timed out, protocol error) fails every waiter
with one error and is never reused; the pool opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

from config.model import Address
from proxy.backend.handshake import Handshake
from proxy.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
)
from proxy.resp.errors import ProtocolError
from proxy.resp.replies import ReplySplitter, is_error
from proxy.resp.requests import pack
from proxy.tls import BackendTls

log = logging.getLogger("georedis.backend")

# Waiters written and unanswered per connection (see `BackendConnection._unsent`): as
# many as make about `BYTES_IN_FLIGHT` of replies at the sizes this connection has been
# getting, within [MIN_IN_FLIGHT, MAX_IN_FLIGHT]. Small replies: deep pipelines, as
# before. Megabyte replies: a node is never handed more than a few megabytes of work
# ahead of the proxy's reading, and requests of clients that left meanwhile are dropped.
# A new connection starts at MIN_IN_FLIGHT and the cap grows at most x2 per chunk of
# replies (it drops at once): one that started open wrote every waiting client's GET
# before the first reply told their size, and 100-230 GETs of 1 MB on one connection
# held the node for 0.4-1.8 s (docs/notes/replica-stall-under-churn.md).
BYTES_IN_FLIGHT = 4 << 20
MIN_IN_FLIGHT = 8
MAX_IN_FLIGHT = 4096

# A waiter's `flags` bit (client slots have flags; internal waiters none): its request is
# a script or function, which may run far longer than any other request (see the pool's
# deadline check).
LONG = 16


class Waiter(Protocol):
    """Whoever waits for one reply: a client's reply slot, or an internal request."""

    def deliver(self, reply: bytes) -> bool:
        """Take one reply; True when the waiter expects no more (leaves the FIFO)."""
        ...

    def fail(self, err: BackendError) -> None: ...


class RunTaker(Waiter, Protocol):
    """A waiter that may take several replies in one call: one with a `pending` count
    above 1 is given the whole read (`take`), not one reply at a time."""

    pending: int

    def take(self, replies: list[bytes], i: int) -> tuple[int, bool]:
        """Take what it waits for from `replies[i:]`: the index after the last one taken,
        and True when it expects no more (it leaves the FIFO)."""
        ...


class _Handshake:
    """Waits for a handshake reply (AUTH, HELLO, SELECT); an error reply kills the link."""

    __slots__ = ("conn", "what")

    def __init__(self, conn: BackendConnection, what: str) -> None:
        self.conn = conn
        self.what = what

    def deliver(self, reply: bytes) -> bool:
        # A name is cosmetic: CLIENT SETNAME refused (-BUSY while a script runs, which
        # is exactly when SCRIPT KILL needs a new connection) leaves a usable connection.
        if is_error(reply) and self.what != "CLIENT SETNAME":
            detail = reply[1:].strip().decode(errors="replace")
            self.conn.abort(BackendUnavailable(self.conn.addr, f"{self.what} failed: {detail}"))
        return True

    def fail(self, err: BackendError) -> None:
        pass


class Discard:
    """Waits for a reply nobody needs (e.g. SCRIPT LOAD copied to a replica)."""

    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        return True

    def fail(self, err: BackendError) -> None:
        pass


DISCARD = Discard()


class BackendConnection(asyncio.Protocol):
    __slots__ = (
        "_cap",
        "_close_when_idle",
        "_fifo",
        "_flush_handle",
        "_loop",
        "_since_reply",
        "_splitter",
        "_transport",
        "_unsent",
        "_written",
        "addr",
        "after_chunk",
        "blocking",
        "closed",
        "connect_failed",
        "connected",
        "last_activity",
        "name",
        "on_close",
        "push_sink",
    )

    def __init__(
        self,
        addr: Address,
        loop: asyncio.AbstractEventLoop,
        handshake: Handshake,
        after_chunk: Callable[[], None],
    ) -> None:
        self.addr = addr
        self.name = str(addr)
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._fifo: deque[Waiter] = deque()
        # Requests not yet written, with their waiter (None: raw bytes, no reply). At
        # most `_cap` waiters are written and unanswered at a time: the rest
        # wait here, where a request of a client that has gone is dropped unsent
        # (Redis drops the unread input of a closed connection too), and the node is
        # never handed more work in one go than it can answer promptly.
        self._unsent: deque[tuple[bytes, Waiter | None]] = deque()
        self._written = 0  # waiters in `_fifo` whose request was written
        self._cap = MIN_IN_FLIGHT  # waiters that may be written and unanswered
        self._since_reply = 0  # bytes received since the last chunk that ended replies
        self._flush_handle: asyncio.Handle | None = None
        self._splitter = ReplySplitter()
        self.connected = False
        self.closed = False
        # The connect itself failed (refused, unreachable, timed out): the pool backs
        # off. A connection the proxy aborts while connecting does not count.
        self.connect_failed = False
        # A blocking command runs here: its wait is the client's own timeout, so the
        # pool's deadline check leaves the connection alone (until it is given back).
        self.blocking = False
        # Given back with replies still due (see `close_when_idle`): close after them.
        self._close_when_idle = False
        # loop.time() of the last reply, or of the send that made the FIFO non-empty:
        # the deadline check fails the connection when it stays quiet past the timeout.
        self.last_activity = loop.time()
        self.after_chunk = after_chunk  # flushes the clients that got replies
        # Called once when the connection dies, with the error (pool bookkeeping).
        self.on_close: Callable[[BackendConnection, BackendError], None] | None = None
        # Pub/sub: replies with no waiter (pushes) go here instead of being an error.
        self.push_sink: Callable[[bytes], None] | None = None
        for what, args in handshake.commands:
            self._fifo.append(_Handshake(self, what))
            self._unsent.append((pack(args), None))
            self._written += 1  # handshake waiters are always written

    # ------------------------------------------------------------------ sending

    def send(self, data: bytes, waiter: Waiter) -> None:
        """Queue requests and their waiter.

        `data` may hold several commands: the waiter then expects that many replies.
        An idle connection (nothing in flight, nothing queued) writes at once: a lone
        client should not wait a loop turn. A busy one queues, and everything this turn
        collected leaves in one write at its end: under load that is where the batching
        across clients comes from, and nothing in flight is delayed by it.
        """
        fifo = self._fifo
        if not fifo:
            self.last_activity = self._loop.time()
            if not self._unsent and self._transport is not None and not self.closed:
                fifo.append(waiter)
                self._written += 1
                self._transport.write(data)
                return
        if self.closed:
            # Never queue into a dead connection: the waiter would wait forever. Failed
            # on the next turn, not inside the caller (which may be mid-way in its own
            # bookkeeping, e.g. a session writing out its replies).
            self._loop.call_soon(self._fail_late, waiter)
            return
        fifo.append(waiter)
        self._unsent.append((data, waiter))
        if self._flush_handle is None and self.connected:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _fail_late(self, waiter: Waiter) -> None:
        waiter.fail(BackendUnavailable(self.addr, "connection closed"))
        self.after_chunk()

    def send_raw(self, data: bytes) -> None:
        """Bytes with no reply expected in the FIFO (pub/sub commands: replies are pushes)."""
        self._unsent.append((data, None))
        if self._flush_handle is None and self.connected:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is queued, up to `_cap` waiters unanswered."""
        self._flush_handle = None
        unsent = self._unsent
        if not unsent or self._transport is None:
            return
        room = self._cap - self._written
        out: list[bytes] = []
        while unsent and room > 0:
            data, waiter = unsent.popleft()
            if waiter is not None:
                session = getattr(waiter, "session", None)
                if session is not None and session.gone:
                    self._fifo.remove(waiter)  # never written: no reply to wait for
                    continue
                room -= 1
                self._written += 1
            out.append(data)
        if out:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    @property
    def pending(self) -> int:
        return len(self._fifo)

    @property
    def window(self) -> int:
        """Waiters that may be written and unanswered, from the reply sizes seen."""
        return self._cap

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:
            # Aborted while connecting: its waiters were failed already, so the queued
            # requests must never run (a write the client was told failed would apply).
            cast(asyncio.Transport, transport).abort()
            return
        self._transport = cast(asyncio.Transport, transport)
        self.connected = True
        self.last_activity = self._loop.time()
        self._flush()

    def data_received(self, data: bytes) -> None:
        fifo = self._fifo
        self._since_reply += len(data)
        try:
            replies = self._splitter.split(data)
            i, n = 0, len(replies)
            while i < n:
                if fifo:
                    w = fifo[0]
                    if getattr(w, "pending", 1) > 1 and n - i > 1:  # a pipeline's slot
                        i, done = cast(RunTaker, w).take(replies, i)
                    else:
                        done = w.deliver(replies[i])
                        i += 1
                    if done:
                        fifo.popleft()
                        self._written -= 1
                        if self.closed:
                            # The waiter aborted this connection (a failed handshake):
                            # its waiters were failed, the replies after it are void.
                            return
                elif self.push_sink is not None:
                    self.push_sink(replies[i])
                    i += 1
                else:
                    raise ProtocolError("reply with no request")
        except ProtocolError as e:
            self.abort(BackendProtocolError(self.addr, str(e)))
            return
        except Exception as e:
            # A bug in a waiter (a client's bookkeeping). Left to the event loop, it would
            # close this transport without failing the FIFO: every client with a reply
            # due here would wait forever. Which waiter took which reply is now unknown,
            # so the connection goes, and each waiter gets an error: answered, not lost.
            log.exception("internal error while delivering replies from %s", self.name)
            self.abort(BackendUnavailable(self.addr, f"internal error: {type(e).__name__}"))
            return
        if replies:
            # Per chunk, not per reply: the reply size seen lately sets the cap.
            size = self._since_reply // len(replies)
            self._since_reply = 0
            fits = max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, BYTES_IN_FLIGHT // (size + 1)))
            self._cap = fits if fits <= self._cap else min(fits, 2 * self._cap)
            self.last_activity = self._loop.time()
            if self._close_when_idle and not fifo:
                self.close()  # calls after_chunk
                return
            if self._unsent and self._flush_handle is None:
                self._flush()  # answered ones made room
        self.after_chunk()

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(BackendUnavailable(self.addr, "connection lost"))

    # ------------------------------------------------------------------ failure

    def waits_for_script(self, now: float, quiet_s: float) -> bool:
        """Quiet for `quiet_s` with a script or function among the requests in flight.

        Anywhere in the FIFO, not only at its head: until its busy threshold, Redis
        runs a script without writing any reply, not even those of commands before it
        (this connection's handshake, other clients' requests). A walk of the FIFO, so
        only for a connection that has gone quiet: one that gets replies is not
        waiting for anything."""
        if not self._fifo or now - self.last_activity <= quiet_s:
            return False
        return any(getattr(w, "flags", 0) & LONG for w in self._fifo)

    def check_deadline(self, now: float, timeout: float) -> bool:
        """Fail the connection when requests have waited past the timeout; True if so."""
        if self._fifo and now - self.last_activity > timeout and not self.closed:
            self.abort(BackendTimeout(self.addr, "timed out"))
            return True
        return False

    def abort(self, err: BackendError) -> None:
        """Close for good and fail every waiter (once)."""
        if self.closed:
            return
        self.closed = True
        self.connected = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._transport is not None:
            self._transport.abort()
        fifo, self._fifo = self._fifo, deque()
        self._unsent.clear()  # requests not yet written never will be
        self._written = 0
        if self.on_close is not None:
            self.on_close(self, err)
        for waiter in fifo:
            waiter.fail(err)
        self.after_chunk()

    def close(self) -> None:
        """Graceful close (drain at shutdown): no waiters are expected any more."""
        self.abort(BackendUnavailable(self.addr, "closed by the proxy"))

    def close_when_idle(self) -> None:
        """Close once the replies still due have arrived (a dedicated connection given
        back right after EXEC: its reply is in flight and must reach the client)."""
        if self._fifo:
            self._close_when_idle = True
        else:
            self.close()


def start_connection(
    addr: Address,
    handshake: Handshake,
    after_chunk: Callable[[], None],
    connect_timeout: float,
    tls: BackendTls | None = None,
) -> BackendConnection:
    """A connection usable at once: requests queue until the connect completes (and,
    with `tls`, its handshake). Callers never wait for the connect; a failed connect
    fails the queued waiters.
    """
    loop = asyncio.get_running_loop()
    conn = BackendConnection(addr, loop, handshake, after_chunk)
    task = loop.create_task(_connect(conn, loop, connect_timeout, tls))
    _CONNECTING.add(task)
    task.add_done_callback(_CONNECTING.discard)
    return conn


_CONNECTING: set[asyncio.Task[None]] = set()  # strong references to running connects


async def _connect(conn: BackendConnection, loop: asyncio.AbstractEventLoop,
                   connect_timeout: float, tls: BackendTls | None) -> None:  # fmt: skip
    host, port = conn.addr.host, conn.addr.port
    try:
        async with asyncio.timeout(connect_timeout):
            if tls is None:
                await loop.create_connection(lambda: conn, host, port)
            else:
                await loop.create_connection(lambda: conn, host, port, ssl=tls.context,
                                             server_hostname=tls.server_name or host)  # fmt: skip
    except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
        conn.connect_failed = True
        conn.abort(BackendUnavailable(conn.addr, f"connect failed: {e or 'timeout'}"))
        return
    if conn.closed and conn._transport is not None:  # aborted while connecting
        conn._transport.abort()
