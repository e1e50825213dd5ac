"""Every generated alert rule fires when it should, and some when they should not:
`promtool test rules` over synthetic series, one case at least that makes each rule fire
(`test_every_rule_has_a_firing_case` fails when a rule is added without one). promtool
runs offline: no sockets.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.model import Address, AlertsConfig, Config, ProxyConfig, RegionConfig, RoutingConfig
from config.receivers import SEVERITIES
from proxy.tools.alerts import alert_rules, seconds
from proxy.tools.generate import to_yaml

PROMTOOL = shutil.which("promtool")

# The seed's thresholds (issue 15), each one rule.
SEED_ALERTS = {
    "GeoredisMemoryHigh", "GeoredisMemoryFragmentation", "GeoredisCpuHigh",
    "GeoredisTooManyClients", "GeoredisHighOps", "GeoredisLowHitRate", "GeoredisEvictions",
    "GeoredisReplicationLagCritical", "GeoredisNoConnectedReplicas", "GeoredisUnsavedChanges",
    "GeoredisNoRecentSave", "GeoredisMemoryFullSoon",
}  # fmt: skip

PROXY = 'instance="p:9121",job="georedis"'
PROXY_LABELS = {"instance": "p:9121", "job": "georedis"}
NODE = f'node="127.0.0.1:7100",region="us-east-1",{PROXY}'
NODE_LABELS = {"node": "127.0.0.1:7100", "region": "us-east-1", **PROXY_LABELS}
PRIMARY = f'node="127.0.0.1:7000",region="ap-southeast-1",{PROXY}'
PRIMARY_LABELS = {"node": "127.0.0.1:7000", "region": "ap-southeast-1", **PROXY_LABELS}
M = "georedis_node_"


def make_config(max_lag_ms: int = 500) -> Config:
    return Config(
        proxy=ProxyConfig(region="ap-southeast-1"),
        regions=(
            RegionConfig("ap-southeast-1", 1.35, 103.8, (Address("127.0.0.1", 7000),)),
            RegionConfig("us-east-1", 38.9, -77.0, (Address("127.0.0.1", 7100),)),
        ),
        routing=RoutingConfig(max_lag_ms=max_lag_ms),
    )


def _case(series: dict[str, str], alert: str, at: str, fires: dict[str, str] | None,
          interval: str = "15s") -> dict[str, Any]:  # fmt: skip
    """Series sampled every `interval`; at `at`, `alert` fires with labels `fires`
    (severity included), or not at all (None)."""
    exp = [{"exp_labels": fires}] if fires is not None else []
    return {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": exp}],
    }


def _node(severity: str, labels: dict[str, str] = NODE_LABELS, **extra: str) -> dict[str, str]:
    return {**labels, "severity": severity, **extra}


def _proxy(severity: str, **extra: str) -> dict[str, str]:
    return {**PROXY_LABELS, "severity": severity, **extra}


def _proxy_cases() -> list[dict[str, Any]]:
    region = 'region="{}",' + PROXY
    return [
        _case({f"up{{{PROXY}}}": "1 1 0x20"}, "GeoredisProxyDown", "3m", _proxy("critical")),
        _case({f"up{{{PROXY}}}": "1x20"}, "GeoredisProxyDown", "3m", None),
        _case({f"georedis_primary_up{{{PROXY}}}": "1 0x20"}, "GeoredisNoPrimary", "3m",
              _proxy("critical")),
        _case({f"georedis_fenced_nodes{{{PROXY}}}": "0 0 1x20"}, "GeoredisFencedNode", "3m",
              _proxy("warning")),
        _case({f"georedis_write_holds_expired_total{{{PROXY}}}": "0x10 1x10"},
              "GeoredisWriteHoldExpired", "3m", _proxy("critical")),
        _case({f'georedis_backups_total{{result="error",{PROXY}}}': "0x10 1x10"},
              "GeoredisBackupFailed", "3m", _proxy("warning", result="error")),
        _case({f'georedis_backup_verifies_total{{result="error",{PROXY}}}': "0x10 1x10"},
              "GeoredisBackupVerifyFailed", "3m", _proxy("critical", result="error")),
        # Sampled every 5 min (15 s would be 6,480 samples); scheduled, and never a
        # complete backup, then one every 5 minutes.
        _case({f"georedis_backup_scheduled{{{PROXY}}}": "1x330",
               f"georedis_backup_last_success_timestamp_seconds{{{PROXY}}}": "0x330"},
              "GeoredisBackupTooOld", "27h", _proxy("critical"), interval="5m"),
        _case({f"georedis_backup_scheduled{{{PROXY}}}": "1x330",
               f"georedis_backup_last_success_timestamp_seconds{{{PROXY}}}": "0+300x330"},
              "GeoredisBackupTooOld", "27h", None, interval="5m"),
        _case({f"georedis_region_eligible_replicas{{{region.format('eu-west-1')}}}": "0x20",
               f"georedis_region_replica_nodes{{{region.format('eu-west-1')}}}": "1x20",
               f"georedis_region_eligible_replicas{{{region.format('ap')}}}": "0x20",
               f"georedis_region_replica_nodes{{{region.format('ap')}}}": "0x20"},
              "GeoredisNoEligibleReplica", "3m", _proxy("warning", region="eu-west-1")),
        # 2 errors in 100 commands per 15 s: 2% > 1%.
        _case({f'georedis_commands_total{{class="read",outcome="ok",{PROXY}}}': "0+98x60",
               f'georedis_commands_total{{class="read",outcome="error",{PROXY}}}': "0+2x60"},
              "GeoredisHighErrorRate", "12m", _proxy("warning")),
    ]  # fmt: skip


def _replication_cases() -> list[dict[str, Any]]:
    lag = f"{M}replication_lag_seconds{{{NODE}}}"
    primary = {f"{M}connected_replicas{{{PRIMARY}}}": "0x20",
               f'{M}role{{{PRIMARY},role="primary"}}': "1x20",
               f'georedis_region_replica_nodes{{region="us-east-1",{PROXY}}}': "1x20"}  # fmt: skip
    alone = {**primary, f'georedis_region_replica_nodes{{region="us-east-1",{PROXY}}}': "0x20"}
    return [
        _case({f"{M}up{{{NODE}}}": "1 1 0x20"}, "GeoredisBackendDown", "3m", _node("critical")),
        _case({f"{M}up{{{NODE}}}": "1x20"}, "GeoredisBackendDown", "3m", None),
        _case({f'{M}eligible_reason{{{NODE},reason="lagging"}}': "1x20",
               f'{M}eligible_reason{{{NODE},reason="ok"}}': "0x20"},
              "GeoredisBackendIneligible", "3m", _node("warning", reason="lagging")),
        # The warning's threshold comes from the config: max_lag_ms=500.
        _case({lag: "0.6x20"}, "GeoredisReplicationLag", "3m", _node("warning")),
        _case({lag: "0.4x20"}, "GeoredisReplicationLag", "3m", None),
        _case({lag: "11x20"}, "GeoredisReplicationLagCritical", "3m", _node("critical")),
        _case({lag: "9x20"}, "GeoredisReplicationLagCritical", "3m", None),
        _case(primary, "GeoredisNoConnectedReplicas", "3m", _node("critical", PRIMARY_LABELS)),
        # No replica configured at all: a single node is not an alert.
        _case(alone, "GeoredisNoConnectedReplicas", "3m", None),
    ]  # fmt: skip


def _memory_cases() -> list[dict[str, Any]]:
    used, limit = f"{M}used_memory_bytes{{{NODE}}}", f"{M}maxmemory_bytes{{{NODE}}}"
    frag = f"{M}mem_fragmentation_ratio{{{NODE}}}"
    return [
        # maxmemory 0 is "no limit": never an alert, however much is used.
        _case({used: "900x40", limit: "0x40"}, "GeoredisMemoryHigh", "8m", None),
        _case({used: "900x40", limit: "1000x40"}, "GeoredisMemoryHigh", "8m", _node("warning")),
        # +10 kB per 5 min: +20 MB in 7 days, past a 10 MB maxmemory; flat use is not.
        _case({used: "0+10000x100", limit: "10000000x100"}, "GeoredisMemoryFullSoon", "8h",
              _node("warning"), interval="5m"),
        _case({used: "5000000x100", limit: "10000000x100"}, "GeoredisMemoryFullSoon", "8h",
              None, interval="5m"),
        _case({frag: "2x100", used: "209715200x100"}, "GeoredisMemoryFragmentation", "20m",
              _node("warning")),
        # A nearly empty Redis reports huge ratios: not an alert.
        _case({frag: "9x100", used: "1000000x100"}, "GeoredisMemoryFragmentation", "20m", None),
        _case({f"{M}evicted_keys_total{{{NODE}}}": "0+20x200"}, "GeoredisEvictions", "30m",
              _node("warning")),
        _case({f"{M}evicted_keys_total{{{NODE}}}": "0+1x200"}, "GeoredisEvictions", "30m", None),
    ]  # fmt: skip


def _load_cases() -> list[dict[str, Any]]:
    cpu, hits, misses = (
        f"{M}cpu_seconds_total",
        f"{M}keyspace_hits_total",
        f"{M}keyspace_misses_total",
    )
    return [
        # 12 CPU-seconds per 15 s is 0.8 of a CPU; 9 is 0.6.
        _case({f"{cpu}{{{NODE}}}": "0+12x100"}, "GeoredisCpuHigh", "22m", _node("warning")),
        _case({f"{cpu}{{{NODE}}}": "0+9x100"}, "GeoredisCpuHigh", "22m", None),
        _case({f"{M}connected_clients{{{NODE}}}": "10001x40"}, "GeoredisTooManyClients", "8m",
              _node("warning")),
        _case({f"{M}instantaneous_ops_per_second{{{NODE}}}": "100001x40"}, "GeoredisHighOps",
              "8m", _node("warning")),
        _case({f"{hits}{{{NODE}}}": "0+70x100", f"{misses}{{{NODE}}}": "0+30x100"},
              "GeoredisLowHitRate", "22m", _node("info")),
        _case({f"{hits}{{{NODE}}}": "0+90x100", f"{misses}{{{NODE}}}": "0+10x100"},
              "GeoredisLowHitRate", "22m", None),
    ]  # fmt: skip


def _persistence_cases() -> list[dict[str, Any]]:
    changes, saved = (
        f"{M}rdb_changes_since_last_save{{{NODE}}}",
        f"{M}rdb_last_save_timestamp_seconds{{{NODE}}}",
    )
    return [
        _case({changes: "100001x60"}, "GeoredisUnsavedChanges", "12m", _node("warning")),
        _case({changes: "99999x60"}, "GeoredisUnsavedChanges", "12m", None),
        # Sampled every 5 min up to 27.5 h: never saved since time 0, or saved every 5 min.
        _case({saved: "0x330", changes: "5x330"}, "GeoredisNoRecentSave", "25h",
              _node("warning"), interval="5m"),
        _case({saved: "0+300x330", changes: "5x330"}, "GeoredisNoRecentSave", "25h", None,
              interval="5m"),
        _case({f"{M}rdb_last_bgsave_ok{{{NODE}}}": "0x40"}, "GeoredisBgsaveFailed", "8m",
              _node("warning")),
        _case({f"{M}aof_last_write_ok{{{NODE}}}": "0x40", f"{M}aof_enabled{{{NODE}}}": "1x40"},
              "GeoredisAofWriteFailed", "8m", _node("critical")),
        _case({f"{M}aof_last_write_ok{{{NODE}}}": "0x40", f"{M}aof_enabled{{{NODE}}}": "0x40"},
              "GeoredisAofWriteFailed", "8m", None),
    ]  # fmt: skip


def _cluster_cases() -> list[dict[str, Any]]:
    state, replicas = "georedis_cluster_state_ok", "georedis_cluster_shard_eligible_replicas"
    return [
        _case({f"{state}{{{PROXY}}}": "1 0x20"}, "GeoredisClusterStateFail", "3m",
              _proxy("critical")),
        # A fail shorter than 30 s (the cluster repairs itself) is not an alert.
        _case({f"{state}{{{PROXY}}}": "1 0 0 1x20"}, "GeoredisClusterStateFail", "3m", None),
        _case({f'{replicas}{{shard="1",{PROXY}}}': "2 0x20",
               f'{replicas}{{shard="0",{PROXY}}}': "2x20"},
              "GeoredisClusterShardNoReplica", "3m", _proxy("warning", shard="1")),
        _case({f'{replicas}{{shard="1",{PROXY}}}': "2 0 0 2x20"},
              "GeoredisClusterShardNoReplica", "3m", None),
    ]  # fmt: skip


def _rule_cases() -> list[dict[str, Any]]:
    return [*_proxy_cases(), *_replication_cases(), *_memory_cases(), *_load_cases(),
            *_persistence_cases(), *_cluster_cases()]  # fmt: skip


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = alert_rules(make_config(max_lag_ms=500))["groups"][0]["rules"]
    return rules


def test_every_rule_has_a_firing_case() -> None:
    firing = {
        t["alertname"] for c in _rule_cases() for t in c["alert_rule_test"] if t["exp_alerts"]
    }
    names = {r["alert"] for r in _rules()}
    assert names - firing == set(), "rules without a promtool case that makes them fire"
    assert firing - names == set(), "cases for rules that do not exist"


def test_the_seeds_thresholds_are_rules() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= SEED_ALERTS
    for r in rules:
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        if "georedis_node_" in r["expr"]:  # a node's alert names the node and its region
            assert "{{ $labels.node }} ({{ $labels.region }})" in r["annotations"]["summary"]


def test_for_scale_shortens_every_for() -> None:
    config = make_config()
    fast = dataclasses.replace(config, alerts=AlertsConfig(for_scale=0.1))
    slow = {r["alert"]: seconds(r["for"]) for r in _rules()}
    scaled = alert_rules(fast)["groups"][0]["rules"]
    assert {r["alert"]: seconds(r["for"]) for r in scaled} == {
        name: round(s * 0.1) for name, s in slow.items()
    }
    assert slow["GeoredisCpuHigh"] == 15 * 60  # "sustained": a quarter of an hour


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_every_rule_fires_when_it_should(tmp_path: Path) -> None:
    rules = alert_rules(make_config(max_lag_ms=500))
    # Annotations are templates checked by `promtool check rules` (test_generate.py);
    # here only when and with which labels an alert fires is under test.
    for r in rules["groups"][0]["rules"]:
        del r["annotations"]
    (tmp_path / "rules.yml").write_text(to_yaml(rules))
    # Cases that span a day are evaluated every 5 minutes, the rest every 15 s: at 15 s
    # the day-long ones alone take promtool half a minute.
    for step in ("15s", "5m"):
        cases = [c for c in _rule_cases() if c["interval"] == step]
        tests = {"rule_files": ["rules.yml"], "evaluation_interval": step, "tests": cases}
        (tmp_path / "tests.yml").write_text(to_yaml(tests))
        assert PROMTOOL is not None and cases
        result = subprocess.run(
            [PROMTOOL, "test", "rules", "tests.yml"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
