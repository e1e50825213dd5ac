"""Unit tests for routing.select (replica choice) and Snapshot.offset_after. No sockets."""

from __future__ import annotations

from collections.abc import Callable

from config.model import Address
from routing.select import (
    NO_REQUIREMENTS,
    ReadRequirements,
    default_ranking,
    select_read,
)
from routing.topology import NodeState, OffsetSample, Reason, Role, Snapshot

PRIMARY = NodeState(
    Address("10.0.0.1", 6379), "sg", up=True, role=Role.PRIMARY, offset=10_000,
    reason=Reason.PRIMARY,
)  # fmt: skip


def replica(host: str, region: str, offset: int = 10_000, lag_ms: float | None = 5.0) -> NodeState:
    return NodeState(
        Address(host, 6379), region, up=True, role=Role.REPLICA, offset=offset,
        link_up=True, lag_ms=lag_ms, eligible=True, reason=Reason.OK,
    )  # fmt: skip


US1 = replica("10.1.0.1", "us")
US2 = replica("10.1.0.2", "us", offset=9_000, lag_ms=50.0)
US3 = replica("10.1.0.3", "us", lag_ms=None)
EU1 = replica("10.2.0.1", "eu", offset=8_000, lag_ms=80.0)
AP1 = replica("10.3.0.1", "ap")


def snapshot(*replicas: NodeState, primary: NodeState | None = PRIMARY) -> Snapshot:
    by_region: dict[str, tuple[NodeState, ...]] = {}
    for r in replicas:
        by_region[r.region] = (*by_region.get(r.region, ()), r)
    nodes = (*((primary,) if primary else ()), *replicas)
    return Snapshot(version=1, nodes=nodes, primary=primary, eligible_by_region=by_region)


def load(*counts: tuple[NodeState, int]) -> Callable[[Address], int]:
    """Outstanding requests per node (0 for any other)."""
    by_addr = {n.addr: c for n, c in counts}
    return lambda addr: by_addr.get(addr, 0)


IDLE = load()
SNAP = snapshot(US1, US2, US3, EU1, AP1)


def test_first_region_in_ranking_wins() -> None:
    assert select_read(("eu", "us", "ap"), SNAP, IDLE) is EU1
    assert select_read(("ap", "eu"), SNAP, IDLE) is AP1
    # Even when the nearest region is busier than the next one.
    busy = load((EU1, 1000))
    assert select_read(("eu", "us"), SNAP, busy) is EU1


def test_regions_without_eligible_replicas_are_skipped() -> None:
    assert select_read(("mars", "sg", "eu"), SNAP, IDLE) is EU1
    snap = snapshot(US1)  # no "eu" entry at all
    assert select_read(("eu", "us"), snap, IDLE) is US1
    empty_region = Snapshot(1, (PRIMARY, US1), PRIMARY, eligible_by_region={"eu": (), "us": (US1,)})
    assert select_read(("eu", "us"), empty_region, IDLE) is US1


def test_fewest_outstanding_inside_a_region() -> None:
    assert select_read(("us",), SNAP, load((US1, 5), (US2, 1), (US3, 3))) is US2
    assert select_read(("us",), SNAP, load((US1, 5), (US2, 7), (US3, 3))) is US3
    assert select_read(("us",), SNAP, load((US1, 0), (US2, 7), (US3, 3))) is US1


def test_ties_go_to_snapshot_order_and_choice_is_deterministic() -> None:
    tie = load((US1, 2), (US2, 1), (US3, 1))
    picks = [select_read(("us", "eu"), SNAP, tie) for _ in range(50)]
    assert all(p is US2 for p in picks)  # US2 and US3 tie: the first in snapshot order
    assert select_read(("us",), SNAP, IDLE) is US1
    reordered = snapshot(US3, US2, US1)
    assert select_read(("us",), reordered, IDLE) is US3


def test_single_candidate_needs_no_load_lookup() -> None:
    def boom(addr: Address) -> int:
        raise AssertionError("outstanding() called for a single candidate")

    assert select_read(("eu",), SNAP, boom) is EU1


def test_max_lag_requirement() -> None:
    req = ReadRequirements(max_lag_ms=10.0)
    # US2 (50 ms) is too far behind and US3 has no measured lag: only US1 qualifies.
    assert select_read(("us",), SNAP, load((US1, 9), (US2, 0), (US3, 0)), req) is US1
    assert select_read(("eu", "us"), SNAP, IDLE, req) is US1  # EU1 lags 80 ms
    exactly = ReadRequirements(max_lag_ms=80.0)
    assert select_read(("eu",), SNAP, IDLE, exactly) is EU1
    strict = ReadRequirements(max_lag_ms=1.0)
    assert select_read(("eu", "us"), SNAP, IDLE, strict) is PRIMARY


def test_min_offset_requirement() -> None:
    req = ReadRequirements(min_offset=9_500)
    # US2 (offset 9000) has not caught up; US1 and US3 have: the less busy one.
    assert select_read(("us",), SNAP, load((US1, 9), (US2, 0), (US3, 10)), req) is US1
    assert select_read(("eu", "ap"), SNAP, IDLE, req) is AP1
    assert select_read(("eu",), SNAP, IDLE, ReadRequirements(min_offset=8_000)) is EU1
    assert select_read(("eu",), SNAP, IDLE, ReadRequirements(min_offset=8_001)) is PRIMARY


