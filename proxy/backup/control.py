"""The restore's control connection to its target, which must survive the restore itself.

While a target flushes its old data and loads a large RDB it can take seconds to answer,
and `ProbeConnection` closes itself on any timeout (its state is then unknown). A
restore must still see the load through and, whatever happens, make the target a master
again: a target left a replica of the proxy's closed port is read-only with its data
replaced. So every call here reopens the connection once when it failed, `info` keeps
trying until its caller's deadline, and `make_master` retries `REPLICAOF NO ONE` (through
`-LOADING` and reconnects) for up to `_MASTER_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from proxy.backend.probe import Arg, ProbeConnection, ReplyError
from proxy.errors import BackupError, ProbeError
from routing.probe import parse_info

Reconnect = Callable[[], Awaitable[ProbeConnection]]

CALL_S = 5.0
_MASTER_S = 30.0
_RETRY_S = 0.2


async def open_control(connect: Reconnect) -> Control:
    return Control(await connect(), connect)


class Control:
    def __init__(self, conn: ProbeConnection, reconnect: Reconnect) -> None:
        self.conn = conn
        self._reconnect = reconnect
        self.addr = conn.addr

    async def call(self, *args: Arg, timeout_s: float = CALL_S) -> object:
        """One command; after a connection failure, once more on a new connection.
        A Redis error reply is raised as `ReplyError`."""
        try:
            return await self.conn.call(*args, timeout_s=timeout_s)
        except ProbeError:
            await self._renew()
            return await self.conn.call(*args, timeout_s=timeout_s)

    async def info(self, *sections: str) -> dict[str, str]:
        """INFO parsed; {} when the target does not answer now (the caller polls)."""
        try:
            reply = await self.call("INFO", *sections)
        except (ProbeError, ReplyError):
            return {}
        return parse_info(reply if isinstance(reply, bytes) else b"")

    async def make_master(self) -> None:
        """`REPLICAOF NO ONE`, however long the target takes to accept it: refused with
        -LOADING while it loads, retried as long as the load progresses, then for
        `_MASTER_S` more."""
        deadline, loaded = time.monotonic() + _MASTER_S, ""
        while True:
            try:
                await self.call("REPLICAOF", "NO", "ONE")
                return
            except (ProbeError, ReplyError) as e:
                info = await self.info("persistence")
                if info.get("loading") == "1" and info.get("loading_loaded_bytes") != loaded:
                    loaded, deadline = (
                        info.get("loading_loaded_bytes", ""),
                        (time.monotonic() + _MASTER_S),
                    )
                elif time.monotonic() > deadline:
                    raise BackupError(
                        f"{self.addr} could not be made a master again ({e}): it is still a "
                        "replica of this proxy's restore port, with a one-time masterauth; "
                        "run REPLICAOF NO ONE and CONFIG SET masterauth on it"
                    ) from e
            await asyncio.sleep(_RETRY_S)

    async def _renew(self) -> None:
        self.conn.close()
        self.conn = await self._reconnect()
