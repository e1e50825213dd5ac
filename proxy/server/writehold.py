"""The write hold: writes wait, in order, while the primary changes, instead of failing.

Three things start a hold (docs/architecture.md, "Failover"):
- a `PROXY FAILOVER` this process takes part in (`begin(FAILOVER)`; the orchestration
  ends it with `release` once the new primary is in the snapshot);
- a write answered `-READONLY` (`resend`): the primary was demoted, by another proxy's
  failover or by Sentinel, and the write surely did not execute; the health checker is
  asked to probe at once, and the hold ends with the first snapshot whose primary is not
  the node that refused (or is that node, probed since, as a master not loading: a
  `-LOADING` write, from a primary restarted with its AOF, takes the same way);
- a write with no primary in the snapshot (`hold`, when `hold_without_primary_ms` > 0): the
  moment between two probe rounds in which the old primary is a replica and the new one
  not yet a master. It ends with the first snapshot that has a primary;
- a client's `CLIENT PAUSE <ms> [WRITE|ALL]` (`pause`): it ends at that time, or with
  `CLIENT UNPAUSE`, and then writes go on (no error: Redis' pause only delays them). ALL
  also holds every other client whole, as a held write does (`Held.on_hold`), and those
  that connect meanwhile (`App.admit`); commands dispatched before it still run. A
  failover that starts during a pause takes the hold over and ends it with its release.

What waits: a client whose write arrives during a hold waits as a whole. Its write goes
back to the head of its intake and nothing more of it is dispatched (its reading pauses)
until the hold ends, so its commands still run in the order it sent them; other clients'
reads go on. Writes already sent that came back `-READONLY` (the tail of a slot) wait here
as slots and are sent to the new primary first. Past `hold_ms` (or
`hold_without_primary_ms`), or over `hold_max_bytes`, a held write gets an error saying it
was not executed; after a hold without a primary expires, writes are refused at once
until a primary is back (a dead primary costs each write one wait, not one per write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from config.model import FailoverConfig
from proxy.errors import NoPrimary, NotExecuted, reply_for
from proxy.logs import log_event
from proxy.server.slot import Slot
from proxy.stats import ProxyStats
from routing.topology import Snapshot

log = logging.getLogger("georedis.hold")

FAILOVER = "failover"
READONLY = "readonly"
NO_PRIMARY = "no primary"
PAUSE = "pause"


class Held(Protocol):
    """A client waiting for the hold to end (`Session`)."""

    on_hold: bool  # nothing more of it is dispatched until `unhold`

    def unhold(self, error: bytes | None) -> None: ...


class Rerouter(Protocol):
    """Sends a slot's remaining writes to the current primary (`Forwarding`)."""

    def send_rerouted(self, slot: Slot) -> None: ...