def test_exclude_requirement() -> None:
    req = ReadRequirements(exclude=US1.addr)
    assert select_read(("us",), SNAP, load((US1, 0), (US2, 4), (US3, 2)), req) is US3
    assert select_read(("eu",), SNAP, IDLE, ReadRequirements(exclude=EU1.addr)) is PRIMARY


def test_requirements_combine() -> None:
    req = ReadRequirements(max_lag_ms=60.0, min_offset=9_000, exclude=US1.addr)
    assert select_read(("us", "ap"), SNAP, IDLE, req) is US2
    req = ReadRequirements(max_lag_ms=10.0, min_offset=9_000, exclude=US1.addr)
    assert select_read(("us", "ap"), SNAP, IDLE, req) is AP1


def test_empty_requirements_object_behaves_like_none() -> None:
    assert select_read(("us",), SNAP, load((US1, 3)), ReadRequirements()) is US2
    assert select_read(("us",), SNAP, load((US1, 3)), NO_REQUIREMENTS) is US2


def test_fallback_to_primary() -> None:
    assert select_read(("mars",), SNAP, IDLE) is PRIMARY
    assert select_read((), SNAP, IDLE) is PRIMARY
    no_replicas = snapshot()
    assert select_read(("us", "eu"), no_replicas, IDLE) is PRIMARY
    assert select_read(("us",), no_replicas, IDLE, fallback_to_primary=False) is None


def test_no_fallback_still_uses_replicas() -> None:
    assert select_read(("eu",), SNAP, IDLE, fallback_to_primary=False) is EU1


def test_no_primary_means_none() -> None:
    headless = snapshot(US1, primary=None)
    assert select_read(("eu",), headless, IDLE) is None
    assert select_read(("us",), headless, IDLE) is US1


def test_excluded_primary_is_not_a_fallback() -> None:
    req = ReadRequirements(exclude=PRIMARY.addr)
    assert select_read(("mars",), SNAP, IDLE, req) is None
    assert select_read(("us",), SNAP, IDLE, req) is US1


def test_default_ranking() -> None:
    assert default_ranking(("sg", "us", "eu"), "us") == ("us", "sg", "eu")
    assert default_ranking(("sg", "us"), "sg") == ("sg", "us")
    assert default_ranking(("sg", "us"), "mars") == ("mars", "sg", "us")


# ------------------------------------------------------------------ Snapshot.offset_after


def with_offsets(*samples: tuple[float, int]) -> Snapshot:
    return Snapshot(
        version=1,
        nodes=(PRIMARY,),
        primary=PRIMARY,
        primary_offsets=tuple(OffsetSample(t, o) for t, o in samples),
    )


def test_offset_after() -> None:
    snap = with_offsets((10.0, 100), (20.0, 200), (30.0, 300))
    assert snap.offset_after(5.0) == 100  # before the first sample: the first
    assert snap.offset_after(10.0) == 100  # at a sample: that sample ("at or after")
    assert snap.offset_after(10.5) == 200
    assert snap.offset_after(30.0) == 300
    assert snap.offset_after(30.1) is None  # no probe sent since: not known yet


def test_offset_after_without_samples() -> None:
    assert with_offsets().offset_after(0.0) is None


def test_offset_after_equal_times_take_the_oldest() -> None:
    snap = with_offsets((10.0, 100), (10.0, 150), (20.0, 200))
    assert snap.offset_after(10.0) == 100


def test_preferred_replica_kept_while_it_is_a_candidate() -> None:
    busy_us3 = load((US1, 0), (US2, 0), (US3, 50))
    # The client read from US3 last: it stays there although US1 is less busy...
    assert select_read(("us",), SNAP, busy_us3, prefer=US3.addr) is US3
    # ...but not when US3 is no longer eligible, nor across regions.
    without_us3 = snapshot(US1, US2, EU1)
    assert select_read(("us",), without_us3, busy_us3, prefer=US3.addr) is US1
    assert select_read(("eu", "us"), SNAP, IDLE, prefer=US3.addr) is EU1
    # A preference never overrides the requirements.
    req = ReadRequirements(exclude=US3.addr)
    assert select_read(("us",), SNAP, busy_us3, req, prefer=US3.addr) is US1


def test_a_connections_lag_bound_is_not_applied_without_a_primary() -> None:
    """No primary: the kept replicas' lag is the time since it was seen (30 s here);
    PROXY MAXLAG 100 must not turn every read into an error."""
    stale = replica("10.1.0.9", "us", lag_ms=30_000.0)
    snap = snapshot(stale, primary=None)
    assert select_read(("us",), snap, IDLE, ReadRequirements(max_lag_ms=100)) is stale
    # With a primary, the bound applies as before.
    assert select_read(("us",), snapshot(stale), IDLE, ReadRequirements(max_lag_ms=100)) is PRIMARY
