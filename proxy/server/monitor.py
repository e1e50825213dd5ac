"""MONITOR: the commands this georedis dispatches, streamed to the clients that asked.

Redis' MONITOR on a backend would show the proxy's shared connections (every client's
commands, no client addresses, no database of the client) and nothing of what georedis
answers itself; MONITOR through georedis is served by georedis instead (DESIGN.md,
invariant 5): each command a client sends is one line, in Redis' format, with the node
it went to appended:

    +1700000000.123456 [0 10.0.0.7:51234] "SET" "k" "v" node=10.0.1.5:6379

(`node=georedis` for a command georedis answered itself). As Redis does, admin commands
(CONFIG, DEBUG, ...) are not shown, and AUTH's and HELLO AUTH's arguments are redacted.
With users configured, MONITOR needs the `monitor` command in the user's rules.

Cost: none while nobody monitors. While someone does, every session is `watched`
(`ClientState.hooked`): its commands go one by one through `hooks.dispatch`, which feeds
the line here, as Redis' own MONITOR costs throughput. A monitor that reads slower than
the commands come is disconnected past the pub/sub hard limit of its output (32 MB by
default), not buffered without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from proxy.logs import log_event
from proxy.server.client import ClientState
from proxy.stats import CLASS_OTHER
from routing.commands import Kind

log = logging.getLogger("georedis.session")

_REDACTED = b'"(redacted)"'
_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
            ord("\t"): b"\\t", 7: b"\\a", 8: b"\\b"}  # fmt: skip


class Watcher(Protocol):
    """A monitoring client (a `Session`), as the feed writes to it."""

    state: ClientState
    out: list[bytes]
    transport: asyncio.Transport | None

    def reply_now(self, data: bytes, cls: int, now: float) -> None: ...

    def mark_dirty(self) -> None: ...

    def close_now(self, abort: bool = False) -> None: ...


class Monitors:
    __slots__ = ("limit", "watchers")

    def __init__(self, limit: int) -> None:
        self.watchers: dict[int, Watcher] = {}
        self.limit = limit  # bytes of unsent output a monitor may have (0: no limit)

    def add(self, w: Watcher, everyone: Iterable[ClientState]) -> None:
        self.watchers[w.state.id] = w
        if len(self.watchers) == 1:
            for st in everyone:
                st.watch(True)

    def discard(self, w: Watcher, everyone: Iterable[ClientState]) -> None:
        if self.watchers.pop(w.state.id, None) is not None and not self.watchers:
            for st in everyone:
                st.watch(False)

    def feed(self, st: ClientState, args: list[bytes], node: str) -> None:
        line = b"+%.6f [%d %b] %b node=%b\r\n" % (
            time.time(),
            st.db,
            st.peer.encode(),
            _quoted(args),
            node.encode() or b"georedis",
        )
        now = time.monotonic()
        for w in list(self.watchers.values()):
            if w.state is st:
                continue  # Redis feeds no monitor its own commands
            w.reply_now(line, CLASS_OTHER, now)  # behind the replies it is owed
            w.mark_dirty()
            if self.limit and _buffered(w) > self.limit:
                log_event(log, "monitor_over_limit", peer=w.state.peer, limit=self.limit)
                w.close_now(abort=True)


def _buffered(w: Watcher) -> int:
    """Its output not yet taken by the kernel."""
    t = w.transport
    return sum(map(len, w.out)) + (t.get_write_buffer_size() if t is not None else 0)


def _quoted(args: list[bytes]) -> bytes:
    name = args[0].lower()
    shown = [_repr(a) for a in args]
    if name == b"auth":
        shown[1:] = [_REDACTED] * (len(args) - 1)
    elif name == b"hello":
        for i, a in enumerate(args):
            if a.lower() == b"auth":
                shown[i + 1 : i + 3] = [_REDACTED] * len(shown[i + 1 : i + 3])
    elif name == b"migrate":
        for i, a in enumerate(args):
            word = a.lower()
            if word in (b"auth", b"auth2"):
                n = 1 if word == b"auth" else 2
                shown[i + 1 : i + 1 + n] = [_REDACTED] * len(shown[i + 1 : i + 1 + n])
    return b" ".join(shown)


def _repr(arg: bytes) -> bytes:
    """Redis' sdscatrepr: quoted, escapes for quotes and controls, \\xHH for the rest."""
    out = [b'"']
    for c in arg:
        esc = _ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif 32 <= c < 127:
            out.append(bytes((c,)))
        else:
            out.append(b"\\x%02x" % c)
    out.append(b'"')
    return b"".join(out)


def shown(flags: frozenset[str], kind: Kind) -> bool:
    """Redis feeds monitors every command it runs but admin ones: not those refused
    (by the policy or the user's rules) either."""
    return "admin" not in flags and kind != Kind.REFUSED and kind != Kind.DENIED
