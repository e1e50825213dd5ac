"""Control commands a failover sends to the nodes it switches, one connection per node.

Both failovers (standalone `proxy.admin.failover`, cluster `proxy.admin.clusterfailover`)
talk to nodes the way the probes do (`ProbeConnection`, the host's `connect`: TLS and
backend credentials as configured), on connections of the run's own, closed at its end.
A call that fails drops its connection, so that a poll which outlives one failure (a node
restarting its listener, a timeout during a fork) reconnects on the next call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from config.model import Address
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import FailoverError, ProbeError
from routing.probe import parse_info

Connect = Callable[[ProbeConnection, Address, float], Awaitable[None]]

CALL_S = 2.0  # one control command's deadline


class ControlCalls:
    __slots__ = ("_connect", "_conns")

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._conns: dict[Address, ProbeConnection] = {}

    async def call(self, addr: Address, *cmd: str) -> object:
        conn = self._conns.setdefault(addr, ProbeConnection())
        try:
            if not conn.connected:
                await self._connect(conn, addr, CALL_S)
            return await conn.call(*cmd, timeout_s=CALL_S)
        except (ProbeError, ReplyError) as e:
            conn.close()
            self._conns.pop(addr, None)
            raise FailoverError(f"{' '.join(cmd[:2])} on {addr}: {e}") from e

    async def info(self, addr: Address) -> dict[str, str]:
        """INFO replication of `addr`, parsed."""
        reply = await self.call(addr, "INFO", "replication")
        return parse_info(reply if isinstance(reply, bytes) else b"")

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
