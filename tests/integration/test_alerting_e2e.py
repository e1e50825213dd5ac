"""Alerts that reach people, end to end with real processes: a primary and a replica
(redis-server), georedis with its metrics, Debian's `prometheus` scraping it with the
generated rules and sending to Debian's `prometheus-alertmanager` as the generated
prometheus.yml says, Alertmanager run on the generated alertmanager.yml, and a webhook
receiver. The replica is SIGKILLed: GeoredisBackendDown reaches the webhook, firing;
the replica comes back: the resolved notification follows.

Only Prometheus' scrape and evaluation intervals are changed from the generated files
(to 1 s); the rest is what `georedis generate-configs` writes for the config's [alerts]
(timings of 1 s, `for_scale` 0.1: GeoredisBackendDown's `for: 30s` is 3 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.model import Config
from proxy.tools.generate import generate_configs
from tests.helpers.promstack import (
    Service,
    WebhookReceiver,
    missing_binaries,
    start_alertmanager,
    start_prometheus,
)
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

pytestmark = pytest.mark.skipif(
    bool(missing_binaries()), reason=f"not installed: {', '.join(missing_binaries())}"
)

FAST = """
[health]
interval_ms = 100
probe_timeout_ms = 300
info_interval_ms = 200
[alerts]
alertmanager = "127.0.0.1:{am_port}"
group_wait_s = 1
group_interval_s = 1
repeat_interval_s = 3600
for_scale = 0.1
[[alerts.webhook]]
name = "test-hook"
url = "{hook}"
severities = ["critical", "warning", "info"]
"""
DEADLINE_S = 40  # each step; seconds on an idle machine, much more on a loaded CI


def _fast_prometheus(path: Path) -> None:
    """The generated prometheus.yml, scraping and evaluating every second."""
    yaml = pytest.importorskip("yaml")
    prom: dict[str, Any] = yaml.safe_load(path.read_text())
    prom["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in prom["scrape_configs"]:
        job["scrape_interval"] = "1s"
    path.write_text(yaml.safe_dump(prom))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[RedisTopology, WebhookReceiver, Service]]:
    regions = {"ap-southeast-1": 1, "us-east-1": 1}
    with (
        RedisTopology.start(regions, tmp=tmp_path / "redis") as topo,
        WebhookReceiver() as hook,
    ):
        extra = FAST.format(am_port=free_port(), hook=hook.url)
        config: Config = config_from_toml(
            topo.config_toml(free_port(), extra=extra, metrics_port=free_port())
        )
        out = tmp_path / "out"
        generate_configs(config, out)
        _fast_prometheus(out / "prometheus/prometheus.yml")
        am_config = out / "alertmanager/alertmanager.yml"
        with (
            ProxyThread(config),
            start_alertmanager(am_config, tmp_path / "am", config.alerts.alertmanager.port),
            start_prometheus(out / "prometheus/prometheus.yml", tmp_path / "prom") as prom,
        ):
            yield topo, hook, prom


def _node_up(prom: Service, node: str) -> bool:
    reply = prom.get_json("/api/v1/query?query=georedis_node_up")
    return any(
        r["metric"].get("node") == node and r["value"][1] == "1" for r in reply["data"]["result"]
    )


def _backend_down(node: str, status: str) -> Any:
    def pred(notification: dict[str, Any]) -> bool:
        return notification["status"] == status and any(
            a["labels"]["alertname"] == "GeoredisBackendDown"
            and a["labels"].get("node") == node
            and a["status"] == status
            for a in notification["alerts"]
        )

    return pred


def test_replica_down_reaches_the_webhook_and_resolves(
    stack: tuple[RedisTopology, WebhookReceiver, Service],
) -> None:
    topo, hook, prom = stack
    (replica,) = topo.replicas()
    # Prometheus scrapes georedis through the generated job and sees the replica up.
    wait_for(lambda: _node_up(prom, replica.address), DEADLINE_S, "the replica up in Prometheus")

    replica.kill()
    fired = hook.wait_for(_backend_down(replica.address, "firing"), DEADLINE_S, "firing")
    assert fired["receiver"] == "test-hook"
    (alert,) = [a for a in fired["alerts"] if a["labels"]["alertname"] == "GeoredisBackendDown"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["region"] == "us-east-1"
    assert alert["annotations"]["summary"] == f"Redis node {replica.address} (us-east-1) is down"

    replica.restart()
    replica.wait_link_up(DEADLINE_S)
    hook.wait_for(_backend_down(replica.address, "resolved"), DEADLINE_S, "resolved")
