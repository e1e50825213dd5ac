"""/readyz's verdict from a topology snapshot: ready while any node answers (reads only
without a primary), not ready before the first probe or with every node down. The HTTP
side (no auth on the probes) is in tests/integration/test_probes.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from config.model import Address, Config, ProxyConfig, RegionConfig
from proxy.observe.probes import readiness
from proxy.stats import ClientInfo, ProxyStats
from routing.topology import NodeState, Reason, Role, Snapshot

PRIMARY = Address("127.0.0.1", 7000)
REPLICA = Address("127.0.0.1", 7100)


@dataclass
class Source:
    snap: Snapshot
    config: Config = field(default_factory=lambda: Config(
        proxy=ProxyConfig(), regions=(RegionConfig("a", 0, 0, (PRIMARY, REPLICA)),)))  # fmt: skip
    started_at: float = field(default_factory=time.time)
    stats: ProxyStats = field(default_factory=ProxyStats)

    def snapshot(self) -> Snapshot:
        return self.snap

    def outstanding(self, addr: Address) -> int:
        return 0

    def pool_connections(self, addr: Address) -> int:
        return 0

    def clients(self) -> list[ClientInfo]:
        return []


primary = NodeState(PRIMARY, "a", up=True, role=Role.PRIMARY, reason=Reason.PRIMARY)
replica = NodeState(REPLICA, "a", up=True, role=Role.REPLICA, eligible=True, reason=Reason.OK)
HEALTHY = Snapshot(version=2, nodes=(primary, replica), primary=primary)


def test_ready_with_a_primary() -> None:
    assert readiness(Source(HEALTHY)) == (True, "ready")


def test_still_ready_without_a_primary_while_a_replica_answers() -> None:
    down = replace(primary, up=False, reason=Reason.DOWN)
    snap = replace(HEALTHY, nodes=(down, replica), primary=None, primary_error="down")
    assert readiness(Source(snap)) == (True, "ready: reads only, no primary")
    # A primary in the snapshot that stopped answering reads the same.
    assert readiness(Source(replace(snap, primary=down)))[0] is True


def test_not_ready_before_the_first_probe_or_with_every_node_down() -> None:
    assert readiness(Source(Snapshot(version=0, nodes=(), primary=None))) == (
        False, "not ready: no node probed yet",
    )  # fmt: skip
    nodes = tuple(replace(n, up=False, reason=Reason.DOWN) for n in HEALTHY.nodes)
    ready, reason = readiness(Source(replace(HEALTHY, nodes=nodes, primary=None)))
    assert not ready and reason == "not ready: no node answers"
    assert "127.0.0.1" not in reason  # names no node: served without authentication
