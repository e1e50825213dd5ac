"""The Prometheus alert rules for georedis (`prometheus/georedis-alerts.yml`).

`alert_rules(config)` returns the rule file as plain data; `proxy.tools.generate` writes
it as YAML. Thresholds that the config knows (the lag budget, routing.max_lag_ms) come
from it; the rest, the seed's, are fixed here. Every rule carries a `severity` label
(critical, warning, info: what `proxy.tools.alertmanager` routes on) and the series'
own labels (`node`, `region` for a node's alerts). `[alerts] for_scale` multiplies every
`for:`, so a staging stack or the end-to-end test sees alerts in seconds. Every
`georedis_*` name used must be declared in `proxy.observe.metrics.METRICS` (a unit test
checks that), and `tests/unit/proxy/tools/test_alert_rules.py` runs every rule through
`promtool test rules`, failing when a rule has no case that makes it fire.
"""

from __future__ import annotations

from typing import Any

from config.model import Config

# The job Prometheus scrapes the proxy as (prometheus.yml): the rules and the dashboard
# select on it.
JOB = "georedis"
# The alerts that stand for a whole proxy or node being gone: Alertmanager inhibits the
# other alerts of that proxy (`instance`) or node while they fire.
PROXY_DOWN = "GeoredisProxyDown"
NODE_DOWN = "GeoredisBackendDown"

_UNITS = (("h", 3600), ("m", 60), ("s", 1))


def seconds(text: str) -> int:
    """ "5m" -> 300: the durations this module writes (one integer and one unit)."""
    return int(text[:-1]) * dict(_UNITS)[text[-1]]


def duration(total: int) -> str:
    """300 -> "5m": seconds as Prometheus and Alertmanager write a duration."""
    for unit, size in _UNITS[:-1]:
        if total and total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}s"


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
        _alert(PROXY_DOWN, f'up{{job="{JOB}"}} == 0', "1m", "critical",
               "georedis proxy {{ $labels.instance }} is down",
               "Prometheus cannot scrape the proxy's metrics endpoint."),
        _alert("GeoredisNoPrimary", "georedis_primary_up == 0", "30s", "critical",
               "georedis sees no usable primary",
               "Writes fail until a primary is up (or a failover promotes one)."),
        _alert("GeoredisFencedNode", "georedis_fenced_nodes > 0", "1m", "warning",
               "A master with an older failover epoch is up behind {{ $labels.instance }}",
               "An old primary is back as a master; georedis sends it no writes and makes "
               "it a replica of the primary (Sentinel does in Sentinel mode). Still "
               "fenced after a minute: it refuses REPLICAOF, or Sentinel disagrees."),
        _alert("GeoredisWriteHoldExpired", "increase(georedis_write_holds_expired_total[5m]) > 0",
               "0m", "critical", "Writes held for a primary change got errors",
               "A write hold (PROXY FAILOVER, -READONLY or no primary) outlived its bound: "
               "the held writes were answered 'not executed' or 'no primary'."),
        _alert("GeoredisBackupFailed", 'increase(georedis_backups_total{result="error"}[1h]) > 0',
               "0m", "warning", "A backup taken through {{ $labels.instance }} failed",
               "PROXY BACKUP (or the schedule) failed: PROXY BACKUPS and the proxy's log "
               "say why (source down, target full or unreachable, no master key)."),
        _alert("GeoredisBackupTooOld",
               "georedis_backup_scheduled == 1 and "
               "time() - georedis_backup_last_success_timestamp_seconds > 26 * 3600",
               "15m", "critical", "No complete backup for over 26 hours",
               "A daily schedule has missed a run: the newest complete backup in the target "
               "is older than a day and two hours."),
        _alert("GeoredisBackupVerifyFailed",
               'increase(georedis_backup_verifies_total{result="error"}[1d]) > 0', "0m",
               "critical", "A backup failed PROXY BACKUP VERIFY",
               "A stored backup did not restore as its manifest says: do not count on it."),
        _alert(NODE_DOWN, "georedis_node_up == 0", "30s", "critical",
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
        _alert("GeoredisReplicationLagCritical", "georedis_node_replication_lag_seconds > 10",
               "1m", "critical", f"Replication lag of {node} is above 10s",
               "Lag measured through the heartbeat key is {{ $value | humanizeDuration }}: "
               "the replica is far behind; reads avoid it, and a failover to it would lose "
               "the writes it has not received."),
        # Only a primary that should have replicas: a single-node setup is not an alert.
        _alert("GeoredisNoConnectedReplicas",
               "georedis_node_connected_replicas == 0 "
               'and on(node, instance, job) georedis_node_role{role="primary"} == 1 '
               "and on(instance, job) sum by (instance, job) (georedis_region_replica_nodes) > 0",
               "1m", "critical", f"The primary {node} has no connected replica",
               "connected_slaves is 0: every write exists on the primary only until a "
               "replica reconnects."),
        _alert("GeoredisNoEligibleReplica",
               "georedis_region_eligible_replicas == 0 "
               "and on(region, instance, job) georedis_region_replica_nodes > 0",
               "1m", "warning", "No eligible replica in region {{ $labels.region }}",
               "Reads from clients of this region go to another region or the primary."),
        # Cluster mode only (standalone exports no georedis_cluster_* series).
        _alert("GeoredisClusterStateFail", "georedis_cluster_state_ok == 0", "30s", "critical",
               "The Redis Cluster behind {{ $labels.instance }} says cluster_state:fail",
               "CLUSTER INFO of a master says fail: some slots have no master reachable, "
               "and commands for them get CLUSTERDOWN. PROXY CLUSTER shows the shards."),
        _alert("GeoredisClusterShardNoReplica",
               "georedis_cluster_shard_eligible_replicas == 0", "1m", "warning",
               "Shard {{ $labels.shard }} of the cluster has no eligible replica",
               "Reads of the shard's slots go to its master, and the cluster has no "
               "caught-up replica to promote if that master fails (PROXY CLUSTER says why)."),
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
        _alert("GeoredisMemoryFullSoon",
               "predict_linear(georedis_node_used_memory_bytes[6h], 7 * 86400) "
               "> (georedis_node_maxmemory_bytes > 0)", "30m", "warning",
               f"Redis node {node} will reach maxmemory within 7 days",
               "At the growth of the last 6 hours used memory reaches "
               "{{ $value | humanize1024 }}B in 7 days, above maxmemory: plan capacity "
               "(georedis capacity) before it evicts or refuses writes."),
        # A nearly empty Redis reports huge ratios; only fragmentation of real data matters.
        _alert("GeoredisMemoryFragmentation",
               "georedis_node_mem_fragmentation_ratio > 1.5 "
               "and georedis_node_used_memory_bytes > 100 * 1024 * 1024", "15m", "warning",
               f"Memory fragmentation of {node} is above 1.5",
               "mem_fragmentation_ratio is {{ $value }}; consider activedefrag."),
        # Redis runs commands on one thread: 0.7 CPU-seconds per second is 70% of it.
        _alert("GeoredisCpuHigh", "rate(georedis_node_cpu_seconds_total[5m]) > 0.7", "15m",
               "warning", f"Redis node {node} uses more than 70% CPU",
               "Redis used {{ $value | humanizePercentage }} of a CPU over 5 minutes, "
               "for 15 minutes: latency grows as its one command thread fills."),
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
    scale = config.alerts.for_scale
    for r in rules:
        r["for"] = duration(round(seconds(r["for"]) * scale))
    return {"groups": [{"name": JOB, "rules": rules}]}
