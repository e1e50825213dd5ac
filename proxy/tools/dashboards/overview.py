"""Cluster overview: is the deployment serving, and how much, at a glance.

Top line: single numbers an operator reads first (proxies up, primary known, nodes up,
eligible replicas, clients, ops/s, errors, p99). Below: the same over time, node state
as a timeline, and where reads go (client region -> served region), the routing this
proxy exists for.
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.alerts import JOB
from proxy.tools.dashboards.layout import (
    NODE_LEGEND,
    RATE,
    UP_DOWN,
    YES_NO,
    Json,
    Layout,
    board,
    quantile,
    steps,
)

UID = "georedis-overview"
ERROR_RATIO = (
    f'sum(rate(georedis_commands_total{{outcome="error"}}[{RATE}])) '
    f"/ sum(rate(georedis_commands_total[{RATE}]))"
)


def _now(g: Layout) -> None:
    g.row("Now")
    g.panel("Proxies up", [(f'sum(up{{job="{JOB}"}})', "up")], kind="stat", width=3,
            thresholds=steps((1, "green"), base="red"))  # fmt: skip
    g.panel("Primary known", [("min(georedis_primary_up)", "primary")], kind="stat", width=3,
            mappings=YES_NO, thresholds=steps((1, "green"), base="red"))  # fmt: skip
    g.panel(
        "Nodes up",
        [("sum(max by (node) (georedis_node_up))", "up"),
         ("count(max by (node) (georedis_node_up))", "nodes")],
        kind="stat", width=3,
        description="Nodes answering health probes, as the proxies see them (max across "
        "proxies: one proxy's broken link is not the node down).",
    )  # fmt: skip
    g.panel("Eligible replicas", [("sum(max by (region) (georedis_region_eligible_replicas))",
                                   "eligible")], kind="stat", width=3)  # fmt: skip
    g.panel("Clients", [("sum(georedis_client_connections)", "clients")], kind="stat",
            width=3)  # fmt: skip
    g.panel("Ops/s", [(f"sum(rate(georedis_commands_total[{RATE}]))", "ops/s")], kind="stat",
            unit="ops", width=3)  # fmt: skip
    g.panel("Errors", [(ERROR_RATIO, "errors")], kind="stat", unit="percentunit", width=3,
            thresholds=steps((0.01, "orange"), (0.05, "red")))  # fmt: skip
    g.panel("p99 latency", [(quantile(0.99, "georedis_command_duration_seconds"), "p99")],
            kind="stat", unit="s", width=3)  # fmt: skip


def _traffic(g: Layout) -> None:
    g.row("Traffic")
    g.panel("Commands/s by class",
            [(f"sum by (class) (rate(georedis_commands_total[{RATE}]))", "{{class}}")],
            unit="ops")  # fmt: skip
    g.panel("Error ratio", [(ERROR_RATIO, "errors")], unit="percentunit")
    g.panel(
        "Client connections",
        [
            ("sum by (instance) (georedis_client_connections)", "{{instance}}"),
            (f"sum(rate(georedis_client_connections_rejected_total[{RATE}]))", "rejected/s"),
        ],
    )
    g.panel(
        "Clients closed by the proxy /s",
        [
            (f"sum(rate(georedis_client_protocol_errors_total[{RATE}]))", "protocol error"),
            (f"sum(rate(georedis_client_idle_closed_total[{RATE}]))", "idle"),
            (f"sum(rate(georedis_client_output_limit_closed_total[{RATE}]))", "output limit"),
            (f"sum(rate(georedis_unanswered_closed_total[{RATE}]))", "unanswered (a bug)"),
        ],
        unit="cps", width=12,
    )  # fmt: skip
    g.panel(
        "Authentication refused /s",
        [(f"sum(rate(georedis_auth_failures_total[{RATE}]))", "wrong user or password"),
         (f"sum(rate(georedis_auth_rate_limited_total[{RATE}]))", "rate limited")],
        unit="ops", width=6,
    )  # fmt: skip
    g.panel("Proxy uptime", [("georedis_uptime_seconds", "{{instance}}")], kind="stat",
            unit="s", width=6)  # fmt: skip
    g.panel("Config reloads (1 h)",
            [("sum by (result) (increase(georedis_config_reloads_total[1h]))", "{{result}}")],
            kind="stat", width=6,
            description="SIGHUP / PROXY RELOAD; a refused one changed nothing.")  # fmt: skip


def _nodes(g: Layout) -> None:
    g.row("Nodes and routing")
    g.panel("Node up", [("max by (node, region) (georedis_node_up)", NODE_LEGEND)],
            kind="state-timeline", width=12, mappings=UP_DOWN)  # fmt: skip
    g.panel(
        "Primary",
        [('max by (node, region) (georedis_node_role{role="primary"}) == 1', NODE_LEGEND)],
        kind="state-timeline", width=12, mappings=YES_NO,
        description="The node the proxies send writes to; a change is a failover.",
    )  # fmt: skip
    g.panel(
        "Reads/s: client region -> served region",
        [(f"sum by (client_region, served_region) (rate(georedis_reads_total[{RATE}]))",
          "{{client_region}} -> {{served_region}}")],
        unit="ops", width=12,
    )  # fmt: skip
    g.panel(
        "Unavailable, timeouts, fallbacks /s",
        [
            (f"sum(rate(georedis_unavailable_total[{RATE}]))", "unavailable"),
            (f"sum(rate(georedis_timeouts_total[{RATE}]))", "timeouts"),
            (f"sum(rate(georedis_fallbacks_primary_total[{RATE}]))", "reads on the primary"),
        ],
        unit="ops", width=12,
    )  # fmt: skip


def dashboard(config: Config) -> Json:
    g = Layout()
    for section in (_now, _traffic, _nodes):
        section(g)
    return board(UID, "georedis / Cluster overview",
                 "Is georedis serving: proxies, primary, nodes, clients, ops/s, errors, "
                 "and where reads are served.", g)  # fmt: skip
