"""The receivers of `[alerts]`: where Alertmanager sends georedis' alerts.

One dataclass per kind the seed names (email, Slack, PagerDuty Events v2, a generic
webhook), each an array of tables in the file (`[[alerts.email]]`, `[[alerts.slack]]`,
...), its keys checked by the annotations below as a section's are (`config.kinds.TablesOf`).
Each receiver says which severities it gets; `proxy.tools.alertmanager` turns them into
Alertmanager's routes.

No secret is ever a value here: a password, the Slack webhook URL and the PagerDuty
routing key are each the path of a file Alertmanager reads itself (`*_file`), so the
generated alertmanager.yml holds none, and the loader refuses the literal keys
(`config.alertsconv`). Like every module in config/, this one imports nothing from
proxy/ or routing/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias

from config.kinds import Special

SEVERITIES = ("critical", "warning", "info")
# What a receiver gets when it does not say: what wants a person, not the info noise.
DEFAULT_SEVERITIES = ("critical", "warning")

Name: TypeAlias = Annotated[str, Special.REGION_NAME]
Severities: TypeAlias = Annotated[tuple[str, ...], Special.SEVERITIES]
SecretFile: TypeAlias = Annotated[str | None, Special.SECRET_FILE]


@dataclass(frozen=True, slots=True)
class EmailReceiver:
    name: Name
    to: Annotated[tuple[str, ...], Special.EMAILS]
    # The From: header (Alertmanager's `from`, a Python keyword).
    from_address: Annotated[str, Special.EMAIL]
    smarthost: Annotated[str, Special.HOST_PORT]
    severities: Severities = DEFAULT_SEVERITIES
    auth_username: str | None = None
    auth_password_file: SecretFile = None
    require_tls: bool = True
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class SlackReceiver:
    name: Name
    # The incoming-webhook URL is the credential: only from a file.
    api_url_file: Annotated[str, Special.SECRET_FILE]
    severities: Severities = DEFAULT_SEVERITIES
    channel: str | None = None
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class PagerDutyReceiver:
    """PagerDuty Events API v2: the integration's routing key, from a file."""

    name: Name
    routing_key_file: Annotated[str, Special.SECRET_FILE]
    severities: Severities = ("critical",)
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class WebhookReceiver:
    """Alertmanager's generic webhook (JSON POST). The URL is written into
    alertmanager.yml as it is (Alertmanager 0.25 has no `url_file`); a credential goes
    in `bearer_token_file`, sent as `Authorization: Bearer`."""

    name: Name
    url: Annotated[str, Special.URL]
    severities: Severities = DEFAULT_SEVERITIES
    bearer_token_file: SecretFile = None
    send_resolved: bool = True
