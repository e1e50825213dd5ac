"""The health checker on an event loop of its own, in a thread of its own.

Probes that share the event loop with client traffic measure the proxy, not the nodes:
under heavy load (thousands of connections a second, megabyte values, a 100k-command
pipeline) a probe's reply sits unread in its socket for as long as the loop is busy,
and a healthy node is declared down, then the next region, then the primary. In a thread
the probes need only the GIL, which CPython hands over every few milliseconds
(`sys.getswitchinterval`), so a probe round is delayed by milliseconds, not by the
length of the client loop's backlog (docs/architecture.md, "Invariants").

The thread owns the `HealthChecker` and its connections. What crosses over:
- snapshots and the COMMAND reply, handed to the proxy's loop with
  `call_soon_threadsafe` (the proxy's state is only ever touched on its own loop);
- `busy(addr)`, read by the checker: a frozenset the proxy's loop replaces whole.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import TypeVar

from config.model import Address, Config
from proxy.backend.clusterhealth import health_checker
from proxy.backend.health import HealthChecker
from routing.topology import Snapshot

T = TypeVar("T")


class HealthThread:
    """`HealthChecker`'s interface for the proxy, run on a thread's own loop."""

    def __init__(
        self,
        config: Config,
        instance_id: str,
        on_snapshot: Callable[[Snapshot], None],
        on_commands: Callable[[list[object]], None],
        busy: Callable[[Address], bool],
    ) -> None:
        self._main = asyncio.get_running_loop()
        # The same kind of loop as the proxy's (uvloop in production, asyncio in tests
        # that ask for it).
        self._loop = type(self._main)()
        main = self._main

        def snapshot_there(snap: Snapshot) -> None:
            main.call_soon_threadsafe(on_snapshot, snap)

        def commands_there(reply: list[object]) -> None:
            main.call_soon_threadsafe(on_commands, reply)

        self._checker = health_checker(
            config, instance_id, snapshot_there, commands_there, busy=busy
        )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="georedis-health", daemon=True
        )

    @property
    def checker(self) -> HealthChecker:
        return self._checker

    @property
    def snapshot(self) -> Snapshot:
        return self._checker.snapshot

    @property
    def heartbeat_acked_ms(self) -> float | None:
        return self._checker.heartbeat_acked_ms

    @property
    def heartbeat_key(self) -> str:
        return self._checker.heartbeat_key

    def request_map_refresh(self) -> None:
        """A Redis Cluster's slot map asked for again (a MOVED came); returns at once. The
        checker reads it in its next round, once however many ask before then."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._checker.request_map_refresh)

    async def start(self) -> None:
        """Start the thread and probe once: a snapshot is applied when this returns."""
        self._thread.start()
        await self._on_thread(self._checker.start)

    async def refresh(self) -> Snapshot:
        """Probe every node now; the new snapshot is applied when this returns."""
        return await self._on_thread(self._checker.refresh)

    async def reconfigure(self, config: Config) -> Snapshot:
        """A reloaded config, applied between two rounds; then a round on it."""

        async def there() -> Snapshot:
            await self._checker.reconfigure(config)
            return await self._checker.refresh()

        return await self._on_thread(there)

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            await self._on_thread(self._checker.stop)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
            if not self._thread.is_alive():
                self._loop.close()

    async def _on_thread(self, fn: Callable[[], Coroutine[object, object, T]]) -> T:
        # The callbacks the coroutine scheduled on the proxy's loop (a snapshot) were
        # queued there before the future's result is: they run first.
        fut = asyncio.run_coroutine_threadsafe(fn(), self._loop)
        return await asyncio.wrap_future(fut)
