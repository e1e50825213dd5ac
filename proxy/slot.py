"""A reply slot: one command's place in its client's ordered reply queue.

Slots are the per-request objects of the hot path, hence `__slots__` and no methods
beyond the two a backend connection calls. A backend fills a slot with the raw reply
bytes (or fails it); the session writes slots out strictly in queue order, which keeps
each client's replies in the order of its commands even when one pipeline spans several
backends (DESIGN.md, invariant 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.errors import BackendError
    from proxy.session import Session
    from proxy.stats import LatencyHistogram

# Slot.flags
READ = 1  # may be retried once on another node
WRITE = 2  # counts for read-your-writes
RETRIED = 4
UNPIN = 8  # the reply releases the client's blocking connection


class Slot:
    __slots__ = ("args", "cls", "data", "flags", "hist", "node", "session", "t0")

    def __init__(
        self,
        session: Session,
        args: list[bytes],
        cls: int,
        flags: int,
        t0: float,
        node: str = "",
        hist: LatencyHistogram | None = None,
        data: bytes | None = None,
    ) -> None:
        self.session = session
        self.args = args
        self.cls = cls  # command class index for the stats (read/write/admin/other)
        self.flags = flags
        self.t0 = t0  # loop.time() when the command arrived
        self.node = node  # the backend that serves it ("" for proxy-made replies)
        self.hist = hist  # that backend's latency histogram
        self.data = data  # the reply, once known

    def deliver(self, reply: bytes) -> None:
        self.data = reply
        self.session.slot_ready(self)

    def fail(self, err: BackendError) -> None:
        self.session.slot_failed(self, err)
