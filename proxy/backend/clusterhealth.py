"""The health checker of a Redis Cluster: the slot map, then each shard as a deployment.

Cluster mode (`[cluster] seeds`) asks the cluster which nodes serve which slots
(`CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7.0; parsed by `routing.slotmap`) and
then treats every shard as the standalone checker treats its one deployment: every node
probed each round on a connection that said READONLY, the shard's master written a
heartbeat into a key of one of its own slots, and `routing.eligibility.evaluate` run over
the shard's nodes with the shard's beats. The snapshot handed on holds one such snapshot
per shard and the slot table (`routing.topology.Snapshot.shards`).

The map is read again when it is due (`refresh_ms`), when the data path saw a MOVED
(`request_map_refresh`, a flag: many MOVEDs in one round make one read), and when a
round saw a shard whose master is not the one the map names, or none (a failover under
way). Reads happen inside a probe round, so there is never more than one in flight. A map
that changes nothing swaps nothing. A node the map names and `[[regions]] nodes` does
not gets no region: it serves writes as a master, and reads only as the fallback.

Shard and node memory (lag hysteresis, offsets, acknowledged beats) is kept across
maps by address: the shard a new map's shard continues is the old one of its master, or
of any of its nodes (a failover changes the master, not the shard).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from config.model import Address, Config
from proxy.backend.clustermap import (
    cluster_state,
    log_masters,
    migrating_slots,
    node_address,
    shard_heartbeat_key,
)
from proxy.backend.health import HEARTBEAT_ACKS_KEPT, CheckedNode, HealthChecker
from proxy.backend.healthlog import log_changes
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import ProbeError
from routing.eligibility import INITIAL_STATE, EligibilityState, evaluate
from routing.probe import ProbeResult
from routing.slotmap import Shard, SlotMap, SlotMapError
from routing.topology import Snapshot

log = logging.getLogger("georedis.health")

# The map is a few KB even on big clusters, but it is one reply more than a probe.
_MAP_TIMEOUT_MIN_S = 1.0


class _Shard:
    """What the checker keeps per shard between rounds."""

    __slots__ = (
        "acked_ms", "acks", "addrs", "beat_conn", "failing", "key", "master", "nodes_conn",
        "state",
    )  # fmt: skip

    def __init__(self, key: str) -> None:
        self.key = key  # the heartbeat key, in one of the shard's slots
        self.addrs: tuple[Address, ...] = ()
        self.master: Address | None = None  # as the map names it
        self.state: EligibilityState = INITIAL_STATE
        self.acked_ms: float | None = None
        self.acks: deque[float] = deque(maxlen=HEARTBEAT_ACKS_KEPT)
        self.beat_conn = ProbeConnection()
        self.nodes_conn = ProbeConnection()  # CLUSTER NODES of its master, each round
        self.failing = False


class ClusterHealthChecker(HealthChecker):
    readonly = True

    def __init__(
        self,
        config: Config,
        instance_id: str,
        on_snapshot: Callable[[Snapshot], None],
        on_commands: Callable[[list[object]], None] | None = None,
        *,
        busy: Callable[[Address], bool] | None = None,
    ) -> None:
        super().__init__(config, instance_id, on_snapshot, on_commands, busy=busy)
        self._nodes = []  # the map's, once read
        self._regions = {addr: region for region, addr in config.all_nodes()}
        self._map: SlotMap | None = None
        self._map_version = 0
        self._map_due = -math.inf  # loop.time() the map is read again at the latest
        self._map_wanted = True
        self._map_conn = ProbeConnection()
        self._map_failing = False
        self._shards: list[_Shard] = []
        self._map_read_at = 0.0  # time.time() the last map read began (PROXY CLUSTER)
        # CLUSTER INFO's cluster_state, asked of one master a round, in turn ("": not yet).
        self._cluster_state = ""
        self._state_turn = 0
        self._no_region: set[Address] = set()  # warned about once each

    def request_map_refresh(self) -> None:
        self._map_wanted = True

    async def stop(self) -> None:
        await super().stop()
        self._map_conn.close()
        for shard in self._shards:
            shard.beat_conn.close()
            shard.nodes_conn.close()

    async def reconfigure(self, config: Config) -> None:
        """Timings, the lag policy and regions from the next round on; the seeds are only
        used when no node of the current map answers."""
        async with self._round_lock:
            super()._reconfigured(config)
            self._regions = {addr: region for region, addr in config.all_nodes()}
            for node in self._nodes:
                node.region = self._region_of(node.addr)
            self._map_wanted = True

    async def refresh(self) -> Snapshot:
        async with self._round_lock:
            loop = asyncio.get_running_loop()
            if self._map_wanted or loop.time() >= self._map_due:
                await self._read_map()
            shards = list(self._shards)
            self._state_turn = turn = (self._state_turn + 1) % max(1, len(shards))
            beats = [(s.acked_ms, tuple(s.acks)) for s in shards]
            results, migrating = await asyncio.gather(
                asyncio.gather(*(self._probe(n) for n in self._nodes)),
                asyncio.gather(*(self._migrating(s, i == turn) for i, s in enumerate(shards))),
            )
            by_addr = {r.addr: r for r in results}
            version = self._snapshot.version + 1
            parts = [
                self._evaluate(s, [by_addr[a] for a in s.addrs if a in by_addr], beat, version)
                for s, beat in zip(shards, beats, strict=True)
            ]
            snap = self._combine(parts, version, migrating)
            log_changes(self._snapshot, snap)
            log_masters(self._snapshot, snap)
            self._snapshot = snap
            self._on_snapshot(snap)
            await self._fetch_commands(snap)
            return snap

    def _evaluate(
        self,
        shard: _Shard,
        results: list[ProbeResult],
        beat: tuple[float | None, tuple[float, ...]],
        version: int,
    ) -> Snapshot:
        snap, shard.state = evaluate(
            results,
            shard.state,
            self._policy,
            heartbeat_acked_ms=beat[0],
            version=version,
            heartbeat_acks=beat[1],
            designated=shard.master,
        )
        if snap.primary is None or snap.primary.addr != shard.master:
            # A failover under way (or done): the map says who serves the slots now.
            self._map_wanted = True
        return snap

    def _combine(
        self, parts: list[Snapshot], version: int, migrating: Sequence[frozenset[int]] = ()
    ) -> Snapshot:
        """The top-level snapshot: every node, shard 0's primary and replicas (where
        keyless commands go), the shards, the slot table and the slots being migrated."""
        if not parts or self._map is None:
            return replace(
                self._snapshot, version=version, primary_error="cluster slot map not read yet"
            )
        table = self._map.table
        pinned: dict[int, Snapshot] = {}
        for index, slots in enumerate(migrating):
            if slots:
                master_only = replace(parts[index], eligible_by_region={})
                pinned.update((s, master_only) for s in slots if table[s] == index)
        return replace(
            parts[0],
            version=version,
            nodes=tuple(n for p in parts for n in p.nodes),
            shards=tuple(parts),
            # An array, not the map's memoryview: snapshots are pickled for workers.
            slot_shard=array("H", table),
            map_version=self._map_version,
            map_read_at=self._map_read_at,
            cluster_state=self._cluster_state,
            pinned=pinned,
        )

    async def _migrating(self, shard: _Shard, asks_state: bool = False) -> frozenset[int]:
        """The slots `shard`'s master is migrating away, from its CLUSTER NODES (only
        the source master knows); none when it cannot say. With `asks_state`, its
        CLUSTER INFO's cluster_state too, in the same round trip; the state read last
        is kept when this master does not answer (the next round asks the next one)."""
        if shard.master is None:
            return frozenset()
        timeout = self._health.probe_timeout_ms / 1000
        conn = shard.nodes_conn
        try:
            if not conn.connected or conn.addr != shard.master:
                await self.connect(conn, shard.master, timeout)
            cmds = [("CLUSTER", "NODES"), ("CLUSTER", "INFO")]
            replies = await conn.pipeline(cmds if asks_state else cmds[:1], timeout_s=timeout)
        except (ProbeError, ReplyError):
            return frozenset()
        if asks_state and not isinstance(replies[1], ReplyError):
            self._cluster_state = cluster_state(replies[1]) or self._cluster_state
        if isinstance(replies[0], ReplyError):
            return frozenset()
        return migrating_slots(replies[0])

    # --- the slot map -------------------------------------------------------------------

    async def _read_map(self) -> None:
        loop = asyncio.get_running_loop()
        self._map_wanted = False
        self._map_due = loop.time() + self._config.cluster.refresh_ms / 1000
        timeout = max(_MAP_TIMEOUT_MIN_S, self._health.probe_timeout_ms / 1000)
        errors: list[str] = []
        for addr in self._map_sources():
            # When the read began: a MOVED learned after this is newer than the map.
            began = time.time()
            try:
                new = await self._map_from(addr, timeout)
            except (ProbeError, ReplyError, SlotMapError) as e:
                errors.append(f"{addr}: {e}")
                continue
            self._map_read_at = began
            if self._map_failing:
                self._map_failing = False
                log.info("cluster slot map read again from %s", addr)
            self._apply(new)
            return
        if not self._map_failing:
            self._map_failing = True
            log.error("no node gave the cluster's slot map: %s", "; ".join(errors) or "none")

    def _map_sources(self) -> list[Address]:
        """The map's masters first (they know their own slots first), then the rest of
        its nodes, then the seeds; each once."""
        known: list[Address] = []
        if self._map is not None:
            known = [node_address(s.master) for s in self._map.shards if s.master is not None]
            known += [node_address(n) for s in self._map.shards for n in s.nodes]
        return list(dict.fromkeys([*known, *self._config.cluster.seeds]))

    async def _map_from(self, addr: Address, timeout: float) -> SlotMap:
        conn = self._map_conn
        if not conn.connected or conn.addr != addr:
            await self.connect(conn, addr, timeout)
        (reply,) = await conn.pipeline([("CLUSTER", "SHARDS")], timeout_s=timeout)
        if isinstance(reply, ReplyError):  # before 7.0: unknown subcommand
            reply = await conn.call("CLUSTER", "SLOTS", timeout_s=timeout)
        new = SlotMap.from_reply(reply, seed_host=addr.host)
        if not new.shards:
            raise SlotMapError("the node knows no shard (not part of a cluster yet)")
        return new

    def _apply(self, new: SlotMap) -> None:
        """A map read from the cluster: nodes and shards rebuilt where it changed."""
        if self._map is not None and new == self._map:
            return
        self._map_version += 1
        self._map = new
        old_nodes = {n.addr: n for n in self._nodes}
        old_shards = {a: s for s in self._shards for a in s.addrs}
        shards: list[_Shard] = []
        nodes: list[CheckedNode] = []
        # Shards that serve slots claim their old selves first: in the middle of a
        # failover a map may list a dead master's slotless shard beside the shard of the
        # replica that took its slots over, both made of the old shard's nodes.
        order = sorted(range(len(new.shards)), key=lambda i: not new.shards[i].ranges)
        claimed: dict[int, _Shard] = {}
        taken: set[Address] = set()
        for i in order:
            claimed[i] = self._shard_for(new.shards[i], old_shards, taken)
        for i in range(len(new.shards)):
            shard = claimed[i]
            shards.append(shard)
            for addr in shard.addrs:
                node = old_nodes.pop(addr, None) or CheckedNode(self._region_of(addr), addr, "")
                node.heartbeat_key = shard.key
                nodes.append(node)
        for gone in old_nodes.values():
            gone.conn.close()
        kept = {id(s) for s in shards}
        for dropped in self._shards:
            if id(dropped) not in kept:
                dropped.beat_conn.close()
                dropped.nodes_conn.close()
        self._nodes, self._shards = nodes, shards
        unserved = sum(last - first + 1 for first, last in new.unassigned())
        log.info("cluster slot map %d: %d shards, %d nodes, %d slots unserved",
                 self._map_version, len(shards), len(nodes), unserved)  # fmt: skip

    def _shard_for(self, entry: Shard, old: dict[Address, _Shard], taken: set[Address]) -> _Shard:
        """The shard `entry` continues (or a new one); each old shard and each node is
        claimed once (`old` and `taken` are updated)."""
        # A node listed in two shards for a moment is probed once, in the first.
        addrs = tuple(
            a for a in dict.fromkeys(node_address(n) for n in entry.nodes) if a not in taken
        )
        taken.update(addrs)
        master = node_address(entry.master) if entry.master is not None else None
        key = shard_heartbeat_key(self.heartbeat_key, entry)
        match = next((old[a] for a in (master, *addrs) if a in old), None)
        shard = match or _Shard(key)
        for a in [a for a, other in old.items() if other is match]:
            del old[a]
        if shard.key != key:
            # Its slots moved: beats written under the old key say nothing of the new one.
            shard.key, shard.acked_ms = key, None
            shard.acks.clear()
        shard.addrs, shard.master = addrs, master
        return shard

    def _region_of(self, addr: Address) -> str:
        region = self._regions.get(addr)
        if region is not None:
            return region
        if addr not in self._no_region:
            self._no_region.add(addr)
            log.warning("cluster node %s is in no [[regions]] nodes: no reads of its own", addr)
        return ""

    # --- heartbeats, one per shard ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while True:
                period = self._health.heartbeat_ms / 1000
                shards = list(self._shards)
                masters = [self._probed_master(i) for i in range(len(shards))]
                await asyncio.gather(
                    *(self._beat_shard(s, m) for s, m in zip(shards, masters, strict=True) if m)
                )
                if shards:
                    self._heartbeat_acked_ms = shards[0].acked_ms
                next_tick += period
                now = loop.time()
                if next_tick < now:
                    next_tick = now + period
                await asyncio.sleep(next_tick - now)
        finally:
            for shard in self._shards:
                shard.beat_conn.close()

    def _probed_master(self, index: int) -> Address | None:
        parts = self._snapshot.shards
        primary = parts[index].primary if index < len(parts) else None
        return primary.addr if primary is not None else None

    async def _beat_shard(self, shard: _Shard, addr: Address) -> None:
        try:
            value_ms = await self.write_beat(shard.beat_conn, addr, shard.key)
        except (ProbeError, ReplyError) as e:
            if not shard.failing:
                shard.failing = True
                log.warning("heartbeat on %s failing: %s", addr, e)
            if isinstance(e, ReplyError) and str(e).startswith(("MOVED", "ASK")):
                self._map_wanted = True  # its slot moved: the key must move with it
            return
        if shard.failing:
            shard.failing = False
            log.info("heartbeat on %s ok", addr)
        shard.acked_ms = value_ms
        if not shard.acks or value_ms > shard.acks[-1]:
            shard.acks.append(value_ms)


def health_checker(
    config: Config,
    instance_id: str,
    on_snapshot: Callable[[Snapshot], None],
    on_commands: Callable[[list[object]], None] | None = None,
    *,
    busy: Callable[[Address], bool] | None = None,
) -> HealthChecker:
    """The checker the config asks for: one per shard of a cluster, or one deployment's."""
    cls = ClusterHealthChecker if config.cluster.seeds else HealthChecker
    return cls(config, instance_id, on_snapshot, on_commands, busy=busy)
