"""Synthetic snapshots for the history, capacity and chart tests: plain data, a fake clock."""

from __future__ import annotations

from collections.abc import Callable

from config.model import Address
from proxy.observe.history import History
from proxy.stats import ProxyStats
from routing.topology import NodeState, Role, Snapshot

PRIMARY = Address("10.0.0.1", 6379)
REPLICA = Address("10.0.1.1", 6379)
MIB = 1024 * 1024


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def info(used: float, maxmemory: int = 0, keys: int = 0, host: int = 16 * 1024 * MIB,
         ops: int = 0, clients: int = 1) -> dict[str, str]:  # fmt: skip
    return {
        "used_memory": str(int(used)), "maxmemory": str(maxmemory),
        "total_system_memory": str(host), "instantaneous_ops_per_sec": str(ops),
        "connected_clients": str(clients), "db0": f"keys={keys},expires=0,avg_ttl=0",
    }  # fmt: skip


def snap(used: Callable[[Address], float], maxmemory: int = 0, lag_ms: float = 3.0,
         replica_up: bool = True, version: int = 1) -> Snapshot:  # fmt: skip
    p = NodeState(PRIMARY, "ap-southeast-1", up=True, role=Role.PRIMARY,
                  info=info(used(PRIMARY), maxmemory))  # fmt: skip
    r = NodeState(REPLICA, "us-east-1", up=replica_up, role=Role.REPLICA, lag_ms=lag_ms,
                  info=info(used(REPLICA), maxmemory))  # fmt: skip
    return Snapshot(version=version, nodes=(p, r), primary=p)


def fill(h: History, clock: Clock, seconds: float, every: float, bytes_per_s: float,
         start_bytes: float = 100 * MIB, maxmemory: int = 0,
         stats: ProxyStats | None = None) -> None:  # fmt: skip
    """Samples every `every` s for `seconds`, memory growing at a steady rate."""
    t0 = clock.t
    st = stats or ProxyStats()
    for i in range(int(seconds / every) + 1):
        clock.t = t0 + i * every
        used = start_bytes + bytes_per_s * (clock.t - t0)
        h.sample(snap(lambda _a, u=used: u, maxmemory), st)
