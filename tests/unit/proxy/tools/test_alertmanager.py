"""The generated alertmanager.yml: Alertmanager's own checker accepts it, alerts reach the
receivers that asked for their severity (`amtool config routes test`, Alertmanager's
routing code run offline), no secret is in it, and prometheus.yml points at Alertmanager.
amtool and promtool run offline: no sockets.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from proxy.tools.alertmanager import alertmanager_config
from proxy.tools.generate import generate_configs, prometheus_config, to_yaml

AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")

CONFIG = """
[[regions]]
name = "a"
latitude = 1.0
longitude = 2.0
nodes = ["127.0.0.1:7000"]

[alerts]
alertmanager = "10.0.0.9:9093"

[[alerts.email]]
name = "ops-mail"
to = ["oncall@example.com", "lead@example.com"]
from_address = "georedis@example.com"
smarthost = "smtp.example.com:587"
auth_username = "georedis"
auth_password_file = "{secrets}/smtp"

[[alerts.slack]]
name = "ops-slack"
api_url_file = "{secrets}/slack"
severities = ["warning"]

[[alerts.pagerduty]]
name = "ops-pager"
routing_key_file = "{secrets}/pd"

[[alerts.webhook]]
name = "hook"
url = "https://hooks.example.com/georedis"
bearer_token_file = "{secrets}/hook"
severities = ["critical", "info"]
"""
SECRET = "s3cr3t-never-in-generated-files"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("smtp", "slack", "pd", "hook"):
        (secrets / name).write_text(SECRET)
    path = tmp_path / "georedis.toml"
    path.write_text(CONFIG.replace("{secrets}", str(secrets)))
    return path


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_timings_default_to_alertmanagers(config_file: Path) -> None:
    route = alertmanager_config(load_config(str(config_file)))["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s", "5m", "4h",
    )  # fmt: skip


def test_down_alerts_inhibit_the_rest_of_their_proxy_or_node(config_file: Path) -> None:
    rules = alertmanager_config(load_config(str(config_file)))["inhibit_rules"]
    assert rules == [
        {"source_matchers": ["alertname=GeoredisProxyDown"],
         "target_matchers": ["alertname!=GeoredisProxyDown"], "equal": ["instance"]},
        {"source_matchers": ["alertname=GeoredisBackendDown"],
         "target_matchers": ["alertname!=GeoredisBackendDown"], "equal": ["node"]},
    ]  # fmt: skip


def test_no_secret_is_written(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for path in generate_configs(load_config(str(config_file)), out):
        assert SECRET not in path.read_text(), path
    text = (out / "alertmanager/alertmanager.yml").read_text()
    # Only the references: Alertmanager opens the files itself.
    for key in ("auth_password_file", "api_url_file", "routing_key_file", "credentials_file"):
        assert f"{key}: {tmp_path}/secrets/" in text


def test_prometheus_sends_alerts_to_the_configured_alertmanager(config_file: Path) -> None:
    prom = prometheus_config(load_config(str(config_file)), "rules.yml")
    assert prom["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["10.0.0.9:9093"]}]}]
    }


@needs_amtool
@pytest.mark.parametrize("with_receivers", [True, False])
def test_amtool_accepts_the_generated_file(
    config_file: Path, tmp_path: Path, with_receivers: bool
) -> None:
    text = config_file.read_text()
    if not with_receivers:  # no [alerts] at all: a valid file that routes to no one
        config_file.write_text(text.split("[alerts]")[0])
    generate_configs(load_config(str(config_file)), tmp_path / "out")
    result = _amtool("check-config", str(tmp_path / "out/alertmanager/alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = 5 if with_receivers else 1
    assert f" - {receivers} receivers" in result.stdout and " - 2 inhibit rules" in result.stdout


@needs_amtool
def test_amtool_rejects_a_broken_file(config_file: Path, tmp_path: Path) -> None:
    # The check above can fail: a receiver Alertmanager does not know is caught.
    am: dict[str, Any] = alertmanager_config(load_config(str(config_file)))
    am["route"]["routes"][0]["receiver"] = "nobody"
    (tmp_path / "bad.yml").write_text(to_yaml(am))
    assert _amtool("check-config", str(tmp_path / "bad.yml")).returncode != 0


@needs_amtool
@pytest.mark.parametrize(
    ("severity", "receivers"),
    [
        ("critical", "ops-mail,ops-pager,hook"),
        ("warning", "ops-mail,ops-slack"),
        ("info", "hook"),
        ("", "unrouted"),  # an alert without a severity reaches no one by surprise
    ],
)
def test_alerts_reach_the_receivers_of_their_severity(
    config_file: Path, tmp_path: Path, severity: str, receivers: str
) -> None:
    am = tmp_path / "am.yml"
    am.write_text(to_yaml(alertmanager_config(load_config(str(config_file)))))
    labels = ["alertname=GeoredisBackendDown", "node=127.0.0.1:7000"]
    labels += [f"severity={severity}"] if severity else []
    result = _amtool("config", "routes", "test", f"--config.file={am}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers
