"""`generate-configs DIR --compose`: DIR/compose/, the seed's quick start as one stack.

    compose/docker-compose.yml   Redis per configured node, 3 Sentinels, georedis (built
                                 from the repository's Dockerfile), Prometheus,
                                 Alertmanager, Grafana
    compose/georedis.toml        the operator's config, pointed at the compose services
    compose/prometheus.yml       scrapes georedis:9121, rules and Alertmanager wired in
    compose/sentinel.conf        the Sentinels' starting config (each copies it: Sentinel
                                 rewrites its file)
    compose/grafana-datasource.yml
    compose/*-start.sh           read the secrets, then exec the server

The topology is the config's own: one Redis service per configured node, named
`redis-<region>-<n>`; the first node of the proxy's region starts as the primary, every
other node as its replica (the demo's and the example config's shape: ap-southeast-1
primary and replica, one replica each in us-east-1 and eu-west-1). georedis runs in
Sentinel mode, so a failover that Sentinel makes is one georedis follows.

Secrets are files under compose/secrets/ that the operator creates (never generated):
compose's `secrets:` mounts them at /run/secrets/, and the start scripts read them there,
so no password is in this YAML, in `docker inspect`, or on a command line (`ps`). Mounted
monitoring files come from DIR (../prometheus/georedis-alerts.yml, ../alertmanager/,
../grafana/), so the stack shows exactly what generate-configs wrote.

This module returns data (`generate` writes it as YAML with its emitter) and imports
nothing from `generate`, which imports it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from config.model import Address, BackendConfig, Config, SentinelConfig, TlsConfig
from proxy.tools.alerts import JOB
from proxy.tools.tomlout import config_toml

REDIS_IMAGE = "redis:7.2.5"
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.1"
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.27.0"
GRAFANA_IMAGE = "grafana/grafana:11.1.3"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
MASTER_NAME = "georedis"
REDIS_PORT, SENTINEL_PORT, PROXY_PORT, METRICS_PORT = 6379, 26379, 6380, 9121
PASSWORD_ENV = "GEOREDIS_REDIS_PASSWORD"
# compose/ is DIR/compose; the files generate-configs wrote are one level up.
UP = ".."

# (path relative to DIR, content): text as it is, or (comment header, data for YAML).
Files = list[tuple[str, str | tuple[str, object]]]


def node_services(config: Config) -> list[tuple[str, str]]:
    """(service name, region) per configured node, in file order."""
    return [(f"redis-{r.name}-{i}", r.name) for r in config.regions for i, _ in enumerate(r.nodes)]


def primary_service(config: Config) -> str:
    home = config.region(config.proxy.region) or config.regions[0]
    return f"redis-{home.name}-0"


def secret_names(config: Config) -> dict[str, str]:
    """Environment variable -> compose secret (a file in compose/secrets/) for every
    secret the georedis container needs."""
    c = compose_config(config)
    envs = [c.backup.key_env, c.metrics.auth_token_env, c.metrics.auth_password_env]
    envs += [u.password_env for u in c.users]
    names = {PASSWORD_ENV: "redis_password"}
    names.update({e: e.lower() for e in envs if e})
    return names


def compose_config(config: Config) -> Config:
    """The operator's config, pointed at the compose services: listening on every
    interface, the nodes as services, Sentinel mode, the backend password from the
    secret. TLS and the GeoIP database are files of the machine that generated this, so
    they are left out here (the geoip networks table stays)."""
    regions = tuple(
        dataclasses.replace(
            r, nodes=tuple(Address(f"redis-{r.name}-{i}", REDIS_PORT) for i in range(len(r.nodes)))
        )
        for r in config.regions
    )
    return dataclasses.replace(
        config,
        proxy=dataclasses.replace(config.proxy, listen=Address("0.0.0.0", PROXY_PORT)),
        regions=regions,
        backend=dataclasses.replace(
            BackendConfig(), password_env=PASSWORD_ENV, username=config.backend.username
        ),
        tls=TlsConfig(),
        sentinel=SentinelConfig(MASTER_NAME, tuple(Address(s, SENTINEL_PORT) for s in SENTINELS)),
        geoip=dataclasses.replace(config.geoip, database=None, countries=(), continents=()),
        metrics=dataclasses.replace(
            config.metrics, enabled=True, tls=False, listen=Address("0.0.0.0", METRICS_PORT)
        ),
        backup=dataclasses.replace(config.backup, directory="/var/lib/georedis/backups"),
    )


# --- start scripts and server configs -------------------------------------------------


def _redis_start() -> str:
    return """#!/bin/sh
