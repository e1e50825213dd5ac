"""Generated Prometheus/Grafana files: they parse, use only declared metric names, pass
`promtool check`, and the alert expressions fire when (and only when) they should
(`promtool test rules` over synthetic series). promtool runs offline: no sockets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.model import Address, Config, MetricsConfig, ProxyConfig, RegionConfig, RoutingConfig
from proxy.observe.metrics import METRIC_NAMES, METRICS
from proxy.tools.alerts import alert_rules
from proxy.tools.generate import generate_configs, scrape_target, to_yaml

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

EXPECTED_FILES = [
    "prometheus/prometheus.yml",
    "prometheus/georedis-alerts.yml",
    "grafana/dashboards/georedis.json",
    "grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/georedis.yml",
]
EXPECTED_ALERTS = {
    "GeoredisProxyDown", "GeoredisBackendDown", "GeoredisBackendIneligible",
    "GeoredisReplicationLag", "GeoredisMemoryHigh", "GeoredisMemoryFragmentation",
    "GeoredisTooManyClients", "GeoredisHighOps", "GeoredisLowHitRate", "GeoredisEvictions",
    "GeoredisUnsavedChanges", "GeoredisNoRecentSave", "GeoredisHighErrorRate",
    "GeoredisNoEligibleReplica",
}  # fmt: skip


def make_config(max_lag_ms: int = 500) -> Config:
    return Config(
        proxy=ProxyConfig(region="ap-southeast-1"),
        regions=(
            RegionConfig("ap-southeast-1", 1.35, 103.8, (Address("127.0.0.1", 7000),)),
            RegionConfig("us-east-1", 38.9, -77.0, (Address("127.0.0.1", 7100),)),
        ),
        routing=RoutingConfig(max_lag_ms=max_lag_ms),
        metrics=MetricsConfig(listen=Address("0.0.0.0", 9187)),
    )


@pytest.fixture
def generated(tmp_path: Path) -> dict[str, Path]:
    paths = generate_configs(make_config(), tmp_path)
    return {str(p.relative_to(tmp_path)): p for p in paths}


def test_all_files_are_written(generated: dict[str, Path]) -> None:
    assert list(generated) == EXPECTED_FILES
    for p in generated.values():
        assert p.is_file() and p.stat().st_size > 0


def test_scrape_target() -> None:
    assert scrape_target(Address("0.0.0.0", 9121)) == "127.0.0.1:9121"
    assert scrape_target(Address("::", 9121)) == "[::1]:9121"
    assert scrape_target(Address("10.0.0.5", 9121)) == "10.0.0.5:9121"


def _names_used(text: str) -> set[str]:
    names = set(re.findall(r"georedis_[a-z0-9_]+", text))
    histograms = {m.name for m in METRICS if m.kind == "histogram"}
    out = set()
    for n in names:
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        out.add(base if base in histograms else n)
    return out


def test_every_metric_name_used_is_declared(generated: dict[str, Path]) -> None:
    used: set[str] = set()
    for rel in EXPECTED_FILES:
        used |= _names_used(generated[rel].read_text())
    assert used, "no georedis_ metric names found at all"
    undeclared = used - METRIC_NAMES
    assert not undeclared, f"names used but not in METRICS: {sorted(undeclared)}"
    # The cross-check itself must catch a typo.
    assert _names_used("rate(georedis_node_up_total[5m])") - METRIC_NAMES


def test_alert_rules_cover_the_list(generated: dict[str, Path]) -> None:
    rules = alert_rules(make_config())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names >= EXPECTED_ALERTS
    for r in rules:
        assert r["for"] and r["labels"]["severity"] in ("critical", "warning", "info")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    lag = next(r for r in rules if r["alert"] == "GeoredisReplicationLag")
    assert lag["expr"].endswith("> 0.5")  # max_lag_ms=500 from the config


def _walk(obj: Any) -> list[dict[str, Any]]:
    """Every panel, including panels nested in rows."""
    out = []
    for p in obj:
        out.append(p)
        out.extend(_walk(p.get("panels", [])))
    return out


def test_dashboard_json(generated: dict[str, Path]) -> None:
    dash = json.loads(generated["grafana/dashboards/georedis.json"].read_text())
    assert dash["uid"] == "georedis" and 36 <= dash["schemaVersion"] <= 41
    panels = _walk(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == [
        "Overview", "Latency", "Routing by region", "Replication", "Backends",
        "Memory and persistence", "Backup status",
    ]  # fmt: skip
    exprs = []
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        exprs.extend(t["expr"] for t in p["targets"])
    joined = "\n".join(exprs)
    assert "histogram_quantile(0.99" in joined and "histogram_quantile(0.5" in joined
    assert "georedis_reads_total" in joined and "served_region" in joined
    (var,) = dash["templating"]["list"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"


def test_yaml_emitter_roundtrips_through_a_real_parser(generated: dict[str, Path]) -> None:
    yaml = pytest.importorskip("yaml")
    tricky = {
        "a": 'x{y="z"} == 1',
        "b": "yes",
        "c": "1m",
        "d": ["", "with: colon", "# hash", "multi\nline"],
        "e": {"f": [], "g": {}, "h": None, "i": True, "j": 1.5},
        "k": [{"x": 1, "y": [{"z": "w"}]}, "plain"],
    }
    assert yaml.safe_load(to_yaml(tricky)) == tricky
    rules = yaml.safe_load(generated["prometheus/georedis-alerts.yml"].read_text())
    assert rules == json.loads(json.dumps(alert_rules(make_config())))
    prom = yaml.safe_load(generated["prometheus/prometheus.yml"].read_text())
    assert prom["rule_files"] == ["georedis-alerts.yml"]
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9187"]
    ds = yaml.safe_load(generated["grafana/provisioning/datasources/prometheus.yml"].read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_checks_config_and_rules(generated: dict[str, Path]) -> None:
    prom_dir = generated["prometheus/prometheus.yml"].parent
    rules = _promtool("check", "rules", "georedis-alerts.yml", cwd=prom_dir)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"{len(alert_rules(make_config())['groups'][0]['rules'])} rules found" in rules.stdout
    config = _promtool("check", "config", "prometheus.yml", cwd=prom_dir)
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check above must be able to fail: a bad expression is caught.
    rules = alert_rules(make_config())
    rules["groups"][0]["rules"][0]["expr"] = "georedis_node_up =="
    (tmp_path / "bad.yml").write_text(to_yaml(rules))
    assert _promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


# --- alert behaviour: promtool test rules ---------------------------------------------

NODE = 'node="127.0.0.1:7100",region="us-east-1",instance="p:9121",job="georedis"'
NODE_LABELS = {
    "node": "127.0.0.1:7100", "region": "us-east-1", "instance": "p:9121", "job": "georedis",
}  # fmt: skip


def _fires(alert: str, severity: str, **extra: str) -> dict[str, Any]:
    return {"exp_labels": {**NODE_LABELS, "severity": severity, **extra}}


def _case(series: dict[str, str], alert: str, at: str, exp: list[dict[str, Any]]) -> Any:
    return {
        "interval": "15s",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": exp}],
    }


def _backup_age(last_success: str, fires: bool) -> Any:
    """GeoredisBackupTooOld at 27 h, sampled every 5 min (15 s would be 6,480 samples;
    more than 5 min apart and each sample goes stale before the next)."""
    labels = 'instance="p:9121",job="georedis"'
    case = _case({f"georedis_backup_scheduled{{{labels}}}": "1x330",
                  f"georedis_backup_last_success_timestamp_seconds{{{labels}}}": last_success},
                 "GeoredisBackupTooOld", "27h",
                 [{"exp_labels": {"instance": "p:9121", "job": "georedis",
                                  "severity": "critical"}}] if fires else [])  # fmt: skip
    case["interval"] = "5m"
    return case


def _rule_cases() -> list[Any]:
    m = "georedis_node_"
    return [
        _case({f"{m}up{{{NODE}}}": "1 1 0x20"}, "GeoredisBackendDown", "3m",
              [_fires("GeoredisBackendDown", "critical")]),
        _case({f"{m}up{{{NODE}}}": "1x20"}, "GeoredisBackendDown", "3m", []),
        _case({'georedis_fenced_nodes{instance="p:9121",job="georedis"}': "0 0 1x20"},
              "GeoredisFencedNode", "3m",
              [{"exp_labels": {"instance": "p:9121", "job": "georedis", "severity": "warning"}}]),
        _case({'georedis_write_holds_expired_total{instance="p:9121",job="georedis"}': "0x10 1x10"},
              "GeoredisWriteHoldExpired", "3m",
              [{"exp_labels": {"instance": "p:9121", "job": "georedis", "severity": "critical"}}]),
        _case({'georedis_backups_total{result="error",instance="p:9121",job="georedis"}': "0x10 1x10"},  # noqa: E501
              "GeoredisBackupFailed", "3m",
              [{"exp_labels": {"instance": "p:9121", "job": "georedis", "result": "error",
                               "severity": "warning"}}]),
        _backup_age("0x330", fires=True),  # scheduled, and never a complete backup
        _backup_age("0+300x330", fires=False),  # one every 5 minutes
        # Threshold from the config: max_lag_ms=500.
        _case({f"{m}replication_lag_seconds{{{NODE}}}": "0.6x20"}, "GeoredisReplicationLag",
              "3m", [_fires("GeoredisReplicationLag", "warning")]),
        _case({f"{m}replication_lag_seconds{{{NODE}}}": "0.4x20"}, "GeoredisReplicationLag",
              "3m", []),
        # maxmemory 0 is "no limit": never an alert, however much is used.
        _case({f"{m}used_memory_bytes{{{NODE}}}": "900x40",
               f"{m}maxmemory_bytes{{{NODE}}}": "0x40"}, "GeoredisMemoryHigh", "8m", []),
        _case({f"{m}used_memory_bytes{{{NODE}}}": "900x40",
               f"{m}maxmemory_bytes{{{NODE}}}": "1000x40"}, "GeoredisMemoryHigh", "8m",
              [_fires("GeoredisMemoryHigh", "warning")]),
        _case({f'{m}eligible_reason{{{NODE},reason="lagging"}}': "1x20",
               f'{m}eligible_reason{{{NODE},reason="ok"}}': "0x20"},
              "GeoredisBackendIneligible", "3m",
              [_fires("GeoredisBackendIneligible", "warning", reason="lagging")]),
        _case({'georedis_region_eligible_replicas{region="eu-west-1",instance="p:9121",job="georedis"}': "0x20",  # noqa: E501
               'georedis_region_replica_nodes{region="eu-west-1",instance="p:9121",job="georedis"}': "1x20",  # noqa: E501
               'georedis_region_eligible_replicas{region="ap-southeast-1",instance="p:9121",job="georedis"}': "0x20",  # noqa: E501
               'georedis_region_replica_nodes{region="ap-southeast-1",instance="p:9121",job="georedis"}': "0x20"},  # noqa: E501
              "GeoredisNoEligibleReplica", "3m",
              [{"exp_labels": {"region": "eu-west-1", "instance": "p:9121", "job": "georedis",
                               "severity": "warning"}}]),
        # 2 errors in 100 commands per 15 s: 2% > 1%.
        _case({'georedis_commands_total{class="read",outcome="ok",instance="p:9121",job="georedis"}': "0+98x60",  # noqa: E501
               'georedis_commands_total{class="read",outcome="error",instance="p:9121",job="georedis"}': "0+2x60"},  # noqa: E501
              "GeoredisHighErrorRate", "12m",
              [{"exp_labels": {"instance": "p:9121", "job": "georedis", "severity": "warning"}}]),
        _case({f"{m}keyspace_hits_total{{{NODE}}}": "0+70x100",
               f"{m}keyspace_misses_total{{{NODE}}}": "0+30x100"}, "GeoredisLowHitRate", "22m",
              [_fires("GeoredisLowHitRate", "info")]),
        _case({f"{m}keyspace_hits_total{{{NODE}}}": "0+90x100",
               f"{m}keyspace_misses_total{{{NODE}}}": "0+10x100"}, "GeoredisLowHitRate", "22m",
              []),
    ]  # fmt: skip


@needs_promtool
def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    rules = alert_rules(make_config(max_lag_ms=500))
    # Annotations are templates checked by `promtool check rules`; here only when and
    # with which labels an alert fires is under test, so they are left out.
    for r in rules["groups"][0]["rules"]:
        del r["annotations"]
    (tmp_path / "rules.yml").write_text(to_yaml(rules))
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": _rule_cases()}
    (tmp_path / "tests.yml").write_text(to_yaml(tests))
    result = _promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
