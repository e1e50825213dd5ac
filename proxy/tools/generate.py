"""`georedis generate-configs`: the Prometheus and Grafana files for a deployment.

    out/prometheus/prometheus.yml                     scrape job + rule_files
    out/prometheus/georedis-alerts.yml                alert rules (`proxy.tools.alerts`)
    out/alertmanager/alertmanager.yml                 receivers, routes (`proxy.tools.alertmanager`)
    out/grafana/dashboards/georedis-*.json            five dashboards (`proxy.tools.dashboards`)
    out/grafana/provisioning/datasources/prometheus.yml
    out/grafana/provisioning/dashboards/georedis.yml

This module holds the command (`generate_configs` writes the files), the wiring files
(scrape config, Grafana provisioning) and the YAML they are written in. The scrape
target comes from the config's [metrics] listen. `promtool check` validates the
Prometheus files. YAML is written by a tiny emitter (PyYAML is not a dependency): block
style, strings quoted unless plainly safe.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from config.model import Address, Config
from proxy.tools.alertmanager import alerting_block, alertmanager_config
from proxy.tools.alerts import JOB, alert_rules
from proxy.tools.compose import Files, compose_files
from proxy.tools.dashboards import dashboards
from proxy.tools.kubernetes import kubernetes_files

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
        "alerting": alerting_block(config.alerts),
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


# --- Grafana provisioning -------------------------------------------------------------


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


def _deploy_texts(files: Files) -> list[tuple[str, str]]:
    """The deploy modules' files as text: YAML data goes through `to_yaml` here."""
    return [(rel, v if isinstance(v, str) else v[0] + to_yaml(v[1])) for rel, v in files]


def generate_configs(
    config: Config,
    out_dir: Path,
    *,
    prometheus_url: str = "http://localhost:9090",
    grafana_dashboards_path: str = "/var/lib/grafana/dashboards",
    compose: bool = False,
    kubernetes: bool = False,
) -> list[Path]:
    """Write every file under `out_dir`; return their paths, in a stable order.

    `grafana_dashboards_path` is where Grafana will find `grafana/dashboards/` (mount or
    copy it there); `prometheus_url` is how Grafana reaches Prometheus. `compose` and
    `kubernetes` add DIR/compose/ and DIR/kubernetes/ (`proxy.tools.compose`, `.kubernetes`).
    """
    rules_name = "georedis-alerts.yml"
    files: list[tuple[str, str]] = [
        ("prometheus/prometheus.yml", to_yaml(prometheus_config(config, rules_name))),
        (f"prometheus/{rules_name}", to_yaml(alert_rules(config))),
        ("alertmanager/alertmanager.yml", to_yaml(alertmanager_config(config))),
        *(
            (f"grafana/dashboards/{name}", json.dumps(board, indent=2) + "\n")
            for name, board in dashboards(config)
        ),
        (
            "grafana/provisioning/datasources/prometheus.yml",
            to_yaml(grafana_datasource(prometheus_url)),
        ),
        (
            "grafana/provisioning/dashboards/georedis.yml",
            to_yaml(grafana_dashboards(grafana_dashboards_path)),
        ),
    ]
    if compose:
        files += _deploy_texts(compose_files(config, out_dir))
    if kubernetes:
        files += _deploy_texts(kubernetes_files(config))
    paths = []
    for rel, text in files:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
