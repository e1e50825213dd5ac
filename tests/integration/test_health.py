"""The health checker against real redis-server topologies (tests/helpers/topology.py).

Faults are real: SIGSTOP of a replica, a DelayRelay on a replication link, REPLICAOF and
FAILOVER done directly on the nodes while the checker runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from config.model import (
    Address,
    Config,
    HealthConfig,
    ProxyConfig,
    RegionConfig,
    RoutingConfig,
)
from proxy.backend.health import HealthChecker
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import ProbeError
from routing.topology import NodeState, Reason, Role, Snapshot
from tests.helpers.relay import DelayRelay
from tests.helpers.topology import RedisNode, RedisTopology

INTERVAL_MS = 100
PROBE_TIMEOUT_MS = 300
HEARTBEAT_MS = 50


def make_config(topo: RedisTopology, max_lag_ms: int = 1000, lag_recovery_ms: int = 1000) -> Config:
    regions = tuple(
        RegionConfig(
            name=name,
            latitude=lat,
            longitude=lon,
            nodes=tuple(Address(n.host, n.port) for n in topo.nodes if n.region == name),
        )
        for name, (lat, lon) in topo.regions.items()
    )
    return Config(
        proxy=ProxyConfig(region=topo.primary.region),
        regions=regions,
        health=HealthConfig(
            interval_ms=INTERVAL_MS,
            probe_timeout_ms=PROBE_TIMEOUT_MS,
            heartbeat_ms=HEARTBEAT_MS,
            info_interval_ms=500,
        ),
        routing=RoutingConfig(max_lag_ms=max_lag_ms, lag_recovery_ms=lag_recovery_ms),
    )


def addr(node: RedisNode) -> Address:
    return Address(node.host, node.port)


@dataclass
class Harness:
    checker: HealthChecker
    snapshots: list[Snapshot] = field(default_factory=list)
    commands: list[list[object]] = field(default_factory=list)

    def node(self, n: RedisNode) -> NodeState:
        state = self.checker.snapshot.node(addr(n))
        assert state is not None
        return state

    async def wait(self, predicate: Callable[[Snapshot], bool], timeout: float, what: str) -> float:
        """Poll snapshots until `predicate` holds; the seconds it took."""
        started = time.monotonic()
        while not predicate(self.checker.snapshot):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out waiting for {what}: {self.checker.snapshot}")
            await asyncio.sleep(0.01)
        return time.monotonic() - started


async def start_checker(config: Config) -> Harness:
    snapshots: list[Snapshot] = []
    commands: list[list[object]] = []
    checker = HealthChecker(config, "test", snapshots.append, commands.append)
    await checker.start()
    return Harness(checker, snapshots, commands)


@pytest.fixture
async def harness(topology: RedisTopology) -> AsyncIterator[Harness]:
    h = await start_checker(make_config(topology))
    yield h
    await h.checker.stop()


def all_ok(topo: RedisTopology) -> Callable[[Snapshot], bool]:
    def check(s: Snapshot) -> bool:
        return s.primary is not None and all(
            (n := s.node(addr(r))) is not None and n.eligible for r in topo.replicas()
        )

    return check


# --- ProbeConnection ---------------------------------------------------------------------


async def test_probe_connection_call_pipeline_and_errors(topology: RedisTopology) -> None:
    conn = ProbeConnection()
    await conn.connect(addr(topology.primary), timeout_s=1.0, client_name="probe-test")
    try:
        assert await conn.call("SET", "k", 42, timeout_s=1.0) == b"OK"
        replies = await conn.pipeline([("GET", "k"), ("INCR", "k", "x"), ("PING",)], 1.0)
        assert replies[0] == b"42" and replies[2] == b"PONG"
        assert isinstance(replies[1], ReplyError)
        with pytest.raises(ReplyError):
            await conn.call("NOSUCHCOMMAND", timeout_s=1.0)
        assert conn.connected  # error replies do not cost the connection
    finally:
        conn.close()


async def test_probe_connection_timeout_names_node_and_closes(topology: RedisTopology) -> None:
    node = topology.replicas()[0]
    conn = ProbeConnection()
    await conn.connect(addr(node), timeout_s=1.0)
    node.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(ProbeError, match=f"{node.host}:{node.port}.*timeout"):
            await conn.call("PING", timeout_s=0.2)
        assert time.monotonic() - started < 0.5
        assert not conn.connected
    finally:
        node.thaw()
        conn.close()


async def test_probe_connection_refused_is_probe_error() -> None:
    conn = ProbeConnection()
    with pytest.raises(ProbeError, match=r"127\.0\.0\.1:1\b"):
        await conn.connect(Address("127.0.0.1", 1), timeout_s=1.0)


# --- roles, heartbeat, commands ---------------------------------------------------------


async def test_roles_detected(topology: RedisTopology, harness: Harness) -> None:
    await harness.wait(all_ok(topology), 3.0, "all replicas eligible")
    snap = harness.checker.snapshot
    assert snap.primary is not None and snap.primary.addr == addr(topology.primary)
    assert snap.primary.role is Role.PRIMARY and snap.primary_error == ""
    for r in topology.replicas():
        n = harness.node(r)
        assert n.role is Role.REPLICA and n.reason is Reason.OK and n.link_up
        assert n.replid == snap.primary.replid
    for region in topology.regions:
        want = [addr(r) for r in topology.replicas(region)]
        assert [n.addr for n in snap.eligible_by_region[region]] == want
    # Versions grow by one per publish.
    versions = [s.version for s in harness.snapshots]
    assert versions == list(range(1, len(versions) + 1))
    # The full INFO is kept for metrics.
    assert "used_memory" in snap.primary.info
    # COMMAND was fetched from the primary once and handed over raw.
    assert len(harness.commands) == 1 and len(harness.commands[0]) > 100


async def test_heartbeat_written_and_lag_small(topology: RedisTopology, harness: Harness) -> None:
    key = harness.checker.heartbeat_key
    assert key == "georedis:hb:test"
    await harness.wait(
        lambda s: harness.checker.heartbeat_acked_ms is not None, 3.0, "heartbeat acknowledged"
    )
    ttl = topology.primary.admin.pttl(key)
    assert 50_000 < ttl <= 60_000
    value = float(topology.primary.admin.get(key) or 0)
    assert abs(value - time.time() * 1000) < 1000

    # Right after a diskless full sync the primary holds the stream back until the
    # replica's first REPLCONF ACK (up to 1 s): real lag, which must clear.
    def small_lag(s: Snapshot) -> bool:
        lags = [harness.node(r).lag_ms for r in topology.replicas()]
        return all(lag is not None and lag < 60 for lag in lags)

    # Ten rounds in a row with every replica's lag small.
    streak, seen = 0, harness.checker.snapshot.version
    deadline = time.monotonic() + 5.0
    while streak < 10:
        assert time.monotonic() < deadline, harness.checker.snapshot.nodes
        await asyncio.sleep(0.01)
        snap = harness.checker.snapshot
        if snap.version != seen:
            seen = snap.version
            streak = streak + 1 if small_lag(snap) else 0


# --- faults --------------------------------------------------------------------------------


async def test_frozen_replica_goes_down_and_comes_back(
    topology: RedisTopology, harness: Harness
) -> None:
    await harness.wait(all_ok(topology), 3.0, "all replicas eligible")
    node = topology.node("us-east-1")
    node.freeze()
    try:
        took = await harness.wait(lambda s: not harness.node(node).up, 2.0, "frozen replica down")
        assert took < (INTERVAL_MS + PROBE_TIMEOUT_MS) / 1000 + 0.25
        n = harness.node(node)
        assert n.reason is Reason.DOWN and not n.eligible and str(addr(node)) in n.error
        assert harness.checker.snapshot.eligible_by_region["us-east-1"] == ()
        # The others are unaffected.
        assert harness.node(topology.node("eu-west-1")).eligible
    finally:
        node.thaw()
    await harness.wait(lambda s: harness.node(node).eligible, 3.0, "thawed replica eligible")


async def _replica_behind_relay(
    topology: RedisTopology, delay_ms: float
) -> tuple[RedisNode, DelayRelay]:
    primary = topology.primary
    relay = DelayRelay(primary.host, primary.port, delay_ms).start()
    node = topology.node("eu-west-1")
    topology.replicate_through(node, relay.host, relay.port)
    return node, relay


async def test_lag_ms_through_delay_relay(topology: RedisTopology) -> None:
    node, relay = await _replica_behind_relay(topology, 200)
    h = await start_checker(make_config(topology, max_lag_ms=1000))
    try:
        await h.wait(lambda s: h.node(node).lag_ms is not None, 3.0, "lag measured")
        await asyncio.sleep(0.5)
        samples: list[float] = []
        for _ in range(20):
            await asyncio.sleep(INTERVAL_MS / 1000)
            lag = h.node(node).lag_ms
            assert lag is not None
            samples.append(lag)
        assert abs(statistics.median(samples) - 200) < 100, samples
        assert h.node(node).eligible  # within max_lag_ms=1000
        # The direct replicas see no such lag.
        assert (h.node(topology.node("us-east-1")).lag_ms or 0) < 60
    finally:
        await h.checker.stop()
        relay.stop()


async def test_lagging_replica_recovers_after_lag_recovery_ms(topology: RedisTopology) -> None:
    recovery_ms = 600
    node, relay = await _replica_behind_relay(topology, 200)
    h = await start_checker(make_config(topology, max_lag_ms=100, lag_recovery_ms=recovery_ms))
    try:
        await h.wait(
            lambda s: h.node(node).reason is Reason.LAGGING, 3.0, "replica behind relay lagging"
        )
        assert addr(node) not in [
            n.addr for n in h.checker.snapshot.eligible_by_region["eu-west-1"]
        ]
        await asyncio.sleep(0.5)
        assert h.node(node).reason is Reason.LAGGING
        relay.set_delay(0)
        took = await h.wait(lambda s: h.node(node).eligible, 3.0, "recovered replica eligible")
        assert took >= recovery_ms / 1000
        assert took < recovery_ms / 1000 + 0.8
        assert h.node(node).lag_ms is not None and h.node(node).lag_ms <= 100  # type: ignore[operator]
    finally:
        await h.checker.stop()
        relay.stop()


# --- role changes on the nodes themselves ----------------------------------------------


async def test_replicaof_new_primary_detected(topology: RedisTopology, harness: Harness) -> None:
    await harness.wait(all_ok(topology), 3.0, "all replicas eligible")
    old = topology.primary
    new = topology.node("us-east-1")
    topology.promote(new)  # REPLICAOF NO ONE, then every other node REPLICAOF new
    await harness.wait(
        lambda s: s.primary is not None and s.primary.addr == addr(new), 3.0, "new primary"
    )
    await harness.wait(all_ok(topology), 5.0, "replicas of the new primary eligible")
    assert harness.node(old).role is Role.REPLICA
    assert harness.node(new).reason is Reason.PRIMARY
    # Heartbeats now go to the new primary.
    before = float(new.admin.get(harness.checker.heartbeat_key) or 0)
    await asyncio.sleep(0.3)
    assert float(new.admin.get(harness.checker.heartbeat_key) or 0) > before


async def test_two_masters_refuse_a_primary(topology: RedisTopology, harness: Harness) -> None:
    await harness.wait(all_ok(topology), 3.0, "all replicas eligible")
    stray = topology.node("eu-west-1")
    stray.replicaof(None)
    await harness.wait(lambda s: s.primary is None, 2.0, "primary refused")
    snap = harness.checker.snapshot
    assert snap.primary_error.startswith("2 masters: ")
    assert str(addr(topology.primary)) in snap.primary_error
    assert str(addr(stray)) in snap.primary_error
    assert harness.node(stray).role is Role.MASTER
    assert harness.node(topology.primary).role is Role.MASTER
    # Writes are refused, but reads stay on the replicas that still follow the master
    # last seen as primary (by replication ID); the stray's new history takes none.
    eligible = {n.addr for nodes in snap.eligible_by_region.values() for n in nodes}
    assert eligible == {addr(n) for n in topology.replicas() if n is not stray}
    # Back to one master: the primary returns.
    topology.replicate_direct(stray)
    await harness.wait(all_ok(topology), 5.0, "single primary again")


async def test_failover_command_followed(topology: RedisTopology, harness: Harness) -> None:
    await harness.wait(all_ok(topology), 3.0, "all replicas eligible")
    old = topology.primary
    new = topology.node("ap-southeast-1", 1)
    old.admin.execute_command("FAILOVER", "TO", new.host, new.port)  # type: ignore[no-untyped-call]
    await harness.wait(
        lambda s: s.primary is not None and s.primary.addr == addr(new), 5.0, "failover seen"
    )
    topology.primary = new
    # The old primary now replicates from the new one; the other replicas still point at
    # the old primary (chained) but follow the new replication ID: eligible by replid.
    await harness.wait(
        lambda s: (
            s.primary is not None
            and all(
                (n := s.node(addr(r))) is not None and n.eligible
                for r in topology.nodes
                if r is not new
            )
        ),
        5.0,
        "every other node an eligible replica of the new primary",
    )
    assert harness.node(old).role is Role.REPLICA
    # The COMMAND table was fetched again from the new primary.
    await harness.wait(lambda s: len(harness.commands) == 2, 2.0, "COMMAND from new primary")


# --- no lag read into a gap in the heartbeats (promotion after an outage, a stalled primary)


async def test_promotion_after_outage_does_not_mark_every_replica_lagging(
    topology: RedisTopology,
) -> None:
    """The primary dies; 1.5 s later a replica is promoted and the others follow it.

    No heartbeat was written during the outage, so the replicas' heartbeat value is
    1.5 s old when the first beat on the new primary is acknowledged. That gap is not
    replication lag: the replicas lack nothing that was written, and none may go
    'lagging' (max_lag_ms 1000) for it. (Redis relinks a replica with the backlog, so
    the beats usually arrive with the link; the stall test below hits the window.)
    """
    new = topology.node("us-east-1")
    far = topology.node("eu-west-1")
    # A replica 150 ms away (a WAN link): the first beat on the new primary reaches it a
    # probe round or so after being acknowledged.
    relay = DelayRelay(new.host, new.port, 150).start()
    h = await start_checker(make_config(topology, max_lag_ms=1000, lag_recovery_ms=1000))
    try:
        await h.wait(all_ok(topology), 3.0, "all replicas eligible")
        topology.primary.kill()
        await asyncio.sleep(1.5)
        n0 = len(h.snapshots)
        new.replicaof(None)
        topology.primary = new
        far.replicaof(relay.host, relay.port)
        topology.node("ap-southeast-1", 1).replicaof(new.host, new.port)
        await h.wait(
            lambda s: s.primary is not None and s.primary.addr == addr(new), 3.0, "new primary"
        )
        others = [n for n in topology.replicas() if n.running]

        def replicas_ok(s: Snapshot) -> bool:
            return all((st := s.node(addr(r))) is not None and st.eligible for r in others)

        await h.wait(replicas_ok, 5.0, "replicas of the new primary eligible")
        await asyncio.sleep(1.0)
        lagging = [
            (n.addr, n.lag_ms)
            for s in h.snapshots[n0:]
            for n in s.nodes
            if n.reason is Reason.LAGGING
        ]
        assert lagging == []
    finally:
        await h.checker.stop()
        relay.stop()


async def test_primary_stall_does_not_mark_replicas_lagging(topology: RedisTopology) -> None:
    """The primary blocks for 1.5 s (a slow command); replicas lack nothing meanwhile.

    No heartbeat is acknowledged during the stall, so a replica's heartbeat value is
    1.5 s old until the first beat after it arrives. That gap is not lag; before the fix a
    replica 150 ms away read as ~1.5 s behind in the round between the first beat's
    acknowledgement and its arrival, went 'lagging' and then stayed out of the rotation
    for lag_recovery_ms more.
    """
    primary = topology.primary
    far = topology.node("eu-west-1")
    relay = DelayRelay(primary.host, primary.port, 150).start()
    h = await start_checker(make_config(topology, max_lag_ms=1000, lag_recovery_ms=1000))
    try:
        topology.replicate_through(far, relay.host, relay.port)
        await h.wait(all_ok(topology), 5.0, "all replicas eligible")
        await asyncio.sleep(0.5)
        n0 = len(h.snapshots)
        stall = primary.client()
        await asyncio.to_thread(stall.execute_command, "DEBUG", "SLEEP", "1.5")
        await h.wait(all_ok(topology), 5.0, "all replicas eligible again")
        await asyncio.sleep(1.0)
        lagging = [
            (n.addr, n.lag_ms)
            for s in h.snapshots[n0:]
            for n in s.nodes
            if n.reason is Reason.LAGGING
        ]
        assert lagging == []
    finally:
        await h.checker.stop()
        relay.stop()