# Redis' password from the compose secret, into a config file only the server reads
# (not on the command line, where ps shows it); then the image's own entrypoint, which
# drops root for the redis user.
set -eu
pw=$(cat /run/secrets/redis_password)
umask 077
printf 'requirepass "%s"\\nmasterauth "%s"\\n' "$pw" "$pw" > /tmp/auth.conf
chown redis:redis /tmp/auth.conf
exec docker-entrypoint.sh redis-server /tmp/auth.conf "$@"
"""


def _sentinel_start() -> str:
    return f"""#!/bin/sh
# Sentinel rewrites its config file (what it learns, failovers): each Sentinel starts
# from a copy of the mounted template, kept on restart, with the nodes' password added.
set -eu
if [ ! -f /data/sentinel.conf ]; then
  cp /etc/georedis/sentinel.conf /data/sentinel.conf
  # $1: this Sentinel's service name, which the others and georedis know it by.
  printf 'sentinel announce-ip "%s"\\n' "$1" >> /data/sentinel.conf
  printf 'sentinel auth-pass {MASTER_NAME} "%s"\\n' "$(cat /run/secrets/redis_password)" \\
    >> /data/sentinel.conf
fi
chown redis:redis /data/sentinel.conf
exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel
"""


def _georedis_start(config: Config) -> str:
    exports = "".join(
        f'{env}="$(cat /run/secrets/{name})"\nexport {env}\n'
        for env, name in secret_names(config).items()
    )
    return f"""#!/bin/sh
