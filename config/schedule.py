"""Backup schedules: a 5-field cron expression or a fixed interval, both in UTC.

`parse_schedule("0 2 * * *")` and `parse_schedule("every 6h")` each give a `Schedule`
that answers two questions about Unix time: when is the next run (`next_after`), and which
run does an instant belong to (`slot`, the latest run at or before it). Several proxies
back up the same data and compete for one lock per run; the lock is named after the slot,
so every proxy must compute the same slot from the same text without talking to the
others. That is why everything is UTC (no proxy's local zone or DST leaks in) and why
intervals are aligned to the Unix epoch rather than to when a proxy started: "every 1d"
runs at 00:00 UTC, and "every 7d" on Thursdays (1970-01-01 was one); another weekday is
a job for cron ("0 0 * * SUN").

Cron parsing and evaluation is cronsim's; this module only adds the shorthands, the
intervals, and messages that say what a config file may hold. Pure: no clock is read
here, the caller passes the time. Like every module in config/, this one imports nothing
from proxy/ or routing/.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

ACCEPTED = (
    'a 5-field cron expression in UTC ("0 2 * * *": minute hour day-of-month month '
    "day-of-week), @hourly, @daily, @weekly, @monthly or @yearly, or an interval "
    '"every <n><s|m|h|d>" of at least 10s, e.g. "every 6h"'
)

# Vixie cron's shorthands; cronsim takes only the fields. @reboot has no time to compute.
SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# cronsim names a bad field ("Bad hour"); the config error adds what that field takes.
FIELDS = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or LW, on a day the chosen months have",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, with L or #n",
}

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"every\s+(\d+)\s*([smhd])", re.IGNORECASE)

# Shorter than a backup of any size plus the clock skew between proxies, and the slot
# stops naming one run: two proxies could each think they hold a different slot's lock
# for what is, in effect, one overlapping backup. 10s rather than a minute so that the
# integration tests can see a schedule fire without waiting a minute per run.
MIN_INTERVAL_S = 10
# Longer is surely a typo (a unit missed); a yearly backup is @yearly.
MAX_INTERVAL_S = 366 * 86400

# A reference for checking, at parse time, that a cron expression ever fires: cronsim
# rejects most impossible dates itself ("0 0 30 2 *"), and gives up after 50 years
# without a match; any other oddity should fail when the config is loaded, not when the
# first backup is due.
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule; build it with `parse_schedule`.

    Exactly one of `cron` (5 fields, shorthands expanded) and `every_s` (seconds, > 0)
    is set. `text` is as written in the config, for logs and messages.
    """

    text: str
    cron: str | None = None
    every_s: int = 0

    def next_after(self, t: float) -> float:
        """The first run strictly after `t` (Unix seconds)."""
        if self.cron is None:
            return float(self.slot(t) + self.every_s)
        # Runs fall on whole seconds, so the first after floor(t) is also the first after
        # t; starting from a whole second keeps cronsim's microsecond rules out of it
        # (forwards it steps one second before matching, so the result is > floor(t)).
        return _cron_step(self, CronSim(self.cron, _utc(math.floor(t))))

    def slot(self, t: float) -> float:
        """The latest run at or before `t`: the same on every proxy for the same `t`.

        For cron this is cronsim's reverse iteration, which skips whole months, days and
        hours that cannot match rather than testing every minute, so it costs about as
        much as `next_after`.
        """
        if self.cron is None:
            # Multiples of the interval since the epoch: every proxy agrees whatever its
            # start time. Integer floor division stays exact for any realistic t.
            return float(math.floor(t) // self.every_s * self.every_s)
        # Backwards, cronsim steps one second before matching (strictly before its start),
        # so start one second past floor(t) to include a run at exactly floor(t).
        return _cron_step(self, CronSim(self.cron, _utc(math.floor(t) + 1), reverse=True))


def parse_schedule(text: str) -> Schedule:
    """A `Schedule` from config text; ValueError says what was wrong and what is accepted."""
    spec = text.strip()
    if not spec:
        raise ValueError(f"empty schedule; expected {ACCEPTED}")
    if spec.lower().startswith("every"):
        return Schedule(text, every_s=_interval(spec))
    return Schedule(text, cron=_cron(spec))


def _interval(spec: str) -> int:
    m = _EVERY.fullmatch(spec)
    if m is None:
        raise ValueError(f'bad interval "{spec}": expected "every <n><s|m|h|d>", e.g. "every 6h"')
    seconds = int(m[1]) * UNITS[m[2].lower()]
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ValueError(
            f'bad interval "{spec}": must be from {MIN_INTERVAL_S}s to 366d, got {seconds}s'
        )
    return seconds


def _cron(spec: str) -> str:
    if spec.startswith("@"):
        expr = SHORTHANDS.get(spec.lower())
        if expr is None:
            raise ValueError(f'unknown shorthand "{spec}"; expected {ACCEPTED}')
        return expr
    parts = spec.split()
    # cronsim also takes a 6-field form with seconds first; a config that means the
    # classic 5 fields but has one too many would then run at the wrong times, so only
    # 5 are accepted.
    if len(parts) != 5:
        raise ValueError(f'bad cron schedule "{spec}": {len(parts)} fields; expected {ACCEPTED}')
    expr = " ".join(parts)
    try:
        next(CronSim(expr, _REFERENCE))
    except CronSimError as e:
        raise ValueError(f'bad cron schedule "{spec}": {_field_problem(str(e), parts)}') from e
    except StopIteration:
        raise ValueError(f'cron schedule "{spec}" never runs; expected {ACCEPTED}') from None
    return expr


def _field_problem(message: str, parts: list[str]) -> str:
    """cronsim's "Bad hour" as 'hour "25" is not 0-23', naming the value given."""
    for i, (name, takes) in enumerate(FIELDS.items()):
        if message == f"Bad {name}":
            return f'{name} "{parts[i]}" is not {takes}'
    return f"{message}; expected {ACCEPTED}"


def _cron_step(schedule: Schedule, it: CronSim) -> float:
    try:
        return next(it).timestamp()
    except StopIteration:
        # Parsing checked that the expression fires; this is a t far from any run.
        raise ValueError(f'cron schedule "{schedule.text}" has no run within 50 years') from None


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
