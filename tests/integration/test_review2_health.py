"""Review 2: health checker faults around primary changes and stalls, on real servers."""

from __future__ import annotations

import asyncio

from routing.topology import Reason, Snapshot
from tests.helpers.relay import DelayRelay
from tests.helpers.topology import RedisTopology
from tests.integration.test_health import addr, all_ok, make_config, start_checker


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
