"""The health checker's log lines: one per change between two snapshots (node up or
down, role, eligibility, primary), never one per probe."""

from __future__ import annotations

import logging

from proxy.logs import log_event
from routing.topology import NodeState, Reason, Snapshot

log = logging.getLogger("georedis.health")


def log_changes(old: Snapshot, new: Snapshot) -> None:
    """One line per change between two snapshots; silent when nothing changed."""
    old_primary = old.primary.addr if old.primary else None
    new_primary = new.primary.addr if new.primary else None
    if old_primary != new_primary or (
        new_primary is None and old.primary_error != new.primary_error
    ):
        if new_primary is not None:
            log.warning("primary is now %s (was %s)", new_primary, old_primary or "none")
        else:
            log.error("no primary: %s", new.primary_error)
    for n in new.nodes:
        _log_node(old.node(n.addr), n)


def _log_node(old: NodeState | None, new: NodeState) -> None:
    if old is None or old.up != new.up:
        node, region = str(new.addr), new.region
        if new.up:
            log_event(log, "node_up", node=node, region=region)
        else:
            log_event(log, "node_down", level=logging.WARNING, node=node, region=region,
                      error=new.error)  # fmt: skip
    if old is not None and new.up and old.role != new.role:
        log.warning("node %s role %s -> %s", new.addr, old.role.value, new.role.value)
    if old is None or old.eligible != new.eligible or old.reason != new.reason:
        if new.eligible:
            log.info("replica %s (%s) eligible for reads", new.addr, new.region)
        elif new.reason is Reason.LAGGING:
            log.warning(
                "replica %s (%s) not eligible: lagging (%s ms, %s bytes)",
                new.addr,
                new.region,
                "unknown" if new.lag_ms is None else f"{new.lag_ms:.0f}",
                new.lag_bytes,
            )
        elif new.up:
            log.info("node %s (%s) not eligible: %s", new.addr, new.region, new.reason.value)
