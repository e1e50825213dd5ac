"""The watchdog's firing path: a client owed a reply with no progress past every
deadline is closed and counted; progress, blocking commands and empty queues are not."""

from __future__ import annotations

from collections import deque

from config.model import BackendConfig
from proxy.server.slot import LONG, NO_DEADLINE, Slot
from proxy.server.watchdog import Watchdog
from proxy.stats import ProxyStats


class _Client:
    def __init__(self, client_id: int) -> None:
        self.id = client_id
        self.peer = "127.0.0.1:1"
        self.queue: deque[Slot] = deque()
        self.aborted = False
        self.closed = False
        self.last_cmd = 0.0
        self.waiting = False  # blocked or subscribed

    def idle_for(self, now: float) -> float:
        return 0.0 if self.queue or self.waiting else now - self.last_cmd

    def close_now(self, abort: bool = False) -> None:
        self.closed = True
        self.aborted = abort

    def owe(self, n: int, flags: int = 0) -> Slot:
        slot = Slot(self, [[b"GET", b"k"]] * n, 0, flags, 0.0, "10.0.0.1:6379", None)  # type: ignore[arg-type]
        self.queue.append(slot)
        return slot


def _dog(idle_s: int = 0) -> tuple[Watchdog, ProxyStats]:
    stats = ProxyStats()
    b = BackendConfig(timeout_ms=1000, connect_timeout_ms=500, script_timeout_ms=10000)
    return Watchdog(b, stats, idle_s), stats


def test_no_progress_past_the_limit_closes_and_counts() -> None:
    dog, stats = _dog()
    c = _Client(1)
    c.owe(1)
    assert dog.limit == 2 * 1.5 + 1.0
    dog.check(100.0, [c])  # first look: marked
    dog.check(103.9, [c])  # within the limit
    assert not c.aborted and stats.unanswered == 0
    dog.check(104.1, [c])
    assert c.aborted and stats.unanswered == 1


def test_progress_resets_the_clock() -> None:
    dog, stats = _dog()
    c = _Client(1)
    slot = c.owe(3)
    dog.check(100.0, [c])
    slot.pending = 2  # one reply arrived
    dog.check(104.5, [c])
    dog.check(108.0, [c])
    assert not c.aborted
    dog.check(109.0, [c])
    assert c.aborted and stats.unanswered == 1


def test_blocking_commands_and_scripts_have_their_own_rules() -> None:
    dog, stats = _dog()
    blocked, script = _Client(1), _Client(2)
    blocked.owe(1, NO_DEADLINE)
    script.owe(1, LONG)
    for t in (100.0, 110.0):
        dog.check(t, [blocked, script])
    assert not blocked.aborted and not script.aborted  # a script may run 10 s and more
    dog.check(113.0, [blocked, script])  # past 10 s + one try (1.5 s) + 1 s
    assert script.aborted and not blocked.aborted and stats.unanswered == 1


def test_a_client_gone_and_replaced_by_one_with_the_same_head_is_judged_afresh() -> None:
    dog, _ = _dog()
    c = _Client(1)
    c.owe(1)
    dog.check(100.0, [c])
    dog.check(101.0, [])  # gone: forgotten
    dog.check(105.0, [c])
    assert not c.aborted


def test_idle_clients_are_closed_after_timeout_s_but_not_waiting_ones() -> None:
    dog, stats = _dog(idle_s=300)
    idle, busy, subscriber = _Client(1), _Client(2), _Client(3)
    busy.owe(1)
    subscriber.waiting = True
    dog.check(299.0, [idle, busy, subscriber])
    assert not idle.closed
    dog.check(301.0, [idle, busy, subscriber])
    assert idle.closed and not idle.aborted  # closed, as Redis does, not reset
    assert not subscriber.closed and not busy.closed and stats.idle_closed == 1
    never, _ = _dog(idle_s=0)
    quiet = _Client(4)
    never.check(1e9, [quiet])
    assert not quiet.closed
