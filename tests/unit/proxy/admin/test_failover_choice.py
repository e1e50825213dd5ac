"""`PROXY FAILOVER`'s pure parts: the request's words, and which replica is promoted
(planned and FORCE), from plain snapshots."""

from __future__ import annotations

import pytest

from config.model import Address
from proxy.admin.failover import Request, choose_forced, choose_planned, parse
from proxy.errors import FailoverError
from routing.topology import NodeState, Reason, Role, Snapshot

P = NodeState(Address("10.0.0.1", 6379), "sg", up=True, role=Role.PRIMARY, replid="A",
              offset=1000, reason=Reason.PRIMARY)  # fmt: skip


def rep(ip: str, region: str, offset: int, *, eligible: bool = True, replid: str = "A",
        up: bool = True, lag_ms: float | None = 5.0, loading: bool = False,
        reason: Reason | None = None) -> NodeState:  # fmt: skip
    return NodeState(Address(ip, 6379), region, up=up, role=Role.REPLICA if up else Role.UNKNOWN,
                     replid=replid, offset=offset, link_up=up, loading=loading, lag_ms=lag_ms,
                     eligible=eligible,
                     reason=reason or (Reason.OK if eligible else Reason.LAGGING))  # fmt: skip


def snap(*nodes: NodeState, primary: NodeState | None = P, error: str = "") -> Snapshot:
    return Snapshot(version=1, nodes=(*((primary,) if primary else ()), *nodes),
                    primary=primary, primary_error=error)  # fmt: skip


# ---------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("words", "request_"),
    [
        ([], Request()),
        ([b"FORCE"], Request(force=True)),
        ([b"force"], Request(force=True)),
        ([b"TO", b"us"], Request(to="us")),
        ([b"to", b"10.1.0.1:6379"], Request(to="10.1.0.1:6379")),
        ([b"TIMEOUT", b"250"], Request(timeout_ms=250)),
        ([b"FORCE", b"TO", b"eu", b"TIMEOUT", b"100"], Request(True, "eu", 100)),
        ([b"TIMEOUT", b"100", b"FORCE", b"TO", b"eu"], Request(True, "eu", 100)),
        ([b"TO", b"eu", b"timeout", b"100", b"Force"], Request(True, "eu", 100)),
    ],
)
def test_parse_any_order(words: list[bytes], request_: Request) -> None:
    assert parse(words) == request_


@pytest.mark.parametrize(
    "words",
    [
        [b"NOW"],
        [b"FORCE", b"please"],
        [b"TO"],
        [b"TIMEOUT"],
        [b"TIMEOUT", b"abc"],
        [b"TIMEOUT", b"0"],
        [b"TIMEOUT", b"-5"],
        [b"us"],
    ],
)
def test_parse_bad_words(words: list[bytes]) -> None:
    with pytest.raises(ValueError):
        parse(words)


# ---------------------------------------------------------------- planned


def test_planned_prefers_the_primarys_region_then_the_highest_offset() -> None:
    sg_low = rep("10.0.0.2", "sg", 900)
    sg_high = rep("10.0.0.3", "sg", 950)
    us_top = rep("10.1.0.1", "us", 1000)  # more data, but another region
    assert choose_planned(snap(us_top, sg_low, sg_high), None) is sg_high


def test_planned_without_a_replica_in_the_primarys_region_takes_the_highest_offset() -> None:
    us = rep("10.1.0.1", "us", 990)
    eu = rep("10.2.0.1", "eu", 995)
    assert choose_planned(snap(us, eu), None) is eu


def test_planned_skips_ineligible_and_foreign_replicas() -> None:
    lagging = rep("10.0.0.2", "sg", 999, eligible=False)
    foreign = rep("10.0.0.3", "sg", 999, replid="B")
    ok = rep("10.1.0.1", "us", 500)
    assert choose_planned(snap(lagging, foreign, ok), None) is ok
    with pytest.raises(FailoverError, match="no eligible, in-sync replica"):
        choose_planned(snap(lagging, foreign), None)


def test_planned_to_a_region_takes_its_highest_offset_eligible_replica() -> None:
    sg = rep("10.0.0.2", "sg", 1000)
    us_low = rep("10.1.0.1", "us", 800)
    us_high = rep("10.1.0.2", "us", 900)
    us_best_but_lagging = rep("10.1.0.3", "us", 1000, eligible=False)
    s = snap(sg, us_low, us_high, us_best_but_lagging)
    assert choose_planned(s, "us") is us_high
    with pytest.raises(FailoverError, match="no eligible, in-sync replica in eu"):
        choose_planned(snap(sg, rep("10.2.0.1", "eu", 1000, eligible=False)), "eu")


def test_planned_to_a_node() -> None:
    us = rep("10.1.0.1", "us", 100)
    sg = rep("10.0.0.2", "sg", 1000)
    assert choose_planned(snap(sg, us), "10.1.0.1:6379") is us


