"""Unit tests for routing.eligibility: probe results in, snapshot out (no sockets)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from config.model import Address
from routing.eligibility import (
    INITIAL_STATE,
    OFFSET_WINDOW_S,
    EligibilityState,
    LagMemory,
    Policy,
    evaluate,
    heartbeat_lag_ms,
    next_beat,
    offset_lag_ms,
    record_offset,
    update_lag_memory,
)
from routing.probe import ProbeResult, epoch_value, parse_info, result_from_info
from routing.topology import OffsetSample, Reason, Role, Snapshot

P = Address("10.0.0.1", 6379)
R1 = Address("10.0.1.1", 6379)
R2 = Address("10.0.2.1", 6379)
M2 = Address("10.0.3.1", 6379)

POLICY = Policy(max_lag_ms=100, lag_recovery_ms=1000, heartbeat=True, heartbeat_ms=100)
NOW = 1000.0  # loop.time() of "this round"
WALL = 1_700_000_000.0  # time.time() - loop.time(): the wall clock at loop time 0


def master(addr: Address = P, replid: str = "A" * 40, offset: int = 5000, **kw: Any) -> ProbeResult:
    kw.setdefault("sent_at", NOW)
    kw.setdefault("received_at", NOW + 0.001)
    return ProbeResult(
        addr=addr, region="sg", ok=True, role="master", replid=replid, offset=offset, **kw
    )


def replica(
    addr: Address = R1, replid: str = "A" * 40, offset: int = 5000, **kw: Any
) -> ProbeResult:
    kw.setdefault("sent_at", NOW)
    kw.setdefault("received_at", NOW + 0.001)
    kw.setdefault("region", "us")
    kw.setdefault("master_link_status", "up")
    kw.setdefault("wall_offset_s", WALL)
    return ProbeResult(addr=addr, ok=True, role="slave", replid=replid, offset=offset, **kw)


def down(addr: Address, region: str = "us") -> ProbeResult:
    return ProbeResult(addr=addr, region=region, ok=False, error=f"{addr}: timeout after 500 ms")


def wall_ms(loop_t: float) -> float:
    return (loop_t + WALL) * 1000


def run(
    *results: ProbeResult,
    state: EligibilityState = INITIAL_STATE,
    policy: Policy = POLICY,
    acked: float | None = None,
    version: int = 1,
) -> tuple[Snapshot, EligibilityState]:
    return evaluate(results, state, policy, heartbeat_acked_ms=acked, version=version)


def reason_of(snap: Snapshot, addr: Address) -> Reason:
    node = snap.node(addr)
    assert node is not None
    return node.reason


# --- INFO parsing ------------------------------------------------------------------------

MASTER_INFO = b"""# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r
master_replid:abc\r
master_replid2:0000000000000000000000000000000000000000\r
master_repl_offset:42\r
\r
# Persistence\r
loading:0\r
async_loading:0\r
"""

REPLICA_INFO = """# Replication
role:slave
master_host:192.168.77.7
master_port:6379
master_link_status:down
master_link_down_since_seconds:-1
master_sync_in_progress:1
slave_repl_offset:40
master_replid:abc
master_repl_offset:42
# Persistence
loading:0
async_loading:1
"""


def test_parse_info_master() -> None:
    info = parse_info(MASTER_INFO)
    assert info["slave0"] == "ip=127.0.0.1,port=7001,state=online,offset=42,lag=0"
    r = result_from_info(P, "sg", info, heartbeat=b"123.5", sent_at=1.0, received_at=2.0)
    assert (r.ok, r.role, r.replid, r.offset, r.loading) == (True, "master", "abc", 42, False)
    assert r.heartbeat == 123.5
    assert (r.sent_at, r.received_at) == (1.0, 2.0)


def test_parse_info_replica_uses_slave_offset_and_flags() -> None:
    r = result_from_info(R1, "us", parse_info(REPLICA_INFO), heartbeat=None)
    assert r.role == "slave"
    assert r.offset == 40  # slave_repl_offset, not master_repl_offset
    assert r.master_link_status == "down"
    assert r.sync_in_progress and not r.link_ever_up
    assert r.loading  # async_loading counts as loading
    assert r.heartbeat is None


def test_parse_info_replica_without_slave_offset_falls_back() -> None:
    info = parse_info("role:slave\nmaster_repl_offset:77\nmaster_link_status:up\n")
    r = result_from_info(R1, "us", info)
    assert r.offset == 77 and r.link_ever_up


def test_bad_heartbeat_value_is_none() -> None:
    assert result_from_info(R1, "us", {"role": "slave"}, heartbeat=b"garbage").heartbeat is None


# --- primary -------------------------------------------------------------------------------


def test_single_master_is_primary_and_replica_ok() -> None:
    snap, _ = run(master(), replica(), version=7)
    assert snap.version == 7
    assert snap.primary is not None and snap.primary.addr == P
    assert snap.primary.role is Role.PRIMARY and snap.primary.reason is Reason.PRIMARY
    assert not snap.primary.eligible
    assert snap.primary_error == ""
    r = snap.node(R1)
    assert r is not None and r.eligible and r.reason is Reason.OK and r.role is Role.REPLICA


def test_replica_reaching_primary_through_other_address_matches_by_replid() -> None:
    # The replica's master_host is a NAT address we do not know; the replid decides.
    info = parse_info(
        "role:slave\nmaster_host:192.168.77.7\nmaster_port:16379\nmaster_link_status:up\n"
        f"master_replid:{'A' * 40}\nslave_repl_offset:5000\n"
    )
    r = result_from_info(R1, "us", info, sent_at=NOW, received_at=NOW + 0.001)
    snap, _ = run(master(), r)
    assert reason_of(snap, R1) is Reason.OK


def test_two_masters_mean_no_primary_even_if_one_has_followers() -> None:
    snap, _ = run(master(P, replid="A" * 40), master(M2, replid="B" * 40), replica(R1))
    assert snap.primary is None
    assert snap.primary_error == f"2 masters: {P}, {M2}"
    for addr in (P, M2):
        node = snap.node(addr)
        assert node is not None and node.role is Role.MASTER and node.reason is Reason.NO_PRIMARY
    assert reason_of(snap, R1) is Reason.NO_PRIMARY
    assert snap.eligible_by_region == {"sg": (), "us": ()}


def test_no_master_reachable() -> None:
    snap, _ = run(down(P, "sg"), replica(R1, master_link_status="down"))
    assert snap.primary is None and snap.primary_error == "no primary reachable"
    assert reason_of(snap, P) is Reason.DOWN
    assert reason_of(snap, R1) is Reason.LINK_DOWN


# --- every reason --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ok": False, "error": "x: timeout"}, Reason.DOWN),
        ({"loading": True}, Reason.LOADING),
        ({"sync_in_progress": True}, Reason.SYNCING),
        ({"master_link_status": "down", "link_ever_up": False}, Reason.SYNCING),
        ({"master_link_status": "down"}, Reason.LINK_DOWN),
        ({"replid": "C" * 40}, Reason.FOREIGN_REPLID),
        ({"heartbeat": wall_ms(NOW) - 500}, Reason.LAGGING),
        ({}, Reason.OK),
    ],
)
def test_replica_reasons(changes: dict[str, Any], reason: Reason) -> None:
    r = dataclasses.replace(replica(heartbeat=wall_ms(NOW)), **changes)
    snap, _ = run(master(), r, acked=wall_ms(NOW))
    node = snap.node(R1)
    assert node is not None
    assert node.reason is reason
    assert node.eligible is (reason is Reason.OK)
    assert snap.eligible_by_region["us"] == ((node,) if node.eligible else ())


def test_down_node_keeps_error_text() -> None:
    snap, _ = run(master(), down(R1))
    node = snap.node(R1)
    assert node is not None and not node.up and "timeout" in node.error


def test_eligible_by_region_keeps_node_order() -> None:
    snap, _ = run(master(), replica(R1), replica(R2, region="us"), replica(M2, region="eu"))
    assert [n.addr for n in snap.eligible_by_region["us"]] == [R1, R2]
    assert [n.addr for n in snap.eligible_by_region["eu"]] == [M2]
    assert snap.eligible_by_region["sg"] == ()


def test_lag_bytes() -> None:
    snap, _ = run(master(offset=9000), replica(offset=8000, heartbeat=wall_ms(NOW)), acked=1.0)
    node = snap.node(R1)
    assert node is not None and node.lag_bytes == 1000


# --- lag formula ---------------------------------------------------------------------------


def test_heartbeat_lag_zero_when_replica_has_last_acked_value() -> None:
    assert heartbeat_lag_ms(5000.0, 5000.0, 5090.0, 100) == 0.0
    assert heartbeat_lag_ms(5100.0, 5000.0, 5090.0, 100) == 0.0


@pytest.mark.parametrize("delay_ms", [0, 30, 200, 1000])
def test_heartbeat_lag_estimates_delay_within_half_interval(delay_ms: int) -> None:
    interval = 100
    for t in range(10_000, 10_400, 7):  # many phases of probe vs heartbeat ticks
        v_last = (t // interval) * interval  # last value written (and acked) before t
        seen = t - delay_ms  # the replica applies writes delay_ms late
        v_r = float((seen // interval) * interval)
        lag = heartbeat_lag_ms(v_r, float(v_last), float(t), interval)
        assert abs(lag - delay_ms) <= interval / 2, (t, lag)


def test_heartbeat_lag_never_negative() -> None:
    assert heartbeat_lag_ms(1000.0, 2000.0, 1010.0, 100) == 0.0


def test_lag_ms_from_heartbeat_in_snapshot() -> None:
    r = replica(heartbeat=wall_ms(NOW) - 250)  # 250 ms old value at the probe midpoint
    snap, _ = run(
        master(), r, acked=wall_ms(NOW), policy=dataclasses.replace(POLICY, max_lag_ms=1000)
    )
    node = snap.node(R1)
    assert node is not None and node.lag_ms is not None
    assert node.lag_ms == pytest.approx(250 + 0.5 - 50, abs=0.01)  # midpoint is +0.5 ms
    assert node.eligible


def test_heartbeat_ignored_until_one_was_acknowledged() -> None:
    # A leftover value from an earlier run is ancient; with nothing acked yet the
    # offsets decide (equal offsets: not behind).
    snap, _ = run(master(), replica(heartbeat=wall_ms(NOW) - 60_000), acked=None)
    node = snap.node(R1)
    assert node is not None and node.lag_ms == 0.0 and node.eligible


def test_missing_heartbeat_key_falls_back_to_offsets() -> None:
    state = EligibilityState(
        primary=P, offsets=(OffsetSample(NOW - 0.6, 1000), OffsetSample(NOW - 0.4, 3000))
    )
    snap, _ = run(master(offset=5000), replica(offset=3000), state=state, acked=wall_ms(NOW))
    node = snap.node(R1)
    # Has everything the primary had at NOW - 0.4: at most ~400 ms behind.
    assert node is not None and node.lag_ms == pytest.approx(400.5, abs=0.01)
    assert node.reason is Reason.LAGGING


def test_heartbeat_disabled_uses_offsets() -> None:
    policy = dataclasses.replace(POLICY, heartbeat=False)
    snap, _ = run(master(), replica(heartbeat=wall_ms(NOW) - 5000), policy=policy, acked=1.0)
    node = snap.node(R1)
    assert node is not None and node.lag_ms == 0.0 and node.eligible


def test_unknown_lag_counts_as_lagging() -> None:
    # No heartbeat and behind every offset sample we have: lag unknown -> not eligible.
    snap, _ = run(master(offset=5000), replica(offset=10))
    node = snap.node(R1)
    assert node is not None and node.lag_ms is None and node.reason is Reason.LAGGING


def test_offset_lag_ms() -> None:
    samples = [OffsetSample(1.0, 100), OffsetSample(1.2, 200), OffsetSample(1.4, 300)]
    assert offset_lag_ms(300, samples, 1.45) == 0.0
    assert offset_lag_ms(250, samples, 1.45) == pytest.approx(250.0)
    assert offset_lag_ms(100, samples, 1.45) == pytest.approx(450.0)
    assert offset_lag_ms(50, samples, 1.45) is None
    assert offset_lag_ms(50, [], 1.45) is None


# --- hysteresis ----------------------------------------------------------------------------


def test_hysteresis_timing() -> None:
    """Lagging replicas come back only after lag_recovery_ms within budget, unbroken."""
    state = INITIAL_STATE
    timeline = [
        # (loop time, lag ms -> heartbeat age, expected reason)
        (0.0, 50, Reason.OK),
        (1.0, 300, Reason.LAGGING),
        (1.2, 50, Reason.LAGGING),  # within budget since 1.2
        (1.9, 50, Reason.LAGGING),
        (2.0, 200, Reason.LAGGING),  # broken: the clock restarts
        (2.2, 0, Reason.LAGGING),  # within budget since 2.2
        (3.1, 0, Reason.LAGGING),
        (3.2, 0, Reason.OK),  # 1000 ms unbroken
        (3.4, 90, Reason.OK),
    ]
    for i, (t, lag, expected) in enumerate(timeline):
        hb = wall_ms(t) - lag - POLICY.heartbeat_ms / 2
        r = replica(heartbeat=hb, sent_at=t, received_at=t)
        snap, state = run(
            master(sent_at=t, received_at=t), r, state=state, acked=wall_ms(t) + 1, version=i
        )
        assert reason_of(snap, R1) is expected, (t, lag)


def test_hysteresis_broken_by_other_failures() -> None:
    mem = update_lag_memory(LagMemory(), 500, 0.0, POLICY)
    assert mem.lagging
    mem = update_lag_memory(mem, 10, 0.1, POLICY)
    assert mem.lagging and mem.within_since == 0.1
    # A round where the replica is down breaks the continuity but keeps it lagging.
    _, state = run(master(), down(R1), state=EligibilityState(lag={R1: mem}))
    assert state.lag[R1] == LagMemory(lagging=True, within_since=None)


def test_hysteresis_unknown_lag_is_lagging() -> None:
    mem = update_lag_memory(LagMemory(lagging=False, within_since=0.0), None, 5.0, POLICY)
    assert mem == LagMemory(lagging=True, within_since=None)


# --- primary offsets -----------------------------------------------------------------------


def test_primary_offsets_accumulate_and_expire() -> None:
    state = INITIAL_STATE
    for i in range(0, 150):
        t = NOW + i * 0.1
        _, state = run(master(offset=1000 + i, sent_at=t, received_at=t), state=state)
    samples = state.offsets
    assert samples[-1] == OffsetSample(NOW + 14.9, 1149)
    assert samples[-1].sent_at - samples[0].sent_at <= OFFSET_WINDOW_S
    assert len(samples) >= 95
    assert [s.sent_at for s in samples] == sorted(s.sent_at for s in samples)


def test_primary_offsets_in_snapshot_serve_read_your_writes() -> None:
    state = EligibilityState(primary=P, offsets=(OffsetSample(NOW - 0.2, 4000),))
    snap, _ = run(master(offset=5000), state=state)
    assert snap.offset_after(NOW - 0.3) == 4000
    assert snap.offset_after(NOW - 0.1) == 5000
    assert snap.offset_after(NOW + 1) is None


def test_primary_offsets_restart_on_primary_change_or_offset_going_back() -> None:
    old = (OffsetSample(1.0, 100), OffsetSample(2.0, 200))
    assert record_offset(old, master(offset=300, sent_at=3.0), False, 10.0) == (
        OffsetSample(3.0, 300),
    )
    assert record_offset(old, master(offset=150, sent_at=3.0), True, 10.0) == (
        OffsetSample(3.0, 150),
    )
    assert record_offset(old, master(offset=300, sent_at=3.0), True, 10.0) == (
        *old,
        OffsetSample(3.0, 300),
    )
    _, state = run(
        master(M2, offset=10, sent_at=3.0), state=EligibilityState(primary=P, offsets=old)
    )
    assert state.primary == M2 and state.offsets == (OffsetSample(3.0, 10),)


# --- reads without a primary ---------------------------------------------------------------


def _seen_with_primary() -> EligibilityState:
    """A round with the primary up and R1, R2 eligible (in sync)."""
    snap, state = run(master(), replica(R1), replica(R2, region="eu"))
    assert snap.node(R1).eligible and snap.node(R2).eligible  # type: ignore[union-attr]
    return state


def _later(**kw: Any) -> dict[str, Any]:
    return {"sent_at": NOW + 30, "received_at": NOW + 30.001, **kw}


def test_replicas_in_sync_keep_reads_while_no_primary_is_reachable() -> None:
    """30 s without a primary: far past max_lag_ms (100), still eligible; the lag shown
    is the time since the primary was last seen."""
    state = _seen_with_primary()
    snap, state = run(down(P, "sg"), replica(R1, master_link_status="down", **_later()),
                      replica(R2, region="eu", **_later()), state=state)  # fmt: skip
    assert snap.primary is None
    r1 = snap.node(R1)
    assert r1 is not None and r1.eligible and r1.reason is Reason.OK
    assert r1.lag_ms is not None and 29_000 < r1.lag_ms < 31_000
    assert snap.eligible_by_region["us"] == (r1,)
    # A second round without a primary keeps them (the memory is not consumed).
    snap, _ = run(down(P, "sg"), replica(R1, master_link_status="down", **_later()), state=state)
    assert reason_of(snap, R1) is Reason.OK


def test_without_primary_a_resyncing_or_loading_replica_drops_out() -> None:
    state = _seen_with_primary()
    snap, _ = run(down(P, "sg"), replica(R1, sync_in_progress=True, **_later()),
                  replica(R2, region="eu", loading=True, **_later()), state=state)  # fmt: skip
    assert reason_of(snap, R1) is Reason.SYNCING
    assert reason_of(snap, R2) is Reason.LOADING


def test_without_primary_only_replicas_of_the_last_primary_and_eligible_then() -> None:
    # R2 was lagging when the primary was last seen: it does not become eligible now.
    _, state = run(master(), replica(R1), replica(R2, region="eu", offset=10))
    snap, _ = run(down(P, "sg"), replica(R1, replid="C" * 40, **_later()),
                  replica(R2, region="eu", **_later()), state=state)  # fmt: skip
    assert reason_of(snap, R1) is not Reason.OK  # follows another history now
    assert reason_of(snap, R2) is not Reason.OK


def test_no_reads_from_replicas_never_seen_with_a_primary() -> None:
    snap, _ = run(down(P, "sg"), replica(R1, master_link_status="down"))
    assert reason_of(snap, R1) is not Reason.OK


def test_two_masters_reads_stay_on_the_last_primarys_replicas() -> None:
    """A failover half done: M2 promoted (new replid B), P still a master. Writes are
    refused; R1, still following P's history, keeps reads; R2, following M2, does not."""
    state = _seen_with_primary()
    snap, _ = run(master(**_later()), master(M2, replid="B" * 40, **_later()),
                  replica(R1, **_later()), replica(R2, region="eu", replid="B" * 40, **_later()),
                  state=state)  # fmt: skip
    assert snap.primary is None and snap.primary_error.startswith("2 masters")
    assert reason_of(snap, R1) is Reason.OK
    assert reason_of(snap, R2) is not Reason.OK


