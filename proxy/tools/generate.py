"""Generate Prometheus and Grafana files for a deployment from its config.

    out/prometheus/prometheus.yml                     scrape job + rule_files
    out/prometheus/georedis-alerts.yml                alert rules
    out/grafana/dashboards/georedis.json              the dashboard
    out/grafana/provisioning/datasources/prometheus.yml
    out/grafana/provisioning/dashboards/georedis.yml

Thresholds that the config knows (the lag budget) come from it. Every `georedis_*` name
used here must be declared in `proxy.observe.metrics.METRICS`; a unit test checks that, and
`promtool check` validates the Prometheus files. YAML is written by a tiny emitter
(PyYAML is not a dependency): block style, strings quoted unless plainly safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.model import Address, Config

JOB = "georedis"
RATE = "$__rate_interval"
PANEL_HEIGHT = 8

# --- YAML ---------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(v: object, indent: int) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    s = str(v)
    if "\n" in s or '"' in s:
        # A literal block keeps PromQL readable (no escaped quotes).
        pad = " " * (indent + 2)
        return "|-\n" + "\n".join(pad + line for line in s.split("\n"))
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)


def _is_scalar(v: object) -> bool:
    return not isinstance(v, dict | list | tuple) or not v


def _empty(v: object) -> str:
    return "{}" if isinstance(v, dict) else "[]"


def _yaml_lines(obj: object, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _is_scalar(v):
                text = _empty(v) if isinstance(v, dict | list | tuple) else _scalar(v, indent)
                out.append(f"{pad}{k}: {text}")
            else:
                out.append(f"{pad}{k}:")
                out.extend(_yaml_lines(v, indent + 2))
    elif isinstance(obj, list | tuple):
        for item in obj:
            if _is_scalar(item):
                if isinstance(item, dict | list | tuple):
                    out.append(f"{pad}- {_empty(item)}")
                else:
                    out.append(f"{pad}- {_scalar(item, indent)}")
            else:
                # The item's first line shares the dash; the rest align under it.
                inner = _yaml_lines(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
    else:
        out.append(pad + _scalar(obj, indent))
    return out


def to_yaml(obj: object) -> str:
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


# --- Prometheus ---------------------------------------------------------------------


def scrape_target(listen: Address) -> str:
    # A wildcard listen address is scraped over loopback (Prometheus on the same host).
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    return str(Address(host, listen.port))


def prometheus_config(config: Config, rules_file: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [rules_file],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_interval": "5s",
                "static_configs": [
                    {
                        "targets": [scrape_target(config.metrics.listen)],
                        "labels": {"proxy_region": config.proxy.region or "unknown"},
                    }
                ],
            }
        ],
    }


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def alert_rules(config: Config) -> dict[str, Any]:
    lag_s = config.routing.max_lag_ms / 1000.0
    node = "{{ $labels.node }} ({{ $labels.region }})"
    hits = "rate(georedis_node_keyspace_hits_total[5m])"
    misses = "rate(georedis_node_keyspace_misses_total[5m])"
    rules = [
        _alert("GeoredisProxyDown", f'up{{job="{JOB}"}} == 0', "1m", "critical",
               "georedis proxy {{ $labels.instance }} is down",
               "Prometheus cannot scrape the proxy's metrics endpoint."),
        _alert("GeoredisNoPrimary", "georedis_primary_up == 0", "30s", "critical",
               "georedis sees no usable primary",
               "Writes fail until a primary is up (or a failover promotes one)."),
        _alert("GeoredisBackendDown", "georedis_node_up == 0", "30s", "critical",
               f"Redis node {node} is down",
               "The node does not answer the proxy's health probes."),
        # Down nodes are covered above; the primary never takes replica reads.
        _alert("GeoredisBackendIneligible",
               'georedis_node_eligible_reason{reason!~"ok|primary|down"} == 1', "2m",
               "warning", f"Redis node {node} takes no reads: {{{{ $labels.reason }}}}",
               "The replica is up but not eligible for reads (link down, syncing, "
               "loading, lagging or following another primary)."),
        _alert("GeoredisReplicationLag",
               f"georedis_node_replication_lag_seconds > {lag_s:g}", "1m", "warning",
               f"Replication lag of {node} is above {lag_s:g}s",
               "Lag measured through the heartbeat key is {{ $value | humanizeDuration }}; "
               "reads avoid the node while it exceeds routing.max_lag_ms."),
        _alert("GeoredisNoEligibleReplica",
               "georedis_region_eligible_replicas == 0 "
               "and on(region, instance, job) georedis_region_replica_nodes > 0",
               "1m", "warning", "No eligible replica in region {{ $labels.region }}",
               "Reads from clients of this region go to another region or the primary."),
        _alert("GeoredisHighErrorRate",
               'sum by (instance, job) (rate(georedis_commands_total{outcome="error"}[5m])) '
               "/ sum by (instance, job) (rate(georedis_commands_total[5m])) > 0.01",
               "5m", "warning", "More than 1% of commands fail on {{ $labels.instance }}",
               "Error replies are {{ $value | humanizePercentage }} of all commands."),
        # maxmemory 0 means "no limit": the filter drops those nodes before dividing.
        _alert("GeoredisMemoryHigh",
               "georedis_node_used_memory_bytes "
               "/ (georedis_node_maxmemory_bytes > 0) > 0.8", "5m", "warning",
               f"Redis node {node} uses more than 80% of maxmemory",
               "Used memory is {{ $value | humanizePercentage }} of maxmemory."),
        # A nearly empty Redis reports huge ratios; only fragmentation of real data matters.
        _alert("GeoredisMemoryFragmentation",
               "georedis_node_mem_fragmentation_ratio > 1.5 "
               "and georedis_node_used_memory_bytes > 100 * 1024 * 1024", "15m", "warning",
               f"Memory fragmentation of {node} is above 1.5",
               "mem_fragmentation_ratio is {{ $value }}; consider activedefrag."),
        _alert("GeoredisTooManyClients", "georedis_node_connected_clients > 10000", "5m",
               "warning", f"Redis node {node} has more than 10k clients",
               "connected_clients is {{ $value }}."),
        _alert("GeoredisHighOps", "georedis_node_instantaneous_ops_per_second > 100000", "5m",
               "warning", f"Redis node {node} serves more than 100k ops/s",
               "instantaneous_ops_per_sec is {{ $value }}."),
        _alert("GeoredisLowHitRate",
               f"{hits} / ({hits} + {misses}) < 0.8 and ({hits} + {misses}) > 1", "15m",
               "info", f"Keyspace hit rate of {node} is below 80%",
               "Hit rate over 5m is {{ $value | humanizePercentage }}."),
        _alert("GeoredisEvictions", "increase(georedis_node_evicted_keys_total[1h]) > 1000",
               "5m", "warning", f"Redis node {node} evicted more than 1000 keys in an hour",
               "{{ $value }} keys evicted in the last hour; maxmemory is too small."),
        _alert("GeoredisUnsavedChanges", "georedis_node_rdb_changes_since_last_save > 100000",
               "10m", "warning", f"Redis node {node} has more than 100k unsaved changes",
               "rdb_changes_since_last_save is {{ $value }}."),
        # Only when there is something to save: with persistence off this would always fire.
        _alert("GeoredisNoRecentSave",
               "time() - georedis_node_rdb_last_save_timestamp_seconds > 86400 "
               "and georedis_node_rdb_changes_since_last_save > 0", "10m", "warning",
               f"Redis node {node} has not saved for more than 24h",
               "Last successful RDB save was {{ $value | humanizeDuration }} ago."),
        _alert("GeoredisBgsaveFailed", "georedis_node_rdb_last_bgsave_ok == 0", "5m",
               "warning", f"Last BGSAVE of {node} failed",
               "rdb_last_bgsave_status is err."),
        _alert("GeoredisAofWriteFailed",
               "georedis_node_aof_last_write_ok == 0 and georedis_node_aof_enabled == 1",
               "5m", "critical", f"AOF writes fail on {node}",
               "aof_last_write_status is err."),
    ]  # fmt: skip
    return {"groups": [{"name": JOB, "rules": rules}]}


# --- Grafana ------------------------------------------------------------------------

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


def dashboard() -> dict[str, Any]:
    g = _Layout()
    for section in (_overview, _latency, _routing, _replication, _backends, _memory):
        section(g)
    return {
        "uid": "georedis",
        "title": "georedis",
        "description": "Geo-routing Redis proxy: clients, latency, routing, replicas, memory.",
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


def grafana_datasource(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
            }
        ],
    }


def grafana_dashboards(path: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": JOB,
                "folder": "georedis",
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": 30,
                "options": {"path": path},
            }
        ],
    }


def generate_configs(
    config: Config,
    out_dir: Path,
    *,
    prometheus_url: str = "http://localhost:9090",
    grafana_dashboards_path: str = "/var/lib/grafana/dashboards",
) -> list[Path]:
    """Write every file under `out_dir`; return their paths, in a stable order.

    `grafana_dashboards_path` is where Grafana will find `grafana/dashboards/` (mount or
    copy it there); `prometheus_url` is how Grafana reaches Prometheus.
    """
    rules_name = "georedis-alerts.yml"
    files: list[tuple[str, str]] = [
        ("prometheus/prometheus.yml", to_yaml(prometheus_config(config, rules_name))),
        (f"prometheus/{rules_name}", to_yaml(alert_rules(config))),
        ("grafana/dashboards/georedis.json", json.dumps(dashboard(), indent=2) + "\n"),
        (
            "grafana/provisioning/datasources/prometheus.yml",
            to_yaml(grafana_datasource(prometheus_url)),
        ),
        (
            "grafana/provisioning/dashboards/georedis.yml",
            to_yaml(grafana_dashboards(grafana_dashboards_path)),
        ),
    ]
    paths = []
    for rel, text in files:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
