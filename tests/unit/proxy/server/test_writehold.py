"""`WriteHold` on a real event loop without sockets: who waits, in which order, and
what ends a hold (a snapshot with a primary, `release`, or its timer)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from config.model import Address, FailoverConfig
from proxy.server.slot import WRITE, Slot
from proxy.server.writehold import FAILOVER, NO_PRIMARY, READONLY, WriteHold
from proxy.stats import ProxyStats
from tests.unit.proxy.server.fakes import EU, PRIMARY, US, snapshot

NEW = dataclasses.replace(US, addr=Address("10.1.0.9", 6379), reason=PRIMARY.reason,
                          role=PRIMARY.role, eligible=False)  # fmt: skip
WITH_PRIMARY = snapshot(US, EU, version=5)
NONE = snapshot(US, EU, primary=None, error="no primary reachable", version=5)

log: list[tuple[str, object]] = []  # what the fakes saw, in order (reset per test)


class _Held:
    """A client waiting for the hold."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[bytes | None] = []

    def unhold(self, error: bytes | None) -> None:
        self.errors.append(error)
        log.append((self.name, error))


class _Rerouter:
    def __init__(self) -> None:
        self.sent: list[Slot] = []

    def send_rerouted(self, slot: Slot) -> None:
        self.sent.append(slot)
        log.append(("resend", slot))


class _Owner:
    def __init__(self) -> None:
        self.ready: list[Slot] = []

    def slot_ready(self, slot: Slot) -> None:
        self.ready.append(slot)

    def stream_head(self, slot: Slot) -> None: ...
    def slot_failed(self, slot: Slot, err: object) -> None: ...
    def slot_loading(self, slot: Slot) -> bool:
        return False

    def slot_unblocked(self, slot: Slot) -> bool:
        return False

    def slot_readonly(self, slot: Slot) -> bool:
        return False


class _Setup:
    def __init__(self, loop: asyncio.AbstractEventLoop, cfg: FailoverConfig) -> None:
        self.loop = loop
        self.refreshes = 0
        self.stats = ProxyStats()
        self.hold = WriteHold(loop, cfg, self._refresh, self.stats)

    def _refresh(self) -> None:
        self.refreshes += 1

    def wait(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    log.clear()
    try:
        yield lp
    finally:
        lp.close()


def _setup(loop: asyncio.AbstractEventLoop, hold_ms: int = 5000, without_ms: int = 2000,
           max_bytes: int = 1 << 20) -> _Setup:  # fmt: skip
    cfg = FailoverConfig(hold_ms=hold_ms, hold_without_primary_ms=without_ms,
                         hold_max_bytes=max_bytes)  # fmt: skip
    return _Setup(loop, cfg)


def _slot(owner: _Owner, n: int = 3, pending: int = 2, node: str = "10.0.0.1:6379") -> Slot:
    cmds = [[b"SET", b"k%d" % i, b"v"] for i in range(n)]
    slot = Slot(owner, cmds, 1, WRITE, 0.0, node, None)
    slot.pending = pending
    return slot


def test_a_write_without_primary_starts_a_hold_and_asks_for_a_probe_round(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop)
    a = _Held("a")
    assert s.hold.hold(a, 1, 10, NONE) is None
    assert s.hold.active and s.hold.reason == NO_PRIMARY
    assert s.refreshes == 1
    assert s.hold.waiting == 1 and s.stats.writes_held == 1
    assert a.errors == []
    # A second client joins the same hold: no second probe request.
    assert s.hold.hold(_Held("b"), 2, 10, NONE) is None
    assert s.refreshes == 1 and s.hold.waiting == 2


def test_a_snapshot_with_a_primary_releases_resends_first_then_clients_in_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop, without_ms=50)
    clients = [_Held(name) for name in ("c", "a", "b")]
    for cid, c in enumerate(clients):
        assert s.hold.hold(c, cid, 10, NONE) is None
    router = _Rerouter()
    slot = _slot(_Owner())
    assert s.hold.resend(router, slot, "10.0.0.1:6379", NONE)
    assert s.hold.waiting == 4
    s.hold.on_snapshot(NONE)  # still no primary: nothing happens
    assert log == [] and s.hold.active
    s.hold.on_snapshot(snapshot(US, EU, primary=NEW, version=6))
    assert log == [("resend", slot), ("c", None), ("a", None), ("b", None)]
    assert not s.hold.active and s.hold.reason == "" and s.hold.waiting == 0
    assert router.sent == [slot]
    # The timer was cancelled: nothing more after the bound.
    s.wait(0.1)
    assert [c.errors for c in clients] == [[None], [None], [None]]
    assert s.stats.write_holds_expired == 0


def test_a_client_held_twice_is_unheld_once(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop)
    a = _Held("a")
    assert s.hold.hold(a, 1, 10, NONE) is None
    assert s.hold.hold(a, 1, 10, NONE) is None
    s.hold.release()
    assert a.errors == [None]


