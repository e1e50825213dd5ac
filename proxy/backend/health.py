"""The health checker: probes every node, measures lag, publishes topology snapshots.

Two asyncio tasks, both on control-plane `ProbeConnection`s (never the hot-path pools):

- the probe loop, every `health.interval_ms`: one pipeline per node, all nodes
  concurrently, each within `health.probe_timeout_ms`: `INFO replication persistence`
  (a full `INFO` every `info_interval_ms`, kept for metrics) and `GET` of this proxy's
  heartbeat key. The results go through `routing.eligibility.evaluate`, which is pure;
  the new `Snapshot` (version + 1) is handed to `on_snapshot`.
- the heartbeat loop, every `health.heartbeat_ms`: `SET <prefix><instance_id> <now ms>
  PX <ttl>` on the current primary. The last value the primary acknowledged is what a
  replica's value is compared with (see `routing.eligibility.heartbeat_lag_ms`).

Nothing is configured about roles: the primary is whichever node says it is a master, so
a FAILOVER or REPLICAOF done directly on the nodes is picked up by the next round.
Logging is one line per state change (node up/down, role, eligibility, primary), never
per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping

from config.loader import resolve_password
from config.model import Address, Config
from proxy.backend.fencing import Fencer
from proxy.backend.healthlog import log_changes
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backend.sentinel import Sentinels
from proxy.errors import ProbeError
from proxy.logs import log_event
from proxy.tls import backend_tls
from routing.eligibility import INITIAL_STATE, EligibilityState, Policy, evaluate
from routing.probe import EPOCH_KEY, ProbeResult, parse_info, result_from_info
from routing.topology import EMPTY, Snapshot

log = logging.getLogger("georedis.health")

# A probe deadline that fires this much later than due means the loop itself stalled.
_LOOP_STALL_S = 0.1

# Acknowledged heartbeat values remembered (at 100 ms, the last ~25 s).
HEARTBEAT_ACKS_KEPT = 256

# COMMAND's reply is a few hundred KB: give it more time than a probe.
_COMMAND_TIMEOUT_S = 5.0


class CheckedNode:
    """What the checker keeps per node between rounds (twemproxy-style explicit state)."""

    __slots__ = (
        "addr",
        "commands_conn",
        "conn",
        "failures",
        "full_info",
        "heartbeat_key",
        "info_at",
        "last_ok",
        "region",
    )

    def __init__(self, region: str, addr: Address, heartbeat_key: str) -> None:
        self.region = region
        self.addr = addr
        # The key whose value says how far behind this node is (a cluster has one per
        # shard, in one of the shard's slots).
        self.heartbeat_key = heartbeat_key
        self.conn = ProbeConnection()
        self.failures = 0
        self.last_ok: ProbeResult | None = None
        self.full_info: Mapping[str, str] = {}
        self.info_at = -math.inf
        # The connection COMMAND was last fetched on (once per connection).
        self.commands_conn: ProbeConnection | None = None


class HealthChecker:
    def __init__(
        self,
        config: Config,
        instance_id: str,
        on_snapshot: Callable[[Snapshot], None],
        on_commands: Callable[[list[object]], None] | None = None,
        *,
        busy: Callable[[Address], bool] | None = None,
    ) -> None:
        self._config = config
        # Whether a node runs a script this proxy sent it: its silence is then expected.
        self._busy = busy or (lambda addr: False)
        self._health = config.health
        self._on_snapshot = on_snapshot
        self._on_commands = on_commands
        self._client_name = f"georedis-health-{instance_id}"
        self.heartbeat_key = f"{config.health.heartbeat_prefix}{instance_id}"
        self._policy = Policy.from_config(config)
        self._nodes = [
            CheckedNode(region, addr, self.heartbeat_key) for region, addr in config.all_nodes()
        ]
        self._state: EligibilityState = INITIAL_STATE
        self._snapshot: Snapshot = EMPTY
        self._heartbeat_acked_ms: float | None = None
        # Recent acknowledged beats, ascending: lag after a gap in the beats is measured
        # from the first beat after it (see `routing.eligibility.heartbeat_lag_ms`).
        self._heartbeat_acks: deque[float] = deque(maxlen=HEARTBEAT_ACKS_KEPT)
        self._round_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._password: str | None = None
        # Its own context: the checker runs on a thread and loop of its own.
        self.tls = backend_tls(config.backend)
        self.fencer = Fencer(self.connect)
        self.sentinels = Sentinels.of(config)
        # Sentinel re-points a returning old master itself: georedis then only fences.
        self.fencer.repoint = self.sentinels is None

    # Cluster mode: every control connection says READONLY, so that a replica answers
    # GET of the heartbeat key instead of redirecting it to its master.
    readonly = False

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def request_map_refresh(self) -> None:
        """A Redis Cluster's slot map is asked for again; standalone there is none."""

    @property
    def heartbeat_acked_ms(self) -> float | None:
        """The last heartbeat value (wall-clock ms) the primary acknowledged."""
        return self._heartbeat_acked_ms

    async def start(self) -> None:
        """Probe once (so a snapshot exists when this returns), then keep probing."""
        self._password = resolve_password(self._config)
        await self.refresh()
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="georedis-health"))
        if self._health.heartbeat:
            self._tasks.append(
                asyncio.create_task(self._heartbeat_loop(), name="georedis-heartbeat")
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for n in self._nodes:
            n.conn.close()
        self.fencer.close()
        if self.sentinels is not None:
            self.sentinels.close()

    async def reconfigure(self, config: Config) -> None:
        """A reloaded config (proxy/server/reload.py): timings, the lag policy and the
        nodes change from the next round on. A node that stays keeps its connection (and
        its lag memory, kept by address); a node no longer configured is closed."""
        async with self._round_lock:
            self._reconfigured(config)
            old = {n.addr: n for n in self._nodes}
            self._nodes = []
            for region, addr in config.all_nodes():
                node = old.pop(addr, None) or CheckedNode(region, addr, self.heartbeat_key)
                node.region = region
                self._nodes.append(node)
            for gone in old.values():
                gone.conn.close()

    def _reconfigured(self, config: Config) -> None:
        self._config, self._health = config, config.health
        self._policy = Policy.from_config(config)

    async def refresh(self) -> Snapshot:
        """Probe every node now and publish the resulting snapshot."""
        async with self._round_lock:
            # The last beat acknowledged *before* the probes left: one acknowledged while
            # they were in flight could not have reached a replica yet, and comparing
            # with it would report a fresh replica as up to a heartbeat interval behind.
            acked_before = self._heartbeat_acked_ms
            acks_before = tuple(self._heartbeat_acks)
            results = await asyncio.gather(*(self._probe(n) for n in self._nodes))
            designated = await self.sentinels.master() if self.sentinels else None
            snap, self._state = evaluate(
                results,
                self._state,
                self._policy,
                heartbeat_acked_ms=acked_before,
                version=self._snapshot.version + 1,
                heartbeat_acks=acks_before,
                designated=designated,
            )
            log_changes(self._snapshot, snap)
            self._snapshot = snap
            self._on_snapshot(snap)
            await self.fencer.act(snap)
            await self._fetch_commands(snap)
            return snap

    # --- probing ----------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = self._health.interval_ms / 1000  # read each round: a reload may change it
            started = loop.time()
            try:
                await self.refresh()
            except Exception:  # a bug must not stop health checking for good
                log.exception("health round failed")
            # Jittered: probes that kept a fixed phase to the heartbeat ticks would read
            # each replica at the same point between two beats, and the +-I/2 error of
            # the lag estimate would stay one-sided instead of averaging out.
            period = interval * random.uniform(0.8, 1.2)
            await asyncio.sleep(max(0.0, period - (loop.time() - started)))

    async def _probe(self, node: CheckedNode, retry_if_late: bool = True) -> ProbeResult:
        loop = asyncio.get_running_loop()
        timeout = self._health.probe_timeout_ms / 1000
        deadline = loop.time() + timeout
        full = (loop.time() - node.info_at) * 1000 >= self._health.info_interval_ms
        # Two single-section INFOs rather than one `INFO replication persistence`: Redis
        # before 7.0 takes only one section per call.
        cmds: list[tuple[str, ...]] = (
            [("INFO",)] if full else [("INFO", "replication"), ("INFO", "persistence")]
        )
        sent_at = loop.time()
        try:
            if not node.conn.connected:
                await self.connect(node.conn, node.addr, timeout)
            sent_at = loop.time()
            remaining = max(0.001, deadline - sent_at)
            *raw_infos, raw_hb, raw_epoch = await node.conn.pipeline(
                [*cmds, ("GET", node.heartbeat_key), ("GET", EPOCH_KEY)], timeout_s=remaining
            )
            received_at = loop.time()
            for raw in raw_infos:
                if isinstance(raw, ReplyError):
                    if str(raw).startswith("BUSY") and node.last_ok is not None:
                        # A script past the busy threshold: the node is alive and will
                        # answer again after it (SCRIPT KILL through the proxy ends it).
                        node.failures = 0
                        return node.last_ok
                    raise ProbeError(f"{node.addr}: INFO: {raw}")
        except ProbeError as e:
            now = loop.time()
            if self._busy(node.addr) and node.last_ok is not None:
                # Silent because it runs a script we sent (Redis answers nothing before
                # its busy threshold): busy, not down. The script has its own deadline.
                node.conn.close()
                return node.last_ok
            if retry_if_late and now > deadline + _LOOP_STALL_S:
                # The deadline fired long after it was due: this process's own event loop
                # was stalled, and the reply may be sitting unread in the socket. That
                # says nothing about the node, so ask again with a fresh deadline; only
                # a probe that times out on time takes the node out.
                log_event(log, "probe_inconclusive", node=str(node.addr),
                          late_ms=round((now - deadline) * 1000))  # fmt: skip
                node.conn.close()
                return await self._probe(node, retry_if_late=False)
            return self._failed(node, str(e), sent_at, now)
        info = parse_info(b"".join(r for r in raw_infos if isinstance(r, bytes)))
        if full:
            node.full_info, node.info_at = info, received_at
        node.failures = 0
        node.last_ok = result_from_info(
            node.addr,
            node.region,
            info,
            heartbeat=raw_hb,
            epoch=raw_epoch,
            sent_at=sent_at,
            received_at=received_at,
            wall_offset_s=time.time() - loop.time(),
            full_info=node.full_info,
        )
        return node.last_ok

    def _failed(
        self, node: CheckedNode, error: str, sent_at: float, received_at: float
    ) -> ProbeResult:
        # A node is taken out only after `failures_to_down` failures in a row; until then
        # its last good result stands in (one lost probe is not an outage).
        node.failures += 1
        if node.failures < self._health.failures_to_down and node.last_ok is not None:
            return node.last_ok
        return ProbeResult(
            addr=node.addr,
            region=node.region,
            ok=False,
            error=error,
            sent_at=sent_at,
            received_at=received_at,
            info=node.full_info,
        )

    async def connect(self, conn: ProbeConnection, addr: Address, timeout_s: float) -> None:
        """Open a control connection as the probes do (credentials, TLS, a name)."""
        await conn.connect(
            addr,
            username=self._config.backend.username,
            password=self._password,
            timeout_s=timeout_s,
            client_name=self._client_name,
            tls=self.tls,
            readonly=self.readonly,
        )

    async def _fetch_commands(self, snap: Snapshot) -> None:
        """Hand a node's COMMAND reply to `on_commands`: the primary's, once per
        connection, or any reachable node's while there is no primary (a replica's table
        is the same), so reads are routed as reads from the start."""
        if self._on_commands is None:
            return
        node = self._commands_source(snap)
        if node is None:
            return
        try:
            # Inside the probe round: bounded well below the old 5 s so a primary that
            # freezes right after a reconnect delays the round by a few probe timeouts.
            timeout = min(_COMMAND_TIMEOUT_S, max(1.0, 4 * self._health.probe_timeout_ms / 1000))
            reply = await node.conn.call("COMMAND", timeout_s=timeout)
        except (ProbeError, ReplyError) as e:
            log.warning("COMMAND on primary %s failed (retrying next round): %s", node.addr, e)
            return
        node.commands_conn = node.conn
        if isinstance(reply, list):
            self._on_commands(reply)

    def _commands_source(self, snap: Snapshot) -> CheckedNode | None:
        if snap.primary is not None:
            node = next(n for n in self._nodes if n.addr == snap.primary.addr)
            ok = node.conn.connected and node.commands_conn is not node.conn
            return node if ok else None
        if any(n.commands_conn is not None for n in self._nodes):
            return None  # a table is loaded; the next primary refreshes it
        up = {n.addr for n in snap.nodes if n.up}
        return next((n for n in self._nodes if n.addr in up and n.conn.connected), None)

    # --- heartbeat --------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = ProbeConnection()
        failing = False
        next_tick = loop.time()
        try:
            while True:
                period = self._health.heartbeat_ms / 1000  # a reload may change it
                primary = self._snapshot.primary
                if primary is not None:
                    error = await self._beat(conn, primary.addr)
                    if (error is not None) != failing:
                        failing = error is not None
                        if error is not None:
                            log.warning("heartbeat on %s failing: %s", primary.addr, error)
                        else:
                            log.info("heartbeat on %s ok", primary.addr)
                # Fixed ticks, so values are `heartbeat_ms` apart as the lag formula assumes.
                next_tick += period
                now = loop.time()
                if next_tick < now:
                    next_tick = now + period
                await asyncio.sleep(next_tick - now)
        finally:
            conn.close()

    async def _beat(self, conn: ProbeConnection, addr: Address) -> str | None:
        """Write one heartbeat on `addr`; the error text, or None when acknowledged."""
        try:
            value_ms = await self.write_beat(conn, addr, self.heartbeat_key)
        except (ProbeError, ReplyError) as e:
            return str(e)
        self._heartbeat_acked_ms = value_ms
        if not self._heartbeat_acks or value_ms > self._heartbeat_acks[-1]:
            self._heartbeat_acks.append(value_ms)
        return None

    async def write_beat(self, conn: ProbeConnection, addr: Address, key: str) -> float:
        """SET one heartbeat value on `addr`; the value (wall-clock ms) once acknowledged."""
        timeout = self._health.probe_timeout_ms / 1000
        if not conn.connected or conn.addr != addr:
            await self.connect(conn, addr, timeout)
        # The value remembered as acknowledged is the one parsed back from the very
        # text written, so a replica holding that beat compares equal to it (a float
        # rounded to 3 decimals on the wire is not the float that was formatted).
        text = f"{time.time() * 1000:.3f}"
        ttl = self._health.heartbeat_ttl_ms
        await conn.call("SET", key, text, "PX", ttl, timeout_s=timeout)
        return float(text)
