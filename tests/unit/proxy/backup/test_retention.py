"""Retention: which backups `to_prune` deletes, with `now` passed in and all dates UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from proxy.backup.retention import Kept, to_prune


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def good(y: int, mo: int, d: int, h: int = 2) -> Kept:
    return Kept(f"{y:04}{mo:02}{d:02}-{h:02}", ts(y, mo, d, h), True)


def failed(y: int, mo: int, d: int, h: int = 2) -> Kept:
    return Kept(f"{y:04}{mo:02}{d:02}-{h:02}-failed", ts(y, mo, d, h), False)


def survivors(backups: list[Kept], pruned: list[str]) -> list[str]:
    gone = set(pruned)
    return [b.id for b in backups if b.id not in gone]


def daily_from(first: date, days: int) -> list[Kept]:
    return [good(d.year, d.month, d.day) for d in (first + timedelta(i) for i in range(days))]


def test_ninety_days_with_30_daily_8_weekly_12_monthly() -> None:
    # One backup a day at 02:00 from Fri 2024-02-16 to Wed 2024-05-15, 90 in all
    # (Feb 16-29: 14, March: 31, April: 30, May 1-15: 15); now is 2024-05-15 12:00.
    backups = daily_from(date(2024, 2, 16), 90)
    assert len(backups) == 90
    pruned = to_prune(backups, daily=30, weekly=8, monthly=12, now=ts(2024, 5, 15, 12))
    kept = survivors(backups, pruned)
    # daily=30: April 16 to May 15 (15 + 15 days), all kept: 30.
    daily = [f"202404{d:02}-02" for d in range(16, 31)] + [f"202405{d:02}-02" for d in range(1, 16)]
    # weekly=8: ISO weeks 20 (May 13-19) back to 13 (Mar 25-31); each week's newest is
    # May 15, 12, 5, Apr 28, 21 (already daily), then Apr 14, Apr 7, Mar 31: 3 more.
    weekly = ["20240331-02", "20240407-02", "20240414-02"]
    # monthly=12: May back to June 2023; only May to February have backups, and their
    # newest are May 15, Apr 30 (daily), Mar 31 (weekly) and Feb 29: 1 more.
    monthly = ["20240229-02"]
    assert kept == sorted(monthly + weekly + daily)
    assert len(kept) == 34 and len(pruned) == 56
    # Oldest first: the first is the first backup, the last the day before April 16 that
    # no weekly rule kept (April 15, a Monday).
    assert pruned[0] == "20240216-02" and pruned[-1] == "20240415-02"
    assert pruned == sorted(pruned)


def test_several_a_day_keeps_the_newest_of_each_day() -> None:
    backups = [good(2024, 5, d, h) for d in (13, 14, 15) for h in (0, 6, 12, 18)]
    # At 13:00 on the 15th its 18:00 run has not happened; 12:00 is that day's newest.
    pruned = to_prune(backups, daily=3, weekly=0, monthly=0, now=ts(2024, 5, 15, 13))
    assert survivors(backups, pruned) == [
        "20240513-18",
        "20240514-18",
        "20240515-12",
        "20240515-18",  # in the future: kept, see below
    ]
    assert pruned == [
        "20240513-00",
        "20240513-06",
        "20240513-12",
        "20240514-00",
        "20240514-06",
        "20240514-12",
        "20240515-00",
        "20240515-06",
    ]


def test_days_are_utc_calendar_days() -> None:
    # 23:59 and 00:01 are a minute apart but on two days: both kept with daily=2.
    late = Kept("late", ts(2024, 5, 14, 23, 59), True)
    early = Kept("early", ts(2024, 5, 15, 0, 1), True)
    now = ts(2024, 5, 15, 1)
    assert to_prune([late, early], daily=2, weekly=0, monthly=0, now=now) == []
    assert to_prune([late, early], daily=1, weekly=0, monthly=0, now=now) == ["late"]


def test_weeks_are_iso_weeks_across_a_year_end() -> None:
    # Mon 2020-12-28 to Sun 2021-01-03 is ISO week 2020-W53; Mon 2021-01-04 starts 2021-W01.
    backups = daily_from(date(2020, 12, 21), 16)  # to Tue 2021-01-05
    pruned = to_prune(backups, daily=0, weekly=3, monthly=0, now=ts(2021, 1, 5, 12))
    assert survivors(backups, pruned) == ["20201227-02", "20210103-02", "20210105-02"]


def test_months_reach_back_across_a_year_end() -> None:
    backups = [good(2023, 11, 30), good(2023, 12, 1), good(2023, 12, 31), good(2024, 1, 2)]
    pruned = to_prune(backups, daily=0, weekly=0, monthly=3, now=ts(2024, 1, 2, 12))
    assert pruned == ["20231201-02"]


def test_the_newest_good_backup_survives_all_zeros() -> None:
    backups = daily_from(date(2024, 5, 1), 10)
    pruned = to_prune(backups, daily=0, weekly=0, monthly=0, now=ts(2024, 6, 1))
    assert survivors(backups, pruned) == ["20240510-02"]


def test_the_newest_good_backup_survives_when_no_rule_reaches_it() -> None:
    # A month without backups (the backups stopped): the rules keep nothing, the newest
    # is still kept, so a restore stays possible.
    backups = daily_from(date(2024, 3, 1), 5)
    pruned = to_prune(backups, daily=7, weekly=2, monthly=1, now=ts(2024, 5, 15))
    assert survivors(backups, pruned) == ["20240305-02"]


def test_failed_backups_older_than_the_newest_good_one_go() -> None:
    backups = [
        failed(2024, 5, 10),
        good(2024, 5, 11),
        failed(2024, 5, 12),
        good(2024, 5, 13),
        failed(2024, 5, 14, 1),  # newer than the newest good: running, or being looked at
        failed(2024, 5, 14, 3),
    ]
    pruned = to_prune(backups, daily=30, weekly=0, monthly=0, now=ts(2024, 5, 14, 12))
    assert pruned == ["20240510-02-failed", "20240512-02-failed"]


def test_nothing_is_pruned_without_a_good_backup() -> None:
    backups = [failed(2024, 5, d) for d in range(1, 10)]
    assert to_prune(backups, daily=0, weekly=0, monthly=0, now=ts(2024, 6, 1)) == []
    assert to_prune([], daily=1, weekly=1, monthly=1, now=ts(2024, 6, 1)) == []


def test_future_backups_are_kept_and_not_counted() -> None:
    # A proxy with a clock a day fast wrote "tomorrow's" backup. It is kept, but it is
    # not the newest good one: today's real backup is, and with all zeros stays too.
    real = good(2024, 5, 15)
    skewed = good(2024, 5, 16)
    skewed_failed = failed(2024, 5, 16, 5)
    old = good(2024, 5, 14)
    backups = [old, real, skewed, skewed_failed]
    pruned = to_prune(backups, daily=0, weekly=0, monthly=0, now=ts(2024, 5, 15, 12))
    assert pruned == ["20240514-02"]
    # Only future good backups: no trustworthy good one, so nothing goes.
    only_future = [failed(2024, 5, 1), skewed]
    assert to_prune(only_future, daily=0, weekly=0, monthly=0, now=ts(2024, 5, 15)) == []


def test_now_is_what_the_window_counts_from() -> None:
    backups = daily_from(date(2024, 5, 1), 10)  # May 1 to 10
    on_the_10th = to_prune(backups, daily=3, weekly=0, monthly=0, now=ts(2024, 5, 10, 12))
    assert survivors(backups, on_the_10th) == ["20240508-02", "20240509-02", "20240510-02"]
    # Two days later, the last 3 days are May 10-12: only the 10th has a backup.
    on_the_12th = to_prune(backups, daily=3, weekly=0, monthly=0, now=ts(2024, 5, 12, 12))
    assert survivors(backups, on_the_12th) == ["20240510-02"]


def test_huge_counts_keep_everything_without_overflow() -> None:
    backups = daily_from(date(2024, 5, 1), 10)
    big = 10**9
    assert to_prune(backups, daily=big, weekly=big, monthly=big, now=ts(2024, 5, 10, 12)) == []


def test_a_negative_count_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="weekly must be >= 0, got -1"):
        to_prune([], daily=1, weekly=-1, monthly=1, now=0.0)