def test_offset_history_survives_without_primary_for_read_your_writes() -> None:
    state = _seen_with_primary()
    snap, _ = run(down(P, "sg"), replica(R1, **_later()), state=state)
    assert snap.primary_offsets == state.offsets
    assert snap.offset_after(NOW - 1) == 5000


# --- lag after a gap in the heartbeats; offset history across a lost round -----------


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


# --- failover epochs and fencing -------------------------------------------------------


def test_epoch_value_parses_the_number_of_the_key() -> None:
    assert epoch_value(b"3 10.0.0.1:6379") == 3
    assert epoch_value("12 [::1]:6379") == 12
    assert epoch_value(b"  7   10.0.0.1:6379 ") == 7
    assert epoch_value(b"5") == 5


@pytest.mark.parametrize(
    "raw", [None, b"", "", b"   ", b"abc 10.0.0.1:6379", b"-2 10.0.0.1:6379", b"\xff\xfe", 3, 2.5]
)
def test_epoch_value_of_junk_is_zero(raw: object) -> None:
    assert epoch_value(raw) == 0


def test_result_from_info_reads_the_epoch() -> None:
    info = parse_info(MASTER_INFO)
    assert result_from_info(P, "sg", info, epoch=b"4 10.0.0.1:6379").epoch == 4
    assert result_from_info(P, "sg", info).epoch == 0
    assert result_from_info(P, "sg", info, epoch=b"garbage").epoch == 0


