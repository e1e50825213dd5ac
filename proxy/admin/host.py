"""What the PROXY verbs see of the process and of the calling client.

Admin sits below proxy/server (the session dispatches to it through `Host.admin`), so it
sees both through these protocols, which `App` and `ClientState` satisfy structurally
(docs/architecture.md, "Layers"). Failover and backup add what they need of pools and
probes to `AdminHost`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from proxy.admin.failover import FailoverHost, Request, Status
from proxy.backup.service import Backups
from proxy.observe.history import History
from proxy.observe.slowlog import SlowLog
from proxy.stats import StatusSource
from routing.geo import ClientLocation, GeoResolver
from routing.topology import NodeState, Snapshot


class AdminClient(Protocol):
    """The calling connection's own state (`proxy.server.client.ClientState`)."""

    id: int
    peer: str
    location: ClientLocation | None
    region: str
    ranking: tuple[str, ...]
    max_lag_ms: float | None
    ryw: bool
    proto: int

    def set_location(self, loc: ClientLocation) -> None: ...


class HoldView(Protocol):
    """The write hold as PROXY FAILOVER STATUS shows it."""

    @property
    def reason(self) -> str: ...

    @property
    def waiting(self) -> int: ...


class LoadedView(Protocol):
    """Which config is in force, for PROXY CONFIG GET (`loaded.version`, `.hash`, `.at`)."""

    def items(self) -> list[tuple[str, str]]: ...


class AdminHost(StatusSource, FailoverHost, Protocol):
    geo: GeoResolver
    topo: Snapshot
    slowlog: SlowLog
    failover_status: Status
    backups: Backups
    history: History  # PROXY CAPACITY

    def failover(self, req: Request) -> Awaitable[dict[str, object]]:
        """Run PROXY FAILOVER where the probes run (here, or the supervisor)."""
        ...

    @property
    def hold(self) -> HoldView: ...

    def read_target(self, client: AdminClient) -> NodeState | None: ...

    def reload(self) -> Awaitable[dict[str, object]]:
        """PROXY RELOAD: the config file read again and applied (every worker too)."""
        ...

    @property
    def loaded(self) -> LoadedView: ...
