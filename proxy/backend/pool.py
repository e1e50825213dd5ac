"""Backend pools: per node, a few shared multiplexed connections and idle dedicated ones.

Shared connections are keyed by (protocol, db): a RESP3 client's replies must come from a
RESP3 connection and SELECT is per connection, so clients that differ in either never
share one. A client always uses the same shared connection of a node (by its id), so
its commands to one node keep their order.

Dedicated connections serve clients whose state must live on the backend connection
(MULTI/WATCH, blocking commands, pub/sub). Clean ones go back to a small idle list.

Health is explicit state, as in twemproxy: consecutive connect failures put the node in
back-off until `down_until`, during which requests fail at once instead of piling up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from config.loader import resolve_password
from config.model import Address, BackendConfig, Config
from proxy.backend.connection import BackendConnection, start_connection
from proxy.backend.handshake import Handshake
from proxy.errors import BackendError, BackendUnavailable
from proxy.stats import NodeLatency
from proxy.tls import BackendTls, backend_tls

Key = tuple[int, int]  # (protocol, db)

# A deadline tick this late means the event loop was stalled (see `Pools._tick`).
_STALL_S = 0.1


class NodePool:
    __slots__ = (
        "_after_chunk",
        "_busy",
        "_cfg",
        "_dedicated",
        "_failures",
        "_idle",
        "_loop",
        "_password",
        "_readonly",
        "_shared",
        "_tls",
        "addr",
        "down_until",
        "hist",
        "name",
    )

    def __init__(
        self,
        addr: Address,
        cfg: BackendConfig,
        password: str | None,
        after_chunk: Callable[[], None],
        tls: BackendTls | None = None,
        readonly: bool = False,
    ) -> None:
        self.addr = addr
        self._tls = tls
        self._readonly = readonly
        self.name = str(addr)
        self._cfg = cfg
        self._password = password
        self._after_chunk = after_chunk
        self._loop = asyncio.get_running_loop()
        self._shared: dict[Key, list[BackendConnection | None]] = {}
        self._idle: dict[Key, list[BackendConnection]] = {}
        self._dedicated: set[BackendConnection] = set()
        self._failures = 0
        self._busy = False  # running a script at the last deadline check
        self.down_until = 0.0
        # This node's latency histogram (set by Pools), so the hot path needs no lookup.
        self.hist: NodeLatency | None = None

    # ------------------------------------------------------------------ checkout

    def shared(self, client_id: int, proto: int, db: int) -> BackendConnection:
        """The shared connection this client uses on this node (opened lazily)."""
        slots = self._shared.get((proto, db))
        if slots is None:
            slots = self._shared[(proto, db)] = [None] * self._cfg.pool_size
        i = client_id % len(slots)
        conn = slots[i]
        if conn is None or conn.closed:
            conn = slots[i] = self._open(proto, db)
        return conn

    def dedicated(self, proto: int, db: int) -> BackendConnection:
        """A connection for one client alone; give it back with `release`."""
        idle = self._idle.get((proto, db))
        while idle:
            conn = idle.pop()
            if not conn.closed:
                self._dedicated.add(conn)
                return conn
        conn = self._open(proto, db)
        self._dedicated.add(conn)
        return conn

    def release(self, conn: BackendConnection, proto: int, db: int, clean: bool) -> None:
        """Return a dedicated connection; one whose state may be dirty is closed."""
        idle = self._idle.setdefault((proto, db), [])
        if clean and not conn.closed and len(idle) < self._cfg.dedicated_idle:
            self._dedicated.discard(conn)
            conn.push_sink = None
            conn.blocking = False
            idle.append(conn)
        elif conn.pending and not conn.closed:
            # A reply is still due (EXEC gives the connection back at once): close after
            # it. It stays in `_dedicated` until then, where `close_all` finds it
            # (`_closed` drops it).
            conn.close_when_idle()
        else:
            self._dedicated.discard(conn)
            conn.close()

    def _open(self, proto: int, db: int) -> BackendConnection:
        if self._loop.time() < self.down_until:
            raise BackendUnavailable(self.addr, "in back-off after failures")
        cfg = self._cfg
        hs = Handshake(cfg.username, self._password, proto, db, readonly=self._readonly)
        timeout = cfg.connect_timeout_ms / 1000
        conn = start_connection(self.addr, hs, self._after_chunk, timeout, self._tls)
        conn.on_close = self._closed
        return conn

    def _closed(self, conn: BackendConnection, err: BackendError) -> None:
        self._dedicated.discard(conn)
        if conn.connect_failed:  # could not connect: back off, exponentially
            self._failures += 1
            base = self._cfg.reconnect_backoff_ms * 2 ** min(self._failures - 1, 16)
            delay = min(base, self._cfg.reconnect_backoff_max_ms) / 1000
            self.down_until = self._loop.time() + delay
        else:
            self._failures = 0

    # ------------------------------------------------------------------ status

    def connections(self) -> list[BackendConnection]:
        conns = [c for slots in self._shared.values() for c in slots if c and not c.closed]
        conns.extend(c for c in self._dedicated if not c.closed)
        conns.extend(c for idle in self._idle.values() for c in idle if not c.closed)
        return conns

    def outstanding(self) -> int:
        total = 0
        for slots in self._shared.values():
            for c in slots:
                if c is not None:
                    total += c.pending
        for c in self._dedicated:
            total += c.pending
        return total

    def running_script(self, now: float, quiet_s: float) -> bool:
        """A connection has been quiet for `quiet_s` with a script the proxy sent in
        flight: the node is busy with it (Redis runs one thing at a time), not dead."""
        return any(c.waits_for_script(now, quiet_s) for c in self.connections())

    def check_deadlines(
        self, now: float, timeout: float, script_timeout: float, quiet_s: float
    ) -> bool:
        """Fail connections past their deadline; True when the node runs a script.

        While it does, every request to it waits behind the script, whatever connection
        it is on: all of them get the script deadline."""
        busy = self.running_script(now, quiet_s)
        if busy:
            timeout = max(timeout, script_timeout)
        elif self._busy:
            # The script just ended: the replies it held up on other connections are
            # arriving now; their clocks start again here, not when they were sent.
            for conn in self.connections():
                conn.last_activity = max(conn.last_activity, now)
        self._busy = busy
        for slots in self._shared.values():
            for c in slots:
                if c is not None:
                    c.check_deadline(now, timeout)
        # Dedicated connections too (MULTI/WATCH, pub/sub handshakes, EXEC replies still
        # due after a release), except while a blocking command waits. A copy: a
        # connection that fails leaves `_dedicated` (`_closed`).
        for c in list(self._dedicated):
            if not c.blocking:
                c.check_deadline(now, timeout)
        for idle in self._idle.values():
            for c in idle:
                c.check_deadline(now, timeout)
        return busy

    def close_all(self, reason: str) -> None:
        """Fail every connection of this node (it was found down, or at shutdown)."""
        for conn in self.connections():
            conn.abort(BackendUnavailable(self.addr, reason))
        self._idle.clear()

    def mark_up(self) -> None:
        """The health checker reached the node: allow connects again at once."""
        self._failures = 0
        self.down_until = 0.0


class Pools:
    """All node pools, created on first use, plus the deadline ticker."""

    def __init__(
        self,
        cfg: BackendConfig,
        password: str | None,
        after_chunk: Callable[[], None],
        hist_for: Callable[[str], NodeLatency] | None = None,
        readonly: bool = False,
    ):
        self._cfg = cfg
        # Cluster mode: every connection says READONLY, so a replica serves the reads
        # routed to it (a master ignores it).
        self._readonly = readonly
        self._hist_for = hist_for
        self._password = password
        self._after_chunk = after_chunk
        self.tls = backend_tls(cfg)  # one context for every node; reloaded in place
        self._pools: dict[Address, NodePool] = {}
        self._ticker: asyncio.Task[None] | None = None
        # Nodes running a script the proxy sent, as of the last tick. Replaced whole, so
        # the health checker's thread may read it at any time.
        self.busy: frozenset[Address] = frozenset()
        # Told when `busy` changes (a worker process tells its supervisor's checker).
        self.on_busy: Callable[[frozenset[Address]], None] | None = None

    @classmethod
    def of(
        cls,
        config: Config,
        after_chunk: Callable[[], None],
        hist_for: Callable[[str], NodeLatency] | None = None,
    ) -> Pools:
        """The pools a config asks for: its [backend], its password, cluster mode."""
        password = resolve_password(config)
        return cls(config.backend, password, after_chunk, hist_for, bool(config.cluster.seeds))

    def __getitem__(self, addr: Address) -> NodePool:
        pool = self._pools.get(addr)
        if pool is None:
            pool = NodePool(
                addr, self._cfg, self._password, self._after_chunk, self.tls, self._readonly
            )
            self._pools[addr] = pool
            if self._hist_for is not None:
                pool.hist = self._hist_for(pool.name)
        return pool

    def get(self, addr: Address) -> NodePool | None:
        return self._pools.get(addr)

    def outstanding(self, addr: Address) -> int:
        pool = self._pools.get(addr)
        return pool.outstanding() if pool is not None else 0

    def values(self) -> list[NodePool]:
        return list(self._pools.values())

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        # Deadlines are checked per connection, not per request: a connection whose
        # oldest request has seen no reply for `timeout_ms` fails as a whole.
        timeout = self._cfg.timeout_ms / 1000
        script_timeout = self._cfg.script_timeout_ms / 1000
        period = min(timeout / 4, 0.1)
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            now = loop.time()
            if now - due > _STALL_S:
                # This loop itself stalled: replies may sit unread in the sockets, and
                # their silence is ours, not the nodes'. Judge on the next tick, after
                # the loop has read them (docs/architecture.md, "Invariants").
                continue
            busy = frozenset(
                addr
                for addr, pool in list(self._pools.items())
                if pool.check_deadlines(now, timeout, script_timeout, period)
            )
            if busy != self.busy:
                self.busy = busy
                if self.on_busy is not None:
                    self.on_busy(busy)

    def retire(self, keep: set[Address]) -> None:
        """A reload removed nodes: their pools close once nothing is in flight on them
        (a pool still owed replies is kept, and retired by a later reload). `keep` holds
        the config's nodes and the snapshot's (a cluster's come from its map)."""
        for addr, pool in list(self._pools.items()):
            if addr not in keep and pool.outstanding() == 0:
                pool.close_all("node removed from the config")
                del self._pools[addr]

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for pool in self._pools.values():
            pool.close_all("proxy shutting down")
