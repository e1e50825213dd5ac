"""A fake process and client for the attachments' unit tests: no sockets, no loop.

`FakeHost` satisfies `proxy.server.host.Host`, `FakeClient` satisfies `Client`; pools and
connections record what would have been sent. The attachments under test are the real
ones; only what they would touch outside their room is fake.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

from config.model import Address, Config, FailoverConfig, ProxyConfig, RegionConfig
from proxy.errors import BackendError, BackendUnavailable
from proxy.resp.requests import Limits
from proxy.server.auth import Users
from proxy.server.channels import Listeners
from proxy.server.client import ClientState
from proxy.server.movedslots import MovedSlots
from proxy.server.slot import Slot, pop_done
from proxy.server.writehold import WriteHold
from proxy.stats import ProxyStats
from routing.geo import GeoResolver
from routing.select import NO_REQUIREMENTS
from routing.topology import NodeState, Reason, Role, Snapshot
from tests.helpers.commands import command_table

PRIMARY = NodeState(Address("10.0.0.1", 6379), "sg", up=True, role=Role.PRIMARY, offset=100,
                    reason=Reason.PRIMARY)  # fmt: skip
US = NodeState(Address("10.1.0.1", 6379), "us", up=True, role=Role.REPLICA, offset=100,
               link_up=True, lag_ms=5.0, eligible=True, reason=Reason.OK)  # fmt: skip
EU = NodeState(Address("10.2.0.1", 6379), "eu", up=True, role=Role.REPLICA, offset=100,
               link_up=True, lag_ms=5.0, eligible=True, reason=Reason.OK)  # fmt: skip


def config(snap: Snapshot) -> Config:
    regions = {}
    for n in snap.nodes:
        regions.setdefault(n.region, []).append(n.addr)
    return Config(
        proxy=ProxyConfig(region="us"),
        regions=tuple(RegionConfig(name, 0.0, 0.0, tuple(a)) for name, a in regions.items()),
    )


def snapshot(*replicas: NodeState, primary: NodeState | None = PRIMARY, error: str = "",
             version: int = 1) -> Snapshot:  # fmt: skip
    by_region: dict[str, tuple[NodeState, ...]] = {}
    for r in replicas:
        by_region[r.region] = (*by_region.get(r.region, ()), r)
    nodes = (*((primary,) if primary else ()), *replicas)
    return Snapshot(version=version, nodes=nodes, primary=primary, primary_error=error,
                    eligible_by_region=by_region)  # fmt: skip


class FakeConn:
    """A backend connection that records what is sent (and to whom replies go)."""

    def __init__(self, addr: Address, dedicated: bool) -> None:
        self.addr = addr
        self.name = str(addr)
        self.dedicated = dedicated
        self.sent: list[tuple[bytes, object]] = []
        self.raw: list[bytes] = []
        self.closed = False
        self.blocking = False
        self.push_sink: Any = None
        self.on_close: Any = None
        self.window = 4096  # BackendConnection.window: replies may be this far ahead

    def send(self, data: bytes, waiter: object) -> None:
        self.sent.append((data, waiter))

    def send_raw(self, data: bytes) -> None:
        self.raw.append(data)

    def close(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.name = str(addr)
        self.hist = None
        self.shared_conn = FakeConn(addr, dedicated=False)
        self.dedicated_conns: list[FakeConn] = []
        self.released: list[tuple[FakeConn, bool]] = []
        self.failing = False

    def shared(self, client_id: int, proto: int, db: int) -> FakeConn:
        if self.failing:
            raise BackendUnavailable(self.addr, "in back-off after failures")
        return self.shared_conn

    def dedicated(self, proto: int, db: int) -> FakeConn:
        if self.failing:
            raise BackendUnavailable(self.addr, "in back-off after failures")
        conn = FakeConn(self.addr, dedicated=True)
        self.dedicated_conns.append(conn)
        return conn

    def release(self, conn: FakeConn, proto: int, db: int, clean: bool) -> None:
        self.released.append((conn, clean))


class FakePools(dict[Address, FakePool]):
    busy: frozenset[Address] = frozenset()

    def outstanding(self, addr: Address) -> int:
        return 0


class FakeHost:
    def __init__(self, snap: Snapshot, region: str = "us",
                 loop: asyncio.AbstractEventLoop | None = None) -> None:  # fmt: skip
        self.loop = cast(asyncio.AbstractEventLoop, loop)
        # Without a loop, no waiting: a write without a primary is refused at once.
        wait = FailoverConfig() if loop is not None else FailoverConfig(hold_without_primary_ms=0)
        self.refreshes = 0
        self.config = config(snap)
        self.stats = ProxyStats()
        self.hold = WriteHold(self.loop, wait, self._refresh, self.stats)
        self.listeners = Listeners()
        self.users = Users(self.config, self.stats)
        self.table = command_table()
        self.topo = snap
        self.moved = MovedSlots()
        self.pools = FakePools({n.addr: FakePool(n.addr) for n in snap.nodes})
        self.pool_of: dict[int, Any] = {id(n): self.pools[n.addr] for n in snap.nodes}
        self.limits = Limits(1 << 20, 1 << 20, 1 << 16)
        self.geo = cast(GeoResolver, None)
        self.default_ranking = (region, "sg", "eu")
        self.fallback_primary = True
        self.slow_threshold = float("inf")
        self.wait_key = b"georedis:wait:test"
        self.databases = 16
        self.scripts: list[bytes] = []
        self._sessions: dict[int, Any] = {}

    @property
    def sessions(self) -> Mapping[int, Any]:
        return self._sessions

    def pool(self, node: NodeState) -> FakePool:
        return self.pools[node.addr]

    def next_client_id(self) -> int:
        return 1

    def admit(self, session: Any) -> bool:
        return True

    def leave(self, session: Any) -> None:
        pass

    def mark_dirty(self, session: Any) -> None:
        pass

    def admin(self, client: ClientState, args: list[bytes]) -> bytes:
        return b"+ADMIN\r\n"

    def record_slow(self, client: ClientState, slot: Slot, seconds: float) -> None:
        pass

    def remember_script(self, body: bytes) -> None:
        self.scripts.append(body)

    def proxy_protocol_allowed(self, ip: str) -> bool:
        return True

    def redis_version(self) -> str:
        return "7.0.0"

    def _refresh(self) -> None:
        self.refreshes += 1


class FakeClient:
    """A session as its attachments see it: a queue, an output, reply_now."""

    def __init__(self, host: FakeHost, ryw: bool = False) -> None:
        self.host = host
        self.state = ClientState(1, 0.0, host.default_ranking, "us", ryw)
        self.queue: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.closing = False
        self.gone = False
        self.transport = None
        self.tx: Any = None
        self.sub: Any = None
        self.failed: list[tuple[Slot, BackendError]] = []
        self.router: Any = None
        self.held: list[list[bytes]] = []  # what `hold` took, in order

    @property
    def in_multi(self) -> bool:
        return self.tx is not None and self.tx.in_multi

    @property
    def pinned(self) -> bool:
        return self.tx is not None

    @property
    def subscribed(self) -> bool:
        return self.sub is not None

    def reply_now(self, data: bytes, cls: int, now: float) -> None:
        from proxy.server.slot import made

        if self.queue:
            self.queue.append(made(self, data, cls, now))
        else:
            self.out.append(data)

    def slot_ready(self, slot: Slot) -> None:
        if slot.flags & 2:  # WRITE
            self.state.writes_inflight -= 1
            self.state.last_write_done = 1.0
        pop_done(self.queue, self.out, self.host.stats, 0.0, 0.0, float("inf"), lambda s, d: None)

    def stream_head(self, slot: Slot) -> None:
        pass

    def slot_failed(self, slot: Slot, err: BackendError) -> None:
        self.failed.append((slot, err))
        if self.router is not None:
            self.router.retry(slot, err)

    def slot_loading(self, slot: Slot) -> bool:
        return self.router is not None and bool(self.router.retry_loading(slot))

    def slot_unblocked(self, slot: Slot) -> bool:
        return False

    def slot_readonly(self, slot: Slot) -> bool:
        return self.router is not None and bool(self.router.reroute(slot))

    def wait_writes(self, args: list[bytes]) -> None:
        self.held.append(args)

    def hold(self, args: list[bytes]) -> bytes | None:
        err = self.host.hold.hold(self, self.state.id, sum(map(len, args)), self.host.topo)
        if err is None:
            self.held.append(args)
        return err

    def unhold(self, error: bytes | None) -> None:
        args = self.held.pop(0)
        if error is not None:
            self.out.append(error)
        elif self.router is not None:
            self.router.write(args, 0.0, 1)

    def mark_dirty(self) -> None:
        pass

    def close_now(self, abort: bool = False) -> None:
        self.closing = True

    def quit_after_reply(self) -> None:
        self.closing = True

    def reset(self) -> None:
        self.state.reset()

    def subscription_lost(self, sub: object, reply: bytes) -> None:
        self.sub = None
        self.out.append(reply)


__all__ = ["EU", "NO_REQUIREMENTS", "PRIMARY", "US", "FakeClient", "FakeHost", "snapshot"]
