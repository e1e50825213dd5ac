"""The Alertmanager config for georedis' alerts (`alertmanager/alertmanager.yml`), and the
`alerting:` block of prometheus.yml that points Prometheus at it.

`alertmanager_config(config)` returns the file as plain data; `proxy.tools.generate`
writes it as YAML. From `[alerts]`:

- one Alertmanager receiver per `[[alerts.<kind>]]` table (email, Slack, PagerDuty
  Events v2, webhook), each holding only *file references* for its secrets (Alertmanager
  reads `auth_password_file`, `api_url_file`, `routing_key_file`, `credentials_file`
  itself): the generated file is safe to commit, print or ship in a ConfigMap;
- routing by severity: one child route per receiver matching the severities it asked
  for, each with `continue: true` so that every receiver that wants an alert gets it;
  what no receiver asked for ends at a receiver with no integrations (`unrouted`);
- inhibition: while a proxy is down (`GeoredisProxyDown`) its other alerts are muted,
  and while a node is down (`GeoredisBackendDown`) so are that node's other alerts,
  from every proxy (`equal: [node]`);
- Alertmanager's usual timings (group_wait 30s, group_interval 5m, repeat_interval 4h)
  unless the config says otherwise.

Checked by `amtool check-config` in `tests/unit/proxy/tools/test_alertmanager.py`.
"""

from __future__ import annotations

from typing import Any

from config.alertsconv import UNROUTED
from config.model import AlertsConfig, Config
from config.receivers import EmailReceiver, PagerDutyReceiver, SlackReceiver, WebhookReceiver
from proxy.tools.alerts import NODE_DOWN, PROXY_DOWN, duration

Receiver = EmailReceiver | SlackReceiver | PagerDutyReceiver | WebhookReceiver

# Alerts of one kind on one node (or one proxy, for the proxy's own) go out together.
GROUP_BY = ("alertname", "instance", "node")


def alerting_block(alerts: AlertsConfig) -> dict[str, Any]:
    """prometheus.yml's `alerting:`: where Prometheus sends firing and resolved alerts."""
    return {"alertmanagers": [{"static_configs": [{"targets": [str(alerts.alertmanager)]}]}]}


def receivers(alerts: AlertsConfig) -> list[Receiver]:
    """Every configured receiver, in a stable order (by kind, then as in the file)."""
    return [*alerts.email, *alerts.slack, *alerts.pagerduty, *alerts.webhook]


def _email(r: EmailReceiver) -> dict[str, Any]:
    out: dict[str, Any] = {
        "to": ", ".join(r.to),
        "from": r.from_address,
        "smarthost": r.smarthost,
        "require_tls": r.require_tls,
        "send_resolved": r.send_resolved,
    }
    if r.auth_username is not None:
        out["auth_username"] = r.auth_username
        out["auth_password_file"] = r.auth_password_file
    return {"email_configs": [out]}


def _slack(r: SlackReceiver) -> dict[str, Any]:
    out: dict[str, Any] = {"api_url_file": r.api_url_file, "send_resolved": r.send_resolved}
    if r.channel is not None:
        out["channel"] = r.channel
    return {"slack_configs": [out]}


def _pagerduty(r: PagerDutyReceiver) -> dict[str, Any]:
    # Events v2 knows critical, error, warning, info: the rules' severities map as they are.
    severity = (
        "{{ if .CommonLabels.severity }}{{ .CommonLabels.severity }}{{ else }}critical{{ end }}"
    )
    out = {"routing_key_file": r.routing_key_file, "severity": severity,
           "send_resolved": r.send_resolved}  # fmt: skip
    return {"pagerduty_configs": [out]}


def _webhook(r: WebhookReceiver) -> dict[str, Any]:
    out: dict[str, Any] = {"url": r.url, "send_resolved": r.send_resolved}
    if r.bearer_token_file is not None:
        auth = {"type": "Bearer", "credentials_file": r.bearer_token_file}
        out["http_config"] = {"authorization": auth}
    return {"webhook_configs": [out]}


def _integration(r: Receiver) -> dict[str, Any]:
    if isinstance(r, EmailReceiver):
        return _email(r)
    if isinstance(r, SlackReceiver):
        return _slack(r)
    if isinstance(r, PagerDutyReceiver):
        return _pagerduty(r)
    return _webhook(r)


def _route(r: Receiver) -> dict[str, Any]:
    return {
        "receiver": r.name,
        "matchers": [f"severity=~{'|'.join(r.severities)}"],
        "continue": True,
    }


def _inhibit(source: str, equal: str) -> dict[str, Any]:
    """While `source` fires, mute the other alerts that share its `equal` label."""
    return {
        "source_matchers": [f"alertname={source}"],
        "target_matchers": [f"alertname!={source}"],
        "equal": [equal],
    }


def alertmanager_config(config: Config) -> dict[str, Any]:
    alerts = config.alerts
    found = receivers(alerts)
    return {
        "route": {
            "receiver": UNROUTED,
            "group_by": list(GROUP_BY),
            "group_wait": duration(alerts.group_wait_s),
            "group_interval": duration(alerts.group_interval_s),
            "repeat_interval": duration(alerts.repeat_interval_s),
            "routes": [_route(r) for r in found],
        },
        "inhibit_rules": [_inhibit(PROXY_DOWN, "instance"), _inhibit(NODE_DOWN, "node")],
        "receivers": [{"name": UNROUTED}, *({"name": r.name, **_integration(r)} for r in found)],
    }
