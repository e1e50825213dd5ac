"""Every Prometheus metric, declared once (docs/architecture.md, "Invariants"), and the collector.

Nothing is registered with prometheus-client's global registry and nothing is updated
per command: `GeoredisCollector` builds all families at scrape time from a
`StatusSource` (plain counters in `proxy.stats`, the topology snapshot, pool gauges).
Names follow Prometheus conventions: the `georedis_` prefix, base units (`_seconds`,
`_bytes`) and `_total` on counters. The alert rules (`proxy.tools.alerts`) and the
dashboard (`proxy.tools.dashboards`) use only names from `METRICS`; a unit test checks that.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from proxy.stats import CLASS_NAMES, LatencyHistogram, StatusSource, proxy_version
from routing.topology import NodeState, Reason, Role, Snapshot

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str  # the exposed name; counters include their `_total`
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


NODE = ("node", "region")

METRICS: tuple[MetricDef, ...] = (
    # The proxy itself.
    MetricDef("georedis_build_info", "gauge", "Always 1; the proxy's version and region.",
              ("version", "region")),
    MetricDef("georedis_start_time_seconds", "gauge", "Unix time the proxy started."),
    MetricDef("georedis_uptime_seconds", "gauge", "Seconds since the proxy started."),
    MetricDef("georedis_client_connections", "gauge", "Client connections open now."),
    MetricDef("georedis_client_connections_total", "counter", "Client connections accepted."),
    MetricDef("georedis_client_connections_rejected_total", "counter",
              "Client connections refused (max_clients reached)."),
    MetricDef("georedis_client_protocol_errors_total", "counter",
              "Client connections closed for malformed RESP or PROXY protocol input."),
    MetricDef("georedis_commands_total", "counter",
              "Commands answered, by class (read, write, admin, other) and outcome (ok, error).",
              ("class", "outcome")),
    MetricDef("georedis_command_duration_seconds", "histogram",
              "Command latency as the client sees it, from arrival to reply."),
    MetricDef("georedis_reads_total", "counter",
              "Reads by the client's region and the region of the node that served them.",
              ("client_region", "served_region")),
    MetricDef("georedis_ryw_redirects_total", "counter",
              "Reads sent elsewhere than the nearest replica to keep read-your-writes."),
    MetricDef("georedis_retries_total", "counter", "Reads retried on another node."),
    MetricDef("georedis_fallbacks_primary_total", "counter",
              "Reads served by the primary because no replica was eligible."),
    MetricDef("georedis_timeouts_total", "counter", "Backend round trips past their deadline."),
    MetricDef("georedis_unavailable_total", "counter",
              "Commands refused because no node could serve them."),
    MetricDef("georedis_unanswered_closed_total", "counter",
              "Client connections closed because a reply stayed owed past every deadline "
              "(should stay 0: each one is a proxy bug, logged as 'unanswered')."),
    MetricDef("georedis_client_output_limit_closed_total", "counter",
              "Clients disconnected for holding more unread replies than "
              "[proxy] client_output_buffer_limit_* allows."),
    MetricDef("georedis_client_idle_closed_total", "counter",
              "Clients closed after [proxy] timeout_s without a command."),
    MetricDef("georedis_failovers_total", "counter",
              "PROXY FAILOVER runs of this proxy, by kind (planned, force) and result.",
              ("kind", "result")),
    MetricDef("georedis_writes_held_total", "counter",
              "Writes held while the primary changed (failover, -READONLY, no primary)."),
    MetricDef("georedis_write_hold_seconds_total", "counter",
              "Time writes were held while the primary changed."),
    MetricDef("georedis_write_holds_expired_total", "counter",
              "Write holds that ran past their bound: their writes got an error."),
    MetricDef("georedis_failover_epoch", "gauge",
              "The newest failover epoch seen (georedis:epoch on the primary)."),
    MetricDef("georedis_fenced_nodes", "gauge",
              "Masters with an older epoch than the primary's: get no writes."),
    MetricDef("georedis_backups_total", "counter",
              "PROXY BACKUP runs of this proxy (scheduled ones included), by result.",
              ("result",)),
    MetricDef("georedis_backup_verifies_total", "counter",
              "PROXY BACKUP VERIFY runs, by result.", ("result",)),
    MetricDef("georedis_restores_total", "counter", "PROXY RESTORE runs, by result.",
              ("result",)),
    MetricDef("georedis_backup_last_success_timestamp_seconds", "gauge",
              "When the newest complete backup finished (Unix time; 0: none known). Read "
              "from the target's manifests too, so it covers backups other proxies took."),
    MetricDef("georedis_backup_last_duration_seconds", "gauge",
              "How long the newest complete backup took."),
    MetricDef("georedis_backup_last_size_bytes", "gauge",
              "The newest complete backup's sealed size."),
    MetricDef("georedis_backup_scheduled", "gauge",
              "1 when [backup] schedule is set: backups are expected to keep coming."),
    MetricDef("georedis_auth_failures_total", "counter",
              "AUTH or HELLO AUTH refused: unknown user, wrong password or user off."),
    MetricDef("georedis_config_reloads_total", "counter",
              "Config reloads (SIGHUP, PROXY RELOAD) by result; a refused one changed nothing.",
              ("result",)),
    MetricDef("georedis_auth_rate_limited_total", "counter",
              "AUTH attempts refused unchecked: their client address failed too often."),
    # Topology, as the health checker sees it.
    MetricDef("georedis_topology_version", "gauge", "Version of the current topology snapshot."),
    MetricDef("georedis_primary_up", "gauge", "1 when a usable primary is known and up."),
    MetricDef("georedis_region_eligible_replicas", "gauge",
              "Replicas in the region eligible for reads now.", ("region",)),
    MetricDef("georedis_region_replica_nodes", "gauge",
              "Configured nodes in the region other than the current primary.", ("region",)),
    MetricDef("georedis_node_up", "gauge", "1 when the node answers health probes.", NODE),
    MetricDef("georedis_node_role", "gauge", "1 for the node's current role, 0 for the others.",
              (*NODE, "role")),
    MetricDef("georedis_node_link_up", "gauge",
              "1 when a replica's link to its master is up (1 for a master).", NODE),
    MetricDef("georedis_node_eligible", "gauge", "1 when the node takes reads now.", NODE),
    MetricDef("georedis_node_eligible_reason", "gauge",
              "1 for the reason the node does (ok) or does not take reads, 0 for the others.",
              (*NODE, "reason")),
    MetricDef("georedis_node_replication_lag_seconds", "gauge",
              "Replication lag measured through the heartbeat key.", NODE),
    MetricDef("georedis_node_replication_lag_bytes", "gauge",
              "Primary replication offset minus the node's offset.", NODE),
    MetricDef("georedis_node_outstanding_requests", "gauge",
              "Requests sent to the node and not yet answered.", NODE),
    MetricDef("georedis_node_pool_connections", "gauge",
              "Open backend connections from the proxy to the node.", NODE),
    MetricDef("georedis_node_request_duration_seconds", "histogram",
              "From a command's arrival to its reply, per node and command class.",
              (*NODE, "class")),
    # Redis Cluster (`[cluster] seeds`) only: the slot map and each shard.
    MetricDef("georedis_cluster_map_version", "gauge", "Slot maps read that changed the map."),
    MetricDef("georedis_cluster_state_ok", "gauge",
              "1 when CLUSTER INFO of a master says cluster_state:ok, 0 for fail."),
    MetricDef("georedis_cluster_redirects_total", "counter",
              "Commands re-routed by the cluster's answer: moved (MOVED), ask (ASK), retry "
              "(TRYAGAIN, CLUSTERDOWN, LOADING, READONLY: sent again after a back-off).",
              ("kind",)),
    MetricDef("georedis_cluster_shard_eligible_replicas", "gauge",
              "Replicas of the shard eligible for reads now.", ("shard",)),
    MetricDef("georedis_cluster_shard_master_up", "gauge",
              "1 when the shard has a usable master that is up.", ("shard",)),
    # From each node's INFO.
    MetricDef("georedis_node_used_memory_bytes", "gauge", "INFO used_memory.", NODE),
    MetricDef("georedis_node_used_memory_peak_bytes", "gauge", "INFO used_memory_peak.", NODE),
    MetricDef("georedis_node_maxmemory_bytes", "gauge", "INFO maxmemory (0 = no limit).", NODE),
    MetricDef("georedis_node_mem_fragmentation_ratio", "gauge",
              "INFO mem_fragmentation_ratio.", NODE),
    MetricDef("georedis_node_cpu_seconds_total", "counter",
              "INFO used_cpu_sys + used_cpu_user.", NODE),
    MetricDef("georedis_node_connected_clients", "gauge", "INFO connected_clients.", NODE),
    MetricDef("georedis_node_connected_replicas", "gauge", "INFO connected_slaves.", NODE),
    MetricDef("georedis_node_instantaneous_ops_per_second", "gauge",
              "INFO instantaneous_ops_per_sec.", NODE),
    MetricDef("georedis_node_keyspace_hits_total", "counter", "INFO keyspace_hits.", NODE),
    MetricDef("georedis_node_keyspace_misses_total", "counter", "INFO keyspace_misses.", NODE),
    MetricDef("georedis_node_evicted_keys_total", "counter", "INFO evicted_keys.", NODE),
    MetricDef("georedis_node_expired_keys_total", "counter", "INFO expired_keys.", NODE),
    MetricDef("georedis_node_rdb_changes_since_last_save", "gauge",
              "INFO rdb_changes_since_last_save.", NODE),
    MetricDef("georedis_node_rdb_last_save_timestamp_seconds", "gauge",
              "INFO rdb_last_save_time.", NODE),
    MetricDef("georedis_node_rdb_last_bgsave_ok", "gauge",
              "1 when INFO rdb_last_bgsave_status is ok.", NODE),
    MetricDef("georedis_node_aof_enabled", "gauge", "INFO aof_enabled.", NODE),
    MetricDef("georedis_node_aof_last_write_ok", "gauge",
              "1 when INFO aof_last_write_status is ok.", NODE),
)  # fmt: skip

METRIC_NAMES: frozenset[str] = frozenset(m.name for m in METRICS)
# Exported in cluster mode only: a standalone scrape has not even their HELP lines.
CLUSTER_ONLY: frozenset[str] = frozenset(n for n in METRIC_NAMES if "_cluster_" in n)

# Numeric INFO fields exported as they are: metric name -> INFO field.
_INFO_NUMBERS: tuple[tuple[str, str], ...] = (
    ("georedis_node_used_memory_bytes", "used_memory"),
    ("georedis_node_used_memory_peak_bytes", "used_memory_peak"),
    ("georedis_node_maxmemory_bytes", "maxmemory"),
    ("georedis_node_mem_fragmentation_ratio", "mem_fragmentation_ratio"),
    ("georedis_node_connected_clients", "connected_clients"),
    ("georedis_node_connected_replicas", "connected_slaves"),
    ("georedis_node_instantaneous_ops_per_second", "instantaneous_ops_per_sec"),
    ("georedis_node_keyspace_hits_total", "keyspace_hits"),
    ("georedis_node_keyspace_misses_total", "keyspace_misses"),
    ("georedis_node_evicted_keys_total", "evicted_keys"),
    ("georedis_node_expired_keys_total", "expired_keys"),
    ("georedis_node_rdb_changes_since_last_save", "rdb_changes_since_last_save"),
    ("georedis_node_rdb_last_save_timestamp_seconds", "rdb_last_save_time"),
    ("georedis_node_aof_enabled", "aof_enabled"),
)
# INFO status fields: metric name -> INFO field whose value "ok" exports as 1.
_INFO_STATUS: tuple[tuple[str, str], ...] = (
    ("georedis_node_rdb_last_bgsave_ok", "rdb_last_bgsave_status"),
    ("georedis_node_aof_last_write_ok", "aof_last_write_status"),
)


def link_up(node: NodeState) -> bool:
    """A replica's `master_link_status:up`; an up master has no link and counts as up.

    The snapshot keeps the raw INFO meaning (False on a master); exporters show this so
    a healthy primary does not read as "link down".
    """
    return node.link_up or (node.up and node.role in (Role.PRIMARY, Role.MASTER))


def reason_label(reason: Reason) -> str:
    """`Reason.LINK_DOWN` -> "link_down": label values without spaces for PromQL and INFO."""
    return reason.name.lower()


def _family(d: MetricDef) -> Metric:
    if d.kind == "counter":
        return CounterMetricFamily(d.name, d.help, labels=d.labels)
    if d.kind == "gauge":
        return GaugeMetricFamily(d.name, d.help, labels=d.labels)
    return HistogramMetricFamily(d.name, d.help, labels=d.labels)


def _le(bound: float) -> str:
    # As prometheus-client writes bucket bounds: Python's repr, "+Inf" for the last.
    return "+Inf" if bound == float("inf") else repr(bound)


def _number(info: Mapping[str, str], key: str) -> float | None:
    raw = info.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class _Families:
    """One family per table entry, filled by name; an unknown name is a bug (KeyError)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {d.name: _family(d) for d in METRICS}

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        fam = self.by_name[name]
        assert isinstance(fam, CounterMetricFamily | GaugeMetricFamily)
        fam.add_metric(labels, value)

    def add_hist(self, name: str, labels: Sequence[str], h: LatencyHistogram) -> None:
        fam = self.by_name[name]
        assert isinstance(fam, HistogramMetricFamily)
        buckets = [(_le(b), float(c)) for b, c in h.cumulative()]
        fam.add_metric(labels, buckets, h.sum)


