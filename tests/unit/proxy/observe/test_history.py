"""The bounded history: rings that never grow, buckets per step, rates for the proxy."""

from __future__ import annotations

import math

import pytest

from proxy.observe.history import (
    COARSE_ROWS,
    COARSE_STEPS,
    FINE_ROWS,
    History,
    Ring,
    history_of,
    keys_in,
)
from proxy.stats import ProxyStats
from tests.unit.proxy.observe.feed import MIB, PRIMARY, REPLICA, Clock, fill, snap


def test_ring_keeps_the_newest_rows_oldest_first() -> None:
    r = Ring(3, 2)
    for i in range(5):
        r.append((float(i), float(i * 10)))
    assert r.rows() == [(2.0, 20.0), (3.0, 30.0), (4.0, 40.0)]
    assert r.count == 3


def test_memory_is_fixed_whatever_the_uptime() -> None:
    clock = Clock()
    h = History(step_s=1.0, clock=clock)
    fill(h, clock, seconds=200, every=0.5, bytes_per_s=1000)
    sizes = {a: (s.fine.ring.nbytes, s.coarse.ring.nbytes) for a, s in h.nodes.items()}
    fill(h, clock, seconds=FINE_ROWS * 3, every=1.0, bytes_per_s=1000)
    after = {a: (s.fine.ring.nbytes, s.coarse.ring.nbytes) for a, s in h.nodes.items()}
    assert sizes == after
    assert sum(sum(v) for v in after.values()) < 2 * 320_000  # two nodes, ~300 KB each
    assert len(h.nodes[str(PRIMARY)].fine.rows()) == FINE_ROWS


def test_one_row_per_step_with_the_mean_of_its_samples() -> None:
    clock = Clock(1000.0)
    h = History(step_s=10.0, clock=clock)
    fill(h, clock, seconds=60, every=2.0, bytes_per_s=100.0, start_bytes=0.0)
    rows = h.nodes[str(PRIMARY)].column("used_memory")
    # Buckets [1000,1010), ... closed: 1000..1050; the sample at 1060 opens the next.
    assert [round(t) for t, _ in rows] == [1004, 1014, 1024, 1034, 1044, 1054]
    assert rows[0][1] == pytest.approx(400.0)  # mean of 0, 200, 400, 600, 800


def test_lag_keeps_the_worst_of_a_step_and_primaries_have_none() -> None:
    clock = Clock(0.0)
    h = History(step_s=10.0, clock=clock)
    for i, lag in enumerate([1.0, 50.0, 2.0, 3.0]):
        clock.t = i * 3.0
        h.sample(snap(lambda _a: MIB, lag_ms=lag), ProxyStats())
    clock.t = 12.0
    h.sample(snap(lambda _a: MIB), ProxyStats())
    assert h.nodes[str(REPLICA)].column("lag_ms") == [(4.5, 50.0)]
    assert h.nodes[str(PRIMARY)].column("lag_ms") == []
    assert h.nodes[str(PRIMARY)].role == "primary" and h.nodes[str(REPLICA)].role == "replica"


def test_a_node_that_is_down_is_not_sampled() -> None:
    clock = Clock(0.0)
    h = History(step_s=1.0, clock=clock)
    for i in range(5):
        clock.t = float(i)
        h.sample(snap(lambda _a: MIB, replica_up=i < 2), ProxyStats())
    assert len(h.nodes[str(REPLICA)].column("used_memory")) == 1  # the step of t=0 only
    assert len(h.nodes[str(PRIMARY)].column("used_memory")) == 4


def test_coarse_rows_every_sixty_steps() -> None:
    clock = Clock(0.0)
    h = History(step_s=1.0, clock=clock)
    fill(h, clock, seconds=COARSE_STEPS * 3, every=1.0, bytes_per_s=10.0)
    coarse = h.nodes[str(PRIMARY)].column("used_memory", coarse=True)
    assert len(coarse) == 3
    assert coarse[1][0] - coarse[0][0] == pytest.approx(COARSE_STEPS)
    assert COARSE_ROWS * COARSE_STEPS * 10.0 >= 30 * 86400  # 30 days at the default step


def test_proxy_ops_and_percentiles_are_per_step() -> None:
    clock = Clock(0.0)
    h = History(step_s=1.0, clock=clock)
    st = ProxyStats()
    for i in range(6):
        clock.t = float(i)
        st.commands[0] += 500
        st.node_hist("a").observe_n(0.0003 if i < 3 else 0.04, 100)  # slower from t=3
        h.sample(snap(lambda _a: MIB), st)
    ops = h.proxy.column("ops_per_sec")
    p99 = h.proxy.column("p99_ms")
    assert all(v == pytest.approx(500.0) for _, v in ops), ops
    assert [v for _, v in p99] == [0.5, 0.5, 50.0, 50.0]  # bucket bounds, in ms


def test_merged_stats_are_read_once_per_step() -> None:
    clock = Clock(0.0)
    h = History(step_s=1.0, clock=clock)
    reads = []

    def merged() -> ProxyStats:
        reads.append(clock.t)
        return ProxyStats()

    for i in range(20):
        clock.t = i * 0.25
        h.sample(snap(lambda _a: MIB), merged)
    assert reads == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_keys_from_every_database() -> None:
    info = {"used_memory": "1", "db0": "keys=5,expires=1,avg_ttl=0", "db3": "keys=7,expires=0"}
    assert keys_in(info) == 12.0
    assert keys_in({"used_memory": "1"}) == 0.0  # an empty keyspace section
    assert math.isnan(keys_in({}))


def test_step_follows_the_info_interval() -> None:
    assert History.for_interval(2000).step_s == 10.0
    assert History.for_interval(200).step_s == 1.0


def test_history_of_finds_it_only_where_kept() -> None:
    class WithOne:
        history = History()

    assert history_of(WithOne()) is WithOne.history
    assert history_of(object()) is None
