"""Review 2: lag after a gap in the heartbeats, offset history across a lost round."""

from __future__ import annotations

import dataclasses

import pytest

from routing.eligibility import (
    EligibilityState,
    evaluate,
    heartbeat_lag_ms,
    next_beat,
)
from routing.topology import OffsetSample, Reason
from tests.unit.routing.test_eligibility import (
    NOW,
    POLICY,
    R1,
    down,
    master,
    replica,
    run,
    wall_ms,
)

P = master().addr


def test_heartbeat_lag_after_gap_measured_from_next_beat() -> None:
    # Beats at 1000, then none until 2500 (the primary stalled), acked; the replica
    # still shows 1000 at t=2550: it lacks only the beat of 2500, so ~50 ms behind,
    # not 1.5 s.
    assert heartbeat_lag_ms(1000.0, 2500.0, 2550.0, 100, v_next=2500.0) == pytest.approx(100.0)
    # Beats every interval: v_next changes nothing.
    plain = heartbeat_lag_ms(1000.0, 1300.0, 1350.0, 100)
    assert heartbeat_lag_ms(1000.0, 1300.0, 1350.0, 100, v_next=1100.0) == plain == 300.0
    # Really behind after the gap: it grows again with t.
    assert heartbeat_lag_ms(1000.0, 2500.0, 4500.0, 100, v_next=2500.0) == 2050.0


def test_next_beat_only_when_history_covers_the_value() -> None:
    acks = (1000.0, 1100.0, 2500.0)
    assert next_beat(1100.0, acks) == 2500.0
    assert next_beat(1050.0, acks) == 1100.0
    assert next_beat(2500.0, acks) is None  # has the newest
    assert next_beat(900.0, acks) is None  # older than the history: unknown next beat


def test_replica_after_primary_stall_not_lagging() -> None:
    """The replica's value predates a 1.5 s gap in the beats; it lacks only the first
    beat after it, acked 60 ms before the probe."""
    policy = dataclasses.replace(POLICY, max_lag_ms=1000)
    before = wall_ms(NOW) - 1560
    after = wall_ms(NOW) - 60
    acks = (before - 100, before, after)
    r = replica(heartbeat=before)
    snap, _ = evaluate(
        (master(), r),
        EligibilityState(),
        policy,
        heartbeat_acked_ms=after,
        version=1,
        heartbeat_acks=acks,
    )
    node = snap.node(R1)
    assert node is not None and node.lag_ms is not None
    assert node.lag_ms < 200 and node.reason is Reason.OK
    # Without the history the whole gap reads as lag (the old behaviour).
    snap, _ = evaluate(
        (master(), r), EligibilityState(), policy, heartbeat_acked_ms=after, version=1
    )
    node = snap.node(R1)
    assert node is not None and node.reason is Reason.LAGGING


def test_offset_history_survives_a_round_without_primary() -> None:
    """heartbeat = false: one lost probe of the primary must not wipe the offset
    history, or every replica slightly behind reads as 'lag unknown' -> lagging."""
    policy = dataclasses.replace(POLICY, heartbeat=False, max_lag_ms=1000)
    history = (OffsetSample(NOW - 0.4, 1000), OffsetSample(NOW - 0.2, 2000))
    state = EligibilityState(primary=P, offsets=history)
    _, state = evaluate(
        (down(P, "sg"), replica(offset=2000)),
        state,
        policy,
        heartbeat_acked_ms=None,
        version=1,
    )
    snap, state = run(
        master(offset=3000, sent_at=NOW + 0.2),
        replica(offset=2000, sent_at=NOW + 0.2, received_at=NOW + 0.201),
        state=state,
        policy=policy,
    )
    node = snap.node(R1)
    # It has what the primary had at NOW - 0.2: ~400 ms behind at most, known.
    assert node is not None and node.lag_ms == pytest.approx(400.5, abs=0.01)
    assert node.reason is Reason.OK
    assert state.offsets[0] == history[0]


def test_offset_history_still_restarts_when_another_master_returns() -> None:
    history = (OffsetSample(NOW - 0.4, 1000), OffsetSample(NOW - 0.2, 2000))
    _, state = run(down(P, "sg"), state=EligibilityState(primary=P, offsets=history))
    other = master(addr=R1, offset=50, sent_at=NOW + 0.2)
    _, state = run(other, state=state)
    assert state.primary == R1 and state.offsets == (OffsetSample(NOW + 0.2, 50),)