class WriteHold:
    __slots__ = (
        "_bytes",
        "_cfg",
        "_clients",
        "_loop",
        "_pause_timer",
        "_paused",
        "_refresh",
        "_refusing",
        "_resend",
        "_timer",
        "_trigger",
        "active",
        "pausing_all",
        "reason",
        "since",
        "stats",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, cfg: FailoverConfig,
                 refresh: Callable[[], None], stats: ProxyStats) -> None:  # fmt: skip
        self._loop = loop
        self._cfg = cfg
        self._refresh = refresh  # ask the health checker for a round now
        self.active = False  # the hot path's one test
        self.reason = ""
        self.since = 0.0
        self._clients: dict[int, tuple[Held, int]] = {}  # id -> (client, bytes held)
        self._resend: list[tuple[Rerouter, Slot]] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._trigger: tuple[str, int] = ("", 0)  # READONLY: (node, snapshot version)
        self._refusing = ""  # why writes are refused at once (a no-primary hold expired)
        self._pause_timer: asyncio.TimerHandle | None = None  # CLIENT PAUSE's end
        self.pausing_all = False  # CLIENT PAUSE ALL: every client is held
        self._paused: dict[int, Held] = {}  # held whole by it (no write of theirs waits)
        self.stats = stats

    def configure(self, cfg: FailoverConfig) -> None:
        """A reload's [failover] settings: a hold already running keeps its deadline."""
        self._cfg = cfg

    # ------------------------------------------------------------------ starting

    def begin(self, reason: str, snap: Snapshot, node: str = "") -> None:
        """Start (or widen) a hold. A failover's hold replaces a shorter one."""
        if self.active and (self.reason == FAILOVER or reason != FAILOVER):
            return
        bound_ms = self._cfg.hold_without_primary_ms if reason == NO_PRIMARY else self._cfg.hold_ms
        if self._timer is not None:
            self._timer.cancel()
        self.active, self.reason = True, reason
        if not self.since:
            self.since = self._loop.time()
        self._trigger = (node, snap.version)
        self._timer = self._loop.call_later(bound_ms / 1000, self._expire)
        log_event(log, "write_hold", reason=reason, node=node or None, bound_ms=bound_ms)
        if reason != FAILOVER:
            self._refresh()

    def pause(self, ms: int, everyone: Mapping[int, Held] | None) -> None:
        """CLIENT PAUSE: writes wait until `ms` from now; `everyone` (ALL: the other
        clients, by id) waits whole. A later pause moves the end, as in Redis."""
        if not self.active or self.reason == PAUSE:
            self.active, self.reason = True, PAUSE
            self.since = self.since or self._loop.time()
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        self._pause_timer = self._loop.call_later(ms / 1000, self.unpause)
        if everyone is not None:
            self.pausing_all = True
            for cid, client in everyone.items():
                self.also_pause(cid, client)
        log_event(log, "client_pause", ms=ms, everyone=everyone is not None)

    def also_pause(self, cid: int, client: Held) -> None:
        """A client held by CLIENT PAUSE ALL (one that connects during it too). Kept
        apart from the clients whose write waits: only the pause's end releases them,
        never with an error (they sent nothing that waits)."""
        if self.pausing_all and not client.on_hold:
            client.on_hold = True
            self._paused[cid] = client

    def unpause(self) -> None:
        """The pause's end (its time, or CLIENT UNPAUSE): held clients go on, in order."""
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        self.pausing_all = False
        paused, self._paused = self._paused, {}
        for client in paused.values():
            client.unhold(None)
        if self.active and self.reason == PAUSE:
            self.release()

    def _pause_goes_on(self) -> None:
        """Another hold ended (a failover that took a pause over, a primary found): a
        pause still running holds writes again until its own end."""
        if self._pause_timer is not None and not self.active:
            self.active, self.reason, self.since = True, PAUSE, self._loop.time()

    def hold(self, client: Held, cid: int, size: int, snap: Snapshot) -> bytes | None:
        """Hold `client` (its write is back at its intake's head); None when held, else
        the error to answer the write with."""
        if not self.active:
            if self._refusing or self._cfg.hold_without_primary_ms == 0:
                return reply_for(NoPrimary(snap.primary_error or self._refusing))
            self.begin(NO_PRIMARY, snap)
        if self._bytes + size > self._cfg.hold_max_bytes:
            return reply_for(NotExecuted("held writes are over [failover] hold_max_bytes"))
        if cid not in self._clients:
            self._clients[cid] = (client, size)
            self._bytes += size
            self.stats.writes_held += 1
        return None

    def resend(self, router: Rerouter, slot: Slot, node: str, snap: Snapshot) -> bool:
        """Writes a demoted primary refused with -READONLY: sent again once a new primary
        is known. False when they cannot wait (the client then gets the -READONLY)."""
        if not self.active:
            self.begin(READONLY, snap, node)
        self._resend.append((router, slot))
        self.stats.writes_held += slot.pending
        return True

    def forget(self, cid: int) -> None:
        """A held client left."""
        self._paused.pop(cid, None)
        entry = self._clients.pop(cid, None)
        if entry is not None:
            self._bytes -= entry[1]

    # ------------------------------------------------------------------ ending

    def on_snapshot(self, snap: Snapshot) -> None:
        """A new snapshot: the end of a hold that waits for a primary."""
        primary = snap.primary
        if primary is None or snap.primary_error:
            return
        self._refusing = ""
        if not self.active or self.reason == FAILOVER or self.reason == PAUSE:
            return
        node, version = self._trigger
        same = self.reason == READONLY and str(primary.addr) == node
        if same and (snap.version < version + 2 or primary.loading):
            return  # probed before the node refused, or it is still loading
        self.release()

    def release(self) -> None:
        """The primary is known: rerouted writes first, then the held clients, in order."""
        self._end()
        resend, self._resend = self._resend, []
        for router, slot in resend:
            router.send_rerouted(slot)
        for client in self._take_clients():
            client.unhold(None)
        self._pause_goes_on()

    def _expire(self) -> None:
        self._timer = None
        reason = self.reason
        held_ms = round((self._loop.time() - self.since) * 1000)
        log_event(log, "write_hold_expired", level=logging.WARNING, reason=reason, held_ms=held_ms)
        self.stats.write_holds_expired += 1
        if reason == NO_PRIMARY:
            self._refusing = "no primary reachable"
        if reason == NO_PRIMARY:
            err = reply_for(NoPrimary(f"none for {held_ms} ms"))
        else:
            err = reply_for(NotExecuted(f"held {held_ms} ms for a {reason}, no new primary"))
        self._end()
        resend, self._resend = self._resend, []
        for _, slot in resend:
            for _ in range(slot.pending):
                slot.deliver(err)
        for client in self._take_clients():
            client.unhold(err)
        self._pause_goes_on()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.active:
            self.stats.write_hold_ms += round((self._loop.time() - self.since) * 1000)
        self.active, self.reason, self.since = False, "", 0.0

    def _take_clients(self) -> list[Held]:
        clients = [c for c, _ in self._clients.values()]
        self._clients.clear()
        self._bytes = 0
        return clients

    @property
    def waiting(self) -> int:
        return len(self._clients) + len(self._resend)
