"""Error collection for the loader: where problems go, and how each is worded.

Nothing raises while a file is checked: every converter and check appends its problem
to one `Context`, as `"<file>: <dotted.path>: <problem>"`, so `georedis check-config`
shows all of them at once; the loader raises one `ConfigError` at the end. The helpers
here word values as TOML writes them and suggest the closest valid key. Like every
module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class Context:
    """What converters share: where errors go, and what cross-field checks need."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.base_dir = Path(source).parent
        self.errors: list[str] = []
        # Every well-formed region name, filled before [geoip] is read.
        self.region_names: list[str] = []

    def error(self, path: str, problem: str) -> None:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        self.errors.append(where + problem)


# A converter: (ctx, dotted path of the value, raw value) -> typed value, or None if bad
# (TOML has no null, so None always means "invalid", and the problem is in ctx).
Conv = Callable[[Context, str, object], Any]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def join(path: str, key: str) -> str:
    # Quote keys as TOML would, so `geoip.networks."10.0.0.0/8"` can be pasted back.
    part = key if _BARE_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def _kind(value: object) -> str:
    """The TOML name of a parsed value's type, for messages."""
    names: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),  # before int: bool is an int subclass
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
    )
    for typ, name in names:
        if isinstance(value, typ):
            return name
    return "date/time"


def got(value: object) -> str:
    """A parsed value as a message shows it: its TOML type, and itself when short."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"  # as written in TOML
    return f"{_kind(value)} {value!r}" if isinstance(value, str | int | float) else _kind(value)


def suggest(key: str, valid: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `valid`, else the list of them."""
    choices = sorted(valid)
    close = difflib.get_close_matches(key, choices, n=1)
    # difflib misses abbreviations ("lat" for "latitude"); a prefix is a good guess.
    close = close or [c for c in choices if c.startswith(key) or key.startswith(c)]
    if close:
        return f" (did you mean '{close[0]}'?)"
    return " (expected one of: " + ", ".join(choices) + ")" if choices else ""
