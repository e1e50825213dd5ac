"""Fencing: what the health checker does about masters an older failover epoch marks.

`routing.eligibility.fence` decides (pure): a master holding an older epoch than the
newest one seen is an old primary back after a failover, and is never the primary. Here
the checker acts on that decision after each round (docs/architecture.md, "Failover"):

- a fenced node is made a replica of the current primary (`REPLICAOF`), at most once
  per `_RETRY_S` per node: it then resyncs and holds the new epoch like every replica;
- the primary holds the epoch key again when it lost it (a FLUSHALL through anyone):
  the key is what fences the next old primary;
- a primary that changed without a PROXY FAILOVER (Sentinel's, or a REPLICAOF by hand)
  gets the next epoch, so the one it replaced is fenced when it comes back, even if
  the sentinels still name it for a while.

Each proxy does this on its own, so any proxy that sees a returning old primary fences
it; the commands are idempotent (a node already replicating the primary answers OK).
On connections of its own, never the probes': a probe's connection stays in a known state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from config.model import Address
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import ProbeError
from proxy.logs import log_event
from routing.probe import EPOCH_KEY, epoch_text
from routing.topology import Snapshot

log = logging.getLogger("georedis.fencing")

Connect = Callable[[ProbeConnection, Address, float], Awaitable[None]]

_RETRY_S = 2.0
_TIMEOUT_S = 1.0


class Fencer:
    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._conns: dict[Address, ProbeConnection] = {}
        self._last: dict[Address, float] = {}
        # Sentinel re-points a returning old master itself: georedis then only fences.
        self.repoint = True
        # The primary of the last round that had one, and its epoch.
        self._primary: tuple[Address, int] | None = None

    async def act(self, snap: Snapshot) -> None:
        primary = snap.primary
        if primary is None:
            return
        last, self._primary = self._primary, (primary.addr, primary.epoch)
        if last is not None and last[0] != primary.addr and primary.epoch <= last[1]:
            # Promoted by someone else (PROXY FAILOVER writes a newer epoch itself): it
            # holds the epoch its old primary held, which would not fence that one.
            epoch = max(snap.epoch, last[1]) + 1
            await self._run(primary.addr, ("SET", EPOCH_KEY, epoch_text(epoch, primary.addr)))
            log_event(log, "epoch_advanced", node=str(primary.addr), epoch=epoch)
        elif primary.epoch < snap.epoch and self._due(primary.addr):
            await self._run(primary.addr, ("SET", EPOCH_KEY, epoch_text(snap.epoch, primary.addr)))
            log_event(log, "epoch_rewritten", node=str(primary.addr), epoch=snap.epoch)
        for node in snap.fenced:
            if self.repoint and self._due(node.addr):
                log_event(log, "node_fenced", level=logging.WARNING, node=str(node.addr),
                          epoch=node.epoch, current_epoch=snap.epoch,
                          primary=str(primary.addr))  # fmt: skip
                host, port = primary.addr.host, primary.addr.port
                await self._run(node.addr, ("REPLICAOF", host, str(port)))

    def _due(self, addr: Address) -> bool:
        now = time.monotonic()
        if now - self._last.get(addr, -_RETRY_S) < _RETRY_S:
            return False
        self._last[addr] = now
        return True

    async def _run(self, addr: Address, cmd: tuple[str, ...]) -> None:
        conn = self._conns.setdefault(addr, ProbeConnection())
        try:
            if not conn.connected:
                await self._connect(conn, addr, _TIMEOUT_S)
            await conn.call(*cmd, timeout_s=_TIMEOUT_S)
        except (ProbeError, ReplyError) as e:
            log.warning("%s on %s failed (retrying): %s", cmd[0], addr, e)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
