"""Performance: ops/s, latency percentiles, and where time goes per node.

Latency is what the client sees, from a command's arrival to its reply: for all commands
(`georedis_command_duration_seconds`) and split by the node that served them
(`georedis_node_request_duration_seconds`, labelled by node and command class: read,
write, admin, other).
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.dashboards.layout import NODE_LEGEND, RATE, Json, Layout, board, quantile

UID = "georedis-performance"
CLIENT = "georedis_command_duration_seconds"
NODE = "georedis_node_request_duration_seconds"


def _throughput(g: Layout) -> None:
    g.row("Throughput")
    g.panel("Commands/s by class and outcome",
            [(f"sum by (class, outcome) (rate(georedis_commands_total[{RATE}]))",
              "{{class}} {{outcome}}")], unit="ops")  # fmt: skip
    g.panel(
        "Error ratio by class",
        [(f'sum by (class) (rate(georedis_commands_total{{outcome="error"}}[{RATE}])) / '
          f"sum by (class) (rate(georedis_commands_total[{RATE}]))", "{{class}}")],
        unit="percentunit",
    )  # fmt: skip
    g.panel("Node ops/s (INFO)",
            [("max by (node, region) (georedis_node_instantaneous_ops_per_second)",
              NODE_LEGEND)], unit="ops",
            description="What each Redis node executes, from all its clients, not only "
            "this proxy.")  # fmt: skip
    g.panel("Commands/s by proxy",
            [(f"sum by (instance) (rate(georedis_commands_total[{RATE}]))", "{{instance}}")],
            unit="ops", width=12)  # fmt: skip
    g.panel("Served by node /s",
            [(f"sum by (node, region) (rate({NODE}_count[{RATE}]))", NODE_LEGEND)],
            unit="ops", width=12)  # fmt: skip


def _latency(g: Layout) -> None:
    g.row("Latency")
    g.panel("Client latency percentiles",
            [(quantile(q, CLIENT), f"p{q * 100:g}") for q in (0.5, 0.9, 0.99, 0.999)],
            unit="s", width=12)  # fmt: skip
    g.panel("Mean latency",
            [(f"sum(rate({CLIENT}_sum[{RATE}])) / sum(rate({CLIENT}_count[{RATE}]))", "mean")],
            unit="s", width=12)  # fmt: skip
    for q in (0.5, 0.99):
        g.panel(f"p{q * 100:g} latency by node",
                [(quantile(q, NODE, ", node, region"), NODE_LEGEND)], unit="s",
                width=12)  # fmt: skip
    for q in (0.5, 0.99):
        g.panel(f"p{q * 100:g} latency by command class",
                [(quantile(q, NODE, ", class"), "{{class}}")], unit="s",
                width=12)  # fmt: skip


def _backends(g: Layout) -> None:
    g.row("Backends")
    g.panel(
        "Outstanding requests",
        [("sum by (node, region) (georedis_node_outstanding_requests)", NODE_LEGEND)],
    )
    g.panel(
        "Pool connections",
        [("sum by (node, region) (georedis_node_pool_connections)", NODE_LEGEND)],
    )
    g.panel("Node CPU",
            [(f"max by (node, region) (rate(georedis_node_cpu_seconds_total[{RATE}]))",
              NODE_LEGEND)], unit="percentunit",
            description="CPU seconds per second (sys + user); 1 is one core busy.")  # fmt: skip
    g.panel(
        "Retries, redirects, fallbacks /s",
        [
            (f"sum(rate(georedis_retries_total[{RATE}]))", "retries"),
            (f"sum(rate(georedis_ryw_redirects_total[{RATE}]))", "read-your-writes"),
            (f"sum(rate(georedis_fallbacks_primary_total[{RATE}]))", "fallback to primary"),
            (f"sum(rate(georedis_timeouts_total[{RATE}]))", "timeouts"),
        ],
        unit="ops", width=12,
    )  # fmt: skip
    g.panel("Node clients (INFO)",
            [("max by (node, region) (georedis_node_connected_clients)", NODE_LEGEND)],
            width=12)  # fmt: skip


def dashboard(config: Config) -> Json:
    g = Layout()
    for section in (_throughput, _latency, _backends):
        section(g)
    return board(UID, "georedis / Performance",
                 "Ops/s by class, latency percentiles overall and by node, backend load.",
                 g)  # fmt: skip