def test_two_masters_the_newer_epoch_is_primary_and_the_older_fenced() -> None:
    old = master(P, replid="A" * 40, epoch=1)
    new = master(M2, replid="B" * 40, epoch=2)
    snap, state = run(old, new, replica(R1, replid="B" * 40))
    assert snap.primary is not None and snap.primary.addr == M2
    assert snap.primary_error == ""
    assert snap.primary.epoch == 2
    assert snap.epoch == 2
    assert [n.addr for n in snap.fenced] == [P]
    fenced = snap.node(P)
    assert fenced is not None
    assert fenced.role is Role.MASTER and fenced.reason is Reason.FENCED
    assert not fenced.eligible and fenced.epoch == 1
    assert snap.fenced == (fenced,)
    assert reason_of(snap, R1) is Reason.OK  # follows the new primary's history
    assert (state.primary, state.epoch, state.epoch_holder) == (M2, 2, M2)


def test_a_master_without_the_key_is_fenced_by_a_newer_one() -> None:
    """An old primary restarted from a dump taken before epochs (no key): epoch 0."""
    snap, _ = run(master(P), master(M2, replid="B" * 40, epoch=1))
    assert snap.primary is not None and snap.primary.addr == M2
    assert reason_of(snap, P) is Reason.FENCED


def test_an_old_primary_alone_is_fenced_when_a_newer_epoch_was_seen() -> None:
    """The state remembers epoch 3 on M2; M2 is gone and P (epoch 0) is the only master:
    it is not taken as the primary, whatever it holds. Writes are refused."""
    state = EligibilityState(epoch=3, epoch_holder=M2)
    snap, new_state = run(master(P), down(M2, "sg"), replica(R1), state=state)
    assert snap.primary is None
    assert snap.primary_error == "no primary reachable"
    node = snap.node(P)
    assert node is not None and node.role is Role.MASTER and node.reason is Reason.FENCED
    assert snap.fenced == (node,)
    assert snap.epoch == 3
    assert reason_of(snap, R1) is not Reason.OK  # nobody seen with a primary: no reads
    assert (new_state.epoch, new_state.epoch_holder) == (3, M2)


