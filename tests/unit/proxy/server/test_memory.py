"""The trimmer: `malloc_trim` while RSS is above the lowest level seen, rate-limited."""

from __future__ import annotations

import gc

import pytest

from proxy.server.memory import GC_FIRST_GENERATION, Trimmer, rss_bytes, settle_gc


def test_rss_is_read() -> None:
    assert rss_bytes() > 1 << 20


def test_trims_after_a_burst_and_not_more_often_than_asked() -> None:
    trim = Trimmer()._trim
    if trim is None:
        pytest.skip("no glibc malloc_trim here")
    # Memory earlier tests freed may still be resident and would take the burst without
    # RSS growing: hand it back first, so the floor is low and the burst shows.
    trim(0)
    t = Trimmer(threshold=8 << 20, every_s=10.0)
    burst = [b"x" * (1 << 20) for _ in range(64)]  # 64 MB, touched: resident
    t.check(now=100.0)
    assert t.trims == 1
    t.check(now=101.0)  # still above, but within every_s
    assert t.trims == 1
    del burst
    t.check(now=111.0)
    assert t.trims in (1, 2)  # freed memory may already be back below the threshold
    # Below the threshold nothing is trimmed, however long it has been.
    quiet = Trimmer(threshold=1 << 40, every_s=0.0)
    quiet.check(now=1e9)
    assert quiet.trims == 0


def test_settling_freezes_what_start_up_built_and_widens_the_first_generation() -> None:
    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == (GC_FIRST_GENERATION, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
