"""Backup schedules: cron (via cronsim) and epoch-aligned intervals, all in UTC.

Times are written as UTC datetimes and compared as Unix seconds, the schedule's unit;
nothing here reads a clock or depends on the machine's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.schedule import Schedule, parse_schedule


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# --- cron -----------------------------------------------------------------------------

DAILY_2AM = [
    # (from, next run, slot): before, exactly at, just after, late in the day.
    (ts(2024, 5, 15, 1, 59, 59), ts(2024, 5, 15, 2), ts(2024, 5, 14, 2)),
    (ts(2024, 5, 15, 2), ts(2024, 5, 16, 2), ts(2024, 5, 15, 2)),
    (ts(2024, 5, 15, 2) + 0.5, ts(2024, 5, 16, 2), ts(2024, 5, 15, 2)),
    (ts(2024, 5, 15, 23, 59), ts(2024, 5, 16, 2), ts(2024, 5, 15, 2)),
    # Month ends, a leap day and a year end.
    (ts(2024, 4, 30, 3), ts(2024, 5, 1, 2), ts(2024, 4, 30, 2)),
    (ts(2024, 2, 28, 12), ts(2024, 2, 29, 2), ts(2024, 2, 28, 2)),
    (ts(2023, 2, 28, 12), ts(2023, 3, 1, 2), ts(2023, 2, 28, 2)),
    (ts(2024, 12, 31, 2, 0, 1), ts(2025, 1, 1, 2), ts(2024, 12, 31, 2)),
    (ts(2025, 1, 1, 1), ts(2025, 1, 1, 2), ts(2024, 12, 31, 2)),
]


@pytest.mark.parametrize(("t", "following", "slot"), DAILY_2AM)
def test_daily_at_two(t: float, following: float, slot: float) -> None:
    s = parse_schedule("0 2 * * *")
    assert at(s.next_after(t)) == at(following)
    assert at(s.slot(t)) == at(slot)


def test_every_fifteen_minutes() -> None:
    s = parse_schedule("*/15 * * * *")
    assert s.next_after(ts(2024, 5, 15, 10, 7)) == ts(2024, 5, 15, 10, 15)
    assert s.next_after(ts(2024, 5, 15, 10, 45)) == ts(2024, 5, 15, 11)
    assert s.next_after(ts(2024, 12, 31, 23, 50)) == ts(2025, 1, 1)
    assert s.slot(ts(2024, 5, 15, 10, 29, 59)) == ts(2024, 5, 15, 10, 15)
    assert s.slot(ts(2024, 5, 15, 10, 30)) == ts(2024, 5, 15, 10, 30)


def test_weekdays_by_name() -> None:
    # 2024-05-17 is a Friday: the next weekday run is Monday's, and Saturday's slot is
    # Friday's. Names are case-insensitive, as in cron.
    s = parse_schedule("30 3 * * mon-FRI")
    assert s.next_after(ts(2024, 5, 17, 4)) == ts(2024, 5, 20, 3, 30)
    assert s.slot(ts(2024, 5, 18, 12)) == ts(2024, 5, 17, 3, 30)
    assert s.slot(ts(2024, 5, 20, 3, 29)) == ts(2024, 5, 17, 3, 30)


def test_lists_ranges_and_months() -> None:
    s = parse_schedule("0 1,13 1-3 JAN,jul *")
    assert s.next_after(ts(2024, 1, 3, 13)) == ts(2024, 7, 1, 1)
    assert s.slot(ts(2024, 6, 30)) == ts(2024, 1, 3, 13)


@pytest.mark.parametrize(
    ("text", "t", "following"),
    [
        ("@hourly", ts(2024, 5, 15, 10, 0, 1), ts(2024, 5, 15, 11)),
        ("@daily", ts(2024, 5, 15, 10), ts(2024, 5, 16)),
        ("@weekly", ts(2024, 5, 15, 10), ts(2024, 5, 19)),  # the Sunday after
        ("@monthly", ts(2024, 12, 15), ts(2025, 1, 1)),
        ("@YEARLY", ts(2024, 5, 15), ts(2025, 1, 1)),
    ],
)
def test_shorthands(text: str, t: float, following: float) -> None:
    assert parse_schedule(text).next_after(t) == following


def test_hourly_slot_on_the_hour_is_that_hour() -> None:
    s = parse_schedule("@hourly")
    assert s.slot(ts(2024, 5, 15, 10)) == ts(2024, 5, 15, 10)
    assert s.slot(ts(2024, 5, 15, 10, 59, 59)) == ts(2024, 5, 15, 10)


def test_a_rare_cron_slot_is_found() -> None:
    # Leap days only: the slot search steps back over years, not minutes.
    s = parse_schedule("0 0 29 2 *")
    assert s.slot(ts(2027, 6, 1)) == ts(2024, 2, 29)
    assert s.next_after(ts(2024, 2, 29)) == ts(2028, 2, 29)


# --- intervals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("every 90s", 90), ("every 30m", 1800), ("every 6h", 21600), ("every 1d", 86400)],
)
def test_intervals_parse(text: str, seconds: int) -> None:
    assert parse_schedule(text) == Schedule(text, every_s=seconds)


def test_intervals_align_to_the_epoch() -> None:
    # Two proxies started at different times agree: slots are multiples since 1970.
    s = parse_schedule("every 6h")
    assert s.next_after(ts(2024, 5, 15, 1, 23)) == ts(2024, 5, 15, 6)
    assert s.next_after(ts(2024, 5, 15, 6)) == ts(2024, 5, 15, 12)
    assert s.slot(ts(2024, 5, 15, 17, 59, 59)) == ts(2024, 5, 15, 12)
    assert s.slot(ts(2024, 5, 15, 18)) == ts(2024, 5, 15, 18)
    day = parse_schedule("every 1d")
    assert day.slot(ts(2024, 5, 15, 23)) == ts(2024, 5, 15)
    odd = parse_schedule("every 90s")
    assert odd.slot(1000.0) == 990.0
    assert odd.next_after(1000.0) == 1080.0


def test_interval_spacing_is_lenient() -> None:
    assert parse_schedule("  Every  30 M ").every_s == 1800


@pytest.mark.parametrize(
    "text", ["0 2 * * *", "*/15 * * * *", "0 9 * * MON", "@monthly", "every 90s", "every 7d"]
)
@pytest.mark.parametrize(
    "t", [0.0, ts(2024, 2, 29, 2), ts(2024, 12, 31, 23, 59, 59) + 0.75, 1_715_790_000.25]
)
def test_slot_at_or_before_and_next_after_it(text: str, t: float) -> None:
    s = parse_schedule(text)
    slot = s.slot(t)
    assert slot <= t < s.next_after(slot)
    assert s.next_after(t) > t
    # The slot of a run is that run, so a proxy that wakes exactly on time agrees.
    assert s.slot(slot) == slot
    assert s.slot(s.next_after(t)) == s.next_after(t)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty schedule; expected a 5-field cron"),
        ("   ", "empty schedule"),
        ("0 0 2 * * *", r'"0 0 2 \* \* \*": 6 fields; expected a 5-field'),
        ("0 2 * *", "4 fields"),
        ("every 0h", "must be from 10s to 366d, got 0s"),
        ("every 5s", "got 5s"),
        ("every 400d", "got 34560000s"),
        ("every 5x", r'bad interval "every 5x": expected "every <n><s\|m\|h\|d>"'),
        ("every -1h", "bad interval"),
        ("every 1.5h", "bad interval"),
        ("0 25 * * *", 'hour "25" is not 0-23'),
        ("61 * * * *", 'minute "61" is not 0-59'),
        ("0 0 * * FUN", 'day-of-week "FUN" is not 0-7 or SUN-SAT'),
        ("0 0 30 2 *", 'day-of-month "30"'),
        ("@reboot", 'unknown shorthand "@reboot"; expected'),
    ],
)
def test_bad_schedules_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)
