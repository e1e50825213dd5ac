"""A client that waits while the primary changes: its next write and all after it.

`Session.hold` (a write while a hold is on, `writehold`) and `Session.wait_writes` (a
write for a new primary while earlier ones are in flight on the old one) put the write
back at the head of the client's intake and pause its reading (`Intake.wait`); nothing
more of it is dispatched until `unhold`, so its commands run in the order it sent them
(docs/architecture.md, "Failover").
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from proxy.server.client import ClientState
from proxy.server.intake import Intake
from proxy.server.writehold import WriteHold
from proxy.stats import CLASS_WRITE, ProxyStats
from routing.topology import Snapshot


class WaitingHost(Protocol):
    loop: asyncio.AbstractEventLoop
    stats: ProxyStats
    topo: Snapshot
    hold: WriteHold


class Waiting(Protocol):
    state: ClientState
    intake: Intake
    on_hold: bool
    waits_writes: bool

    @property
    def host(self) -> WaitingHost: ...

    def unhold(self, error: bytes | None) -> None: ...

    def reply_now(self, data: bytes, cls: int, now: float) -> None: ...

    def mark_dirty(self) -> None: ...


def hold(s: Waiting, args: list[bytes]) -> bytes | None:
    """None when `s` waits for the hold to end, else the error to answer `args` with."""
    err = s.host.hold.hold(s, s.state.id, sum(map(len, args)), s.host.topo)
    if err is None:
        s.on_hold = True
        s.intake.wait(args)
    return err


def wait_writes(s: Waiting, args: list[bytes]) -> None:
    """`s` waits until its writes in flight are answered (`Session.slot_ready`)."""
    s.on_hold = s.waits_writes = True
    s.intake.wait(args)


def unhold(s: Waiting, error: bytes | None) -> None:
    """Dispatch goes on, the held write first, or `error` answers it instead."""
    s.on_hold = False
    s.intake.end_wait(drop=error is not None)
    if error is not None:
        s.host.stats.commands[CLASS_WRITE] += 1
        s.reply_now(error, CLASS_WRITE, s.host.loop.time())
        s.mark_dirty()
