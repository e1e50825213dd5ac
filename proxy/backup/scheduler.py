"""`[backup] schedule`: backups this proxy takes on its own, one per slot across proxies.

At each scheduled time every proxy with the schedule wakes up and tries to take the
slot's lock on the primary: `SET georedis:lock:backup:<slot> <instance> NX PX <ttl>`
(the slot is the scheduled time itself, which every proxy computes alike from the same
text, `config.schedule`); the one that gets it takes the backup, the others do nothing.
The lock outlives the slot (a day at most), so a proxy whose clock is a little late
does not take the slot again.

Every few minutes the newest manifest in the target sets this process' "last backup"
figures, so each proxy's metrics tell the truth whichever proxy took it, and after a
restart (the alert on an old backup reads them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from config.schedule import Schedule
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backup.clusterset import lock_master
from proxy.backup.service import Backups
from proxy.backup.targets import TargetError
from proxy.errors import BackupError, ProbeError
from proxy.logs import log_event

log = logging.getLogger("georedis.backup")

LOCK_PREFIX = "georedis:lock:backup:"
_LOCK_MAX_MS = 24 * 3600 * 1000
_REFRESH_S = 300.0
_CALL_S = 2.0
_FOLLOW_S = (1.0, 4.0, 25.0, 90.0, 600.0)  # after a lost lock: when to look for its backup


class Scheduler:
    def __init__(self, backups: Backups, schedule: Schedule, instance: str) -> None:
        self.backups = backups
        self.schedule = schedule
        self.instance = instance
        self.taken = 0  # slots this proxy won (for tests and PROXY BACKUPS)
        self._follow: asyncio.Future[None] | None = None

    async def run(self) -> None:
        try:
            await self.refresh_last()
            while True:
                now = self.backups.clock()
                due = self.schedule.next_after(now)
                await self._wait_until(due)
                await self.run_slot(self.schedule.slot(self.backups.clock()))
        finally:
            if self._follow is not None:
                self._follow.cancel()

    async def _wait_until(self, due: float) -> None:
        # In steps, so the "last backup" figures refresh between far-apart slots.
        while (left := due - self.backups.clock()) > 0:
            await asyncio.sleep(min(left, _REFRESH_S))
            if due - self.backups.clock() > 0:
                await self.refresh_last()

    async def run_slot(self, slot: float) -> bool:
        """Take `slot`'s backup if this proxy wins its lock; whether it did."""
        if not await self._lock(slot):
            self._follow = asyncio.ensure_future(self._follow_other(slot))
            return False
        self.taken += 1
        try:
            m = await self.backups.run_now(None, self.backups.host.config.backup.archive)
        except BackupError as e:
            log_event(log, "scheduled_backup_failed", level=logging.WARNING, error=e.why)
            return True
        log_event(log, "scheduled_backup", id=m.id, slot=int(slot))
        return True

    async def _follow_other(self, slot: float) -> None:
        """Another proxy took the slot: learn of its backup soon, not at the next refresh."""
        for delay in _FOLLOW_S:
            await asyncio.sleep(delay)
            await self.refresh_last()
            if self.backups.host.stats.backup_last[0] >= slot:
                return

    async def _lock(self, slot: float) -> bool:
        key = f"{LOCK_PREFIX}{int(slot)}"
        primary = lock_master(self.backups.host.topo, key)
        if primary is None:
            log_event(log, "scheduled_backup_skipped", level=logging.WARNING,
                      why="no primary to hold the lock")  # fmt: skip
            return False
        ttl = min(_LOCK_MAX_MS, max(60_000, int(self.schedule.next_after(slot) - slot) * 1000))
        conn = ProbeConnection()
        try:
            await self.backups.host.connect(conn, primary.addr, _CALL_S)
            got = await conn.call("SET", key, self.instance, "NX", "PX", ttl, timeout_s=_CALL_S)
        except (ProbeError, ReplyError) as e:
            log_event(log, "scheduled_backup_skipped", level=logging.WARNING, why=str(e))
            return False
        finally:
            conn.close()
        return got is not None

    async def refresh_last(self) -> None:
        with contextlib.suppress(BackupError, TargetError, OSError):
            done = [m for m in await self.backups.manifests() if m.state == "complete"]
            if done:
                m = max(done, key=lambda m: m.finished)
                stats = self.backups.host.stats
                if m.finished > stats.backup_last[0]:
                    stats.backup_last = (m.finished, m.duration_s, m.size)
