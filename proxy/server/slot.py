"""A reply slot: a run of one client's commands sent together to one backend connection.

Slots are the per-request objects of the hot path. A pipeline of N plain reads (or
writes) that goes to one connection is ONE slot expecting N replies, not N objects: the
per-command cost is an append and a decrement. The backend connection keeps the slot at
the head of its FIFO until `deliver` says all its replies arrived.

The session writes slots out strictly in its queue order, which keeps each client's
replies in the order of its commands even when one pipeline spans several backends
(docs/architecture.md, "Invariants").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.backend.connection import LONG
from proxy.errors import reply_for
from proxy.resp.replies import errors

if TYPE_CHECKING:
    from proxy.errors import BackendError
    from proxy.stats import NodeLatency, ProxyStats


class SlotOwner(Protocol):
    """The session a slot belongs to, as the slot sees it (no import of the session)."""

    def slot_ready(self, slot: Slot) -> None: ...

    def stream_head(self, slot: Slot) -> None: ...

    def slot_failed(self, slot: Slot, err: BackendError) -> None: ...

    def slot_loading(self, slot: Slot) -> bool:
        """A read got -LOADING (the node is loading its dataset): True if it was sent
        to another node instead."""
        ...

    def slot_unblocked(self, slot: Slot) -> bool:
        """A blocking command Redis unblocked because its node stopped being the primary
        (-UNBLOCKED ... instance state changed): True if it waits for the new one."""
        ...

    def slot_readonly(self, slot: Slot) -> bool:
        """Writes of `slot` got -READONLY (`slot.readonly` of them, its tail): True if
        they wait for the new primary (`Forwarding.reroute`)."""
        ...


class PlaceOwner:
    """A slot owner that is not a client: its one reply (or its failure, as an error
    reply) fills a place in something larger (`put`), a fan-out's gather or a cluster
    batch's run. Nothing is retried elsewhere or streamed from it."""

    __slots__ = ()
    # A backend connection drops unsent commands of a session that has gone; a place is
    # always sent: the larger answer is what the client's queue may drop.
    gone = False

    def put(self, reply: bytes) -> None:
        raise NotImplementedError

    def slot_ready(self, slot: Slot) -> None:
        self.put(slot.parts[0])

    def slot_failed(self, slot: Slot, err: BackendError) -> None:
        self.put(reply_for(err))

    def stream_head(self, slot: Slot) -> None:
        pass

    def slot_loading(self, slot: Slot) -> bool:
        return False

    def slot_unblocked(self, slot: Slot) -> bool:
        return False

    def slot_readonly(self, slot: Slot) -> bool:
        return False


# A batch slot forwards what it has so far after a reply this big, or this many replies.
_STREAM_BYTES = 64 * 1024
_STREAM_REPLIES = 256

# Slot.flags
READ = 1  # may be retried once on another node
WRITE = 2  # counts for read-your-writes
RETRIED = 4
UNPIN = 8  # the reply releases the client's blocking connection
# LONG (16): a script or function, under the script deadline (proxy.backend.connection).
__all__ = [
    "EXEC",
    "LONG",
    "NO_DEADLINE",
    "READ",
    "REROUTED",
    "RESP3",
    "RETRIED",
    "UNPIN",
    "WRITE",
    "PlaceOwner",
    "Slot",
    "SlotOwner",
    "made",
]
# The wait is the client's own (a blocking command): no deadline, no watchdog.
NO_DEADLINE = 32
REROUTED = 64  # its -READONLY tail was sent again once: a second -READONLY is passed on
EXEC = 128  # an EXEC (RESP3: EXEC | RESP3)
RESP3 = 256
_READ_ONCE = READ | RETRIED
# A wait that is the client's own (a blocking command, a PROXY verb that takes time): not
# latency, not slow (Redis' SLOWLOG leaves blocked time out too).
_OWN_WAIT = UNPIN | NO_DEADLINE
_READONLY = b"-READONLY"
_LOADING = b"-LOADING"
# Writes that may wait in the hold and go again: not an EXEC (its MULTI is gone with the
# connection), not a blocking command (it needs a connection of its own).
_PLAIN_WRITE = WRITE | EXEC | UNPIN
_UNBLOCKED = b"-UNBLOCKED"
_EXECABORT = b"-EXECABORT"


