"""Which backups to delete after a successful one: grandfather-father-son, in UTC.

pgBackRest's scheme, by calendar: keep the newest good backup of each of the last
`daily` days (today included), of each of the last `weekly` ISO weeks and of each of the
last `monthly` months. A backup any rule keeps is kept, so the three counts overlap
rather than add up: with 30 days, this week's newest is already one of them.

What is never deleted, whatever the counts:
- the newest good backup (with all counts 0 it is the only one kept), so a restore is
  always possible;
- failed backups newer than it: one may be still running on another proxy, or be the
  failure someone is looking at; older ones are superseded and only take space;
- backups stamped after `now`: a proxy whose clock runs fast wrote them. They are also
  left out of the rules, or one such backup could look like "today's newest" and push
  out the real one;
- anything at all when there is no good backup: deleting failures then would only hide
  what went wrong.

Pure: the caller lists the target and passes `now`; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Kept:
    """A stored backup: its id at the target, its start time (Unix seconds), whether it
    completed and its manifest says so (not yet verified by a restore is still ok)."""

    id: str
    time: float
    ok: bool


def to_prune(
    backups: Sequence[Kept], daily: int, weekly: int, monthly: int, now: float
) -> list[str]:
    """The ids of `backups` to delete, oldest first."""
    for name, count in (("daily", daily), ("weekly", weekly), ("monthly", monthly)):
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
    past = [b for b in backups if b.time <= now]
    good = sorted((b for b in past if b.ok), key=_order, reverse=True)
    if not good:
        return []
    newest = good[0]
    today = _day(now)
    keep = {newest.id}
    keep |= _newest_each(good, _days_ago, today, daily)
    keep |= _newest_each(good, _weeks_ago, today, weekly)
    keep |= _newest_each(good, _months_ago, today, monthly)
    prune = [b for b in good if b.id not in keep]
    prune += [b for b in past if not b.ok and b.time < newest.time]
    return [b.id for b in sorted(prune, key=_order)]


def _order(b: Kept) -> tuple[float, str]:
    # The id breaks ties so that two backups stamped alike are always judged alike.
    return (b.time, b.id)


def _newest_each(newest_first: Sequence[Kept], age: _Age, today: date, count: int) -> set[str]:
    """The id of the newest backup in each of the last `count` buckets that has one."""
    found: dict[int, str] = {}
    for b in newest_first:
        bucket = age(today, _day(b.time))
        if bucket < count and bucket not in found:
            found[bucket] = b.id
    return set(found.values())


# A bucket is named by how many days, weeks or months before today's it is (0 = today's):
# "the last n" is then `age < n`, with no list of dates to build, whatever n is.
_Age = Callable[[date, date], int]


def _day(t: float) -> date:
    # UTC, not local time: every proxy must put a backup in the same day.
    return datetime.fromtimestamp(t, UTC).date()


def _days_ago(today: date, d: date) -> int:
    return (today - d).days


def _weeks_ago(today: date, d: date) -> int:
    # Counted between the Mondays the two weeks start on (ISO weeks start on Monday), so
    # the week that spans a new year, ISO week 53 or 1, needs no special case.
    return (_monday(today) - _monday(d)).days // 7


def _months_ago(today: date, d: date) -> int:
    return (today.year - d.year) * 12 + today.month - d.month


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())
