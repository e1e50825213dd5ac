"""The Grafana dashboard for georedis (`grafana/dashboards/georedis.json`).

`dashboard()` returns the dashboard as plain data; `proxy.tools.generate` writes it as
JSON, with the provisioning files that make Grafana load it. Rows top to bottom:
overview, latency, routing by region, replication, backends, memory and persistence.
Panels query a `${datasource}` variable, so the dashboard also imports by hand. Every
`georedis_*` name used must be declared in `proxy.observe.metrics.METRICS` (a unit test
checks that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.tools.alerts import JOB

RATE = "$__rate_interval"
PANEL_HEIGHT = 8

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class _Layout:
    """Places rows and panels on Grafana's 24-column grid, top to bottom."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += PANEL_HEIGHT
            self.x = 0
        grid = {"h": 1, "w": 24, "x": 0, "y": self.y}
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": grid,
                "panels": [],
            }
        )
        self.y += 1

    def panel(
        self,
        title: str,
        targets: Sequence[tuple[str, str]],
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
    ) -> None:
        if self.x + width > 24:
            self.y += PANEL_HEIGHT
            self.x = 0
        refs = "ABCDEFGHIJ"
        self.panels.append(
            {
                "type": kind,
                "id": self._id(),
                "title": title,
                "datasource": DATASOURCE,
                "gridPos": {"h": PANEL_HEIGHT, "w": width, "x": self.x, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": refs[i],
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self.x += width


def _quantile(q: float, metric: str, by: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket[{RATE}])))"


def _overview(g: _Layout) -> None:
    g.row("Overview")
    g.panel("Proxy up", [(f'up{{job="{JOB}"}}', "{{instance}}")], kind="stat", width=4)
    g.panel(
        "Client connections",
        [("sum(georedis_client_connections)", "clients")],
        kind="stat",
        width=4,
    )
    g.panel(
        "Commands/s by class",
        [(f"sum by (class) (rate(georedis_commands_total[{RATE}]))", "{{class}}")],
        unit="ops",
    )
    g.panel(
        "Error rate",
        [
            (
                f'sum(rate(georedis_commands_total{{outcome="error"}}[{RATE}])) '
                f"/ sum(rate(georedis_commands_total[{RATE}]))",
                "errors",
            )
        ],
        unit="percentunit",
    )
    g.panel(
        "Connections/s",
        [
            (f"sum(rate(georedis_client_connections_total[{RATE}]))", "accepted"),
            (f"sum(rate(georedis_client_connections_rejected_total[{RATE}]))", "rejected"),
            (f"sum(rate(georedis_client_protocol_errors_total[{RATE}]))", "protocol errors"),
        ],
        unit="cps",
        width=12,
    )
    g.panel(
        "Timeouts and unavailable /s",
        [
            (f"sum(rate(georedis_timeouts_total[{RATE}]))", "timeouts"),
            (f"sum(rate(georedis_unavailable_total[{RATE}]))", "unavailable"),
        ],
        unit="ops",
        width=12,
    )


def _latency(g: _Layout) -> None:
    g.row("Latency")
    g.panel(
        "Client latency p50 / p99",
        [
            (_quantile(0.5, "georedis_command_duration_seconds"), "p50"),
            (_quantile(0.99, "georedis_command_duration_seconds"), "p99"),
        ],
        unit="s",
        width=12,
    )
    g.panel(
        "Backend latency p99 by node",
        [
            (
                _quantile(0.99, "georedis_node_request_duration_seconds", ", node, region"),
                "{{node}} ({{region}})",
            )
        ],
        unit="s",
        width=12,
    )


def _routing(g: _Layout) -> None:
    g.row("Routing by region")
    g.panel(
        "Reads/s: client region -> served region",
        [
            (
                f"sum by (client_region, served_region) (rate(georedis_reads_total[{RATE}]))",
                "{{client_region}} -> {{served_region}}",
            )
        ],
        unit="ops",
        width=12,
    )
    g.panel(
        "Redirects, retries, fallbacks /s",
        [
            (f"sum(rate(georedis_ryw_redirects_total[{RATE}]))", "read-your-writes"),
            (f"sum(rate(georedis_retries_total[{RATE}]))", "retries"),
            (f"sum(rate(georedis_fallbacks_primary_total[{RATE}]))", "fallback to primary"),
        ],
        unit="ops",
        width=12,
    )


def _replication(g: _Layout) -> None:
    g.row("Replication")
    g.panel(
        "Replication lag",
        [("georedis_node_replication_lag_seconds", "{{node}} ({{region}})")],
        unit="s",
    )
    g.panel(
        "Replication lag (bytes)",
        [("georedis_node_replication_lag_bytes", "{{node}} ({{region}})")],
        unit="bytes",
    )
    g.panel("Eligible replicas by region", [("georedis_region_eligible_replicas", "{{region}}")])


def _backends(g: _Layout) -> None:
    g.row("Backends")
    g.panel("Up", [("georedis_node_up", "{{node}} ({{region}})")], width=6)
    g.panel("Eligible", [("georedis_node_eligible", "{{node}} ({{region}})")], width=6)
    g.panel(
        "Not eligible because",
        [('georedis_node_eligible_reason{reason!="ok"} == 1', "{{node}}: {{reason}}")],
        width=6,
    )
    g.panel(
        "Primary", [('georedis_node_role{role="primary"} == 1', "{{node}} ({{region}})")], width=6
    )
    g.panel("Outstanding requests", [("georedis_node_outstanding_requests", "{{node}}")], width=12)
    g.panel("Pool connections", [("georedis_node_pool_connections", "{{node}}")], width=12)


def _memory(g: _Layout) -> None:
    node = "{{node}}"
    g.row("Memory and persistence")
    g.panel(
        "Used memory",
        [
            ("georedis_node_used_memory_bytes", node),
            ("georedis_node_maxmemory_bytes > 0", f"{node} maxmemory"),
        ],
        unit="bytes",
    )
    g.panel("Fragmentation ratio", [("georedis_node_mem_fragmentation_ratio", node)])
    g.panel(
        "Keyspace hit rate",
        [
            (
                f"rate(georedis_node_keyspace_hits_total[{RATE}]) / "
                f"(rate(georedis_node_keyspace_hits_total[{RATE}]) + "
                f"rate(georedis_node_keyspace_misses_total[{RATE}]))",
                node,
            )
        ],
        unit="percentunit",
    )
    g.panel(
        "Evicted / expired keys /s",
        [
            (f"rate(georedis_node_evicted_keys_total[{RATE}])", f"{node} evicted"),
            (f"rate(georedis_node_expired_keys_total[{RATE}])", f"{node} expired"),
        ],
        unit="ops",
    )
    g.panel(
        "Node ops/s and clients",
        [
            ("georedis_node_instantaneous_ops_per_second", f"{node} ops/s"),
            ("georedis_node_connected_clients", f"{node} clients"),
        ],
    )
    g.panel(
        "Node CPU", [(f"rate(georedis_node_cpu_seconds_total[{RATE}])", node)], unit="percentunit"
    )
    g.panel("Changes since last save", [("georedis_node_rdb_changes_since_last_save", node)])
    g.panel(
        "Time since last save",
        [("time() - georedis_node_rdb_last_save_timestamp_seconds", node)],
        unit="s",
    )
    g.panel(
        "Persistence status (1 = ok)",
        [
            ("georedis_node_rdb_last_bgsave_ok", f"{node} bgsave"),
            ("georedis_node_aof_last_write_ok and georedis_node_aof_enabled == 1", f"{node} aof"),
        ],
    )


def _backup(g: _Layout) -> None:
    g.row("Backup status")
    g.panel(
        "Since the last complete backup",
        [("time() - max(georedis_backup_last_success_timestamp_seconds > 0)", "age")],
        unit="s", kind="stat", width=6,
    )  # fmt: skip
    g.panel("Last backup size", [("max(georedis_backup_last_size_bytes)", "sealed")],
            unit="bytes", kind="stat", width=6)  # fmt: skip
    g.panel("Last backup duration", [("max(georedis_backup_last_duration_seconds)", "took")],
            unit="s", kind="stat", width=6)  # fmt: skip
    g.panel(
        "Backups, verifies, restores (per hour)",
        [
            ("sum by (result) (increase(georedis_backups_total[1h]))", "backup {{result}}"),
            ("sum by (result) (increase(georedis_backup_verifies_total[1h]))", "verify {{result}}"),
            ("sum by (result) (increase(georedis_restores_total[1h]))", "restore {{result}}"),
        ],
        width=6,
    )


def dashboard() -> dict[str, Any]:
    g = _Layout()
    for section in (_overview, _latency, _routing, _replication, _backends, _memory, _backup):
        section(g)
    return {
        "uid": "georedis",
        "title": "georedis",
        "description": "georedis: clients, latency, routing, replicas, memory, backups.",
        "tags": ["georedis", "redis"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "refresh": 1,
                    "hide": 0,
                    "current": {},
                }
            ]
        },
        "panels": g.panels,
    }