def test_a_client_that_left_is_not_unheld(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop, max_bytes=100)
    a, b = _Held("a"), _Held("b")
    assert s.hold.hold(a, 1, 60, NONE) is None
    s.hold.forget(1)
    assert s.hold.hold(b, 2, 60, NONE) is None  # a's bytes were given back
    s.hold.release()
    assert a.errors == [] and b.errors == [None]


def test_a_failover_hold_ends_only_with_release(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop)
    s.hold.begin(FAILOVER, WITH_PRIMARY)
    assert s.hold.active and s.hold.reason == FAILOVER
    assert s.refreshes == 0  # the orchestration probes itself
    a = _Held("a")
    assert s.hold.hold(a, 1, 10, WITH_PRIMARY) is None
    s.hold.on_snapshot(snapshot(US, EU, primary=NEW, version=9))
    assert s.hold.active and a.errors == []
    # A -READONLY or a missing primary does not shorten it either.
    s.hold.begin(READONLY, WITH_PRIMARY, "10.0.0.1:6379")
    s.hold.begin(NO_PRIMARY, NONE)
    assert s.hold.reason == FAILOVER
    s.hold.release()
    assert not s.hold.active and a.errors == [None]


def test_a_failover_hold_replaces_a_shorter_one(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop, hold_ms=5000, without_ms=100)
    a = _Held("a")
    assert s.hold.hold(a, 1, 10, NONE) is None
    s.hold.begin(FAILOVER, NONE)
    assert s.hold.reason == FAILOVER
    s.wait(0.2)  # past the no-primary bound: the failover's bound counts now
    assert s.hold.active and a.errors == []
    s.hold.release()
    assert a.errors == [None]


def test_a_hold_without_primary_expires_then_writes_are_refused_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop, without_ms=300)
    a, b = _Held("a"), _Held("b")
    router = _Rerouter()
    owner = _Owner()
    slot = _slot(owner, n=3, pending=2)
    slot.parts.append(b"+OK\r\n")
    assert s.hold.hold(a, 1, 10, NONE) is None
    assert s.hold.hold(b, 2, 10, NONE) is None
    s.hold.resend(router, slot, "10.0.0.1:6379", NONE)  # joins the running hold
    s.wait(0.01)
    assert s.hold.active and a.errors == []
    s.wait(0.35)
    assert not s.hold.active and s.stats.write_holds_expired == 1
    assert [n for n, _ in log] == ["a", "b"]
    for c in (a, b):
        (err,) = c.errors
        assert err is not None and err.startswith(b"-ERR georedis: no primary")
        assert err.endswith(b"\r\n")
    # The held slot's writes got the error, not a resend.
    assert router.sent == [] and owner.ready == [slot] and slot.pending == 0
    assert slot.parts[0] == b"+OK\r\n" and len(slot.parts) == 3
    assert all(p.startswith(b"-ERR georedis: no primary") for p in slot.parts[1:])
    # Refused at once now, and no new hold starts.
    c = _Held("c")
    err = s.hold.hold(c, 3, 10, NONE)
    assert err is not None and err.startswith(b"-ERR georedis: no primary")
    assert not s.hold.active and s.refreshes == 1
    # A snapshot without a primary changes nothing ...
    s.hold.on_snapshot(NONE)
    assert s.hold.hold(c, 3, 10, NONE) is not None
    # ... one with a primary ends the refusing: the next missing primary waits again.
    s.hold.on_snapshot(WITH_PRIMARY)
    assert s.hold.hold(c, 3, 10, NONE) is None
    assert s.hold.active and s.hold.reason == NO_PRIMARY and s.refreshes == 2
    assert c.errors == []


def test_no_waiting_without_primary_when_the_bound_is_zero(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop, without_ms=0)
    err = s.hold.hold(_Held("a"), 1, 10, NONE)
    assert err == b"-ERR georedis: no primary (no primary reachable); writes refused\r\n"
    assert not s.hold.active and s.refreshes == 0


def test_an_expired_failover_hold_says_not_executed(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop, hold_ms=30)
    s.hold.begin(FAILOVER, WITH_PRIMARY)
    a = _Held("a")
    assert s.hold.hold(a, 1, 10, WITH_PRIMARY) is None
    s.wait(0.1)
    (err,) = a.errors
    assert err is not None and err.startswith(b"-ERR georedis: write not executed")
    assert b"failover" in err
    # Not a missing primary: writes are not refused afterwards.
    assert s.hold.hold(_Held("b"), 2, 10, NONE) is None and s.hold.reason == NO_PRIMARY