def test_an_old_primary_with_an_older_epoch_is_fenced_when_alone() -> None:
    state = EligibilityState(epoch=3, epoch_holder=M2)
    snap, _ = run(master(P, epoch=2), state=state)
    assert snap.primary is None and reason_of(snap, P) is Reason.FENCED


def test_the_holder_stays_primary_when_its_key_is_gone() -> None:
    """A FLUSHALL on the primary removed georedis:epoch (the checker writes it again):
    the holder of the newest epoch keeps its place."""
    state = EligibilityState(primary=P, epoch=3, epoch_holder=P)
    snap, new_state = run(master(P), replica(R1), state=state)
    assert snap.primary is not None and snap.primary.addr == P
    assert snap.primary.reason is Reason.PRIMARY and snap.primary_error == ""
    assert snap.primary.epoch == 0  # what the node holds: the key is gone
    assert snap.epoch == 3 and snap.fenced == ()
    assert reason_of(snap, R1) is Reason.OK
    assert (new_state.epoch, new_state.epoch_holder) == (3, P)


def test_the_holder_with_its_key_gone_still_fences_an_older_master() -> None:
    state = EligibilityState(primary=P, epoch=3, epoch_holder=P)
    snap, _ = run(master(P), master(M2, replid="B" * 40, epoch=2), state=state)
    assert snap.primary is not None and snap.primary.addr == P
    assert [n.addr for n in snap.fenced] == [M2]


