"""`pop_done`: what the latency histogram and the slow log count, on plain objects."""

from __future__ import annotations

from collections import deque

from proxy.server.slot import NO_DEADLINE, READ, UNPIN, WRITE, Slot, made, pop_done
from proxy.stats import NodeLatency, ProxyStats


class _Owner:
    def slot_ready(self, slot: Slot) -> None: ...
    def stream_head(self, slot: Slot) -> None: ...
    def slot_failed(self, slot: Slot, err: object) -> None: ...
    def slot_loading(self, slot: Slot) -> bool:
        return False


def _answered(t0: float, hist: NodeLatency) -> Slot:
    slot = Slot(_Owner(), [[b"GET", b"k"]], 0, 0, t0, "n1", hist)
    slot.parts.append(b"$-1\r\n")
    slot.pending = 0
    return slot


def _pop(queue: deque[Slot], now: float, since: float) -> list[float]:
    slow: list[float] = []
    out: list[bytes] = []
    pop_done(queue, out, ProxyStats(), now, since, 0.010, lambda s, d: slow.append(d))
    return slow


def test_a_pipeline_behind_its_own_slow_head_is_one_slow_entry() -> None:
    hist = NodeLatency()
    queue = deque(_answered(0.0, hist) for _ in range(1000))
    assert _pop(queue, now=0.5, since=0.0) == [0.5]
    assert not queue
    assert hist.count == 1000  # the histogram still counts each from its arrival


def test_own_time_starts_at_the_previous_reply_when_that_is_later() -> None:
    hist = NodeLatency()
    assert _pop(deque([_answered(0.0, hist)]), now=0.5, since=0.495) == []
    assert _pop(deque([_answered(0.0, hist)]), now=0.5, since=0.4) == [0.5 - 0.4]
    assert _pop(deque([_answered(0.3, hist)]), now=0.5, since=0.1) == [0.5 - 0.3]


def test_a_fast_command_is_not_slow() -> None:
    assert _pop(deque([_answered(0.0, NodeLatency())]), now=0.005, since=0.0) == []


def _unattached(flags: int) -> Slot:
    """A slot that is no one node's (a cluster batch's `_Whole`, a fan-out's gather)."""
    slot = Slot(_Owner(), [[b"GET", b"a"], [b"GET", b"b"]], 0, flags, 0.0, "", None)
    slot.parts.extend([b"$-1\r\n"] * 2)
    slot.pending = 0
    return slot


def test_a_slow_command_of_no_one_node_is_still_slow() -> None:
    """A cluster pipeline (or a fan-out) counts its latency per node, in its runs; its
    slow log entry is the client's and was missing (no `hist`, skipped whole)."""
    assert _pop(deque([_unattached(READ)]), now=0.5, since=0.0) == [0.5]
    assert _pop(deque([_unattached(0)]), now=0.5, since=0.0) == [0.5]
    assert _pop(deque([_unattached(READ)]), now=0.005, since=0.0) == []


def test_made_replies_and_the_clients_own_waits_are_not_slow() -> None:
    made_slot = made(_Owner(), b"+OK\r\n", 0, 0.0)  # no command: nothing to log
    assert _pop(deque([made_slot]), now=0.5, since=0.0) == []
    assert _pop(deque([_unattached(NO_DEADLINE)]), now=0.5, since=0.0) == []  # PROXY verb
    assert _pop(deque([_unattached(UNPIN)]), now=0.5, since=0.0) == []  # a blocking one


class _Refusing(_Owner):
    def slot_readonly(self, slot: Slot) -> bool:
        return False  # a second -READONLY, or no hold to wait in: passed on


def test_writes_refused_for_good_are_answered_with_the_refusal() -> None:
    """A write slot whose -READONLY tail may not wait for a new primary answers each of
    those writes with the refusal (it raised AttributeError there once, and the backend
    connection, shared with other clients, was aborted as an internal error)."""
    slot = Slot(_Refusing(), [[b"SET", b"k", b"v"]] * 2, 0, WRITE, 0.0, "n1", None)
    assert not slot.deliver(b"+OK\r\n")
    assert slot.deliver(b"-READONLY You can't write against a read only replica.\r\n")
    assert slot.parts == [b"+OK\r\n", b"-READONLY You can't write against a read only replica.\r\n"]
    assert slot.errors == 1 and slot.pending == 0 and type(slot) is Slot


def test_at_a_zero_threshold_every_command_is_slow() -> None:
    """Redis logs `duration >= slowlog-log-slower-than`: 0 logs everything, also what
    the event loop's millisecond clock saw take no time at all."""
    logged: list[float] = []
    queue = deque([_answered(0.25, NodeLatency()), _unattached(READ)])
    pop_done(queue, [], ProxyStats(), 0.25, 0.25, 0.0, lambda s, d: logged.append(d))
    assert logged == [0.0, 0.0]
