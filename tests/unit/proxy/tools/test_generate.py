"""Generated Prometheus/Grafana files: they parse, use only declared metric names and
pass `promtool check`. When each alert fires is `test_alert_rules.py`'s (promtool test
rules), alertmanager.yml `test_alertmanager.py`'s. promtool runs offline: no sockets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

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
    "alertmanager/alertmanager.yml",
    "grafana/dashboards/georedis-overview.json",
    "grafana/dashboards/georedis-memory.json",
    "grafana/dashboards/georedis-performance.json",
    "grafana/dashboards/georedis-replication.json",
    "grafana/dashboards/georedis-backup.json",
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