class _Discarded(list[bytes]):
    """The parts of a slot whose client is gone: replies still arriving are dropped, not
    kept until the slot completes (a 500 x 1 MB pipeline would hold 500 MB)."""

    def append(self, reply: bytes) -> None:
        pass

    def extend(self, replies: object) -> None:
        pass


def discard_replies(slot: Slot) -> None:
    slot.parts = _Discarded()


class Slot:
    __slots__ = (
        "cls",
        "cmds",
        "errors",
        "flags",
        "hist",
        "node",
        "parts",
        "pending",
        "readonly",
        "refusal",
        "session",
        "t0",
        "via",
    )
    # Set by forwarding on the slots it sends (only those are retried or rerouted): the
    # db << 2 | protocol they went with, as a later SELECT or HELLO must not change it.
    via: int

    def __init__(
        self,
        session: SlotOwner,
        cmds: list[list[bytes]],
        cls: int,
        flags: int,
        t0: float,
        node: str,
        hist: NodeLatency | None,
    ) -> None:
        self.session = session
        self.cmds = cmds  # the commands, kept for a retry elsewhere
        self.cls = cls  # command class index for the stats (read/write/admin/other)
        self.flags = flags
        self.t0 = t0  # loop.time() when the commands arrived
        self.node = node  # the backend that serves them ("" for proxy-made replies)
        self.hist = hist  # that backend's latency histogram
        self.parts: list[bytes] = []  # replies received so far, in order
        self.pending = len(cmds)  # replies still expected
        self.errors = 0  # error replies among them

    def deliver(self, reply: bytes) -> bool:
        """One reply arrived; True when it was the last one this slot waits for."""
        if reply[0] == 45:  # b"-"
            if (
                self.flags & _READ_ONCE == READ
                and len(self.cmds) == 1
                and reply.startswith(b"-LOADING")
                and self.session.slot_loading(self)
            ):
                return True  # re-sent elsewhere: the node that answered is done with it
            flags = self.flags
            if flags & EXEC and _cut_by_a_switch(reply):
                # The primary became a replica under this transaction: nothing of it ran.
                # Answered as a transaction whose WATCH failed, which clients retry.
                reply = b"_\r\n" if flags & RESP3 else b"*-1\r\n"
                self.errors -= 1
            elif (
                flags & UNPIN
                and reply.startswith(_UNBLOCKED)
                and b"state changed" in reply
                and self.session.slot_unblocked(self)
            ):
                return True  # blocks again on the new primary
            elif flags & _PLAIN_WRITE == WRITE and _not_executed(reply):
                # The primary was demoted under these writes (or is loading its data
                # after a restart): they did not execute.
                self.__class__ = Rerouting  # same layout: only `deliver` differs
                self.readonly = 0
                self.refusal = reply
                return self.deliver(reply)
            self.errors += 1
        self.parts.append(reply)
        self.pending -= 1
        if self.pending:
            # A big batch streams out as it arrives (when it is at the queue's head).
            if len(reply) > _STREAM_BYTES or len(self.parts) >= _STREAM_REPLIES:
                self.session.stream_head(self)
            return False
        self.session.slot_ready(self)
        return True

    def take(self, replies: list[bytes], i: int) -> tuple[int, bool]:
        """The replies this slot waits for from `replies[i:]` (`RunTaker`): where the
        next waiter's start, and True when this slot has them all. A run with no error
        is taken at once (a pipeline's replies: one call, not one each); an error, or a
        subclass with its own `deliver`, goes one reply at a time."""
        j = min(i + self.pending, len(replies))
        if self.__class__ is not Slot or errors(replies, i, j):
            while i < j:
                i += 1
                if self.deliver(replies[i - 1]):
                    return i, True
            return i, False
        run = replies[i:j]
        parts = self.parts
        parts.extend(run)  # (a gone client's `_Discarded` keeps nothing)
        self.pending -= j - i
        if self.pending:
            if len(parts) >= _STREAM_REPLIES or max(map(len, run)) > _STREAM_BYTES:
                self.session.stream_head(self)
            return j, False
        self.session.slot_ready(self)
        return j, True

    def fail(self, err: BackendError) -> None:
        self.session.slot_failed(self, err)