def test_two_masters_with_the_same_epoch_mean_no_primary() -> None:
    snap, state = run(master(P, epoch=2), master(M2, replid="B" * 40, epoch=2))
    assert snap.primary is None
    assert snap.primary_error == f"2 masters: {P}, {M2}"
    assert snap.fenced == ()
    for addr in (P, M2):
        node = snap.node(addr)
        assert node is not None and node.role is Role.MASTER and node.reason is Reason.NO_PRIMARY
        assert node.epoch == 2
    assert snap.epoch == 2 and state.epoch == 2


def test_the_epoch_holder_follows_the_primary_when_the_epoch_is_taken_over() -> None:
    """A failover that is no PROXY FAILOVER (Sentinel): the new primary was a replica
    of the holder and has its key; once it is the only master it holds the epoch."""
    state = EligibilityState(primary=P, epoch=3, epoch_holder=P)
    snap, new_state = run(replica(P, region="sg", epoch=3), master(M2, epoch=3), state=state)
    assert snap.primary is not None and snap.primary.addr == M2
    assert snap.fenced == ()
    assert (new_state.epoch, new_state.epoch_holder) == (3, M2)


def test_an_epoch_seen_only_on_a_replica_still_counts() -> None:
    """The new primary (epoch 4) is down; its replica R1 holds its epoch. The old
    primary P (epoch 3) comes back: it is fenced, even by a proxy that never saw the
    new primary itself."""
    snap, state = run(master(P, epoch=3), down(M2, "sg"), replica(R1, replid="B" * 40, epoch=4))
    assert snap.primary is None and reason_of(snap, P) is Reason.FENCED
    assert snap.epoch == 4 and state.epoch == 4


