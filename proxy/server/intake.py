"""What a client sent that is not dispatched yet, and when to stop reading from it.

Work per client per loop turn is bounded (docs/architecture.md, "Bounds on memory and
work per client"): at most `TURN_BUDGET` commands are dispatched one by one in a turn, and
no more while `MAX_QUEUED` reply slots are owed; the rest waits in `held` and reading
pauses until it is dispatched. Reading also pauses while the client's socket send buffer
is full (it sends faster than it reads). One client's 100k-command pipeline then costs
the others a few milliseconds a turn, not the whole batch at once, and its memory stays
bounded by what it may have in flight.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sized

TURN_BUDGET = 256
MAX_QUEUED = 1024
PAUSED_WRITES = 1  # the client's socket send buffer is full
PAUSED_BACKLOG = 2  # commands wait in `held`
PAUSED_HOLD = 4  # a write waits for the primary to change (`writehold`)

Dispatch = Callable[[list[bytes], float], None]


class Intake:
    __slots__ = ("_dispatch", "_loop", "_paused", "_resume", "_scheduled", "held", "transport")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, dispatch: Dispatch, resume: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._dispatch = dispatch  # Session.dispatch: one command
        self._resume = resume  # Session.resume: dispatch `held` (if it may) and flush
        self._scheduled = False
        self._paused = 0  # why reading is paused: PAUSED_* bits
        self.held: deque[list[bytes]] = deque()  # commands for a later turn
        self.transport: asyncio.Transport | None = None

    def pause(self, why: int) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused |= why

    def unpause(self, why: int) -> None:
        was = self._paused
        self._paused &= ~why
        t = self.transport
        if was and not self._paused and t is not None and not t.is_closing():
            t.resume_reading()

    def keep(self, cmds: Iterable[list[bytes]]) -> None:
        """Commands that must wait behind earlier ones (a blocking command in flight)."""
        self.held.extend(cmds)
        if len(self.held) > TURN_BUDGET:
            self.pause(PAUSED_BACKLOG)

    def run(self, cmds: list[list[bytes]] | deque[list[bytes]], now: float, owed: Sized,
            stop: Callable[[], bool]) -> None:  # fmt: skip
        """Dispatch in order within the turn's budget; `stop()` says the session can
        take no more now (closing, or blocked: the rest waits in `held`)."""
        for i, args in enumerate(cmds):
            if stop():
                self.held.extend(itertools.islice(cmds, i, None))
                return
            if i >= TURN_BUDGET or len(owed) >= MAX_QUEUED:
                self.held.extend(itertools.islice(cmds, i, None))
                self.pause(PAUSED_BACKLOG)
                if len(owed) < MAX_QUEUED:
                    self.schedule()
                # else: `drained` schedules it once the owed replies drain.
                return
            self._dispatch(args, now)

    def wait(self, args: list[bytes]) -> None:
        """A write held (`writehold`): it goes back to the head, reading pauses."""
        self.held.appendleft(args)
        self.pause(PAUSED_HOLD)

    def end_wait(self, drop: bool) -> None:
        """The hold ended: dispatch and reading go on (`drop`: without the held write,
        which is answered with an error instead)."""
        if drop and self.held:
            self.held.popleft()
        self.unpause(PAUSED_HOLD)
        self.schedule()

    def take(self) -> deque[list[bytes]]:
        held, self.held = self.held, deque()
        return held

    def drained(self, owed: int) -> None:
        """Replies went out: commands held while too many were owed may go now."""
        if self.held and owed < MAX_QUEUED // 2:
            self.schedule()

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._fire)

    def _fire(self) -> None:
        self._scheduled = False
        self._resume()

    def settle(self) -> None:
        """After a resume: reading goes on once nothing is held."""
        if not self.held:
            self.unpause(PAUSED_BACKLOG)
