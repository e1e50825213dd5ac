"""Give memory back to the system after a burst: glibc's `malloc_trim`, when RSS grew.

Big replies (a client pipelining hundreds of 1 MB GETs, churn of connections reading
large values) go through the C allocator. Freed, their pages often stay in the
process: glibc raises its mmap threshold after freeing large blocks, so later large
blocks come from the heap, and a heap only shrinks from its top. `malloc_trim(0)` returns
every free page. It walks the heap, so it is called only while RSS is well above the
lowest level seen, and at most every two seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
from collections.abc import Callable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm), 0 elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    return trim


class Trimmer:
    """Calls `malloc_trim` while RSS is `threshold` above the lowest level seen, at most
    once per `every_s` (memory still in use stays; what was freed meanwhile goes back)."""

    def __init__(self, threshold: int = 32 << 20, every_s: float = 2.0) -> None:
        self._trim = _load_trim()
        self._threshold = threshold
        self._every_s = every_s
        self._floor = rss_bytes()
        self._last = -math.inf
        self.trims = 0

    def check(self, now: float) -> None:
        if self._trim is None:
            return
        rss = rss_bytes()
        self._floor = min(self._floor, rss)
        if rss - self._floor > self._threshold and now - self._last >= self._every_s:
            self._trim(0)
            self.trims += 1
            self._last = now
            self._floor = min(self._floor, rss_bytes())


# The cyclic collector's first generation runs after this many container allocations
# (Python's default: 700). Every command allocates a few (its argument list, a reply
# slot) that its reply frees again, so a collection finds the commands in flight and
# little else: at 700, one every ~100 pipelined commands, each walking and promoting
# the ones in flight. The proxy makes few cycles; a larger first generation costs some
# memory held a little longer, and saved 5-10% of the CPU at -P 16 (benchmarks.cpu_ab).
GC_FIRST_GENERATION = 50_000


def settle_gc() -> None:
    """Once serving: what start-up built (the config, the command table, the modules)
    is moved out of the collector's sight (`gc.freeze`), so that no later collection
    walks it again, and the first generation is made larger (`GC_FIRST_GENERATION`)."""
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, second, third)
