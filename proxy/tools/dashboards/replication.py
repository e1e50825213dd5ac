"""Replication status: lag in milliseconds per replica and region against the budget,
link and eligibility, the primary and its failovers.

The lag budget line is the config's `[routing] max_lag_ms`, the bound past which a
replica takes no reads (and `georedis health` warns).
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.dashboards.layout import (
    NODE_LEGEND,
    RATE,
    UP_DOWN,
    YES_NO,
    Json,
    Layout,
    board,
    steps,
)

UID = "georedis-replication"
LAG_MS = "max by (node, region) (georedis_node_replication_lag_seconds) * 1000"


def _lag(g: Layout, budget_ms: float) -> None:
    budget = steps((budget_ms, "red"))
    g.row("Lag")
    g.panel("Replication lag per replica", [(LAG_MS, NODE_LEGEND)], unit="ms", width=12,
            thresholds=budget,
            description="Measured through the heartbeat key; the line is the lag budget "
            "([routing] max_lag_ms).")  # fmt: skip
    g.panel("Worst lag per region",
            [("max by (region) (georedis_node_replication_lag_seconds) * 1000", "{{region}}")],
            unit="ms", width=12, thresholds=budget)  # fmt: skip
    g.panel("Replication lag (bytes)",
            [("max by (node, region) (georedis_node_replication_lag_bytes)", NODE_LEGEND)],
            unit="bytes", width=12)  # fmt: skip
    g.panel("Lag now", [(LAG_MS, "{{node}}")], kind="stat", unit="ms", width=12,
            thresholds=steps((budget_ms / 2, "orange"), (budget_ms, "red")))  # fmt: skip


def _eligibility(g: Layout) -> None:
    g.row("Link and eligibility")
    g.panel("Link to master", [("min by (node, region) (georedis_node_link_up)", NODE_LEGEND)],
            kind="state-timeline", width=12, mappings=UP_DOWN)  # fmt: skip
    g.panel("Takes reads", [("max by (node, region) (georedis_node_eligible)", NODE_LEGEND)],
            kind="state-timeline", width=12, mappings=YES_NO)  # fmt: skip
    g.panel(
        "Eligible replicas by region",
        [("max by (region) (georedis_region_eligible_replicas)", "{{region}} eligible"),
         ("max by (region) (georedis_region_replica_nodes)", "{{region}} replicas")],
        width=12,
    )  # fmt: skip
    g.panel(
        "Why not eligible",
        [('max by (node, reason) (georedis_node_eligible_reason{reason!~"ok|primary"}) == 1',
          "{{node}}: {{reason}}")],
        width=12,
    )  # fmt: skip


def _failover(g: Layout) -> None:
    g.row("Primary and failovers")
    g.panel("Failovers (per hour)",
            [("sum by (kind, result) (increase(georedis_failovers_total[1h]))",
              "{{kind}} {{result}}")])  # fmt: skip
    g.panel("Failover epoch and fenced nodes",
            [("max(georedis_failover_epoch)", "epoch"),
             ("max(georedis_fenced_nodes)", "fenced")])  # fmt: skip
    g.panel(
        "Writes held while the primary changed",
        [(f"sum(rate(georedis_writes_held_total[{RATE}]))", "held/s"),
         (f"sum(rate(georedis_write_hold_seconds_total[{RATE}]))", "hold s/s"),
         (f"sum(increase(georedis_write_holds_expired_total[{RATE}]))", "expired")],
    )  # fmt: skip


def dashboard(config: Config) -> Json:
    g = Layout()
    _lag(g, float(config.routing.max_lag_ms))
    _eligibility(g)
    _failover(g)
    return board(UID, "georedis / Replication status",
                 "Replica lag in ms per replica and region, link, eligibility, the primary "
                 "and failovers.", g)  # fmt: skip
