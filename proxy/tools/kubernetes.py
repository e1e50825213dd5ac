"""`generate-configs DIR --kubernetes`: DIR/kubernetes/, manifests for `kubectl apply -f`.

    configmap.yaml        georedis.toml: the operator's config, listening on every
                          interface and expecting the NLB's PROXY protocol header
    deployment.yaml       non-root, read-only root filesystem, probes on the metrics
                          port (liveness /healthz, readiness /readyz), resources,
                          secrets by reference (Secret `georedis`, one key per variable)
    service.yaml          LoadBalancer: an AWS NLB sending PROXY protocol v2
    service-metrics.yaml  ClusterIP for the metrics port, for the ServiceMonitor
    pdb.yaml, hpa.yaml    at most one proxy down at a time; CPU-driven scaling
    servicemonitor.yaml, prometheusrule.yaml   Prometheus Operator kinds; the rules are
                          the generated alert rules

Why PROXY protocol: behind an NLB every client would otherwise look like the NLB, and
georedis routes reads by the client's address. The NLB targets pod IPs with client IP
preservation off, so each connection comes from the NLB's own private address: those
networks, and only those, may send the header ([proxy] proxy_protocol_from). A config
that lists them is kept; one that does not gets the private ranges, to narrow to the
NLB's subnets (a client in a listed network that sends no header is disconnected).

The Secret itself is never written: only its name and keys are referenced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from importlib import metadata
from typing import Any

from config.model import LOOPBACK_NETWORKS, Address, Config
from proxy.tools.alerts import alert_rules
from proxy.tools.compose import Files
from proxy.tools.tomlout import config_toml

NAME = "georedis"
SECRET = "georedis"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "proxy"}
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
CONFIG_DIR = "/etc/georedis"
AWS = "service.beta.kubernetes.io/aws-load-balancer-"


def image() -> str:
    try:
        return f"georedis:{metadata.version('georedis')}"
    except metadata.PackageNotFoundError:
        return "georedis:latest"


def pod_config(config: Config) -> Config:
    p, m = config.proxy, config.metrics
    nets = p.proxy_protocol_from
    return dataclasses.replace(
        config,
        proxy=dataclasses.replace(
            p,
            listen=Address("0.0.0.0", p.listen.port),
            proxy_protocol=True,
            proxy_protocol_from=PRIVATE_NETWORKS if nets == LOOPBACK_NETWORKS else nets,
            # "auto" counts the node's cores, not the pod's share: scale with pods instead.
            workers=p.workers or 1,
        ),
        metrics=dataclasses.replace(m, enabled=True, listen=Address("0.0.0.0", m.listen.port)),
    )


def secret_envs(config: Config) -> list[tuple[str, bool]]:
    """(variable, required) for every secret the config names; the backup key is needed
    only when backups are used, so a Secret without it still starts the pod."""
    c = config
    named = [
        (c.backend.password_env, True),
        (c.sentinel.password_env, True),
        (c.metrics.auth_token_env, True),
        (c.metrics.auth_password_env, True),
        *((u.password_env, True) for u in c.users),
        (c.backup.key_env, False),
    ]
    out: dict[str, bool] = {}
    for env, required in named:
        if env:
            out[env] = out.get(env, False) or required
    return list(out.items())


def _meta(name: str, component: str = "proxy") -> dict[str, Any]:
    return {"name": name, "labels": {**LABELS, "app.kubernetes.io/component": component}}


def configmap(toml: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(NAME),
        "data": {"georedis.toml": toml},
    }


def _probe(path: str, scheme: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics", "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(config: Config) -> dict[str, Any]:
    scheme = "HTTPS" if config.metrics.tls else "HTTP"
    env = [
        {"name": e, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": e, "optional": not req}}}
        for e, req in secret_envs(config)
    ]
    return {
        "name": NAME,
        "image": image(),
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", f"{CONFIG_DIR}/georedis.toml", "--log-format", "json"],
        "ports": [
            {"name": "redis", "containerPort": config.proxy.listen.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": config.metrics.listen.port, "protocol": "TCP"},
        ],
        "env": env,
        "startupProbe": _probe("/healthz", scheme, 2, 30),
        "livenessProbe": _probe("/healthz", scheme, 10, 3),
        # Ready while any node answers: a proxy without a primary still serves reads.
        "readinessProbe": _probe("/readyz", scheme, 5, 2),
        # The NLB stops sending new connections before SIGTERM starts the drain.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},
        "resources": {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            # Above the defaults' worst case of a few clients at their output limit
            # (256 MB each); no CPU limit: throttling shows up as latency.
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "backups", "mountPath": config.backup.directory},
        ],
    }


def deployment(config: Config, toml: str) -> dict[str, Any]:
    # A config change rolls the pods (each drains its clients); PROXY RELOAD or SIGHUP
    # would apply it in place, but nothing sends them when a ConfigMap changes.
    digest = hashlib.sha256(toml.encode()).hexdigest()
    select = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "proxy"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME),
        "spec": {
            # No `replicas`: the HorizontalPodAutoscaler owns it (apply would reset it).
            "selector": {"matchLabels": select},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": select,
                    "annotations": {"georedis/config-sha256": digest},
                },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": config.proxy.drain_timeout_ms // 1000 + 20,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": select},
                        }
                    ],
                    "containers": [_container(config)],
                    "volumes": [
                        {"name": "config", "configMap": {"name": NAME}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        # Local backups vanish with the pod: use [backup] s3_bucket here.
                        {"name": "backups", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service(config: Config) -> dict[str, Any]:
    port = config.proxy.listen.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **_meta(NAME),
            "annotations": {
                f"{AWS}type": "nlb",
                f"{AWS}proxy-protocol": "*",
                f"{AWS}nlb-target-type": "ip",
                # The peer is then the NLB itself, in proxy_protocol_from.
                f"{AWS}target-group-attributes": "preserve_client_ip.enabled=false",
                f"{AWS}scheme": "internal",
                # The NLB's health check sends no PROXY header: ask the metrics port.
                f"{AWS}healthcheck-protocol": "HTTPS" if config.metrics.tls else "HTTP",
                f"{AWS}healthcheck-port": str(config.metrics.listen.port),
                f"{AWS}healthcheck-path": "/readyz",
            },
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "service.k8s.aws/nlb",
            "selector": {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "proxy"},
            "ports": [{"name": "redis", "port": port, "targetPort": "redis", "protocol": "TCP"}],
        },
    }


def metrics_service(config: Config) -> dict[str, Any]:
    port = config.metrics.listen.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(f"{NAME}-metrics", "metrics"),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "proxy"},
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}],
        },
    }


def pdb() -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(NAME),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(LABELS)}},
    }


def hpa() -> dict[str, Any]:
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(NAME),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": cpu}],
            # Each pod removed drains its clients: scale down slowly.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def service_monitor(config: Config) -> dict[str, Any]:
    m = config.metrics
    endpoint: dict[str, Any] = {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scheme": "https" if m.tls else "http",
    }
    if m.auth_token_env:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": SECRET, "key": m.auth_token_env},
        }
    elif m.auth_user and m.auth_password_env:
        endpoint["basicAuth"] = {
            "username": {"name": SECRET, "key": "METRICS_USERNAME"},
            "password": {"name": SECRET, "key": m.auth_password_env},
        }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(NAME, "metrics"),
        # job="georedis", as the alert rules and dashboards select.
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": NAME,
                    "app.kubernetes.io/component": "metrics",
                }
            },
            "endpoints": [endpoint],
        },
    }


def prometheus_rule(config: Config) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(NAME, "metrics"),
        "spec": alert_rules(config),
    }


TOML_HEADER = """georedis in Kubernetes, behind an AWS NLB (generate-configs --kubernetes).
proxy_protocol_from: the networks the NLB connects from. Narrow them to the NLB's
subnets: a peer in them must send a PROXY header, any other may not."""


def kubernetes_files(config: Config) -> Files:
    """Every file of DIR/kubernetes/, one object each."""
    c = pod_config(config)
    toml = config_toml(c, TOML_HEADER)
    objects = [
        ("configmap", configmap(toml)),
        ("deployment", deployment(c, toml)),
        ("service", service(c)),
        ("service-metrics", metrics_service(c)),
        ("pdb", pdb()),
        ("hpa", hpa()),
        ("servicemonitor", service_monitor(c)),
        ("prometheusrule", prometheus_rule(c)),
    ]
    return [(f"kubernetes/{name}.yaml", ("", obj)) for name, obj in objects]