class Rerouting(Slot):
    """A write slot some of whose writes came back -READONLY (a demoted primary) or
    -LOADING (a primary loading its data after a restart): they surely did not execute.
    They are counted, not kept; when the old connection has answered them all, the
    session may send them to the new primary (`SlotOwner.slot_readonly`), and the slot
    waits for those replies as a plain slot.
    A reply that executed after a -READONLY (the node was master again) makes the ones
    before it plain errors: sending them later would reorder the client's writes."""

    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        if _not_executed(reply) and not self.flags & REROUTED:
            self.readonly += 1
        else:
            self._settle(reply)
            if reply[0] == 45:
                self.errors += 1
            self.parts.append(reply)
        self.pending -= 1
        if self.pending:
            return False
        if self.readonly:
            self.pending = n = self.readonly
            self.readonly = 0
            self.__class__ = Slot  # type: ignore[assignment]
            if self.session.slot_readonly(self):
                return True
            self.pending = 0
            _refused(self, n)  # (a function: `self` is a plain Slot again by now)
        self.__class__ = Slot  # type: ignore[assignment]
        self.session.slot_ready(self)
        return True

    def _settle(self, reply: bytes) -> None:
        if self.readonly:
            _refused(self, self.readonly)
            self.readonly = 0


def _refused(slot: Slot, n: int) -> None:
    """`n` writes refused for good: each answered with the refusal."""
    slot.parts.extend([slot.refusal] * n)
    slot.errors += n


def _not_executed(reply: bytes) -> bool:
    return reply.startswith(_READONLY) or reply.startswith(_LOADING)


def _cut_by_a_switch(reply: bytes) -> bool:
    return (reply.startswith(_EXECABORT) or reply.startswith(_READONLY)) and b"READONLY" in reply


def made(session: SlotOwner, reply: bytes, cls: int, t0: float) -> Slot:
    """A slot holding a reply the proxy made itself (queued behind pending replies)."""
    slot = Slot(session, [], cls, 0, t0, "", None)
    slot.parts.append(reply)
    return slot


def pop_done(
    queue: deque[Slot],
    out: list[bytes],
    stats: ProxyStats,
    now: float,
    since: float,
    slow: float,
    on_slow: Callable[[Slot, float], None],
) -> None:
    """Move every finished slot at the head of `queue` to `out`, in order, counting
    each one's latency and errors (a blocking command's wait is the client's own
    timeout, not latency; Redis' SLOWLOG leaves blocked time out too).

    `since`: when the client's previous reply went out. The latency histogram counts
    each slot from its arrival; the slow log counts only its own time, from its arrival
    or `since`, whichever is later. Redis' SLOWLOG leaves out a command's wait behind the
    client's earlier commands too: a 100k pipeline behind one slow command is one entry,
    not 100k (each also a cost on the hot path, paid while others wait). Slow means at
    least `slow` seconds, as Redis' `duration >= slowlog-log-slower-than`: at 0 every
    command is logged, even one the loop's millisecond clock saw take no time."""
    while queue and not queue[0].pending:
        s = queue.popleft()
        own = now - (s.t0 if s.t0 > since else since)
        since = now
        parts = s.parts
        if len(parts) == 1:
            out.append(parts[0])
        elif parts:
            out.extend(parts)
        if s.hist is None:
            # Not one node's (fan-outs, a cluster batch: their runs count latency and
            # errors per node) or made by the proxy (no command). The slow log is the
            # client's, not a node's: a slow one is logged all the same.
            if own >= slow and s.cmds and not s.flags & _OWN_WAIT:
                on_slow(s, own)
            continue
        if s.errors:
            stats.errors[s.cls] += s.errors
        if s.flags & UNPIN:
            continue
        dt = now - s.t0
        n = len(s.cmds)
        h = s.hist.classes[s.cls]  # its class's histogram: one call per reply, as before
        if n == 1:
            h.observe(dt)
        else:
            h.observe_n(dt, n)
        if own >= slow:
            on_slow(s, own)