# georedis reads its secrets from environment variables; compose hands them over as
# files. Each variable is set here, in this process only, then georedis replaces it.
set -eu
{exports}exec georedis run --config /etc/georedis/georedis.toml
"""


def sentinel_conf(config: Config) -> str:
    # Host names, not addresses: compose gives containers new addresses on restart, and
    # georedis knows the nodes by their service names (the sentinels name them so).
    return f"""port {SENTINEL_PORT}
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor {MASTER_NAME} {primary_service(config)} {REDIS_PORT} 2
sentinel down-after-milliseconds {MASTER_NAME} 5000
sentinel failover-timeout {MASTER_NAME} 60000
sentinel parallel-syncs {MASTER_NAME} 1
"""


def prometheus_yml(config: Config) -> dict[str, Any]:
    scrape: dict[str, Any] = {
        "job_name": JOB,
        "scrape_interval": "5s",
        "static_configs": [
            {
                "targets": [f"georedis:{METRICS_PORT}"],
                "labels": {"proxy_region": config.proxy.region or "unknown"},
            }
        ],
    }
    m, names = config.metrics, secret_names(config)
    if m.auth_token_env:
        scrape["authorization"] = {"credentials_file": f"/run/secrets/{names[m.auth_token_env]}"}
    elif m.auth_user and m.auth_password_env:
        scrape["basic_auth"] = {
            "username": m.auth_user,
            "password_file": f"/run/secrets/{names[m.auth_password_env]}",
        }
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["georedis-alerts.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
        "scrape_configs": [scrape],
    }


def grafana_datasource() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
            }
        ],
    }


# --- docker-compose.yml ---------------------------------------------------------------


def _health(test: list[str], interval: str = "5s") -> dict[str, Any]:
    return {
        "test": test,
        "interval": interval,
        "timeout": "3s",
        "retries": 10,
        "start_period": "10s",
    }


def _http_ok(url: str) -> dict[str, Any]:
    # The Prometheus, Alertmanager and Grafana images carry busybox' wget, not curl.
    return _health(["CMD", "wget", "-q", "-O", "/dev/null", url], "10s")


def _redis_service(config: Config, name: str) -> dict[str, Any]:
    primary = primary_service(config)
    args = ["--replica-announce-ip", name]
    if name != primary:
        args += ["--replicaof", primary, str(REDIS_PORT)]
    svc: dict[str, Any] = {
        "image": REDIS_IMAGE,
        "hostname": name,
        "command": ["sh", "/etc/georedis/redis-start.sh", *args],
        "volumes": ["./redis-start.sh:/etc/georedis/redis-start.sh:ro", f"{name}-data:/data"],
        "secrets": ["redis_password"],
        "healthcheck": _health(
            [
                "CMD-SHELL",
                "REDISCLI_AUTH=$$(cat /run/secrets/redis_password) redis-cli ping | grep -q PONG",
            ]
        ),
        "restart": "unless-stopped",
    }
    if name != primary:
        svc["depends_on"] = {primary: {"condition": "service_healthy"}}
    return svc


def _sentinel_service(config: Config, name: str) -> dict[str, Any]:
    nodes = [n for n, _ in node_services(config)]
    return {
        "image": REDIS_IMAGE,
        "hostname": name,
        "command": ["sh", "/etc/georedis/sentinel-start.sh", name],
        "volumes": [
            "./sentinel-start.sh:/etc/georedis/sentinel-start.sh:ro",
            "./sentinel.conf:/etc/georedis/sentinel.conf:ro",
            f"{name}-data:/data",
        ],
        "secrets": ["redis_password"],
        "healthcheck": _health(["CMD-SHELL", f"redis-cli -p {SENTINEL_PORT} ping | grep -q PONG"]),
        "depends_on": {n: {"condition": "service_healthy"} for n in nodes},
        "restart": "unless-stopped",
    }


def _georedis_service(config: Config, source: str) -> dict[str, Any]:
    ready = f"http://127.0.0.1:{METRICS_PORT}/readyz"
    return {
        "build": {"context": f"${{GEOREDIS_SOURCE:-{source}}}", "dockerfile": "Dockerfile"},
        "image": "georedis:local",
        "entrypoint": ["sh", "/etc/georedis/georedis-start.sh"],
        "volumes": [
            "./georedis-start.sh:/etc/georedis/georedis-start.sh:ro",
            "./georedis.toml:/etc/georedis/georedis.toml:ro",
            "georedis-backups:/var/lib/georedis/backups",
        ],
        "secrets": sorted(set(secret_names(config).values())),
        "ports": [
            f"127.0.0.1:{PROXY_PORT}:{PROXY_PORT}",
            f"127.0.0.1:{METRICS_PORT}:{METRICS_PORT}",
        ],
        "healthcheck": _health(
            [
                "CMD",
                "python",
                "-c",
                f"import urllib.request; urllib.request.urlopen('{ready}', timeout=2)",
            ]
        ),
        "depends_on": {s: {"condition": "service_healthy"} for s in SENTINELS},
        "restart": "unless-stopped",
        "stop_grace_period": f"{config.proxy.drain_timeout_ms // 1000 + 5}s",
    }


def _monitoring_services(config: Config) -> dict[str, Any]:
    metrics_secrets = [
        secret_names(config)[e]
        for e in (config.metrics.auth_token_env, config.metrics.auth_password_env)
        if e
    ]
    prometheus: dict[str, Any] = {
        "image": PROMETHEUS_IMAGE,
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=15d",
        ],
        "volumes": [
            "./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            f"{UP}/prometheus/georedis-alerts.yml:/etc/prometheus/georedis-alerts.yml:ro",
            "prometheus-data:/prometheus",
        ],
        "ports": ["127.0.0.1:9090:9090"],
        "healthcheck": _http_ok("http://127.0.0.1:9090/-/ready"),
        "depends_on": {
            "georedis": {"condition": "service_started"},
            "alertmanager": {"condition": "service_started"},
        },
        "restart": "unless-stopped",
    }
    if metrics_secrets:
        prometheus["secrets"] = metrics_secrets
    alertmanager = {
        "image": ALERTMANAGER_IMAGE,
        "command": [
            "--config.file=/etc/alertmanager/alertmanager.yml",
            "--storage.path=/alertmanager",
        ],
        "volumes": [f"{UP}/alertmanager:/etc/alertmanager:ro", "alertmanager-data:/alertmanager"],
        "ports": ["127.0.0.1:9093:9093"],
        "healthcheck": _http_ok("http://127.0.0.1:9093/-/ready"),
        "restart": "unless-stopped",
    }
    grafana = {
        "image": GRAFANA_IMAGE,
        "environment": {
            "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana_admin_password",
            "GF_USERS_ALLOW_SIGN_UP": "false",
        },
        "volumes": [
            "./grafana-datasource.yml:/etc/grafana/provisioning/datasources/prometheus.yml:ro",
            f"{UP}/grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro",
            f"{UP}/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            "grafana-data:/var/lib/grafana",
        ],
        "secrets": ["grafana_admin_password"],
        "ports": ["127.0.0.1:3000:3000"],
        "healthcheck": _http_ok("http://127.0.0.1:3000/api/health"),
        "depends_on": {"prometheus": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
    }
    return {"prometheus": prometheus, "alertmanager": alertmanager, "grafana": grafana}


def compose_file(config: Config, source: str) -> dict[str, Any]:
    """The docker-compose.yml as data; `source` is the build context (the repository)."""
    nodes = [n for n, _ in node_services(config)]
    services: dict[str, Any] = {n: _redis_service(config, n) for n in nodes}
    services.update({s: _sentinel_service(config, s) for s in SENTINELS})
    services["georedis"] = _georedis_service(config, source)
    services.update(_monitoring_services(config))
    secrets = {name: {"file": f"./secrets/{name}"} for name in secret_names(config).values()}
    secrets["grafana_admin_password"] = {"file": "./secrets/grafana_admin_password"}
    volumes = [f"{n}-data" for n in [*nodes, *SENTINELS]]
    volumes += ["georedis-backups", "prometheus-data", "alertmanager-data", "grafana-data"]
    return {
        "name": "georedis",
        "services": services,
        "secrets": dict(sorted(secrets.items())),
        "volumes": {v: {} for v in volumes},
    }


HEADER = """# georedis quick start: generated by `georedis generate-configs DIR --compose`.
# Before the first `docker compose up -d` (in this folder), create the secrets, files
# readable by the containers' users (never commit them):
#     mkdir -p secrets && chmod 700 secrets
#     for s in {secrets}; do
#         openssl rand -hex 32 > secrets/$s; done && chmod 644 secrets/*
# GEOREDIS_SOURCE: the georedis checkout to build the image from (default below).
# Then: redis-cli -p 6380 -a "$(cat secrets/redis_password)" --no-auth-warning PING ;
# Grafana at http://127.0.0.1:3000 (admin / secrets/grafana_admin_password).
"""


def build_context(out_dir: Path) -> str:
    """The repository with the Dockerfile, relative to DIR/compose where it can be."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "Dockerfile").is_file():
        return "."  # installed from a wheel: GEOREDIS_SOURCE must name a checkout
    return os.path.relpath(repo, (out_dir / "compose").resolve())


def compose_files(config: Config, out_dir: Path) -> Files:
    """Every file of DIR/compose/."""
    secrets = " ".join([*sorted(set(secret_names(config).values())), "grafana_admin_password"])
    header = HEADER.format(secrets=secrets)
    toml_header = "georedis in the compose stack; generated from " + (config.source or "a config")
    return [
        ("compose/docker-compose.yml", (header, compose_file(config, build_context(out_dir)))),
        ("compose/georedis.toml", config_toml(compose_config(config), toml_header)),
        ("compose/prometheus.yml", ("", prometheus_yml(config))),
        ("compose/grafana-datasource.yml", ("", grafana_datasource())),
        ("compose/sentinel.conf", sentinel_conf(config)),
        ("compose/redis-start.sh", _redis_start()),
        ("compose/sentinel-start.sh", _sentinel_start()),
        ("compose/georedis-start.sh", _georedis_start(config)),
    ]
