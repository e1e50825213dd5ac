"""`[alerts]`: receivers load into their dataclasses, and every way a secret could end
up in the generated alertmanager.yml is refused with the key to use instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.check import check_main
from config.loader import ConfigError, load_config, parse_config
from config.model import Address, AlertsConfig
from config.receivers import EmailReceiver, PagerDutyReceiver, SlackReceiver, WebhookReceiver

REGION = """
[[regions]]
name = "a"
latitude = 1.0
longitude = 2.0
nodes = ["127.0.0.1:7000"]
"""

FULL = """
[alerts]
alertmanager = "10.0.0.9:9093"
group_wait_s = 1
group_interval_s = 2
repeat_interval_s = 60
for_scale = 0

[[alerts.email]]
name = "ops-mail"
to = ["oncall@example.com", "lead@example.com"]
from_address = "georedis@example.com"
smarthost = "SMTP.example.com:587"
auth_username = "georedis"
auth_password_file = "/run/secrets/smtp"

[[alerts.slack]]
name = "ops-slack"
api_url_file = "/run/secrets/slack"
channel = "#redis"
severities = ["warning"]

[[alerts.pagerduty]]
name = "ops-pager"
routing_key_file = "/run/secrets/pd"

[[alerts.webhook]]
name = "hook"
url = "https://hooks.example.com/georedis"
bearer_token_file = "/run/secrets/hook"
severities = ["critical", "info", "critical"]
send_resolved = false
"""


def _alerts(**alerts: Any) -> dict[str, Any]:
    region = {"name": "a", "latitude": 1.0, "longitude": 2.0, "nodes": ["127.0.0.1:7000"]}
    return {"regions": [region], "alerts": alerts}


def _errors(**alerts: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(_alerts(**alerts), "g.toml")
    return info.value.errors


W = "alerts.webhook[0]"


def _webhook(**fields: Any) -> dict[str, Any]:
    return {"name": "hook", "url": "http://127.0.0.1:1/", **fields}


def test_defaults_are_alertmanagers_own() -> None:
    a = AlertsConfig()
    assert (a.group_wait_s, a.group_interval_s, a.repeat_interval_s) == (30, 300, 4 * 3600)
    assert a.alertmanager == Address("127.0.0.1", 9093) and a.for_scale == 1.0
    assert (a.email, a.slack, a.pagerduty, a.webhook) == ((), (), (), ())


def test_every_receiver_kind_loads(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text(REGION + FULL)
    a = load_config(str(path)).alerts
    assert a.alertmanager == Address("10.0.0.9", 9093)
    assert (a.group_wait_s, a.group_interval_s, a.repeat_interval_s, a.for_scale) == (1, 2, 60, 0)
    assert a.email == (
        EmailReceiver(
            name="ops-mail",
            to=("oncall@example.com", "lead@example.com"),
            from_address="georedis@example.com",
            smarthost="smtp.example.com:587",
            auth_username="georedis",
            auth_password_file="/run/secrets/smtp",
        ),
    )
    assert a.slack == (SlackReceiver("ops-slack", "/run/secrets/slack", ("warning",), "#redis"),)
    assert a.pagerduty == (PagerDutyReceiver("ops-pager", "/run/secrets/pd", ("critical",)),)
    assert a.webhook == (
        WebhookReceiver("hook", "https://hooks.example.com/georedis", ("critical", "info"),
                        "/run/secrets/hook", send_resolved=False),
    )  # fmt: skip
    assert check_main(str(path)) == 0


@pytest.mark.parametrize(
    ("kind", "table", "key", "instead"),
    [
        ("email", {"auth_password": "hunter2"}, "auth_password", "auth_password_file"),
        ("email", {"auth_password_env": "SMTP_PW"}, "auth_password_env", "auth_password_file"),
        ("slack", {"api_url": "https://hooks.slack.com/services/T0/B0/hunter2"}, "api_url",
         "api_url_file"),
        ("pagerduty", {"routing_key": "hunter2"}, "routing_key", "routing_key_file"),
        ("pagerduty", {"service_key": "hunter2"}, "service_key", "routing_key_file"),
        ("webhook", {"bearer_token": "hunter2"}, "bearer_token", "bearer_token_file"),
        ("webhook", {"token_env": "HOOK_TOKEN"}, "token_env", "bearer_token_file"),
    ],
)  # fmt: skip
def test_literal_secrets_are_refused(
    kind: str, table: dict[str, str], key: str, instead: str
) -> None:
    errors = _errors(**{kind: [{"name": "r", **table}]})
    (mine,) = [e for e in errors if f"alerts.{kind}[0].{key}:" in e]
    assert f"name that file with {instead} = " in mine
    # The refused value itself is never repeated (the error may end up in a log).
    assert not any("hunter2" in e for e in errors)


def test_webhook_url_file_is_refused_with_the_reason() -> None:
    (error,) = _errors(webhook=[_webhook(url_file="/run/secrets/url")])
    assert (
        "alerts.webhook[0].url_file: Alertmanager 0.25" in error
        and "url_file came in 0.26" in error
    )


def test_credentials_in_a_webhook_url_are_refused_unshown() -> None:
    (error,) = _errors(webhook=[_webhook(url="https://bob:hunter2@hooks.example.com/x")])
    assert "alerts.webhook[0].url: credentials in the URL" in error and "hunter2" not in error


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"webhook": [_webhook(bearer_token_file="secrets/t")]},
         f"{W}.bearer_token_file: must be an absolute path"),
        ({"webhook": [_webhook(url="ftp://x/")]}, f"{W}.url: 'ftp://x/' is not an http"),
        ({"webhook": [_webhook(severities=[])]}, f"{W}.severities: must not be empty"),
        ({"webhook": [_webhook(severities=["page"])]},
         f"{W}.severities[0]: must be one of 'critical', 'warning', 'info', got 'page'"),
        ({"webhook": [_webhook(urll="x")]}, f"{W}.urll: unknown key (did you mean 'url'?)"),
        ({"webhook": [{"name": "hook"}]}, f"{W}.url: missing required key"),
        ({"webhook": {"name": "hook"}},
         "alerts.webhook: expected an array of tables ([[alerts.webhook]])"),
        ({"email": [{"name": "m", "to": ["ops"], "from_address": "g@example.com",
                     "smarthost": "smtp.example.com:25"}]},
         "alerts.email[0].to[0]: 'ops' is not an email address"),
        ({"email": [{"name": "m", "to": ["o@example.com"], "from_address": "g@example.com",
                     "smarthost": "smtp.example.com"}]},
         "alerts.email[0].smarthost: bad address 'smtp.example.com': expected 'host:port'"),
        ({"email": [{"name": "m", "to": ["o@example.com"], "from_address": "g@example.com",
                     "smarthost": "smtp.example.com:25", "auth_username": "u"}]},
         "alerts.email[0].auth_password_file: auth_username and auth_password_file go together"),
        ({"webhook": [_webhook(name="unrouted")]}, f"{W}.name: 'unrouted' is reserved"),
        ({"slack": [{"name": "hook", "api_url_file": "/s"}], "webhook": [_webhook()]},
         f"{W}.name: receiver 'hook' is already alerts.slack[0]"),
        ({"group_wait_s": 0}, "alerts.group_wait_s: must be > 0, got 0"),
        ({"for_scale": -1}, "alerts.for_scale: must be between 0 and 100, got -1"),
        ({"alertmanager": "localhost"}, "alerts.alertmanager: bad address 'localhost'"),
    ],
)  # fmt: skip
def test_bad_alerts_are_named(alerts: dict[str, Any], expected: str) -> None:
    errors = _errors(**alerts)
    assert any(e.startswith(f"g.toml: {expected}") for e in errors), errors


def test_check_config_refuses_a_literal_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.toml"
    path.write_text(REGION + '[[alerts.pagerduty]]\nname = "p"\nrouting_key = "hunter2"\n')
    assert check_main(str(path)) == 1
    err = capsys.readouterr().err
    assert "alerts.pagerduty[0].routing_key: a literal secret is not allowed" in err
    assert "hunter2" not in err