def test_over_hold_max_bytes_a_write_gets_not_executed_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop, max_bytes=100)
    a, b, c = _Held("a"), _Held("b"), _Held("c")
    assert s.hold.hold(a, 1, 60, NONE) is None
    err = s.hold.hold(b, 2, 41, NONE)
    assert err is not None and b"not executed" in err and b"hold_max_bytes" in err
    assert err.startswith(b"-ERR georedis:")
    assert s.hold.hold(c, 3, 40, NONE) is None  # exactly at the limit still waits
    s.hold.release()
    assert a.errors == [None] and b.errors == [] and c.errors == [None]
    assert s.stats.writes_held == 2


def test_a_readonly_hold_waits_for_a_round_probed_after_the_refusal(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop)
    router = _Rerouter()
    slot = _slot(_Owner())
    trigger = snapshot(US, EU, version=10)
    assert s.hold.resend(router, slot, "10.0.0.1:6379", trigger)
    assert s.hold.active and s.hold.reason == READONLY and s.refreshes == 1
    assert s.stats.writes_held == 2  # the slot's pending writes
    # The same node as primary, in a round that may predate the refusal: still held.
    s.hold.on_snapshot(dataclasses.replace(trigger, version=10))
    s.hold.on_snapshot(dataclasses.replace(trigger, version=11))
    assert s.hold.active and router.sent == []
    # Another primary: released, the slot is sent there.
    s.hold.on_snapshot(snapshot(US, EU, primary=NEW, version=11))
    assert not s.hold.active and router.sent == [slot]


def test_a_readonly_hold_ends_when_two_rounds_still_show_the_same_primary(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The node that refused is still the primary two rounds later (it was only a
    replica for a moment): the writes go back to it."""
    s = _setup(loop)
    router = _Rerouter()
    slot = _slot(_Owner())
    s.hold.resend(router, slot, "10.0.0.1:6379", snapshot(US, EU, version=10))
    s.hold.on_snapshot(snapshot(US, EU, version=12))
    assert not s.hold.active and router.sent == [slot]


def test_a_readonly_hold_is_not_ended_by_a_snapshot_with_a_primary_error(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop)
    router = _Rerouter()
    s.hold.resend(router, _slot(_Owner()), "10.0.0.1:6379", snapshot(US, EU, version=1))
    s.hold.on_snapshot(snapshot(US, EU, primary=NEW, error="2 masters", version=5))
    assert s.hold.active and router.sent == []


def test_an_expired_readonly_hold_answers_the_slot_not_executed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    s = _setup(loop, hold_ms=30)
    owner = _Owner()
    slot = _slot(owner, n=2, pending=2)
    s.hold.resend(_Rerouter(), slot, "10.0.0.1:6379", snapshot(US, EU, version=1))
    s.wait(0.1)
    assert owner.ready == [slot] and slot.pending == 0
    assert len(slot.parts) == 2
    assert all(p.startswith(b"-ERR georedis: write not executed") for p in slot.parts)
    assert not s.hold.active and s.stats.write_holds_expired == 1


def test_held_time_is_counted(loop: asyncio.AbstractEventLoop) -> None:
    s = _setup(loop)
    s.hold.hold(_Held("a"), 1, 10, NONE)
    s.wait(0.05)
    s.hold.on_snapshot(WITH_PRIMARY)
    assert 40 <= s.stats.write_hold_ms < 1000


class _Paused:
    """A client CLIENT PAUSE ALL holds: what it is told when released."""

    def __init__(self) -> None:
        self.on_hold = False
        self.got: list[bytes | None] = []

    def unhold(self, error: bytes | None) -> None:
        self.on_hold = False
        self.got.append(error)


def test_a_pause_outlives_a_failover_and_never_errs_its_idle_clients() -> None:
    """A failover that takes a pause over ends with its release, and the pause goes on:
    clients it holds (and those connecting meanwhile) are let go only at its end, with
    no error; a failover hold expiring meanwhile sends them nothing."""
    import asyncio

    from config.model import FailoverConfig
    from proxy.server.writehold import FAILOVER, PAUSE, WriteHold
    from proxy.stats import ProxyStats
    from routing.topology import EMPTY

    async def run() -> None:
        loop = asyncio.get_running_loop()
        h = WriteHold(loop, FailoverConfig(hold_ms=50), lambda: None, ProxyStats())
        a, b, c = _Paused(), _Paused(), _Paused()
        h.pause(300, {1: a})
        h.begin(FAILOVER, EMPTY)
        h.release()
        assert a.on_hold and a.got == [] and h.active and h.reason == PAUSE
        h.also_pause(2, b)
        h.begin(FAILOVER, EMPTY)
        h.also_pause(3, c)
        await asyncio.sleep(0.15)  # the failover's hold expires: held writes get errors
        assert a.got == b.got == c.got == [] and a.on_hold and c.on_hold
        await asyncio.sleep(0.3)  # the pause ends
        assert a.got == b.got == c.got == [None] and not (a.on_hold or b.on_hold or c.on_hold)
        assert not h.active

    asyncio.run(run())