class GeoredisCollector(Collector):
    """Builds every `georedis_*` family from a `StatusSource` at each scrape."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        # Names only, so a registry can detect collisions without a full scrape.
        return [_family(d) for d in METRICS]

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        snap = self.source.snapshot()
        self._proxy(f)
        self._topology(f, snap)
        for node in snap.nodes:
            self._node(f, node)
        if self.source.config.cluster.seeds:
            self._cluster(f, snap)
        else:
            for name in CLUSTER_ONLY:
                del f.by_name[name]
        yield from f.by_name.values()

    def _proxy(self, f: _Families) -> None:
        src = self.source
        s = src.stats
        region = src.config.proxy.region
        f.add("georedis_build_info", (proxy_version(), region), 1)
        f.add("georedis_start_time_seconds", (), src.started_at)
        f.add("georedis_uptime_seconds", (), max(0.0, time.time() - src.started_at))
        f.add("georedis_client_connections", (), s.connections_current)
        f.add("georedis_client_connections_total", (), s.connections_total)
        f.add("georedis_client_connections_rejected_total", (), s.connections_rejected)
        f.add("georedis_client_protocol_errors_total", (), s.protocol_errors)
        for i, cls in enumerate(CLASS_NAMES):
            f.add("georedis_commands_total", (cls, "ok"), s.commands[i] - s.errors[i])
            f.add("georedis_commands_total", (cls, "error"), s.errors[i])
        f.add_hist("georedis_command_duration_seconds", (), s.latency)
        for (client_region, served_region), n in sorted(s.reads_by_region.items()):
            f.add("georedis_reads_total", (client_region, served_region), n)
        f.add("georedis_ryw_redirects_total", (), s.ryw_redirects)
        f.add("georedis_retries_total", (), s.retries)
        f.add("georedis_fallbacks_primary_total", (), s.fallbacks_primary)
        f.add("georedis_timeouts_total", (), s.timeouts)
        f.add("georedis_unavailable_total", (), s.unavailable)
        f.add("georedis_unanswered_closed_total", (), s.unanswered)
        f.add("georedis_client_output_limit_closed_total", (), s.output_limit_closed)
        f.add("georedis_client_idle_closed_total", (), s.idle_closed)
        f.add("georedis_auth_failures_total", (), s.auth_failures)
        f.add("georedis_auth_rate_limited_total", (), s.auth_rate_limited)
        f.add("georedis_config_reloads_total", ("ok",), s.reloads_ok)
        f.add("georedis_config_reloads_total", ("refused",), s.reloads_failed)
        for kind in ("planned", "force"):
            for result in ("ok", "error"):
                n = getattr(s, f"failovers_{kind}_{result}")
                f.add("georedis_failovers_total", (kind, result), n)
        f.add("georedis_writes_held_total", (), s.writes_held)
        f.add("georedis_write_hold_seconds_total", (), s.write_hold_ms / 1000)
        f.add("georedis_write_holds_expired_total", (), s.write_holds_expired)
        for result in ("ok", "error"):
            what = "ok" if result == "ok" else "failed"
            f.add("georedis_backups_total", (result,), getattr(s, f"backups_{what}"))
            f.add("georedis_backup_verifies_total", (result,), getattr(s, f"verifies_{what}"))
            f.add("georedis_restores_total", (result,), getattr(s, f"restores_{what}"))
        last, duration, size = s.backup_last
        f.add("georedis_backup_last_success_timestamp_seconds", (), last)
        f.add("georedis_backup_last_duration_seconds", (), duration)
        f.add("georedis_backup_last_size_bytes", (), size)
        scheduled = self.source.config.backup.schedule is not None
        f.add("georedis_backup_scheduled", (), 1 if scheduled else 0)

    def _topology(self, f: _Families, snap: Snapshot) -> None:
        cfg = self.source.config
        primary = snap.primary
        f.add("georedis_topology_version", (), snap.version)
        f.add("georedis_failover_epoch", (), snap.epoch)
        f.add("georedis_fenced_nodes", (), len(snap.fenced))
        f.add("georedis_primary_up", (), 1 if primary is not None and primary.up else 0)
        for r in cfg.regions:
            eligible = len(snap.eligible_by_region.get(r.name, ()))
            f.add("georedis_region_eligible_replicas", (r.name,), eligible)
            others = sum(1 for a in r.nodes if primary is None or a != primary.addr)
            f.add("georedis_region_replica_nodes", (r.name,), others)
        # Node latency histograms, labelled with the region the node is configured in.
        regions = {str(a): name for name, a in cfg.all_nodes()}
        regions.update((str(n.addr), n.region) for n in snap.nodes)
        for addr, node in sorted(self.source.stats.node_latency.items()):
            for cls, h in zip(CLASS_NAMES, node.classes, strict=True):
                if h.count:  # a class a node never served is no series
                    labels = (addr, regions.get(addr, ""), cls)
                    f.add_hist("georedis_node_request_duration_seconds", labels, h)

    def _cluster(self, f: _Families, snap: Snapshot) -> None:
        s = self.source.stats
        f.add("georedis_cluster_map_version", (), snap.map_version)
        if snap.cluster_state:  # none until a master's CLUSTER INFO is read
            f.add("georedis_cluster_state_ok", (), 1 if snap.cluster_state == "ok" else 0)
        for kind, n in (("moved", s.cluster_moved), ("ask", s.cluster_ask),
                        ("retry", s.cluster_retry)):  # fmt: skip
            f.add("georedis_cluster_redirects_total", (kind,), n)
        for index, shard in enumerate(snap.shards):
            master = shard.primary
            up = master is not None and master.up and not shard.primary_error
            f.add("georedis_cluster_shard_master_up", (str(index),), 1 if up else 0)
            replicas = [n for n in shard.nodes if master is None or n.addr != master.addr]
            eligible = sum(1 for n in replicas if n.eligible)
            f.add("georedis_cluster_shard_eligible_replicas", (str(index),), eligible)

    def _node(self, f: _Families, node: NodeState) -> None:
        labels = (str(node.addr), node.region)
        f.add("georedis_node_up", labels, 1 if node.up else 0)
        for role in Role:
            f.add("georedis_node_role", (*labels, role.value), 1 if node.role is role else 0)
        f.add("georedis_node_link_up", labels, 1 if link_up(node) else 0)
        f.add("georedis_node_eligible", labels, 1 if node.eligible else 0)
        for reason in Reason:
            value = 1 if node.reason is reason else 0
            f.add("georedis_node_eligible_reason", (*labels, reason_label(reason)), value)
        if node.lag_ms is not None:
            f.add("georedis_node_replication_lag_seconds", labels, node.lag_ms / 1000.0)
        if node.lag_bytes is not None:
            f.add("georedis_node_replication_lag_bytes", labels, node.lag_bytes)
        f.add("georedis_node_outstanding_requests", labels, self.source.outstanding(node.addr))
        f.add("georedis_node_pool_connections", labels, self.source.pool_connections(node.addr))
        self._info(f, labels, node.info)

    @staticmethod
    def _info(f: _Families, labels: tuple[str, str], info: Mapping[str, str]) -> None:
        # INFO may be empty (never polled, or the node is down): export what is there.
        for name, key in _INFO_NUMBERS:
            v = _number(info, key)
            if v is not None:
                f.add(name, labels, v)
        sys_cpu, user_cpu = _number(info, "used_cpu_sys"), _number(info, "used_cpu_user")
        if sys_cpu is not None and user_cpu is not None:
            f.add("georedis_node_cpu_seconds_total", labels, sys_cpu + user_cpu)
        for name, key in _INFO_STATUS:
            status = info.get(key)
            if status is not None:
                f.add(name, labels, 1 if status == "ok" else 0)


def make_registry(source: StatusSource) -> CollectorRegistry:
    """A fresh registry holding only the georedis collector (no process/GC defaults)."""
    registry = CollectorRegistry()
    registry.register(GeoredisCollector(source))
    return registry