def test_planned_to_a_node_that_is_not_an_eligible_replica() -> None:
    lagging = rep("10.1.0.1", "us", 1000, eligible=False)
    with pytest.raises(FailoverError, match="not an eligible, in-sync replica") as e:
        choose_planned(snap(lagging), "10.1.0.1:6379")
    assert "(lagging)" in str(e.value)
    foreign = rep("10.1.0.2", "us", 1000, replid="B")
    with pytest.raises(FailoverError, match="not an eligible, in-sync replica"):
        choose_planned(snap(foreign), "10.1.0.2:6379")
    with pytest.raises(FailoverError, match="not an eligible, in-sync replica"):
        choose_planned(snap(rep("10.1.0.3", "us", 1)), "10.0.0.1:6379")  # the primary


def test_planned_to_something_unknown() -> None:
    s = snap(rep("10.1.0.1", "us", 1000))
    with pytest.raises(FailoverError, match="unknown region 'mars'"):
        choose_planned(s, "mars")
    with pytest.raises(FailoverError, match="is not a configured node"):
        choose_planned(s, "10.9.9.9:6379")
    with pytest.raises(FailoverError, match="is not a configured node"):
        choose_planned(s, "10.1.0.1:port")


def test_planned_to_an_ipv6_node() -> None:
    v6 = NodeState(Address("::1", 6379), "us", up=True, role=Role.REPLICA, replid="A",
                   offset=1, eligible=True, reason=Reason.OK)  # fmt: skip
    assert choose_planned(snap(v6), "[::1]:6379") is v6


# ---------------------------------------------------------------- forced

DOWN = NodeState(Address("10.0.0.1", 6379), "sg", up=False, reason=Reason.DOWN)
LAST = P  # the primary of the last snapshot that had one


def test_forced_takes_the_highest_offset_reachable_replica() -> None:
    """Eligibility does not count here (without a primary most replicas are not):
    whoever holds the most data."""
    us = rep("10.1.0.1", "us", 800, eligible=False, reason=Reason.LINK_DOWN)
    eu = rep("10.2.0.1", "eu", 900, eligible=False, reason=Reason.LINK_DOWN)
    sg = rep("10.0.0.2", "sg", 850)
    gone = rep("10.0.0.3", "sg", 2000, up=False)
    loading = rep("10.0.0.4", "sg", 3000, loading=True)
    s = snap(DOWN, us, eu, sg, gone, loading, primary=None, error="no primary reachable")
    assert choose_forced(s, None, LAST) is eu


def test_forced_ties_go_to_the_last_primarys_region() -> None:
    us = rep("10.1.0.1", "us", 900)
    sg = rep("10.0.0.2", "sg", 900)
    eu = rep("10.2.0.1", "eu", 900)
    s = snap(DOWN, us, sg, eu, primary=None)
    assert choose_forced(s, None, LAST) is sg
    assert choose_forced(s, None, None) is us  # no last primary: the first of the tie


def test_forced_ties_in_a_region_go_to_the_least_lag() -> None:
    slower = rep("10.1.0.1", "us", 900, lag_ms=50.0)
    faster = rep("10.1.0.2", "us", 900, lag_ms=5.0)
    unknown = rep("10.1.0.3", "us", 900, lag_ms=None)
    assert choose_forced(snap(DOWN, slower, faster, unknown, primary=None), None) is faster


def test_forced_a_replica_with_zero_lag_wins_a_tie() -> None:
    lagging = rep("10.1.0.1", "us", 900, lag_ms=5.0)
    in_sync = rep("10.1.0.2", "us", 900, lag_ms=0.0)
    assert choose_forced(snap(DOWN, lagging, in_sync, primary=None), None) is in_sync


def test_forced_to_a_region_or_a_node() -> None:
    us = rep("10.1.0.1", "us", 800)
    eu_low = rep("10.2.0.1", "eu", 700)
    eu_high = rep("10.2.0.2", "eu", 750)
    s = snap(DOWN, us, eu_low, eu_high, primary=None)
    assert choose_forced(s, "eu", LAST) is eu_high
    assert choose_forced(s, "10.2.0.1:6379", LAST) is eu_low
    with pytest.raises(FailoverError, match="unknown region"):
        choose_forced(s, "mars", LAST)


def test_forced_without_a_reachable_replica() -> None:
    gone = rep("10.1.0.1", "us", 800, up=False)
    with pytest.raises(FailoverError, match=r"no reachable replica$"):
        choose_forced(snap(DOWN, gone, primary=None), None, LAST)
    with pytest.raises(FailoverError, match=r"no reachable replica for 10\.1\.0\.1:6379"):
        choose_forced(snap(DOWN, gone, primary=None), "10.1.0.1:6379", LAST)
    with pytest.raises(FailoverError, match="no reachable replica for sg"):
        choose_forced(snap(DOWN, gone, primary=None), "sg", LAST)  # only the dead primary
