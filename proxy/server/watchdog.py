"""The backstop of "every command gets one reply or its connection is closed".

Deadlines, failed connects and retries answer every command (an error at worst) well
within a known limit. Once a second the watchdog looks at the oldest reply each client
is owed; one that made no progress past every deadline that could answer it is a bug
somewhere, and the client must not wait forever: it is counted
(`georedis_unanswered_closed_total`), logged loudly and its connection aborted
(docs/architecture.md, "Robustness mechanisms"). Progress, not age: a huge pipeline may
take long, but each look finds fewer replies owed. Nothing is recorded per reply.

The same tick closes clients idle past `[proxy] timeout_s` (Redis' `timeout`) and gives
memory back after a burst (`memory.Trimmer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from config.model import BackendConfig
from proxy.logs import log_event
from proxy.server.memory import Trimmer, settle_gc
from proxy.server.slot import LONG, NO_DEADLINE, Slot
from proxy.stats import ProxyStats

log = logging.getLogger("georedis")


class Watched(Protocol):
    queue: deque[Slot]

    def idle_for(self, now: float) -> float:
        """Seconds since its last command; 0 while it waits for something (owed
        replies, a blocking command, a subscription)."""
        ...

    @property
    def id(self) -> int: ...

    def close_now(self, abort: bool = False) -> None: ...


class Watchdog:
    def __init__(self, backend: BackendConfig, stats: ProxyStats, idle_s: int = 0) -> None:
        self.idle_s = idle_s  # [proxy] timeout_s: 0, never
        per_try = (backend.timeout_ms + backend.connect_timeout_ms) / 1000
        self.limit = 2 * per_try + 1.0  # a read may be retried once
        self.script_limit = backend.script_timeout_ms / 1000 + per_try + 1.0
        self.stats = stats
        # Per client: (the head slot, replies it still owed, when first seen so).
        self._marks: dict[int, tuple[Slot, int, float]] = {}
        self._trimmer = Trimmer()

    async def run(self, loop: asyncio.AbstractEventLoop, clients: Callable[[], Iterable[Watched]]
                  ) -> None:  # fmt: skip
        settle_gc()  # started: what start-up built stays (`memory.settle_gc`)
        while True:
            await asyncio.sleep(1.0)
            self.check(loop.time(), list(clients()))

    def check(self, now: float, clients: list[Watched]) -> None:
        self._trimmer.check(now)  # memory of a burst (big replies, churn) goes back
        marks: dict[int, tuple[Slot, int, float]] = {}
        for c in clients:
            if self.idle_s and c.idle_for(now) > self.idle_s:
                self.stats.idle_closed += 1
                c.close_now()  # as Redis: closed without a word
                continue
            if self._overdue(c, now, marks):
                self.stats.unanswered += 1
                head = c.queue[0]
                log_event(log, "unanswered", level=logging.ERROR, client=c.id,
                          owed=head.pending, node=head.node)  # fmt: skip
                c.close_now(abort=True)
        self._marks = marks  # clients gone since the last look are forgotten

    def _overdue(self, c: Watched, now: float, marks: dict[int, tuple[Slot, int, float]]) -> bool:
        if not c.queue:
            return False
        head = c.queue[0]
        if head.flags & NO_DEADLINE:
            return False
        mark = self._marks.get(c.id)
        if mark is None or mark[0] is not head or mark[1] != head.pending:
            marks[c.id] = (head, head.pending, now)
            return False
        marks[c.id] = mark
        return now - mark[2] > (self.script_limit if head.flags & LONG else self.limit)
