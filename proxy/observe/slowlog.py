"""The proxy's slow log: commands whose round trip through the proxy took too long.

It mirrors Redis' SLOWLOG (same truncation of arguments, same reply shape for
`SLOWLOG GET`) with one more field, the backend that served the command, because the
question a proxy's slow log answers is usually "which node was slow".

`record` is called on the hot path only for commands above the threshold, and even
then does little: the caller can also test `duration_us >= slowlog.threshold_us` itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# Redis' SLOWLOG_ENTRY_MAX_ARGC and SLOWLOG_ENTRY_MAX_STRING.
MAX_ARGC = 32
MAX_STRING = 128


@dataclass(frozen=True, slots=True)
class SlowLogEntry:
    id: int
    timestamp: int  # unix seconds
    duration_us: int
    args: tuple[bytes, ...]
    client_addr: str
    client_name: str
    backend: str


def truncate_args(args: list[bytes]) -> tuple[bytes, ...]:
    """Keep at most 32 arguments of at most 128 bytes each, noting what was cut, as Redis."""
    argc = len(args)
    kept = min(argc, MAX_ARGC)
    out: list[bytes] = []
    for i in range(kept):
        if kept != argc and i == kept - 1:
            out.append(b"... (%d more arguments)" % (argc - kept + 1))
            break
        a = args[i]
        if len(a) > MAX_STRING:
            a = a[:MAX_STRING] + b"... (%d more bytes)" % (len(a) - MAX_STRING)
        out.append(a)
    return tuple(out)


class SlowLog:
    """Newest first, at most `max_len` entries; a negative threshold disables it."""

    def __init__(self, threshold_us: int, max_len: int) -> None:
        self.threshold_us = threshold_us
        self.max_len = max_len
        self._entries: deque[SlowLogEntry] = deque(maxlen=max(0, max_len))
        # Ids keep growing across `reset`, as in Redis, so a poller can tell entries apart.
        self._next_id = 0

    def configure(self, threshold_us: int, max_len: int) -> None:
        """A reload's new settings; the newest entries are kept, up to the new length."""
        self.threshold_us, self.max_len = threshold_us, max_len
        self._entries = deque(self._entries, maxlen=max(0, max_len))

    def record(
        self,
        args: list[bytes],
        duration_us: int,
        backend: str,
        client_addr: str,
        client_name: str,
    ) -> None:
        if self.threshold_us < 0 or duration_us < self.threshold_us or self.max_len <= 0:
            return
        entry = SlowLogEntry(
            id=self._next_id,
            timestamp=int(time.time()),
            duration_us=duration_us,
            args=truncate_args(args),
            client_addr=client_addr,
            client_name=client_name,
            backend=backend,
        )
        self._next_id += 1
        self._entries.appendleft(entry)

    def get(self, n: int = 10) -> list[SlowLogEntry]:
        """The `n` newest entries; all of them when n < 0 (as `SLOWLOG GET -1`)."""
        if n < 0:
            return list(self._entries)
        return [e for _, e in zip(range(n), self._entries, strict=False)]

    def reset(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def encode_resp(entries: Iterable[SlowLogEntry]) -> bytes:
        return encode_resp(entries)


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def encode_resp(entries: Iterable[SlowLogEntry]) -> bytes:
    """A RESP2 array like Redis' SLOWLOG GET reply, each entry with a 7th field: backend."""
    items = list(entries)
    parts = [b"*%d\r\n" % len(items)]
    for e in items:
        parts.append(b"*7\r\n:%d\r\n:%d\r\n:%d\r\n" % (e.id, e.timestamp, e.duration_us))
        parts.append(b"*%d\r\n" % len(e.args))
        parts.extend(_bulk(a) for a in e.args)
        parts.append(_bulk(e.client_addr.encode()))
        parts.append(_bulk(e.client_name.encode()))
        parts.append(_bulk(e.backend.encode()))
    return b"".join(parts)
