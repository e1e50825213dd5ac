"""Converters for `[backup]`: the schedule and `[backup.retention]` (see `config.convert`).

Apart from `config.convert` only because that module is at its size; the same rules:
report to the `Context`, return None, import nothing from proxy/ or routing/.
"""

from __future__ import annotations

from config.context import Context, got, join, suggest
from config.model import Retention
from config.schedule import Schedule, parse_schedule


def schedule(ctx: Context, path: str, v: object) -> Schedule | None:
    if not isinstance(v, str):
        ctx.error(path, f'must be a string such as "0 2 * * *" or "every 6h", got {got(v)}')
        return None
    try:
        return parse_schedule(v)
    except ValueError as e:
        ctx.error(path, str(e))
        return None


def retention(ctx: Context, path: str, v: object) -> Retention | None:
    """`[backup.retention]`: daily, weekly, monthly counts (each >= 0, defaults 30/8/12)."""
    if not isinstance(v, dict):
        ctx.error(path, f"must be a table ([backup.retention]), got {got(v)}")
        return None
    counts: dict[str, int] = {}
    for key, n in v.items():
        if key not in ("daily", "weekly", "monthly"):
            ctx.error(join(path, key), "unknown key" + suggest(key, ("daily", "weekly", "monthly")))
        elif not isinstance(n, int) or isinstance(n, bool) or n < 0:
            ctx.error(join(path, key), f"must be an integer >= 0, got {got(n)}")
        else:
            counts[key] = n
    return Retention(**counts)
