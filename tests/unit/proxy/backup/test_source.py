"""Which node a backup reads from: a replica near the proxy, the primary only as a last resort."""

from __future__ import annotations

import pytest

from config.model import Address
from proxy.backup.source import choose_source
from proxy.errors import BackupError
from routing.topology import NodeState, Role, Snapshot

RANKING = ("ap", "us", "eu")


def node(port: int, region: str, role: Role = Role.REPLICA, *, eligible: bool = True,
         up: bool = True, lag: float | None = 1.0) -> NodeState:  # fmt: skip
    return NodeState(Address("10.0.0.1", port), region, up=up, role=role, eligible=eligible,
                     lag_ms=lag)  # fmt: skip


PRIMARY = node(1, "ap", Role.PRIMARY, eligible=False)


def snap(*nodes: NodeState, primary: NodeState | None = PRIMARY) -> Snapshot:
    all_nodes = (primary, *nodes) if primary is not None else nodes
    return Snapshot(1, tuple(all_nodes), primary)


def test_nearest_eligible_replica_then_least_lag() -> None:
    eu, us_slow, us_fast = node(4, "eu"), node(2, "us", lag=9.0), node(3, "us", lag=2.0)
    assert choose_source(snap(eu, us_slow, us_fast), None, RANKING) is us_fast
    ap = node(5, "ap", eligible=False)  # the proxy's own region, but not eligible
    assert choose_source(snap(ap, eu), None, RANKING) is eu


def test_the_primary_only_when_no_replica_can_serve() -> None:
    assert choose_source(snap(node(2, "us", eligible=False)), None, RANKING) is PRIMARY
    with pytest.raises(BackupError, match="no eligible replica and no primary"):
        choose_source(snap(node(2, "us", eligible=False), primary=None), None, RANKING)


def test_from_region_and_from_node() -> None:
    us, eu = node(2, "us"), node(4, "eu")
    s = snap(us, eu)
    assert choose_source(s, "eu", RANKING) is eu
    assert choose_source(s, "10.0.0.1:1", RANKING) is PRIMARY  # an operator may name it
    with pytest.raises(BackupError, match="no eligible replica in ap"):
        choose_source(s, "ap", RANKING)
    with pytest.raises(BackupError, match="unknown region or node"):
        choose_source(s, "mars", RANKING)
    with pytest.raises(BackupError, match="not one of the configured nodes"):
        choose_source(s, "10.0.0.9:1", RANKING)
    with pytest.raises(BackupError, match="is down"):
        choose_source(snap(node(2, "us", up=False)), "10.0.0.1:2", RANKING)
    with pytest.raises(BackupError, match="bad address"):
        choose_source(s, "10.0.0.1:99999", RANKING)
