"""Converters for `[alerts]`: the receiver tables and their values (see `config.convert`).

`tables` reads an array of tables (`[[alerts.email]]`) into receiver dataclasses with
the key table `config.spec` derived for them. Before any key is looked up, the keys that
would carry a secret into alertmanager.yml are refused with the reason and the `*_file`
key to use instead: georedis never copies a secret into a generated file, and
Alertmanager reads no environment variables. `check_alerts` holds the rules between
receivers. The same rules as every converter: report to the `Context`, return None,
import nothing from proxy/ or routing/.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from config.context import Context, Conv, got, join, suggest
from config.convert import array, choice, parse_address, string
from config.model import AlertsConfig
from config.receivers import SEVERITIES

# The root route's receiver: alerts that no configured receiver asked for end there.
UNROUTED = "unrouted"

_FILE_HINT = (
    "; write it to a file only Alertmanager can read and name that file with {key} = "
    '"/etc/alertmanager/secrets/..."'
)
# Keys Alertmanager also takes with the secret itself as the value.
_LITERAL_SECRETS = {
    "auth_password": "auth_password_file",
    "api_url": "api_url_file",
    "routing_key": "routing_key_file",
    "service_key": "routing_key_file",
    "bearer_token": "bearer_token_file",
}


def _file_key(wanted: str, spec: Mapping[str, Conv]) -> str:
    """The `*_file` key of this kind of receiver to name instead (`wanted` if it has it)."""
    files = [k for k in spec if k.endswith("_file")]
    return wanted if wanted in spec or not files else files[0]


def _refusal(key: str, spec: Mapping[str, Conv]) -> str | None:
    """Why `key` may not be given in a receiver table, or None when it may."""
    if key in _LITERAL_SECRETS:
        why = "a literal secret is not allowed (it would be copied into alertmanager.yml)"
        return why + _FILE_HINT.format(key=_file_key(_LITERAL_SECRETS[key], spec))
    if key.endswith("_env"):
        why = ("Alertmanager reads no environment variables, and georedis does not copy "
               "secrets into alertmanager.yml")  # fmt: skip
        return why + _FILE_HINT.format(key=_file_key(key.removesuffix("_env") + "_file", spec))
    if key == "url_file":
        return ("Alertmanager 0.25 (Debian 12) cannot read a webhook URL from a file "
                "(url_file came in 0.26): give the URL in url, and a credential in "
                "bearer_token_file")  # fmt: skip
    return None


def _required(cls: type[Any]) -> list[str]:
    missing = dataclasses.MISSING
    return [f.name for f in dataclasses.fields(cls) if f.default is missing]


def tables(cls: type[Any], spec: Mapping[str, Conv]) -> Conv:
    """An array of tables, each converted key by key into a `cls`."""
    required = _required(cls)

    def one(ctx: Context, path: str, table: Mapping[str, object]) -> Any:
        fields: dict[str, Any] = {}
        ok = True
        for key, value in table.items():
            refused = _refusal(key, spec)
            conv = spec.get(key)
            if refused is not None or conv is None:
                ctx.error(join(path, key), refused or "unknown key" + suggest(key, spec))
                ok = False
                continue
            typed = conv(ctx, join(path, key), value)
            ok = ok and typed is not None
            fields[key] = typed
        for key in required:
            if key not in table:
                ctx.error(join(path, key), "missing required key")
                ok = False
        return cls(**fields) if ok else None

    def conv(ctx: Context, path: str, v: object) -> tuple[Any, ...] | None:
        if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
            ctx.error(path, f"expected an array of tables ([[{path}]]), got {got(v)}")
            return None
        items = [one(ctx, f"{path}[{i}]", t) for i, t in enumerate(v)]
        return None if any(x is None for x in items) else tuple(items)

    return conv


def secret_file(ctx: Context, path: str, v: object) -> str | None:
    """A path Alertmanager opens on its own host: absolute, since the generated file
    moves (a container, another directory) and a relative path would move with it."""
    name = string(ctx, path, v)
    if name is not None and not PurePosixPath(name).is_absolute():
        ctx.error(path, f"must be an absolute path (Alertmanager reads it), got {name!r}")
        return None
    return name


_severity = choice(SEVERITIES)
_severity_list = array(_severity, nonempty=True)


def severities(ctx: Context, path: str, v: object) -> tuple[str, ...] | None:
    found = _severity_list(ctx, path, v)
    return None if found is None else tuple(dict.fromkeys(found))


_EMAIL = re.compile(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+")


def email(ctx: Context, path: str, v: object) -> str | None:
    text = string(ctx, path, v)
    if text is not None and not _EMAIL.fullmatch(text):
        ctx.error(path, f"{text!r} is not an email address (name@example.com)")
        return None
    return text


emails = array(email, nonempty=True)


def host_port(ctx: Context, path: str, v: object) -> str | None:
    text = string(ctx, path, v)
    if text is None:
        return None
    try:
        return str(parse_address(text))
    except ValueError as e:
        ctx.error(path, f'bad address {text!r}: {e} (e.g. "smtp.example.com:587")')
        return None


def url(ctx: Context, path: str, v: object) -> str | None:
    text = string(ctx, path, v)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        ctx.error(path, f"{text!r} is not an http:// or https:// URL")
        return None
    if parts.username is not None or parts.password is not None:
        # The value is not shown: it holds a credential.
        ctx.error(path, "credentials in the URL would be copied into alertmanager.yml; "
                        "put the token in a file and name it with bearer_token_file")  # fmt: skip
        return None
    return text


def check_alerts(ctx: Context, alerts: AlertsConfig) -> None:
    """Receiver names are Alertmanager's: one each, across every kind."""
    seen: dict[str, str] = {}
    kinds = ("email", "slack", "pagerduty", "webhook")
    for kind in kinds:
        for i, r in enumerate(getattr(alerts, kind)):
            where = f"alerts.{kind}[{i}]"
            if r.name == UNROUTED:
                ctx.error(f"{where}.name", f"{UNROUTED!r} is reserved (alerts no receiver takes)")
            elif r.name in seen:
                ctx.error(f"{where}.name", f"receiver {r.name!r} is already {seen[r.name]}")
            seen.setdefault(r.name, where)
    for i, e in enumerate(alerts.email):
        if (e.auth_username is None) != (e.auth_password_file is None):
            ctx.error(f"alerts.email[{i}].auth_password_file",
                      "auth_username and auth_password_file go together")  # fmt: skip