def test_a_down_node_s_epoch_does_not_count() -> None:
    down_with_epoch = dataclasses.replace(down(M2, "sg"), epoch=9)
    snap, _ = run(master(P, epoch=1), down_with_epoch)
    assert snap.primary is not None and snap.primary.addr == P
    assert snap.epoch == 1 and snap.fenced == ()


def test_no_epochs_anywhere_behaves_as_before() -> None:
    snap, state = run(master(), replica(R1), replica(R2, region="eu"))
    assert snap.primary is not None and snap.primary.addr == P
    assert snap.epoch == 0 and snap.fenced == ()
    assert all(n.epoch == 0 for n in snap.nodes)
    assert state.epoch == 0
    two, _ = run(master(P), master(M2, replid="B" * 40), state=state)
    assert two.primary is None and two.primary_error == f"2 masters: {P}, {M2}"
    assert two.fenced == ()
    assert {reason_of(two, a) for a in (P, M2)} == {Reason.NO_PRIMARY}
    # ... and a new primary without epochs is simply the primary.
    moved, _ = run(replica(P, region="sg"), master(M2), state=state)
    assert moved.primary is not None and moved.primary.addr == M2 and moved.fenced == ()


# --- Sentinel mode: the designated primary ------------------------------------------


def _designated(*results: ProbeResult, designated: Address) -> Snapshot:
    snap, _ = evaluate(results, INITIAL_STATE, POLICY, heartbeat_acked_ms=None, version=1,
                       designated=designated)  # fmt: skip
    return snap


def test_the_master_the_sentinels_name_is_primary_and_another_is_fenced() -> None:
    snap = _designated(master(P), master(M2, replid="B" * 40), designated=M2)
    assert snap.primary is not None and snap.primary.addr == M2
    assert reason_of(snap, P) is Reason.FENCED


def test_a_designation_of_a_node_that_is_no_master_changes_nothing() -> None:
    # Sentinel still names the old primary (down): the one master up is the primary.
    snap = _designated(down(P, "sg"), master(M2, replid="B" * 40), designated=P)
    assert snap.primary is not None and snap.primary.addr == M2


def test_the_epoch_decides_before_the_sentinels() -> None:
    # A lagging sentinel names P, back empty as a master; M2 holds a newer epoch.
    snap = _designated(master(P), master(M2, replid="B" * 40, epoch=2), designated=P)
    assert snap.primary is not None and snap.primary.addr == M2
    assert reason_of(snap, P) is Reason.FENCED
