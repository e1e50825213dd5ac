"""Which node a backup reads from (pure: a snapshot in, a node out).

By default an eligible replica (healthy, in sync, within the lag bound), the nearest to
this proxy first (the proxy's own region ranking), the least lagging among equals: the
snapshot is a fork on that replica, and the primary, which serves every write, is asked
only when no replica can serve. `FROM <host:port>` names a node (the primary too, when
an operator says so); `FROM <region>` takes that region's eligible replicas only.
"""

from __future__ import annotations

from config.convert import parse_address
from proxy.errors import BackupError
from routing.topology import NodeState, Role, Snapshot


def choose_source(snap: Snapshot, frm: str | None, ranking: tuple[str, ...]) -> NodeState:
    if frm is not None and ":" in frm:
        return _named(snap, frm)
    replicas = [n for n in snap.nodes if n.role is Role.REPLICA and n.eligible]
    if frm is not None:
        if frm not in {n.region for n in snap.nodes}:
            raise BackupError(f"unknown region or node {frm!r}")
        replicas = [n for n in replicas if n.region == frm]
        if not replicas:
            raise BackupError(f"no eligible replica in {frm} (PROXY BACKENDS says why)")
    if replicas:
        rank = {r: i for i, r in enumerate(ranking)}
        return min(replicas, key=lambda n: (rank.get(n.region, len(rank)), n.lag_ms or 0.0))
    if snap.primary is not None and snap.primary.up:
        return snap.primary
    raise BackupError("no eligible replica and no primary to take a snapshot from")


def _named(snap: Snapshot, text: str) -> NodeState:
    try:
        addr = parse_address(text)
    except ValueError as e:
        raise BackupError(f"bad address {text!r}: {e}") from None
    node = snap.node(addr)
    if node is None:
        raise BackupError(f"{addr} is not one of the configured nodes")
    if not node.up:
        raise BackupError(f"{addr} is down")
    return node
