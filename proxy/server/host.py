"""The doors between the rooms of proxy/server: what each side may use of the other.

A session sees the process only through `Host` (routing state, pools, stats, the command
table, the slow log, the admin table); attachments and local commands see their session
only through `Client`; attachments that need routing see the forwarding attachment only
through `Router`. `App`, `Session` and `Forwarding` satisfy these structurally, so none of
them imports another and no import cycle can form (docs/architecture.md, "Layers").

Where the features plug in: a failover's write hold is part of `Router.write`'s
contract (the forwarding attachment decides whether a write leaves now, `Client.hold`
makes the client wait); a user and its
permissions sit on `ClientState`, checked in `Session.dispatch`; a cluster slot map rides
on `Host.topo` (the snapshot); a reloaded config is a new `Host.config` and snapshot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import Protocol

from config.model import Config
from proxy.backend.connection import BackendConnection
from proxy.backend.pool import NodePool, Pools
from proxy.errors import NoBackend
from proxy.resp.requests import Limits, RequestParser
from proxy.server.auth import Users
from proxy.server.channels import Listeners
from proxy.server.client import ClientState
from proxy.server.monitor import Monitors
from proxy.server.movedslots import MovedSlots
from proxy.server.slot import Slot, SlotOwner
from proxy.server.tracking import Tracking
from proxy.server.writehold import WriteHold
from proxy.stats import ProxyStats
from routing.commands import CommandTable
from routing.geo import GeoResolver
from routing.select import ReadRequirements
from routing.topology import NodeState, Snapshot


class Flushable(Protocol):
    def flush(self) -> None: ...


class Host(Protocol):
    """The process, as a session and its attachments see it."""

    loop: asyncio.AbstractEventLoop
    config: Config
    stats: ProxyStats
    table: CommandTable
    users: Users
    topo: Snapshot
    moved: MovedSlots  # owners learned from MOVED, put back into each new snapshot
    pools: Pools
    pool_of: dict[int, NodePool]
    limits: Limits
    geo: GeoResolver
    default_ranking: tuple[str, ...]
    fallback_primary: bool
    slow_threshold: float
    wait_key: bytes
    databases: int
    hold: WriteHold
    listeners: Listeners  # this process' subscribers through replicas (PUBLISH's count)
    monitors: Monitors  # the clients running MONITOR
    tracking: Tracking  # CLIENT TRACKING: who read what from which node

    @property
    def sessions(self) -> Mapping[int, Client]: ...

    def next_client_id(self) -> int: ...

    def admit(self, session: Client) -> bool:
        """Register a new client; False when `max_clients` are connected already."""
        ...

    def leave(self, session: Client) -> None: ...

    def mark_dirty(self, session: Flushable) -> None: ...

    def admin(self, client: ClientState, args: list[bytes]) -> bytes | Awaitable[bytes]:
        """A PROXY verb's reply, or an awaitable of it (FAILOVER takes seconds)."""
        ...

    def record_slow(self, client: ClientState, slot: Slot, seconds: float) -> None: ...

    def remember_script(self, body: bytes) -> None: ...

    def redis_version(self) -> str: ...

    def refresh_cluster_map(self) -> None:
        """Ask for the cluster's slot map again (a MOVED came): coalesced, returns at once."""
        ...


class Router(Protocol):
    """Plain forwarding (reads to the nearest eligible node, writes to the primary)."""

    def read_node(
        self, req: ReadRequirements, snap: Snapshot | None = None
    ) -> NodeState | None: ...

    def count_read(self, node: NodeState, n: int) -> None: ...

    def no_read_node(self, snap: Snapshot | None = None) -> NoBackend: ...

    def read(self, args: list[bytes], now: float, flags: int) -> None: ...

    def write(self, args: list[bytes], now: float, cls: int, flags: int = 0) -> None: ...


class BlockedCall(Protocol):
    """A blocking command in flight, as CLIENT LIST and CLIENT UNBLOCK see it."""

    conn: BackendConnection
    backend_id: int | None  # CLIENT ID of `conn` (None until its reply came)


class Client(SlotOwner, Protocol):
    """A client connection, as its attachments and local commands see it."""

    host: Host
    state: ClientState
    queue: deque[Slot]
    out: list[bytes]
    closing: bool
    gone: bool  # the connection is lost: what it has not had sent is dropped
    on_hold: bool  # waits for the write hold (or CLIENT PAUSE ALL) to end
    transport: asyncio.Transport | None

    @property
    def in_multi(self) -> bool: ...

    @property
    def pinned(self) -> bool: ...

    @property
    def subscribed(self) -> bool: ...

    # Read by CLIENT LIST (clientcmd.py): the parser's pending bytes, whether a blocking
    # command is in flight, and where reads go.
    @property
    def parser(self) -> RequestParser: ...

    @property
    def blocked(self) -> BlockedCall | None: ...

    @property
    def fwd(self) -> Router: ...

    def reply_now(self, data: bytes, cls: int, now: float) -> None: ...

    def wait_writes(self, args: list[bytes]) -> None:
        """Wait from `args` on until this client's writes in flight are answered."""
        ...

    def unhold(self, error: bytes | None) -> None:
        """The write hold (or CLIENT PAUSE) ended: dispatch goes on."""
        ...

    def hold(self, args: list[bytes]) -> bytes | None:
        """A write while the primary changes: the client waits from `args` on (None),
        or the error to answer it with."""
        ...

    def mark_dirty(self) -> None: ...

    def close_now(self, abort: bool = False) -> None: ...

    def quit_after_reply(self) -> None: ...

    def reset(self) -> None: ...

    def subscription_lost(self, sub: object, reply: bytes) -> None: ...
